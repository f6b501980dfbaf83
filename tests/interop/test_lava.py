"""Real Lava (lava-nc in its own Python 3.10, ``snnir.peers.lava_env``) against
``snnir.imported_by(graph, "lava")``: the paper's LIF file, a lone LIF, a two-layer net with
negative weights and non-binary inputs, and the refusals. Skips, saying why, without Lava.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import snnir
from frontends.test_dialect_versions import PAPER_INPUT
from frontends.test_imported_by_lava import lif_only, two_layers
from snnir.ir.ops import Linear
from snnir.peers import installed, run_real

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(installed("lava") is not None, reason=str(installed("lava")))]


def _written(graph, tmp_path):
    path = tmp_path / "graph.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snnir.write(graph, path)
    return path


def _predicted(graph, x: np.ndarray, **options) -> np.ndarray:
    predicted, _ = snnir.imported_by(graph, "lava", fixed_pt=False, **options)
    (out,) = snnir.run(predicted, x.astype(np.float64)).values()
    return out.reshape(*out.shape[:2], -1)


def _steps(out: np.ndarray) -> list[int]:
    return np.nonzero(out[:, 0].reshape(len(out), -1).any(axis=1))[0].tolist()


def test_the_papers_lif_file_in_lava_spikes_at_462_as_predicted(fixtures_dir) -> None:
    """The published converter makes a Dense of the file's Affine and one of its LIF: 462, not the
    paper's 461 (its notebook fed the LIF's Dense directly). Fixed point spikes there too."""
    path = fixtures_dir / "lif_norse.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = snnir.read(path)
    theirs = run_real(path, "lava", PAPER_INPUT, fixed_pt=False)
    np.testing.assert_array_equal(_predicted(graph, PAPER_INPUT), theirs)
    assert _steps(theirs) == [462, 512, 712, 762]
    assert _steps(run_real(path, "lava", PAPER_INPUT)) == [462, 512, 712, 762]


def test_a_lone_lif_spikes_at_the_papers_461_in_float_and_fixed_point(tmp_path) -> None:
    path = _written(lif_only(), tmp_path)
    theirs = run_real(path, "lava", PAPER_INPUT, fixed_pt=False)
    np.testing.assert_array_equal(_predicted(lif_only(), PAPER_INPUT), theirs)
    assert _steps(theirs) == [461, 511, 711, 761] == _steps(run_real(path, "lava", PAPER_INPUT))


@pytest.mark.parametrize("dt", [1e-4, 1e-3])
def test_two_layers_with_negative_weights_and_graded_inputs_are_exact(tmp_path, dt) -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((60, 2, 4)) < 0.3) * rng.choice([-2.0, 0.5, 3.0], (60, 2, 4))
    path = _written(two_layers(), tmp_path)
    theirs = run_real(path, "lava", x, fixed_pt=False, dt=dt)
    assert theirs.sum() > 0
    np.testing.assert_array_equal(_predicted(two_layers(), x, dt=dt), theirs)


@pytest.mark.parametrize(("graph", "why"), [
    (two_layers(bias=0.1), "non-zero bias"),
    (two_layers().with_nodes(fc2=Linear(weight=np.ones((3, 6)))), "no Lava process for Linear"),
])
def test_what_is_refused_fails_in_the_real_converter(tmp_path, graph, why) -> None:
    with pytest.raises(snnir.SnnirError):
        snnir.imported_by(graph, "lava", fixed_pt=False)
    with pytest.raises(snnir.SnnirError, match=f"lava's importer fails.*{why}"):
        run_real(_written(graph, tmp_path), "lava", np.zeros((5, 1, 4)), fixed_pt=False)
