"""Every published NIR file in the fixtures folder loads, verifies, survives our
round trip and runs in the reference interpreter."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from snnir.errors import SnnirError
from snnir.ir import verify
from snnir.ir.nir_io import load, read, write
from snnir.targets.reference import run
BROKEN = "braille_noDelay_bias_zero_subgraph.nir"


def spikes(graph, steps: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random 0/1 input for every Input node, ``[T, B=2, *shape]``."""
    rng = np.random.default_rng(seed)
    shapes = verify(graph).shapes
    return {name: (rng.random((steps, 2) + tuple(shapes.out(name))) < 0.3).astype(float) for name in graph.inputs}


def test_every_fixture_loads_verifies_round_trips_and_runs(fixtures_dir, tmp_path):
    files = sorted(fixtures_dir.glob("*.nir"))
    assert len(files) >= 7
    for path in files:
        graph, report = load(path, repair=path.name == BROKEN)
        verify(graph)
        assert report.defaults_applied, f"{path.name}: states no semantics, so defaults must be reported"
        out = run(graph, spikes(graph, 8))
        assert set(out) == set(graph.outputs), path.name
        for value in out.values():
            assert value.shape[:2] == (8, 2) and np.all(np.isfinite(value)), path.name
        write(graph, tmp_path / path.name)
        assert load(tmp_path / path.name)[0] == graph, path.name


def test_nir_reads_our_rewrite_of_every_fixture(fixtures_dir, tmp_path):
    nir = pytest.importorskip("nir", reason="the nir package is not installed")
    for path in sorted(fixtures_dir.glob("*.nir")):
        graph = load(path, repair=path.name == BROKEN)[0]
        write(graph, tmp_path / path.name)
        assert set(nir.read(tmp_path / path.name).nodes) == set(graph.nodes), path.name


def test_fixture_dtypes_kept(fixtures_dir):
    graph = load(fixtures_dir / "cnn_sinabs.nir")[0]
    assert graph.nodes["0"].weight.dtype == np.float32
    assert graph.nodes["1"].r.dtype == np.float32


def test_rockpool_output_shape_normalised(fixtures_dir):
    graph, report = load(fixtures_dir / "lif_rockpool.nir")
    assert graph.nodes["output"].shape == (1,)
    assert any("[1, 1, 1] normalised to [1]" in w for w in report.warnings)


def test_broken_subgraph_names_graph_and_edge(fixtures_dir):
    with pytest.raises(SnnirError) as info:
        read(fixtures_dir / BROKEN)
    message = str(info.value)
    assert info.value.node == "lif1"
    assert "names no node 'lif'" in message and "did you mean 'lif1'" in message and "\n" not in message


def test_broken_subgraph_repaired_matches_flat_file(fixtures_dir):
    repaired, report = load(fixtures_dir / BROKEN, repair=True)
    assert len(report.repairs) == 4 and all("'lif' -> 'lif1'" in r for r in report.repairs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flat = read(fixtures_dir / "braille_noDelay_bias_zero.nir")
    assert repaired.nodes["lif1"].graph.nodes["lif1"] == flat.nodes["lif1.lif"]
    assert repaired.nodes["lif1"].graph.nodes["lin"] == flat.nodes["lif1.w_rec"]
    x = spikes(flat, 40, seed=1)
    got, want = run(repaired, x)["output"], run(flat, x)["output"]
    assert want.sum() > 0
    np.testing.assert_array_equal(got, want)
