"""``snnir.imported_by`` checked against the real importers: each installed library loads the
file with its own ``from_nir``/``import_from_nir`` and runs it; ``snnir.run`` of the prediction
must give the same spikes. On the NIR paper's single-LIF files (the paper's input) and on plain
NIR files of small feed-forward nets that were written for no library in particular.
(The systematic prediction matrix is ``test_prediction_matrix.py``.)
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import snnir
from frontends.test_dialect_versions import PAPER_INPUT
from snnir.ir.semantics import Semantics
from snnir.peers import installed, run_real

from .cells_common import _our_feedforward

pytestmark = pytest.mark.interop


def _real(library: str, path: Path, x: np.ndarray, options: dict) -> np.ndarray:
    """The library's own importer on the file at ``path``, run on ``x`` ([T, B, n]) in ``x``'s
    precision (Sinabs in float64 only for one layer: its spikes are float32)."""
    missing = installed(library)
    if missing is not None:
        pytest.skip(missing)
    return run_real(path, library, x, **options)


def _predicted(graph, library: str, x: np.ndarray, options: dict) -> np.ndarray:
    predicted, _ = snnir.imported_by(graph, library, **options)
    (out,) = snnir.run(predicted, x.astype(np.float64)).values()
    return out


@pytest.mark.parametrize(("file", "library", "options"), [
    ("lif_norse.nir", "snntorch", {}),
    ("lif_norse.nir", "norse", {"dt": 1e-4}),
    ("lif_norse.nir", "norse", {}),
    ("lif_norse.nir", "sinabs", {"batch_size": 1}),
    ("lif_norse.nir", "spyx", {"dt": 1e-4}),
    ("lif_norse.nir", "spyx", {}),
    ("lif_rockpool.nir", "snntorch", {}),
    ("lif_rockpool.nir", "norse", {"dt": 1e-4}),
    ("lif_rockpool.nir", "spyx", {"dt": 1e-4}),
])
def test_the_papers_lif_files_spike_as_predicted(fixtures_dir, file, library, options) -> None:
    path = fixtures_dir / file
    x = PAPER_INPUT.astype(np.float64 if library == "sinabs" else np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = snnir.read(path)
    theirs = _real(library, path, x, options).reshape(x.shape[0], 1, 1)
    assert theirs.sum() > 0 or library == "norse"  # Norse never fires on lif_rockpool.nir (r ignored)
    np.testing.assert_array_equal(_predicted(graph, library, x, options), theirs)


def test_sinabs_in_float32_counts_one_more_spike_at_exact_multiples_of_the_threshold(fixtures_dir) -> None:
    """lif_norse.nir's threshold is float32 0.1 (0.10000000149...): a membrane of exactly 1 holds
    9.9999998 thresholds, 9 spikes as snnir (float64) and Sinabs in float64 count them; Sinabs'
    default float32 division rounds to 10.0. The prediction is exact in float64 only."""
    path = fixtures_dir / "lif_norse.nir"
    x = PAPER_INPUT.astype(np.float32)
    theirs = _real("sinabs", path, x, {"batch_size": 1}).reshape(x.shape[0], 1, 1)
    ours = _predicted(snnir.read(path), "sinabs", x, {"batch_size": 1})
    assert set(np.unique(theirs - ours)) == {0.0, 1.0} and ours.max() == 9 and theirs.max() == 10


def test_rockpool_cannot_import_an_nir_lif_as_predicted(fixtures_dir) -> None:
    path = fixtures_dir / "lif_rockpool.nir"
    with pytest.raises(snnir.SnnirError, match="rockpool's importer fails.*tau_mem"):
        _real("rockpool", path, PAPER_INPUT.astype(np.float32), {})
    with pytest.raises(snnir.SnnirError, match="tau_mem"):
        snnir.imported_by(snnir.read(path), "rockpool")


_PLAIN = Semantics(dt=1e-3, discretisation="exp", reset="zero")  # no library's own


@pytest.mark.parametrize(("kind", "library", "options"), [
    ("LIF", "snntorch", {}), ("CubaLIF", "snntorch", {}),
    ("LIF", "norse", {}), ("CubaLIF", "norse", {"dt": 5e-4}), ("IF", "norse", {}),
    ("LIF", "sinabs", {"batch_size": 3}),
    ("CubaLIF", "rockpool", {}),
    ("LIF", "spyx", {"dt": 1e-3}), ("IF", "spyx", {}),
])
def test_a_plain_nir_file_spikes_in_each_library_as_predicted(tmp_path, kind, library, options) -> None:
    graph = _our_feedforward(kind, _PLAIN)
    if kind == "CubaLIF" and library == "snntorch":  # snnTorch asserts r = tau_mem / 1e-4
        graph = graph.with_nodes({n: graph.nodes[n].replace(r=graph.nodes[n].tau_mem / 1e-4) for n in ("n1", "n2")})
    path = tmp_path / "plain.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snnir.write(graph, path)
    x = ((np.random.default_rng(0).random((40, 3, 6)) < 0.3) * 1.5).astype(np.float32)
    theirs = _real(library, path, x, options)
    assert theirs.sum() > 0
    np.testing.assert_array_equal(_predicted(graph, library, x, options), theirs)


@pytest.mark.parametrize("file", ["braille_noDelay_bias_zero.nir", "braille_noDelay_noBias_subtract.nir"])
def test_rockpool_runs_the_braille_files_without_their_recurrent_edge(tmp_path, file) -> None:
    """Rockpool calls nirtorch's executor once over the whole sequence: the loop's way back is dropped."""
    from .prediction_corpus import CORPUS

    (entry,) = [entry for entry in CORPUS if entry.name == file]
    graph, x = entry.graph(tmp_path), entry.input()
    theirs = _real("rockpool", entry.path(tmp_path), x, {})
    assert theirs.sum() > 0
    _, notes = snnir.imported_by(graph, "rockpool")
    assert any("edge 'lif1.w_rec' -> 'lif1.lif'" in note for note in notes)
    np.testing.assert_array_equal(_predicted(graph, "rockpool", x, {}), theirs)


def test_snntorch_runs_a_flat_loop_with_the_input_through_the_recurrent_weight(tmp_path) -> None:
    from frontends.test_imported_by import flat_loop

    graph = flat_loop()
    snnir.write(graph, tmp_path / "loop.nir")
    x = ((np.random.default_rng(0).random((40, 3, 3)) < 0.3) * 1.0).astype(np.float32)
    theirs = _real("snntorch", tmp_path / "loop.nir", x, {})
    assert theirs.sum() > 0
    np.testing.assert_array_equal(_predicted(graph, "snntorch", x, {}), theirs)


def test_nirtorch_loops_stepped_by_norse_are_refused_as_the_braille_file_differs(fixtures_dir) -> None:
    with pytest.raises(snnir.SnnirError, match="loops in nirtorch's own order"):
        snnir.imported_by(snnir.read(fixtures_dir / "braille_noDelay_bias_zero.nir"), "norse")
