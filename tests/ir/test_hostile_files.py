"""Regression tests for every finding of issue 14's fuzzing run: hangs, crashes, exponential
link structures and memory bombs are each one SnnirError within the caller's limits, and
where the data and our metadata disagree the data wins."""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest

from snnir.errors import SnnirError, SnnirWarning
from snnir.ir import Graph
from snnir.ir import nir_io
from snnir.ir.nir_io import isolate, load, read, write
from snnir.ir.ops import LIF, Affine, Input, Output
from snnir.limits import Limits, current

from tests.ir.test_bad_files import good_file

CORPUS = Path(__file__).parent / "fuzz_corpus"
#: Short enough for CI, long enough for a loaded machine to start the child and read a fixture.
QUICK = Limits(time_s=5.0, memory_bytes=512 << 20)


def patched(fixtures_dir, tmp_path, finding: str) -> Path:
    """The fixture with the one changed byte that the corpus records for ``finding``."""
    (patch,) = [p for p in json.loads((CORPUS / "fixture_patches.json").read_text()) if p["finding"].startswith(finding)]
    data = bytearray((fixtures_dir / patch["fixture"]).read_bytes())
    data[patch["offset"]] = patch["byte"]
    path = tmp_path / f"patched_{patch['offset']}.nir"
    path.write_bytes(bytes(data))
    return path


def refused(path, match: str, limits: Limits = QUICK, seconds: float = 20.0) -> SnnirError:
    start = time.monotonic()
    with pytest.raises(SnnirError, match=match) as info:
        read(path, limits=limits)
    assert time.monotonic() - start < seconds
    assert "\n" not in str(info.value)
    return info.value


def test_hang_in_libhdf5_is_a_time_limit_error(fixtures_dir, tmp_path):
    refused(patched(fixtures_dir, tmp_path, "hang"), "took longer than the limit")


def test_hang_in_a_file_we_wrote():
    """The mutant makes libhdf5 loop allocating: the child stops on the time or the memory limit."""
    refused(CORPUS / "snnir_written_hang.nir", "took longer than the limit|memory allocation failed")


def test_sigsegv_of_plain_h5py_is_an_error_or_a_clean_read(fixtures_dir, tmp_path):
    """These bytes crash h5py reading the root type / visiting every object; our walk refuses or reads them."""
    refused(patched(fixtures_dir, tmp_path, "crash"), "'type' is dtype object")
    assert read(CORPUS / "snnir_written_sigsegv.nir", limits=QUICK) == read(good_file(tmp_path / "g.nir"))


def test_a_crashing_child_is_an_error(tmp_path, monkeypatch):
    path = good_file(tmp_path / "g.nir")
    monkeypatch.setattr(isolate, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    monkeypatch.setattr(nir_io.tree, "_TRUSTED", {})  # this process wrote the file: it would be read in-process
    refused(path, "the HDF5 library crashed on it \\(SIGSEGV\\); the file is corrupt")


def test_a_crash_under_a_lowered_memory_limit_names_the_limit_too(tmp_path, monkeypatch):
    """libhdf5 may crash where an allocation fails: under Limits(memory_bytes=1) every file 'was corrupt'."""
    path = good_file(tmp_path / "g.nir")
    monkeypatch.setattr(isolate, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    monkeypatch.setattr(nir_io.tree, "_TRUSTED", {})
    error = refused(path, "crashed on it", limits=QUICK.replace(memory_bytes=1))
    assert "the file is corrupt, or the memory limit of 1 bytes is too small" in str(error)
    error = refused(path, "crashed on it", limits=QUICK.replace(memory_bytes=current().memory_bytes))
    assert str(error).endswith("the file is corrupt")


def test_libhdf5_allocation_is_held_to_the_memory_limit(fixtures_dir, tmp_path):
    """Unbounded, libhdf5 allocates and touches 4.1 GB for this string; under RLIMIT_AS its allocation fails."""
    refused(patched(fixtures_dir, tmp_path, "memory"), "memory allocation failed")


def test_hard_link_dag_is_refused_at_once(tmp_path):
    """Each level links twice to the next: 2^25 paths through 26 groups; visited once each, the second link
    to a group is refused."""
    path = good_file(tmp_path / "g.nir")
    with h5py.File(path, "a") as f:
        levels = [f.create_group(f"node/nodes/lif/metadata/level{i}") for i in range(26)]
        for upper, lower in zip(levels, levels[1:]):
            upper["left"] = lower
            upper["right"] = lower
    assert os.path.getsize(path) < 100_000
    error = refused(path, "links to an object already read \\(links form a DAG or a cycle\\)", seconds=10)
    assert error.node == "lif"


@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_link_cycle_is_refused(tmp_path, kind):
    path = good_file(tmp_path / "g.nir")
    with h5py.File(path, "a") as f:
        meta = f.create_group("node/nodes/lif/metadata/loop")
        meta["back"] = f["node"] if kind == "hard" else h5py.SoftLink("/node")
    refused(path, "already read", limits=Limits(isolate=False))


def test_absent_records_count_against_the_data_limit(tmp_path):
    """Each node's record asks for a 512 MB zero array that the file does not hold."""
    graph = Graph.sequential(("in", Input((2,))), *[
        (f"lif{i}", LIF(tau=np.full(2, 0.01), r=1.0, v_leak=0.0, v_threshold=1.0)) for i in range(20)
    ], ("out", Output()))
    path = tmp_path / "absent.nir"
    write(graph, path)
    with h5py.File(path, "a") as f:
        for i in range(20):
            record = json.loads(f[f"node/nodes/lif{i}/metadata/snnir"][()])
            record["absent"] = {"v_reset": {"dtype": "<f8", "shape": [1 << 26]}}
            del f[f"node/nodes/lif{i}/metadata/snnir"]
            f[f"node/nodes/lif{i}/metadata/snnir"] = json.dumps(record)
    assert os.path.getsize(path) < 200_000
    tracemalloc.start()
    try:
        error = refused(path, "exceeds the limit of 1073741824 bytes \\(at absent 'v_reset'", limits=Limits(time_s=current().time_s))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert error.node == "lif1" and peak < 1.2 * (1 << 30)


def test_never_written_chunked_weight_is_counted_before_reading(tmp_path):
    path = good_file(tmp_path / "g.nir")
    with h5py.File(path, "a") as f:
        del f["node/nodes/fc/weight"]
        f.create_dataset("node/nodes/fc/weight", shape=(1 << 14, 1 << 14), dtype="f8", chunks=(64, 64))
    assert os.path.getsize(path) < 100_000
    error = refused(path, "the file's data exceeds the limit of 1073741824 bytes \\(at 'weight'", limits=Limits(time_s=current().time_s))
    assert error.node == "fc"


def test_empty_parameter_dataset_is_an_error_not_an_index_error(tmp_path):
    path = good_file(tmp_path / "g.nir")
    with h5py.File(path, "a") as f:
        record = json.loads(f["node/nodes/lif/metadata/snnir"][()])
        record["shapes"] = {"v_threshold": [3]}
        del f["node/nodes/lif/metadata/snnir"], f["node/nodes/lif/v_threshold"]
        f["node/nodes/lif/metadata/snnir"] = json.dumps(record)
        f.create_dataset("node/nodes/lif/v_threshold", data=np.zeros((2, 0, 3)))
    error = refused(path, "parameter 'v_threshold' is empty, but its snnir record says shape \\[3\\]")
    assert error.node == "lif"


def test_per_neuron_thresholds_set_by_nir_win_over_our_record(tmp_path):
    """nir.read/nir.write keep our record (which says v_threshold is a scalar) but the data now varies."""
    path = tmp_path / "ours.nir"
    write(Graph.sequential(
        ("in", Input((3,))),
        ("fc", Affine(weight=np.eye(3, dtype=np.float32), bias=np.zeros(3, dtype=np.float32))),
        ("lif", LIF(tau=np.full(3, 0.01), r=1.0, v_leak=0.0, v_threshold=0.5)),
        ("out", Output()),
    ), path)
    model = nir.read(path)
    model.nodes["lif"].v_threshold = np.array([0.5, 1.0, 2.0])
    edited = tmp_path / "edited.nir"
    nir.write(edited, model)
    with pytest.warns(SnnirWarning, match="node 'lif': parameter 'v_threshold' varies over shape \\[3\\] but its "
                                          "snnir record says \\[\\]; kept the data"):
        graph = read(edited)
    np.testing.assert_array_equal(graph.nodes["lif"].v_threshold, [0.5, 1.0, 2.0])


def test_normal_files_read_the_same_isolated_or_not(fixtures_dir):
    for path in sorted(fixtures_dir.glob("*.nir")):
        isolated, _ = load(path, repair=True, limits=current().replace(isolate=True))
        in_process, _ = load(path, repair=True, limits=current().replace(isolate=False))
        assert isolated == in_process, path.name


def test_file_objects_are_isolated_too(fixtures_dir, tmp_path):
    with open(patched(fixtures_dir, tmp_path, "hang"), "rb") as file:
        with pytest.raises(SnnirError, match="took longer than the limit"):
            read(file, limits=QUICK)


def test_graph_parameters_in_total_are_held_to_the_data_limit():
    """After the ops are built, their parameters together are checked against ``data_bytes``
    (defence in depth: the tree's own count normally refuses first)."""
    graph = Graph.sequential(("in", Input((20_000,))),
                             ("fc", Affine(weight=np.ones((3, 20_000), dtype=np.float32), bias=np.zeros(3))),
                             ("out", Output()))
    nir_io._check_param_bytes(graph, Limits(data_bytes=250_000))
    with pytest.raises(SnnirError, match="the graph's parameters exceed the limit of 200000 bytes") as info:
        nir_io._check_param_bytes(graph, Limits(data_bytes=200_000))
    assert info.value.node == "fc"


@pytest.mark.parametrize("child, match", [
    ("import sys; sys.exit(5)", "the reading process failed \\(exit status 5\\)"),
    ("import sys; print('{'); sys.exit(3)", "the reading process answered nonsense"),
    ("import sys, numpy as np; np.savez(sys.argv[3], tree=np.frombuffer(b'{\"group\": {}}', np.uint8), "
     "a0=np.array([{}], dtype=object))", "unreadable tree"),
    ("import sys, numpy as np; np.savez(sys.argv[3], tree=np.frombuffer(b'{\"bogus\": 1}', np.uint8))",
     "malformed tree"),
])
def test_a_misbehaving_child_is_an_error(tmp_path, monkeypatch, child, match):
    """Whatever the child does, the parent unpickles nothing and answers one SnnirError."""
    path = good_file(tmp_path / "g.nir")
    monkeypatch.setattr(isolate, "_CHILD", child)
    monkeypatch.setattr(nir_io.tree, "_TRUSTED", {})
    refused(path, match)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RLIMIT_AS is enforced on Linux only")
def test_a_hard_address_space_limit_is_kept_not_raised(fixtures_dir):
    """Under a hard ``ulimit -v`` below start-up size + memory_bytes (a batch job's), the child
    keeps the hard limit instead of failing to raise it, and the file reads."""
    import resource
    import subprocess
    import sys

    hard = 2 << 30

    def limit_address_space() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))

    code = ("import sys, warnings; warnings.simplefilter('ignore'); from snnir.ir.nir_io import read; "
            "from snnir.limits import Limits; "
            "print(len(read(sys.argv[1], limits=Limits(memory_bytes=4 << 30)).nodes))")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code, os.fspath(fixtures_dir / "lif_norse.nir")],
                          capture_output=True, text=True, env=env, preexec_fn=limit_address_space, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "4", done.stderr
