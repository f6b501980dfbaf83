"""``snnir.imported_by(graph, "nengo")``: what nengo 4.1 runs after the NIR paper's ``nir_to_nengo``
recipe reads a file (``snnir.frontends.dialects.nengo``). Pure tier; the interop tier
(``tests/interop/test_nengo_peer.py``) runs real nengo on the same graphs."""

from __future__ import annotations

import numpy as np
import pytest

import snnir
from snnir.ir import Graph
from snnir.ir.ops import LI, LIF, Affine, Delay, Input, Linear, Output, Scale
from snnir.ir.semantics import Semantics

from .test_dialect_versions import NORSE_SPIKES, PAPER_INPUT
from .test_imported_by import _read, _steps, flat_loop

S = Semantics(dt=1e-4)


def _lif(n: int, thr=1.0, tau=5e-4, r=1.0, v_leak=0.0) -> LIF:
    return LIF(tau=np.broadcast_to(np.asarray(tau, float), (n,)).copy(), r=np.full(n, r), v_leak=np.full(n, v_leak),
               v_threshold=np.broadcast_to(np.asarray(thr, float), (n,)).copy(), sem=S)


def non_negative_net(readout: str = "lif") -> Graph:
    """Input(4) -> Affine -> LIF(6) -> Affine -> LIF(3) or LI(3) -> Output; weights and biases >= 0,
    so nengo's membrane floor at 0 never acts."""
    rng = np.random.default_rng(3)
    last = _lif(3, [0.3, 0.5, 0.8]) if readout == "lif" else LI(tau=np.full(3, 3e-4), r=np.ones(3),
                                                                 v_leak=np.zeros(3), sem=S)
    return Graph.sequential(
        ("input", Input(shape=(4,))),
        ("fc1", Affine(weight=rng.uniform(0, 1, (6, 4)), bias=rng.uniform(0, 0.05, 6))),
        ("n1", _lif(6, rng.uniform(0.3, 0.8, 6))),
        ("fc2", Affine(weight=rng.uniform(0, 3e-4, (3, 6)), bias=np.zeros(3))),
        ("n2", last), ("output", Output()))


def test_the_papers_lif_file_spikes_where_the_paper_plots_nengo(fixtures_dir) -> None:
    """The paper's figure: nengo at 460, 510, ... with nengo.Simulator(dt=1e-4)."""
    predicted, notes = snnir.imported_by(_read(fixtures_dir / "lif_norse.nir"), "nengo", dt=1e-4)
    assert _steps(predicted) == NORSE_SPIKES
    (out,) = snnir.run(predicted, PAPER_INPUT).values()
    assert set(np.unique(out)) == {0.0, 1e4}  # nengo's spikes are 1/dt high
    assert any("1/dt = 10000 high" in note for note in notes)
    assert any("discretisation 'exp'" in note for note in notes)


def test_nengos_default_step_is_one_millisecond(fixtures_dir) -> None:
    predicted, notes = snnir.imported_by(_read(fixtures_dir / "lif_norse.nir"), "nengo")
    assert _steps(predicted)[:3] == [60, 220, 270]
    assert any("dt 0.001" in note for note in notes)


def test_a_lif_becomes_threshold_one_with_gain_and_scaled_spikes() -> None:
    predicted, _ = snnir.imported_by(non_negative_net(), "nengo", dt=1e-3)
    n1 = predicted.nodes["n1"]
    original = non_negative_net().nodes["n1"]
    np.testing.assert_array_equal(n1.v_threshold, 1.0)
    np.testing.assert_array_equal(n1.r, 1.0 / original.v_threshold)
    assert (n1.sem.dt, n1.sem.discretisation, n1.sem.reset, n1.sem.reset_timing, n1.sem.threshold_compare) == \
        (1e-3, "exp", "zero", "same", "gt")
    height = predicted.nodes["n1_nengo_spike_height"]
    assert isinstance(height, Scale) and np.all(height.scale == 1e3)
    assert ("n1", "n1_nengo_spike_height") in predicted.edges and ("n1_nengo_spike_height", "fc2") in predicted.edges


def test_an_li_is_a_lowpass_one_step_late() -> None:
    graph = non_negative_net("li")
    graph = graph.with_nodes(n2=graph.nodes["n2"].replace(r=np.full(3, 2.0)))
    predicted, notes = snnir.imported_by(graph, "nengo", dt=1e-4)
    late = predicted.nodes["n2_nengo_synapse_delay"]
    assert isinstance(late, Delay) and np.all(late.steps() == 1)
    assert ("n2_nengo_synapse_delay", "output") in predicted.edges
    np.testing.assert_array_equal(predicted.nodes["n2"].r, 1.0)
    assert any("ignores LI r and v_leak" in note for note in notes)
    assert any("one step late" in note for note in notes)


def test_every_neuron_takes_the_first_tau() -> None:
    graph = non_negative_net()
    graph = graph.with_nodes(n1=graph.nodes["n1"].replace(tau=np.linspace(5e-4, 1e-3, 6)))
    predicted, notes = snnir.imported_by(graph, "nengo")
    np.testing.assert_array_equal(predicted.nodes["n1"].tau, 5e-4)
    assert any("node 'n1': nengo runs every neuron with the first tau" in note for note in notes)


def _refusal(graph: Graph) -> snnir.SnnirError:
    with pytest.raises(snnir.SnnirError) as caught:
        snnir.imported_by(graph, "nengo")
    return caught.value


@pytest.mark.parametrize(("change", "node", "says"), [
    (lambda g: g.with_nodes(fc1=Linear(weight=g.nodes["fc1"].weight)), "fc1", "no module for Linear"),
    (lambda g: g.with_nodes(n1=g.nodes["n1"].replace(r=np.full(6, 2.0))), "n1", "asserts LIF r == 1"),
    (lambda g: g.with_nodes(n1=g.nodes["n1"].replace(v_leak=np.full(6, 0.1))), "n1", "v_leak == 0"),
    (lambda g: g.with_nodes(fc2=g.nodes["fc2"].replace(bias=np.full(3, -0.1))), "n2", "floors its membrane at 0"),
    (lambda g: g.with_nodes(input=Input(shape=(2, 2))), "input", "first entry of its shape"),
    (lambda g: g.with_nodes(n2=g.nodes["n2"].replace(v_threshold=np.zeros(3))), "n2", "threshold <= 0"),
])
def test_what_the_recipe_cannot_read_or_snnir_cannot_state_is_refused(change, node, says) -> None:
    refusal = _refusal(change(non_negative_net()))
    assert refusal.node == node and says in str(refusal) and "nengo" in str(refusal)


def test_a_negative_weight_is_not_predicted() -> None:
    graph = non_negative_net()
    weight = graph.nodes["fc1"].weight.copy()
    weight[0, 0] = -0.5
    refusal = _refusal(graph.with_nodes(fc1=graph.nodes["fc1"].replace(weight=weight)))
    assert refusal.node == "n1" and "not predicted" in str(refusal)


def test_a_loop_is_not_predicted() -> None:
    loop = flat_loop()
    nodes = {**loop.nodes, "fc": Affine(weight=np.abs(loop.nodes["fc"].weight), bias=np.zeros(3)),
             "rec": Affine(weight=loop.nodes["rec"].weight, bias=np.zeros(3)),
             "lif": loop.nodes["lif"].replace(r=np.ones(3))}
    refusal = _refusal(loop.replace(nodes=nodes))
    assert "loop" in str(refusal) and "not predicted" in str(refusal)


@pytest.mark.parametrize("dt", ["1e-3", 0.0, -1e-3])
def test_a_bad_step_is_refused_in_one_line(dt) -> None:
    with pytest.raises(snnir.SnnirError, match="dt must be a finite positive number"):
        snnir.imported_by(non_negative_net(), "nengo", dt=dt)


def test_a_v_reset_is_ignored_where_nir_can_store_it(monkeypatch) -> None:
    """nir 1.0.5+ stores LIF.v_reset; the recipe never reads it (nengo resets to 0)."""
    from snnir.frontends.dialects import imported

    monkeypatch.setattr(imported, "refuse_unknown_fields", lambda graph, library: None)
    graph = non_negative_net()
    graph = graph.with_nodes(n1=graph.nodes["n1"].replace(v_reset=np.full(6, -0.2)))
    predicted, notes = snnir.imported_by(graph, "nengo")
    np.testing.assert_array_equal(predicted.nodes["n1"].v_reset, 0.0)
    assert any("ignores v_reset" in note for note in notes)
