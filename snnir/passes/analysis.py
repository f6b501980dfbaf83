"""Graph queries passes share, and the cost estimate the CLI reports."""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from snnir.ir.graph import Edge, Graph
from snnir.ir.ops import (
    IF, LI, LIF, Affine, AvgPool2d, Conv1d, Conv2d, CubaLI, CubaLIF, I, Linear, Subgraph, SumPool2d,
)
from snnir.ir.ops.fused import FusedLayerNeuron
from snnir.ir.ops.neuron import Neuron
from snnir.ir.ops.pool import MAX_POOLS
from snnir.ir.schedule import node_digraph
from snnir.ir.shapes import Shapes, infer_shapes

LAYERS = (Affine, Linear, Conv1d, Conv2d)
NEURONS = (LIF, CubaLIF, IF, LI, CubaLI, I)


def in_edges(graph: Graph, node: str) -> list[Edge]:
    return [e for e in graph.edges if graph.resolve(e[1], as_source=False)[0] == node]


def out_edges(graph: Graph, node: str) -> list[Edge]:
    return [e for e in graph.edges if graph.resolve(e[0], as_source=True)[0] == node]


_last_shapes: list = [None, None]  # (graph, its Shapes): rules query one graph many times


def shapes_of(graph: Graph) -> Shapes:
    """``infer_shapes(graph)``, remembered for the most recent graph (graphs are immutable)."""
    if _last_shapes[0] is not graph:
        _last_shapes[:] = [graph, infer_shapes(graph)]
    return _last_shapes[1]


def recurrent_nodes(graph: Graph) -> set[str]:
    """Nodes on a cycle (in a strongly connected component of size > 1 or with a self-loop)."""
    g = node_digraph(graph)
    found: set[str] = set()
    for component in nx.strongly_connected_components(g):
        if len(component) > 1 or any(g.has_edge(n, n) for n in component):
            found |= component
    return found


def bypass(graph: Graph, node: str) -> tuple[Edge, ...]:
    """The edges with identity ``node`` removed: every source feeding it feeds its consumers."""
    ins = [src for src, _ in in_edges(graph, node)]
    outs = [dst for _, dst in out_edges(graph, node)]
    kept = tuple(e for e in graph.edges if node not in (graph.resolve(e[0], True)[0], graph.resolve(e[1], False)[0]))
    return kept + tuple((s, d) for s in ins for d in outs)


@dataclass(frozen=True)
class Cost:
    """Per-step estimate: nodes (nested ones counted), multiply-accumulates, state elements."""

    nodes: int
    macs: int
    state_elements: int

    def report(self) -> str:
        return (
            f"{self.nodes} nodes, {self.macs:,} MACs/step, "
            f"{self.state_elements:,} state values ({self.state_elements * 4:,} bytes at float32)"
        )


def estimate_cost(graph: Graph) -> Cost:
    """Nodes, MACs and state per step, from inferred shapes."""
    shapes = infer_shapes(graph)
    nodes = macs = state = 0
    for path, op in graph.walk():
        if isinstance(op, Subgraph):
            continue
        nodes += 1
        m, s = _op_cost(op, shapes, path)
        macs += m
        state += s
    return Cost(nodes, macs, state)


def _op_cost(op, shapes: Shapes, path: str) -> tuple[int, int]:
    out = shapes.outputs.get(path)
    size = int(np.prod(out)) if out is not None else 0
    state = op.state_elements(out, path) if out is not None else 0
    if isinstance(op, FusedLayerNeuron):
        inner = op.layer.infer_shape(shapes.inputs.get(path), path)
        layer_macs, _ = _layer_macs(op.layer, int(np.prod(inner)))
        return layer_macs + size, state
    if isinstance(op, (Affine, Linear, Conv1d, Conv2d, SumPool2d, AvgPool2d) + MAX_POOLS):
        return _layer_macs(op, size)
    if isinstance(op, Neuron):
        return size, state
    return (size if op.op_type in ("Scale", "Threshold") else 0), state


def _layer_macs(op, out_size: int) -> tuple[int, int]:
    if isinstance(op, (Affine, Linear)):
        return out_size * int(op.weight.shape[1]), 0
    if isinstance(op, (Conv1d, Conv2d)):
        return out_size * int(np.prod(op.weight.shape[1:])), 0
    return out_size * int(np.prod(op.kernel_size)), 0
