"""Small random graphs for every registered op, and helpers to compare with the reference."""

from __future__ import annotations

import numpy as np

from snnir.ir import (
    IF, LI, LIF, OPS, Affine, AvgPool2d, Conv1d, Conv2d, CubaLI, CubaLIF, Delay, Flatten, Graph, I, Input,
    Linear, Output, Scale, Semantics, Subgraph, SumPool2d, Threshold,
)
from snnir.ir.ops.norm import BatchNorm
from snnir.ir.ops.pool import MaxPool1d, MaxPool2d
from snnir.ir.ops.probe import StateProbe

DT = 1e-3

#: Semantics variants every neuron is checked under (multi spikes need "ge").
SEMANTICS = (
    Semantics(dt=DT),
    Semantics(dt=DT, discretisation="exp", reset="subtract", reset_timing="next", threshold_compare="ge",
              spike_mode="multi", current_order="voltage_first"),
    Semantics(dt=DT, reset="none", reset_timing="next", threshold_compare="ge"),
    Semantics(dt=DT, discretisation="exp", reset="zero", reset_timing="same", spike_mode="multi",
              threshold_compare="ge"),
)


def neuron(cls, n: int, rng: np.random.Generator, sem: Semantics):
    """A neuron of class ``cls`` with per-neuron parameters that make it spike at input ~ 1."""
    values = {
        "tau": rng.uniform(3e-3, 2e-2, n), "tau_syn": rng.uniform(3e-3, 1e-2, n),
        "tau_mem": rng.uniform(3e-3, 2e-2, n), "v_leak": rng.normal(0, 0.05, n),
        "v_threshold": rng.uniform(0.05, 0.2, n), "v_reset": rng.normal(0, 0.02, n),
        "w_in": rng.uniform(0.5, 2, n), "r": rng.uniform(0.5, 2, n),
    }
    if cls in (I, IF):
        values["r"] = rng.uniform(20, 60, n)
    names = cls.param_names()
    return cls(**{k: v for k, v in values.items() if k in names}, sem=sem)


def _dense(name, n_in, n_out, rng, cls=Affine):
    weight = rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in))
    return (name, cls(weight=weight, bias=rng.normal(0, 0.1, n_out)) if cls is Affine else cls(weight=weight))


def neuron_graph(cls, rng, sem, recurrent=True) -> Graph:
    """in(5) -> fc -> neuron(4) -> out, with a recurrent Linear when ``recurrent``."""
    nodes = dict([("in", Input((5,))), _dense("fc", 5, 4, rng), ("cell", neuron(cls, 4, rng, sem)), ("out", Output())])
    edges = [("in", "fc"), ("fc", "cell"), ("cell", "out")]
    if recurrent:
        nodes["rec"] = Linear(weight=rng.normal(0, 0.3, (4, 4)))
        edges += [("cell", "rec"), ("rec", "cell")]
    return Graph(nodes, tuple(edges))


def _chain(in_shape, *named_ops):
    return Graph.sequential(("in", Input(in_shape)), *named_ops, ("out", Output()))


def _stateless_graphs(rng):
    """Op class -> a small graph using it."""
    return {
        Input: Graph({"in": Input((3,)), "out": Output()}, (("in", "out"),)),
        Output: Graph({"a": Input((3,)), "b": Input((3,)), "y": Output(), "z": Output()},
                      (("a", "y"), ("b", "y"), ("b", "z"))),
        Affine: _chain((5,), _dense("fc", 5, 4, rng)),
        Linear: _chain((5,), _dense("fc", 5, 4, rng, Linear)),
        Scale: _chain((2, 3), ("s", Scale(scale=rng.normal(size=3)))),
        Flatten: _chain((2, 3, 4), ("f", Flatten(start_dim=1, end_dim=2)),
                        ("s", Scale(scale=rng.normal(size=(2, 12))))),
        Threshold: _chain((6,), ("t", Threshold(threshold=rng.normal(size=6)))),
        Conv1d: _chain((2, 9), ("c", Conv1d(weight=rng.normal(size=(4, 2, 3)), bias=rng.normal(size=4),
                                          stride=2, padding=1, dilation=1))),
        Conv2d: _chain((4, 7, 8), ("c", Conv2d(weight=rng.normal(size=(6, 2, 3, 3)), bias=rng.normal(size=6),
                                             stride=(1, 2), padding=(1, 2), dilation=(2, 1), groups=2)),
                       ("c2", Conv2d(weight=rng.normal(size=(2, 6, 3, 3)), padding="same"))),
        SumPool2d: _chain((2, 6, 7), ("p", SumPool2d(kernel_size=(2, 3), stride=(2, 2), padding=(1, 1)))),
        AvgPool2d: _chain((2, 6, 7), ("p", AvgPool2d(kernel_size=3, stride=2, padding=1))),
        MaxPool1d: _chain((3, 11), ("p", MaxPool1d(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True))),
        MaxPool2d: _chain((2, 6, 7), ("p", MaxPool2d(kernel_size=(2, 3), stride=(2, 1), padding=(1, 1),
                                                     ceil_mode=True))),
        Delay: _chain((4,), ("d", Delay(delay=np.array([0, 1, 3, 2]) * DT, sem=Semantics(dt=DT)))),
        BatchNorm: _chain((3, 4, 5), ("b", BatchNorm(mean=rng.normal(size=3), var=rng.uniform(0.5, 2, 3),
                                                     weight=rng.normal(size=3), bias=rng.normal(size=3)))),
    }


def subgraph_graph(rng, sem) -> Graph:
    """A nested graph with two ports, inside a recurrent loop through a Delay."""
    inner = Graph(
        {"x": Input((4,)), "h": Input((4,)), "lif": neuron(LIF, 4, rng, sem), "y": Output(), "v": Output()},
        (("x", "lif"), ("h", "lif"), ("lif", "y"), ("lif", "v")),
    )
    nodes = dict([("in", Input((3,))), _dense("fc", 3, 4, rng), ("sub", Subgraph(inner)),
                  ("delay", Delay(delay=np.full(4, 2 * DT), sem=Semantics(dt=DT))),
                  _dense("back", 4, 4, rng, Linear), ("out", Output()), ("out2", Output())])
    edges = (("in", "fc"), ("fc", "sub.x"), ("fc", "sub.h"), ("sub.y", "delay"), ("delay", "back"), ("back", "sub.h"),
             ("sub.y", "out"), ("sub.v", "out2"))
    return Graph(nodes, edges)


def probe_graph(rng, sem, recurrent: bool) -> Graph:
    """:func:`neuron_graph` with a CubaLIF whose every state is also an Output, and its membrane
    read by a probe feeding a second neuron (gradients flow through the probe)."""
    graph = neuron_graph(CubaLIF, rng, sem, recurrent)
    states = CubaLIF(tau_syn=1.0, tau_mem=1.0, r=1.0, v_leak=0.0, v_threshold=1.0, sem=sem).state_names
    nodes = {**graph.nodes, "next": neuron(LIF, 4, rng, Semantics(dt=DT)), "out_next": Output()}
    edges = list(graph.edges) + [("read_v", "next"), ("next", "out_next")]
    for state in states:
        nodes[f"read_{state}"], nodes[f"out_{state}"] = StateProbe(state), Output()
        edges += [("cell", f"read_{state}"), (f"read_{state}", f"out_{state}")]
    return Graph(nodes, tuple(edges))


def graphs_for(op_class, seed: int = 0) -> list[Graph]:
    """Random graphs exercising ``op_class``; empty when there is no generator for it."""
    rng = np.random.default_rng(seed)
    if op_class in (I, IF, LI, LIF, CubaLI, CubaLIF):
        return [neuron_graph(op_class, rng, sem, recurrent=i % 2 == 0) for i, sem in enumerate(SEMANTICS)]
    if op_class is Subgraph:
        return [subgraph_graph(rng, sem) for sem in SEMANTICS[:2]]
    if op_class is StateProbe:
        return [probe_graph(rng, sem, recurrent=i % 2 == 0) for i, sem in enumerate(SEMANTICS)]
    if op_class.op_type == "snnir.FusedLayerNeuron":
        layer = _dense("fc", 5, 4, rng)[1]
        fused = op_class(layer=layer, neuron=neuron(CubaLIF, 4, rng, SEMANTICS[1]))
        return [_chain((5,), ("fused", fused))]
    graph = _stateless_graphs(rng).get(op_class)
    return [graph] if graph is not None else []


def all_op_classes():
    return [OPS[name] for name in sorted(OPS)]


def random_input(graph: Graph, steps: int, batch: int, seed: int = 1, scale: float = 2.0):
    """``[T, B, *shape]`` float64 per Input (a dict when there are several)."""
    from snnir.ir import infer_shapes

    rng = np.random.default_rng(seed)
    shapes = infer_shapes(graph)
    xs = {name: rng.normal(0.3, scale, (steps, batch) + tuple(shapes.outputs[name])) for name in graph.inputs}
    return xs if len(xs) > 1 else next(iter(xs.values()))
