"""``snnir.imported_by(graph, "nengo")`` against real nengo 4.1: the NIR paper's ``nir_to_nengo``
recipe (``snnir.peers.nengo_recipe``) builds the network and ``nengo.Simulator`` runs it
(``snnir.peers.run_real``). Spikes must be equal entry for entry (nengo's are ``1 / dt`` high);
an LI's values agree to float rounding (nengo's zero-order-hold ``Lowpass`` coefficients and
snnir's ``exp(-dt/tau)`` differ in the last bit). Skipped where nengo is not installed."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import snnir
from frontends.test_dialect_versions import NORSE_SPIKES, PAPER_INPUT
from frontends.test_imported_by_nengo import non_negative_net
from snnir.ir import Graph
from snnir.ir.ops import LIF, Affine, Input, Linear, Output
from snnir.ir.semantics import Semantics
from snnir.peers import installed, run_real

pytestmark = pytest.mark.interop


@pytest.fixture(autouse=True)
def _nengo() -> None:
    missing = installed("nengo")
    if missing is not None:
        pytest.skip(missing)


def _both(graph, path: Path, x: np.ndarray, **options) -> tuple[np.ndarray, np.ndarray]:
    predicted, _ = snnir.imported_by(graph, "nengo", **options)
    (ours,) = snnir.run(predicted, x.astype(np.float64)).values()
    return ours, run_real(path, "nengo", x, **options).reshape(ours.shape)


@pytest.mark.parametrize("options", [{"dt": 1e-4}, {}])
def test_the_papers_lif_file_runs_as_predicted(fixtures_dir, options) -> None:
    path = fixtures_dir / "lif_norse.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = snnir.read(path)
    ours, theirs = _both(graph, path, PAPER_INPUT.astype(np.float32), **options)
    np.testing.assert_array_equal(ours, theirs)
    if options:  # the paper's figure: nengo spikes at 460, 510, ...
        assert np.nonzero(theirs[:, 0, 0])[0].tolist() == NORSE_SPIKES


def _spikes(seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((200, 2, 4)) < 0.3).astype(np.float32)


@pytest.mark.parametrize("dt", [1e-4, 1e-3])
def test_two_lif_layers_spike_as_predicted(tmp_path, dt) -> None:
    """The second layer sees the first's 1/dt-high spikes; both layers fire."""
    graph, path = non_negative_net(), tmp_path / "net.nir"
    snnir.write(graph, path)
    ours, theirs = _both(snnir.read(path), path, _spikes(1), dt=dt)
    assert np.count_nonzero(theirs) > 50
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("dt", [1e-4, 1e-3])
def test_an_li_readout_is_a_lowpass_one_step_late(tmp_path, dt) -> None:
    path = tmp_path / "li.nir"
    snnir.write(non_negative_net("li"), path)
    ours, theirs = _both(snnir.read(path), path, _spikes(2), dt=dt)
    assert np.count_nonzero(theirs) > 100 and not np.any(theirs[0])
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


def test_what_the_recipe_cannot_read_fails_in_real_nengo_too(tmp_path) -> None:
    graph = non_negative_net()
    graph = graph.with_nodes(fc1=Linear(weight=graph.nodes["fc1"].weight))
    path = tmp_path / "linear.nir"
    snnir.write(graph, path)
    with pytest.raises(snnir.SnnirError, match="no module for Linear"):
        snnir.imported_by(graph, "nengo")
    with pytest.raises(snnir.SnnirError, match="nengo's importer fails.*KeyError"):
        run_real(path, "nengo", _spikes(3))


def test_a_negative_drive_is_where_nengos_membrane_floor_acts(tmp_path) -> None:
    """Why a negative weight is not predicted: nengo floors the membrane at 0, so after an
    inhibiting spike it fires earlier than the same LIF without the floor (all snnir can state)."""
    lif = LIF(tau=np.array([5e-3]), r=np.ones(1), v_leak=np.zeros(1), v_threshold=np.ones(1), sem=Semantics(dt=1e-4))
    fc = Affine(weight=np.array([[3.0, -30.0]]), bias=np.zeros(1))
    graph = Graph.sequential(("input", Input(shape=(2,))), ("fc", fc), ("lif", lif), ("output", Output()))
    path = tmp_path / "inhibited.nir"
    snnir.write(graph, path)
    with pytest.raises(snnir.SnnirError, match="floors its membrane at 0.*not predicted") as caught:
        snnir.imported_by(graph, "nengo", dt=1e-4)
    assert caught.value.node == "lif"
    x = np.zeros((60, 1, 2), np.float32)
    x[0, 0, 1], x[1:, 0, 0] = 1.0, 1.0  # one inhibiting spike, then steady excitation
    unfloored, _ = snnir.imported_by(graph.with_nodes(fc=Affine(weight=np.array([[3.0, 0.0]]), bias=np.zeros(1))),
                                     "nengo", dt=1e-4)
    (ours,) = snnir.run(unfloored.with_nodes(fc=graph.nodes["fc"]), x.astype(np.float64)).values()
    theirs = run_real(path, "nengo", x, dt=1e-4)
    first = [int(np.nonzero(out[:, 0, 0])[0][0]) for out in (theirs, ours)]
    assert first[0] < first[1]


def test_snnir_check_gives_nengo_a_row_that_real_nengo_confirms(fixtures_dir, tmp_path, capsys) -> None:
    from snnir.cli.main import main

    x = tmp_path / "paper.npy"
    np.save(x, PAPER_INPUT.astype(np.float32))
    main(["check", str(fixtures_dir / "lif_norse.nir"), "--dt", "1e-4", "--input", str(x),
          "--libraries", "nengo:dt=1e-4", "--run-real"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("nengo:dt=0.0001 ")]
    assert rows[0].split()[1:] == ["yes", "0.0%", "(other", "heights)", "-", "460", "510", "710", "760"]  # 1e4 high
    assert rows[1].split()[1] == "confirmed:"


@pytest.mark.parametrize(("options", "says"), [({"batch_size": 2}, "no option 'batch_size'"),
                                               ({"dt": -1.0}, "simulation of .* fails")])
def test_run_real_refuses_bad_options_in_one_line(fixtures_dir, options, says) -> None:
    with pytest.raises(snnir.SnnirError, match=says):
        run_real(fixtures_dir / "lif_norse.nir", "nengo", PAPER_INPUT.astype(np.float32), **options)
