"""Fuzzing the reader, sized for CI: byte-level and h5py-level mutants of every fixture and of files
snnir writes, and hypothesis-drawn graphs, each against ``snnir.read`` and ``snnir inspect``.

Pass: no exception other than SnnirError, no signal, no case over its time or memory bound (this
process's peak grows by less than the data limit; the child is held by RLIMIT_AS, tested with a
memory bomb in test_hostile_files.py).
A case that fails goes, small, into ``fuzz_corpus/`` (see test_hostile_files.py). The longer
atheris run is ``tests/ir/fuzz_atheris.py`` (docs/nir-files.md).
"""

from __future__ import annotations

import json
import os
import resource
import time
import warnings
import zlib
from pathlib import Path
from unittest import mock

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from snnir.cli.main import main as cli
from snnir.errors import SnnirError
from snnir.ir import Graph
from snnir.ir.nir_io import read, write
from snnir.ir.ops import IF, LI, LIF, Affine, Delay, Input, Output, Scale, Subgraph, Threshold
from snnir.limits import Limits

FIXTURES = Path(__file__).parents[1] / "fixtures" / "nir-paper"
LIMITS = Limits(time_s=5.0, memory_bytes=512 << 20, data_bytes=256 << 20)
#: A case may take its time limit plus this much (starting the child on a loaded machine, verifying).
SLACK_S = 10.0
BYTE_MUTANTS_PER_FILE = 5
H5_MUTANTS_PER_FILE = 5


def check(path: Path, capsys=None) -> None:
    """``snnir.read`` and ``snnir inspect`` on ``path``: a graph or one SnnirError line, within bounds."""
    start, peak = time.monotonic(), _peak_rss_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            read(path, repair=True, limits=LIMITS)
        except SnnirError as exc:
            assert "\n" not in str(exc)
        with mock.patch.dict(os.environ, {"SNNIR_TIME_LIMIT_S": str(LIMITS.time_s),
                                          "SNNIR_MEMORY_LIMIT_BYTES": str(LIMITS.memory_bytes),
                                          "SNNIR_DATA_LIMIT_BYTES": str(LIMITS.data_bytes)}):
            status = cli(["inspect", str(path), "--repair"])
    assert status in (0, 1)
    if status == 1 and capsys is not None:
        assert capsys.readouterr().err.count("\n") == 1
    assert time.monotonic() - start < 2 * (LIMITS.time_s + SLACK_S)
    assert _peak_rss_bytes() - peak < LIMITS.data_bytes + (200 << 20)  # the child's bound is its RLIMIT_AS


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def ours(path: Path) -> Path:
    """A file snnir writes with a nested graph, a broadcast scalar, an absent v_reset and metadata."""
    inner = Graph.sequential(("in", Input((3,))), ("lif", LIF(tau=np.full(3, 0.02), r=1.0, v_leak=0.0,
                                                               v_threshold=0.5)), ("out", Output()))
    graph = Graph.sequential(
        ("in", Input((2,))),
        ("fc", Affine(weight=np.arange(6, dtype=np.float32).reshape(3, 2), bias=np.zeros(3, dtype=np.float32))),
        ("sub", Subgraph(graph=inner)),
        ("scale", Scale(scale=np.float64(2.0))),
        ("out", Output()),
        metadata={"source": "fuzz", "numbers": np.arange(3)},
    )
    write(graph, path)
    return path


SOURCES = sorted(FIXTURES.glob("*.nir"))


def source_file(name: str, tmp_path: Path) -> Path:
    return ours(tmp_path / "ours.nir") if name == "ours" else FIXTURES / name


# --- byte level ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", [p.name for p in SOURCES] + ["ours"])
def test_byte_mutants(name, tmp_path, capsys):
    data = source_file(name, tmp_path).read_bytes()
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    for case in range(BYTE_MUTANTS_PER_FILE):
        mutant = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(0, len(data)))
            mutant[at] = int(rng.integers(0, 256)) if rng.random() < 0.5 else mutant[at] ^ (1 << int(rng.integers(8)))
        path = tmp_path / f"byte{case}.nir"
        path.write_bytes(bytes(mutant))
        check(path, capsys)


# --- h5py level ----------------------------------------------------------------------------
def _retype(f: h5py.File, name: str, rng) -> None:
    ds = f[name]
    data = ds[()]
    del f[name]
    kind = rng.integers(7)
    if kind == 0:
        f.create_dataset(name, data="text" if rng.random() < 0.5 else "\x1b[31mred\n", dtype=h5py.string_dtype())
    elif kind == 1:
        f.create_dataset(name, data=np.ones(3, dtype=np.complex64))
    elif kind == 2:
        f.create_dataset(name, data=np.zeros(2, dtype=[("a", "<f4"), ("b", "<i2")]))
    elif kind == 3:
        f.create_dataset(name, data=np.array([True, False]))
    elif kind == 4:
        f.create_dataset(name, data=h5py.Empty("f4"))
    elif kind == 5:
        f.create_dataset(name, data=np.asarray(data).astype(rng.choice(["<f2", ">f8", "<i1", "<u8"]))
                         if np.asarray(data).dtype.kind in "biuf" else np.float64(np.nan))
    else:
        f.create_dataset(name, data=f["/"].ref, dtype=h5py.ref_dtype)


def _reshape(f: h5py.File, name: str, rng) -> None:
    del f[name]
    kind = rng.integers(5)
    if kind == 0:
        f.create_dataset(name, data=np.zeros((0, 3)))
    elif kind == 1:
        f.create_dataset(name, data=np.float32(rng.normal()))
    elif kind == 2:
        f.create_dataset(name, data=rng.normal(size=tuple(int(d) for d in rng.integers(1, 5, size=rng.integers(1, 4)))))
    elif kind == 3:
        f.create_dataset(name, shape=(1 << 13, 1 << 13), dtype="f8", chunks=(32, 32))  # never written: fill value
    else:
        f.create_dataset(name, shape=(1 << 20,), maxshape=(None,), dtype="f4", chunks=(1024,), fillvalue=np.inf)


def _relink(f: h5py.File, name: str, rng) -> None:
    parent = name.rsplit("/", 1)[0] or "/"
    kind = rng.integers(5)
    extra = f"{parent}/link{rng.integers(1000)}"
    if kind == 0:
        f[extra] = f[parent]  # a hard link back up: a cycle
    elif kind == 1:
        f[extra] = h5py.SoftLink("/nowhere")
    elif kind == 2:
        f[extra] = h5py.ExternalLink("/etc/passwd", "/x")
    elif kind == 3:
        f[extra] = f[name]  # a second hard link: a DAG
    else:
        f[extra] = h5py.SoftLink(f[parent].name)


def _rename(f: h5py.File, name: str, rng) -> None:
    parent = name.rsplit("/", 1)[0] or "/"
    new = str(rng.choice(["", ".", "a.b", "\x1b[2J", "名前", "x" * 300, "type", "nodes", "edges"]))
    if new and new != ".":
        if new in f[parent]:
            del f[f"{parent}/{new}"]
        f.move(name, f"{parent}/{new}")
    else:
        del f[name]


def _reattribute(f: h5py.File, name: str, rng) -> None:
    obj = f[name]
    obj.attrs["note"] = str(rng.choice(["x", "\x1b[0m", "z" * 10_000]))
    if "metadata" in name and isinstance(obj, h5py.Dataset) and obj.dtype.kind == "O":
        text = obj[()].decode() if isinstance(obj[()], bytes) else str(obj[()])
        try:
            record = json.loads(text)
        except ValueError:
            return
        if isinstance(record, dict) and record:
            replacements = [None, [], {}, "s", -1, [1 << 40], {"v_reset": {"dtype": "<f8", "shape": [1 << 27]}}]
            record[sorted(record)[rng.integers(len(record))]] = replacements[rng.integers(len(replacements))]
            del f[name]
            f.create_dataset(name, data=json.dumps(record), dtype=h5py.string_dtype())


H5_MUTATIONS = (_retype, _reshape, _relink, _rename, _reattribute)


def h5_mutant(source: Path, out: Path, rng) -> Path:
    out.write_bytes(source.read_bytes())
    with h5py.File(out, "a") as f:
        names: list[str] = []
        f.visit(names.append)
        for _ in range(int(rng.integers(1, 3))):
            names = [n for n in names if n in f]
            if not names:
                break
            name = str(rng.choice(names))
            mutation = H5_MUTATIONS[int(rng.integers(len(H5_MUTATIONS)))]
            if mutation in (_retype, _reshape) and not isinstance(f[name], h5py.Dataset):
                mutation = _relink
            mutation(f, name, rng)
    return out


@pytest.mark.parametrize("name", [p.name for p in SOURCES] + ["ours"])
def test_h5py_mutants(name, tmp_path, capsys):
    source = source_file(name, tmp_path)
    rng = np.random.default_rng(zlib.crc32(name.encode()) + 1)
    for case in range(H5_MUTANTS_PER_FILE):
        check(h5_mutant(source, tmp_path / f"h5_{case}.nir", rng), capsys)


# --- hypothesis graphs ---------------------------------------------------------------------
@st.composite
def graphs(draw) -> Graph:
    """Sequential graphs of elementwise and dense ops with per-neuron or scalar parameters."""
    width = draw(st.integers(1, 4))
    floats = st.floats(0.01, 2.0, allow_nan=False)

    def value(per_neuron: bool) -> np.ndarray:
        return np.array([draw(floats) for _ in range(width)]) if per_neuron else np.float64(draw(floats))

    layers: list[tuple[str, object]] = [("in", Input((width,)))]
    for index in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["affine", "lif", "if", "li", "scale", "threshold", "delay"]))
        each = draw(st.booleans())
        op = {
            "affine": lambda: Affine(weight=np.eye(width, dtype=np.float32) * draw(floats),
                                     bias=np.zeros(width, dtype=np.float32)),
            "lif": lambda: LIF(tau=value(each), r=value(each), v_leak=value(False), v_threshold=value(each)),
            "if": lambda: IF(r=value(each), v_threshold=value(each)),
            "li": lambda: LI(tau=value(each), r=value(each), v_leak=value(each)),
            "scale": lambda: Scale(scale=value(each)),
            "threshold": lambda: Threshold(threshold=value(each)),
            "delay": lambda: Delay(delay=np.full(width, 1e-4 * draw(st.integers(0, 3)))),
        }[kind]()
        layers.append((f"{kind}{index}", op))
    layers.append(("out", Output()))
    return Graph.sequential(*layers)


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.generate])
@given(graph=graphs(), seed=st.integers(0, 2**31))
def test_hypothesis_graphs_round_trip_and_survive_mutation(graph, seed, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hyp")
    path = folder / "g.nir"
    write(graph, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert read(path) == graph
    check(h5_mutant(path, folder / "m.nir", np.random.default_rng(seed)))
