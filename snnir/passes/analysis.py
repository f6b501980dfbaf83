"""Graph queries passes share, and the cost estimate the CLI reports."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Mapping

import networkx as nx
import numpy as np

from snnir.ir.graph import Edge, Graph
from snnir.ir.ops import (
    IF, LI, LIF, Affine, AvgPool2d, Conv1d, Conv2d, CubaLI, CubaLIF, I, Linear, Subgraph, SumPool2d,
)
from snnir.ir.ops.fused import FusedLayerNeuron
from snnir.ir.ops.neuron import Neuron
from snnir.ir.ops.pool import MAX_POOLS
from snnir.ir.shapes import Shapes, infer_shapes

LAYERS = (Affine, Linear, Conv1d, Conv2d)
NEURONS = (LIF, CubaLIF, IF, LI, CubaLI, I)


@dataclass(frozen=True)
class EdgeIndex:
    """A graph's edges resolved to nodes: ``ends[i]`` is edge ``i``'s (source node,
    destination node); ``recurrent``: the nodes on a cycle (in a strongly connected
    component of size > 1, or with a self-loop). ``by_source`` and ``by_destination`` give
    each node's edge numbers in edge order, built once per graph: a query costs its answer,
    not a scan of every edge."""

    ends: tuple[Edge, ...]
    recurrent: frozenset[str]

    @cached_property
    def by_source(self) -> Mapping[str, tuple[int, ...]]:
        return _numbers_by(end[0] for end in self.ends)

    @cached_property
    def by_destination(self) -> Mapping[str, tuple[int, ...]]:
        return _numbers_by(end[1] for end in self.ends)

    @classmethod
    def of(cls, graph: Graph) -> "EdgeIndex":
        ends = tuple((graph.resolve(s, True)[0], graph.resolve(d, False)[0]) for s, d in graph.edges)
        g = nx.DiGraph()
        g.add_nodes_from(graph.nodes)
        g.add_edges_from(ends)
        found: set[str] = set()
        for component in nx.strongly_connected_components(g):
            if len(component) > 1 or any(g.has_edge(n, n) for n in component):
                found |= component
        return cls(ends, frozenset(found))


def _numbers_by(keys) -> dict[str, tuple[int, ...]]:
    numbers: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        numbers.setdefault(key, []).append(i)
    return {key: tuple(found) for key, found in numbers.items()}


_last_index: list = [None, None]  # (graph, its EdgeIndex): rules query one graph many times


def edge_index(graph: Graph) -> EdgeIndex:
    """``EdgeIndex.of(graph)``, remembered for the most recent graph (graphs are immutable)."""
    if _last_index[0] is not graph:
        _last_index[:] = [graph, EdgeIndex.of(graph)]
    return _last_index[1]


def in_edges(graph: Graph, node: str) -> list[Edge]:
    return [graph.edges[i] for i in edge_index(graph).by_destination.get(node, ())]


def out_edges(graph: Graph, node: str) -> list[Edge]:
    return [graph.edges[i] for i in edge_index(graph).by_source.get(node, ())]


def in_degree(graph: Graph, node: str) -> int:
    return len(edge_index(graph).by_destination.get(node, ()))


def out_degree(graph: Graph, node: str) -> int:
    return len(edge_index(graph).by_source.get(node, ()))


_last_successors: list = [None, None]  # (graph, its plain successors): matching walks them per node


def plain_successors(graph: Graph, node: str) -> tuple[str, ...]:
    """The nodes ``node`` feeds by plain edges (both ends node names, no ports), in edge order."""
    if _last_successors[0] is not graph:
        found: dict[str, list[str]] = {}
        for src, dst in graph.edges:
            if src in graph.nodes and dst in graph.nodes:
                found.setdefault(src, []).append(dst)
        _last_successors[:] = [graph, {src: tuple(dsts) for src, dsts in found.items()}]
    return _last_successors[1].get(node, ())


_last_shapes: list = [None, None]  # (graph, its Shapes): rules query one graph many times


def shapes_of(graph: Graph) -> Shapes:
    """``infer_shapes(graph)``, remembered for the most recent graph (graphs are immutable)."""
    if _last_shapes[0] is not graph:
        _last_shapes[:] = [graph, infer_shapes(graph)]
    return _last_shapes[1]


def recurrent_nodes(graph: Graph) -> set[str]:
    """Nodes on a cycle (in a strongly connected component of size > 1 or with a self-loop)."""
    return set(edge_index(graph).recurrent)


def bypass(graph: Graph, node: str) -> tuple[Edge, ...]:
    """The edges with identity ``node`` removed: every source feeding it feeds its consumers."""
    return _bypass(graph, node)[0]


def without_identity(graph: Graph, node: str) -> Graph:
    """``graph`` without ``node``, its edges as :func:`bypass` gives them. The new graph's
    :class:`EdgeIndex` is derived, not recomputed: bypassing keeps which node reaches
    which, so the other nodes stay on (or off) cycles."""
    edges, ends = _bypass(graph, node)
    result = graph.replace(nodes={n: op for n, op in graph.nodes.items() if n != node}, edges=edges)
    _last_index[:] = [result, EdgeIndex(ends, edge_index(graph).recurrent - {node})]
    return result


def _bypass(graph: Graph, node: str) -> tuple[tuple[Edge, ...], tuple[Edge, ...]]:
    """:func:`bypass`'s edges and their ends (as in :class:`EdgeIndex`)."""
    ins, outs, kept = [], [], []
    for edge, ends in zip(graph.edges, edge_index(graph).ends):
        if ends[1] == node:
            ins.append((edge[0], ends[0]))
        if ends[0] == node:
            outs.append((edge[1], ends[1]))
        if node not in ends:
            kept.append((edge, ends))
    kept += [((s, d), (s_node, d_node)) for s, s_node in ins for d, d_node in outs]
    return tuple(e for e, _ in kept), tuple(ends for _, ends in kept)


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
    return (size if op.op_type in ("Scale", "Threshold", "snnir.BatchNorm") else 0), state


def _layer_macs(op, out_size: int) -> tuple[int, int]:
    if isinstance(op, (Affine, Linear)):
        return out_size * int(op.weight.shape[1]), 0
    if isinstance(op, (Conv1d, Conv2d)):
        return out_size * int(np.prod(op.weight.shape[1:])), 0
    return out_size * int(np.prod(op.kernel_size)), 0
