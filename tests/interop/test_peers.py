"""``snnir.peers.run_real``: a library that is missing, unknown or the wrong version, a file its
importer cannot read, and an input of the wrong rank are one-line SnnirErrors naming the library;
snnTorch's importer is never started on a file it would loop on."""

from __future__ import annotations

import ast
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from snnir.errors import SnnirError
from snnir import peers
from snnir.peers import folder as peer_folder
from snnir.peers import lava_env

pytestmark = pytest.mark.interop

X = np.zeros((5, 2, 1), np.float32)


def test_an_unknown_library_is_refused_naming_the_known_ones(fixtures_dir) -> None:
    with pytest.raises(SnnirError, match="no runner for library 'no-such-library'.*snntorch, norse.*lava"):
        peers.run_real(fixtures_dir / "lif_norse.nir", "no-such-library", X)


def test_a_missing_library_is_refused_naming_it(fixtures_dir, monkeypatch) -> None:
    gone = dataclasses.replace(peers.PEERS["spyx"], module="snnir_no_such_module")
    monkeypatch.setitem(peers.PEERS, "spyx", gone)
    with pytest.raises(SnnirError, match="spyx is not installed here.*snnir_no_such_module not importable"):
        peers.run_real(fixtures_dir / "lif_norse.nir", "spyx", X)


def test_a_library_version_not_installed_is_refused(fixtures_dir, monkeypatch, tmp_path) -> None:
    """norse-1.0 is looked for in its own folder (snnir.peers.folder), never in the venv's Norse 1.1."""
    monkeypatch.setitem(peer_folder.FOLDERS, "norse-1.0", tmp_path / "absent")
    peer_folder.probe.cache_clear()
    try:
        with pytest.raises(SnnirError, match="norse-1.0 is not installed here .*install_norse_1_0.sh"):
            peers.run_real(fixtures_dir / "lif_norse.nir", "norse-1.0", X)
    finally:
        peer_folder.probe.cache_clear()


def test_an_importer_failure_names_the_library_and_its_reason(fixtures_dir) -> None:
    if peers.installed("rockpool") is not None:
        pytest.skip(peers.installed("rockpool"))
    with pytest.raises(SnnirError, match="rockpool's importer fails on .*lif_norse.nir.*AttributeError.*tau_mem"):
        peers.run_real(fixtures_dir / "lif_norse.nir", "rockpool", X)


def test_a_file_nir_cannot_read_is_refused(tmp_path) -> None:
    if peers.installed("norse") is not None:
        pytest.skip(peers.installed("norse"))
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(SnnirError, match="norse: nir.read cannot load"):
        peers.run_real(bad, "norse", X)


def test_an_input_without_time_and_batch_is_refused(fixtures_dir) -> None:
    if peers.installed("norse") is not None:
        pytest.skip(peers.installed("norse"))
    with pytest.raises(SnnirError, match=r"must be \[T, B, ...\]"):
        peers.run_real(fixtures_dir / "lif_norse.nir", "norse", np.zeros(5))


def test_snntorch_is_not_started_on_a_file_whose_edge_names_no_node(fixtures_dir) -> None:
    """nirtorch's nir_to_torch would re-queue the node waiting for 'lif' forever."""
    if peers.installed("snntorch") is not None:
        pytest.skip(peers.installed("snntorch"))
    with pytest.raises(SnnirError, match="an edge names 'lif', which is no node"):
        peers.run_real(fixtures_dir / "braille_noDelay_bias_zero_subgraph.nir", "snntorch", np.zeros((5, 2, 12)))


def test_each_sample_runs_alone_from_a_fresh_state(fixtures_dir) -> None:
    """Two equal samples give equal spikes: snnTorch's hidden state is reset between them."""
    if peers.installed("snntorch") is not None:
        pytest.skip(peers.installed("snntorch"))
    x = np.repeat((np.random.default_rng(0).random((30, 1, 1)) < 0.5).astype(np.float32) * 40, 2, axis=1)
    out = peers.run_real(fixtures_dir / "lif_norse.nir", "snntorch", x)
    assert out.shape == (30, 2, 1) and out.sum() > 0 and np.array_equal(out[:, 0], out[:, 1])


def test_the_lava_runner_imports_only_what_lavas_python_has() -> None:
    """``lava_runner.py`` runs by path in Lava's Python 3.10 (``python -I``): numpy, nir, lava and
    the standard library only, and no module of its folder shadows one of those."""
    runner = Path(lava_env.RUNNER)
    tops = {alias.name.split(".")[0] for node in ast.walk(ast.parse(runner.read_text()))
            for alias in getattr(node, "names", []) if isinstance(node, ast.Import)}
    tops |= {node.module.split(".")[0] for node in ast.walk(ast.parse(runner.read_text()))
             if isinstance(node, ast.ImportFrom) and node.module}
    assert tops - set(sys.stdlib_module_names) == {"numpy", "nir", "lava"}
    assert not {p.stem for p in runner.parent.glob("*.py")} & (tops | {"nengo"})


def test_rockpool_runs_a_float64_input_in_float32(tmp_path) -> None:
    """Its module failed inside Rockpool ("expected m1 and m2 to have the same dtype") on float64 input:
    ``.to(torch.float64)`` leaves some of its tensors float32. It runs in float32, as Spyx does."""
    import snnir
    from snnir.ir import Affine, CubaLIF, Graph, Input, Output

    if peers.installed("rockpool") is not None:
        pytest.skip(peers.installed("rockpool"))
    rng = np.random.default_rng(0)
    graph = Graph.sequential(
        ("x", Input((4,))), ("fc", Affine(weight=rng.uniform(size=(3, 4)), bias=np.zeros(3))),
        ("lif", CubaLIF(tau_syn=np.full(3, 2e-3), tau_mem=np.full(3, 2e-3), r=np.ones(3), v_leak=np.zeros(3),
                        v_threshold=np.full(3, 0.1), w_in=np.ones(3))), ("y", Output()))
    snnir.write(graph, tmp_path / "cuba.nir")
    x = (rng.random((30, 2, 4)) < 0.5).astype(np.float64)
    out = peers.run_real(tmp_path / "cuba.nir", "rockpool", x)
    assert out.dtype == np.float32 and out.sum() > 0
    np.testing.assert_array_equal(out, peers.run_real(tmp_path / "cuba.nir", "rockpool", x.astype(np.float32)))


def test_snntorch_runs_each_sample_from_zero_state_and_a_float64_input(tmp_path) -> None:
    """A loop's neuron, nested in snnTorch's imported module, kept its state from one sample into
    the next (snntorch.utils.reset finds top-level neurons only): three identical samples came back
    different. A float64 input failed on the float32 spikes snnTorch's neurons emit."""
    pytest.importorskip("snntorch", reason="runs snnTorch's own importer")
    import snnir
    from snnir.ir import Graph
    from snnir.ir.ops import LIF, Affine, Input, Linear, Output
    from snnir.ir.semantics import Semantics

    rng = np.random.default_rng(0)
    dt, n = 1e-4, 5
    lif = LIF(tau=np.full(n, 5 * dt), r=np.full(n, 5.0), v_leak=np.zeros(n), v_threshold=np.full(n, 1.0),
              sem=Semantics(dt=dt))
    graph = Graph({"input": Input((3,)), "fc": Affine(weight=rng.normal(0.8, 0.5, (n, 3)), bias=np.zeros(n)),
                   "lif": lif, "rec": Linear(weight=rng.normal(0, 0.5, (n, n))), "output": Output()},
                  (("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")))
    path = tmp_path / "loop.nir"
    snnir.write(graph, path, dialect="snntorch")
    sample = (rng.random((30, 1, 3)) < 0.4).astype(np.float32)
    x = np.concatenate([sample] * 3, axis=1)
    want = snnir.run(graph, x)["output"]
    assert want.sum() > 0
    np.testing.assert_array_equal(peers.run_real(path, "snntorch", x), want)
    np.testing.assert_array_equal(peers.run_real(path, "snntorch", x.astype(np.float64)), want)
