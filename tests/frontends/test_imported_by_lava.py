"""``snnir.imported_by(graph, "lava")``: the NIR paper's Lava converter in Lava's floating-point
models, without Lava (``tests/interop/test_lava.py`` confirms each against real Lava).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import snnir
from snnir.ir import Graph
from snnir.ir.ops import LIF, Affine, CubaLIF, Input, Linear, Output
from snnir.ir.semantics import Semantics

from .test_dialect_versions import PAPER_INPUT

DT = 1e-4


def lif(n: int, tau: float = 25 * DT, threshold: float = 0.1, **params) -> LIF:
    values = {"tau": tau, "r": 1.0, "v_leak": 0.0, "v_threshold": threshold, **params}
    return LIF(**{k: np.full(n, float(v)) for k, v in values.items()}, sem=Semantics(dt=DT))


def lif_only() -> Graph:
    """Input -> LIF -> Output: the network the paper's Lava notebook built by hand (one Dense)."""
    return Graph.sequential(("input", Input(shape=(1,))), ("lif", lif(1)), ("output", Output()))


def two_layers(bias: float = 0.0) -> Graph:
    """Input(4) -> Affine (some negative weights) -> LIF(6) -> Affine -> LIF(3) -> Output."""
    rng = np.random.default_rng(3)
    return Graph.sequential(
        ("input", Input(shape=(4,))),
        ("fc1", Affine(weight=rng.normal(0.3, 0.5, (6, 4)), bias=np.full(6, bias))),
        ("n1", lif(6, tau=10 * DT, threshold=0.15)),
        ("fc2", Affine(weight=rng.normal(0.5, 0.5, (3, 6)), bias=np.zeros(3))),
        ("n2", lif(3, tau=8 * DT, threshold=0.1)),
        ("output", Output()),
    )


def spike_steps(graph: Graph, x: np.ndarray = PAPER_INPUT, **options) -> list[int]:
    predicted, _ = snnir.imported_by(graph, "lava", **{"fixed_pt": False, **options})
    (out,) = snnir.run(predicted, x).values()
    return np.nonzero(out[:, 0].reshape(len(out), -1).any(axis=1))[0].tolist()


def read(path) -> Graph:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return snnir.read(path)


def test_the_papers_lif_file_spikes_two_steps_late_in_lava(fixtures_dir) -> None:
    """Its Affine and its LIF each become a Dense, and each Dense delivers one step late."""
    graph = read(fixtures_dir / "lif_norse.nir")
    assert spike_steps(graph) == [462, 512, 712, 762]
    _, notes = snnir.imported_by(graph, "lava", fixed_pt=False)
    assert "node '0': Lava's Dense delivers its input one step late" in notes
    assert "node '0': Lava's Dense reads its input as spikes (any non-zero value is one)" in notes


def test_a_lone_lif_is_the_papers_hand_built_network_and_spikes_at_461() -> None:
    assert spike_steps(lif_only()) == [461, 511, 711, 761]


def test_lava_reads_any_non_zero_input_as_one_spike() -> None:
    x = PAPER_INPUT * np.where(np.arange(len(PAPER_INPUT)) % 20 == 0, -3.0, 7.0)[:, None, None]
    assert spike_steps(lif_only(), x) == spike_steps(lif_only())


def test_the_converters_dt_sets_the_decay_and_r_and_v_leak_are_ignored() -> None:
    graph = lif_only().with_nodes(lif=lif(1, r=2.0, v_leak=0.05))
    predicted, notes = snnir.imported_by(graph, "lava", fixed_pt=False, dt=1e-3)
    neuron = predicted.nodes["lif"]
    assert neuron.sem.dt == 1e-3 and neuron.sem.discretisation == "euler" and neuron.sem.reset == "zero"
    assert np.all(neuron.r == 1.0) and np.all(neuron.v_leak == 0.0)
    assert any("ignores r" in note for note in notes) and any("ignores v_leak" in note for note in notes)
    assert any("simulates dt 0.001" in note for note in notes)


def test_its_default_fixed_point_is_not_predicted_naming_the_node() -> None:
    with pytest.raises(snnir.SnnirError, match=r"fixed_pt=True.*not predicted") as caught:
        snnir.imported_by(two_layers(), "lava")
    assert caught.value.node == "fc1"


@pytest.mark.parametrize(("graph", "node", "why"), [
    (two_layers(bias=0.1), "fc1", "zero bias"),
    (two_layers().with_nodes(fc2=Linear(weight=np.ones((3, 6)))), "fc2", "no module for Linear"),
    (two_layers().with_nodes(n1=lif(6).replace(tau=np.linspace(1e-3, 2e-3, 6))), "n1", "one tau"),
    (two_layers().with_nodes(n2=CubaLIF(tau_syn=np.full(3, 1e-3), tau_mem=np.full(3, 1e-3), r=np.ones(3),
                                        v_leak=np.zeros(3), v_threshold=np.ones(3), sem=Semantics(dt=DT))),
     "n2", "no module for CubaLIF"),
])
def test_what_the_converter_cannot_build_is_refused_naming_node_and_importer(graph, node, why) -> None:
    with pytest.raises(snnir.SnnirError, match=why) as caught:
        snnir.imported_by(graph, "lava", fixed_pt=False)
    assert caught.value.node == node and "Lava" in str(caught.value)


def test_a_loop_is_not_predicted() -> None:
    graph = two_layers()
    loop = graph.replace(nodes={**graph.nodes, "back": Affine(weight=np.eye(6), bias=np.zeros(6))},
                         edges=graph.edges + (("n1", "back"), ("back", "n1")))
    with pytest.raises(snnir.SnnirError, match="loop.*not predicted"):
        snnir.imported_by(loop, "lava", fixed_pt=False)


def test_an_option_the_converter_does_not_take_is_refused() -> None:
    with pytest.raises(snnir.SnnirError, match="takes no option 'batch_size'"):
        snnir.imported_by(lif_only(), "lava", batch_size=2)


def test_a_graph_without_processes_is_refused_in_either_precision() -> None:
    empty = Graph({"input": Input(shape=(1,)), "output": Output()}, (), {})
    for fixed_pt in (True, False):
        with pytest.raises(snnir.SnnirError):
            snnir.imported_by(empty, "lava", fixed_pt=fixed_pt)
