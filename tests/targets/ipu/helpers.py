"""Random graphs covering every neuron type and semantics option, for the IPU/ONNX tests."""

from __future__ import annotations

import itertools

import numpy as np

from snnir.ir import (
    IF, LI, LIF, Affine, AvgPool2d, Conv2d, CubaLI, CubaLIF, Delay, Flatten, Graph, I, Input, Linear,
    Output, Scale, Semantics, Subgraph, SumPool2d, Threshold,
)

DT = 1e-3


def semantics_cases() -> list[Semantics]:
    """Every reset x timing x compare, both discretisations and current orders, and multi-spike."""
    cases = []
    for k, (reset, timing, compare) in enumerate(
        itertools.product(("zero", "subtract", "none"), ("same", "next"), ("gt", "ge"))
    ):
        cases.append(Semantics(
            dt=DT, reset=reset, reset_timing=timing, threshold_compare=compare,
            discretisation=("euler", "exp")[k % 2], current_order=("current_first", "voltage_first")[k // 2 % 2],
        ))
    cases.append(Semantics(dt=DT, reset="subtract", threshold_compare="ge", spike_mode="multi"))
    cases.append(Semantics(dt=DT, reset="zero", reset_timing="next", threshold_compare="ge", spike_mode="multi"))
    cases.append(Semantics(dt=DT, reset="zero", reset_timing="next_after_input"))
    cases.append(Semantics(dt=DT, discretisation="exp", reset="subtract", reset_timing="next_after_input",
                           threshold_compare="ge", spike_mode="multi", current_order="voltage_first"))
    return cases


def neurons(rng: np.random.Generator, n: int, sem: Semantics) -> dict:
    """One of each neuron type on ``n`` units, with per-unit parameters."""
    def pos(lo, hi):
        return rng.uniform(lo, hi, size=n)

    thr = pos(0.5, 1.5)
    return {
        "i": I(r=pos(50, 150), sem=sem),
        "if": IF(r=pos(100, 300), v_threshold=thr, v_reset=rng.uniform(-0.2, 0.2, n), sem=sem),
        "li": LI(tau=pos(5e-3, 2e-2), r=pos(0.5, 2), v_leak=rng.uniform(-0.1, 0.1, n), sem=sem),
        "lif": LIF(tau=pos(5e-3, 2e-2), r=pos(1, 3), v_leak=rng.uniform(-0.1, 0.1, n), v_threshold=thr,
                   v_reset=rng.uniform(-0.2, 0.2, n), sem=sem),
        "culi": CubaLI(tau_syn=pos(3e-3, 1e-2), tau_mem=pos(5e-3, 2e-2), r=pos(0.5, 2), v_leak=0.0,
                       w_in=pos(0.5, 1.5), sem=sem),
        "culif": CubaLIF(tau_syn=pos(3e-3, 1e-2), tau_mem=pos(5e-3, 2e-2), r=pos(2, 6), v_leak=0.0,
                         v_threshold=thr, v_reset=0.0, w_in=pos(0.5, 1.5), sem=sem),
    }


def all_neurons_graph(rng: np.random.Generator, sem: Semantics, n_in: int = 5, n: int = 7) -> Graph:
    """input -> affine -> each neuron type -> its own output; the LIF also feeds itself back."""
    nodes = {"input": Input((n_in,)), "fc": Affine(rng.normal(0, 1, (n, n_in)), rng.normal(0, 0.3, n))}
    edges = [("input", "fc")]
    for name, op in neurons(rng, n, sem).items():
        nodes[name] = op
        nodes[f"out_{name}"] = Output()
        edges += [("fc", name), (name, f"out_{name}")]
    nodes["rec"] = Linear(rng.normal(0, 0.5, (n, n)))
    edges += [("lif", "rec"), ("rec", "lif")]
    return Graph(nodes, tuple(edges))


def conv_graph(rng: np.random.Generator) -> Graph:
    """conv -> IF -> sum pool -> conv -> LIF -> avg pool -> flatten -> scale -> threshold, with a delay branch."""
    sem = Semantics(dt=DT, reset="subtract")
    return Graph.sequential(
        ("input", Input((2, 8, 8))),
        ("conv1", Conv2d(rng.normal(0, 0.6, (4, 2, 3, 3)), rng.normal(0, 0.1, 4), padding=1)),
        ("if1", IF(r=400.0, v_threshold=1.0, sem=sem)),
        ("pool1", SumPool2d(2)),
        ("conv2", Conv2d(rng.normal(0, 0.6, (4, 2, 3, 3)), stride=1, padding="same", groups=2)),
        ("lif1", LIF(tau=1e-2, r=2.0, v_leak=0.0, v_threshold=0.3, sem=sem)),
        ("pool2", AvgPool2d(2, stride=2)),
        ("flat", Flatten(start_dim=0)),
        ("delay", Delay(rng.integers(0, 4, 16) * DT, sem=sem)),
        ("scale", Scale(rng.uniform(0.5, 2.0, 16))),
        ("thr", Threshold(np.full(16, 0.05))),
        ("output", Output()),
    )


def nested_graph(rng: np.random.Generator) -> Graph:
    """A recurrent CubaLIF layer as a nested graph whose output loops back through a delay."""
    sem = Semantics(dt=DT, reset="zero")
    inner = Graph(
        {"input": Input((6,)), "lif": CubaLIF(tau_syn=5e-3, tau_mem=1e-2, r=4.0, v_leak=0.0, v_threshold=1.0,
                                              sem=sem),
         "w_rec": Linear(rng.normal(0, 0.5, (6, 6))), "output": Output()},
        (("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")),
    )
    return Graph(
        {"input": Input((3,)), "fc": Linear(rng.normal(0, 1.5, (6, 3))), "layer": Subgraph(inner),
         "fb": Linear(rng.normal(0, 0.3, (6, 6))), "output": Output()},
        (("input", "fc"), ("fc", "layer"), ("layer", "fb"), ("fb", "layer"), ("layer", "output")),
    )
