"""Clean-up passes: ``infer_shapes``, ``canonicalize``, ``eliminate_dead_nodes``.

All keep Output values and surviving nodes' state exactly (no arithmetic is
re-associated): identities are removed, scalar neuron parameters are
broadcast (unless that is over ``Limits.data_bytes``), an Affine whose bias is all zero becomes a Linear, and "same" or
"valid" convolution padding becomes explicit integers.
"""

from __future__ import annotations

import heapq
import itertools

import networkx as nx
import numpy as np

from snnir.ir.graph import Graph
from snnir.ir.memory import format_bytes
from snnir.ir.ops import Affine, Conv1d, Conv2d, Flatten, Input, Linear, Scale, Subgraph
from snnir.ir.ops.neuron import Neuron
from snnir.ir.schedule import node_digraph, schedule
from snnir.ir.verify import verify
from snnir.limits import current
from snnir.passes.analysis import NEURONS, bypass, edge_index, in_edges, shapes_of, without_identity
from snnir.passes.base import Match, RewritePass, Rule, register_pass


@register_pass("infer_shapes")
def infer_shapes(graph: Graph) -> Graph:
    """Verify the graph and record every node's output shape in
    ``metadata["snnir.shapes"]`` (``{node path: [dims]}``)."""
    shapes = verify(graph).shapes
    recorded = {path: list(shape) for path, shape in shapes.outputs.items()}
    return graph.replace(metadata={**graph.metadata, "snnir.shapes": recorded})


def _is_identity(op, input_shape) -> str | None:
    """``None`` if ``op`` is the identity on inputs of ``input_shape`` and trains nothing, else why not."""
    if getattr(op, "trainable", ()):
        return f"its parameters {list(op.trainable)} are trainable: removing it would change what trains"
    if isinstance(op, Scale):
        return None if np.all(op.scale == 1) else "its scale is not all ones"
    if isinstance(op, (Linear, Affine)):
        w = op.weight
        if w.ndim != 2 or w.shape[0] != w.shape[1] or not np.array_equal(w, np.eye(w.shape[0])):
            return "its weight is not an identity matrix"
        if isinstance(op, Affine) and np.any(op.bias != 0):
            return "its bias is not zero"
        return None
    if isinstance(op, Flatten):
        if input_shape is None:
            return "its input shape is unknown"
        start, end = op.dims(len(input_shape), "?")
        return None if start == end else f"it joins dims {start}..{end} of {list(input_shape)}"
    return f"{op.op_type} is not an identity op"


class RemoveIdentity(Rule):
    """Drop a node that computes y = x (Scale(1), Linear(I), Affine(I, 0), a Flatten joining one dim)."""

    name = "remove_identity"
    pattern = ((Scale, Linear, Affine, Flatten),)

    def check(self, graph: Graph, match: Match) -> str | None:
        (node,) = match.nodes
        shape = shapes_of(graph).inputs.get(node) if isinstance(graph.nodes[node], Flatten) else None
        reason = _is_identity(graph.nodes[node], shape)
        if reason:
            return reason
        if not in_edges(graph, node):
            return "it has no input"
        edges = bypass(graph, node)
        if len(set(edges)) != len(edges):
            return "removing it would duplicate an edge (a source would feed a consumer twice)"
        if node not in edge_index(graph).recurrent:
            return None  # off every cycle, bypassing it keeps each edge's strongly connected components
        before, after = schedule(graph), schedule(self.rewrite(graph, match))
        for src, dst in edges:
            was = (src, dst) in before.delayed if (src, dst) in graph.edges else (src, node) in before.delayed
            if was != ((src, dst) in after.delayed):
                return (f"it lies on a loop: bypassing it would change whether {src} -> {dst} "
                        "carries last step's value")
        for src, dst in edges:  # a term's place in its neuron's sum: drive or fed-back drive (snnir.ir.schedule)
            fed = (src, dst) in before.fed_back if (src, dst) in graph.edges else (node, dst) in before.fed_back
            if fed != ((src, dst) in after.fed_back):
                return (f"it lies on a loop: bypassing it would change whether {src} -> {dst} "
                        "is a fed-back drive (the order the neuron adds it in)")
        return None

    def rewrite(self, graph: Graph, match: Match) -> Graph:
        return without_identity(graph, match.nodes[0])

    def apply_all(self, graph: Graph) -> Graph | None:
        """The removals one at a time would make, in its order, on an edge table updated in
        place (one at a time rebuilt the graph for each: quadratic). Off every cycle, a removal
        changes only its neighbours' reasons (their edges, and duplicates among them), so a
        node refused is tried again once a neighbour went; one on a cycle is checked on the
        graph rebuilt, again after every removal. The first node in node order that applies
        goes first, as one at a time. Not for graphs with ties or duplicate edges (``None``)."""
        if graph.ties or len(set(graph.edges)) != len(graph.edges):
            return None
        names = list(graph.nodes)
        position = {name: i for i, name in enumerate(names)}
        identities = {n for n, op in graph.nodes.items() if isinstance(op, self.pattern[0]) and _is_identity(
            op, shapes_of(graph).inputs.get(n) if isinstance(op, Flatten) else None) is None}
        index = edge_index(graph)
        edges, ends = dict(enumerate(graph.edges)), dict(enumerate(index.ends))  # by id, ids grow in edge order
        new_id = itertools.count(len(graph.edges))
        into: dict[str, set[int]] = {n: set() for n in names}
        out_of: dict[str, set[int]] = {n: set() for n in names}
        for i, (src, dst) in ends.items():
            out_of[src].add(i)
            into[dst].add(i)
        pairs = set(graph.edges)
        removed: set[str] = set()
        refused_on_cycles: set[str] = set()

        def current() -> Graph:
            return graph.replace(nodes={n: op for n, op in graph.nodes.items() if n not in removed},
                                 edges=tuple(edges.values()))

        candidates = sorted(position[n] for n in identities)
        while candidates:
            node = names[heapq.heappop(candidates)]
            if node in removed or not into[node]:
                continue  # gone, or no input (no removal gives it one)
            ins = [(edges[i][0], ends[i][0]) for i in sorted(into[node])]
            outs = [(edges[i][1], ends[i][1]) for i in sorted(out_of[node])]
            if node in index.recurrent:
                if self.reason(current(), Match((node,))) is not None:
                    refused_on_cycles.add(node)
                    continue
            elif any((s, d) in pairs for s, _ in ins for d, _ in outs):
                continue  # removing it would duplicate an edge
            for i in into[node] | out_of[node]:
                pairs.discard(edges.pop(i))
                src, dst = ends.pop(i)
                out_of[src].discard(i)
                into[dst].discard(i)
            for s, s_node in ins:
                for d, d_node in outs:
                    i = next(new_id)
                    edges[i], ends[i] = (s, d), (s_node, d_node)
                    pairs.add((s, d))
                    out_of[s_node].add(i)
                    into[d_node].add(i)
            removed.add(node)
            again = {n for _, n in ins + outs if n in identities and n not in removed} | refused_on_cycles
            refused_on_cycles.clear()
            for n in again:
                heapq.heappush(candidates, position[n])
        return current() if removed else None


class BroadcastNeuronParams(Rule):
    """Give every neuron parameter the neuron's full input shape, but a trained one: a trained
    scalar is one value all neurons share, and stays one (as its source trains it)."""

    name = "broadcast_neuron_params"
    pattern = (NEURONS,)

    def check(self, graph: Graph, match: Match) -> str | None:
        (node,) = match.nodes
        shape = shapes_of(graph).inputs.get(node)
        if shape is None:
            return "its input shape is unknown"
        params = _fixed_params(graph.nodes[node]).values()
        if all(value.shape == tuple(shape) for value in params):
            return "its untrained parameters already have the input shape"
        size = int(np.prod(shape, dtype=object)) * sum(value.itemsize for value in params)
        limit = current().data_bytes
        if size > limit:
            return (f"its parameters at the input shape {list(shape)} would take {format_bytes(size)}, "
                    f"more than the limit data_bytes of {format_bytes(limit)}")
        return None

    def rewrite(self, graph: Graph, match: Match) -> Graph:
        (node,) = match.nodes
        op: Neuron = graph.nodes[node]
        shape = tuple(shapes_of(graph).inputs[node])
        changes = {name: np.broadcast_to(value, shape).copy() for name, value in _fixed_params(op).items()}
        return graph.with_nodes({node: op.replace(**changes)})


def _fixed_params(op: Neuron) -> dict[str, np.ndarray]:
    return {name: value for name, value in op.params().items() if name not in op.trainable}


class AffineWithoutBias(Rule):
    """An Affine whose bias is all zero is a Linear."""

    name = "affine_without_bias"
    pattern = ((Affine,),)

    def check(self, graph: Graph, match: Match) -> str | None:
        op = graph.nodes[match.nodes[0]]
        if np.any(op.bias != 0):
            return "its bias is not zero"
        if "bias" in op.trainable:
            return "its bias is trainable"
        return None

    def rewrite(self, graph: Graph, match: Match) -> Graph:
        (node,) = match.nodes
        op = graph.nodes[node]
        return graph.with_nodes({node: Linear(op.weight, metadata=op.metadata, trainable=op.trainable)})


class ExplicitConvPadding(Rule):
    """A convolution's ``"same"``/``"valid"`` padding becomes explicit integers."""

    name = "explicit_conv_padding"
    pattern = ((Conv1d, Conv2d),)

    def check(self, graph: Graph, match: Match) -> str | None:
        padding = graph.nodes[match.nodes[0]].padding
        return None if isinstance(padding, str) else "its padding is already explicit"

    def rewrite(self, graph: Graph, match: Match) -> Graph:
        (node,) = match.nodes
        op = graph.nodes[node]
        return graph.with_nodes({node: op.replace(padding=op.explicit_padding())})


CANONICAL_RULES = (RemoveIdentity(), AffineWithoutBias(), BroadcastNeuronParams(), ExplicitConvPadding())
canonicalize = register_pass()(
    RewritePass("canonicalize", CANONICAL_RULES, "remove identities, drop zero biases, broadcast neuron parameters, make padding explicit")
)


@register_pass("eliminate_dead_nodes")
def eliminate_dead_nodes(graph: Graph) -> Graph:
    """Remove nodes from which no Output is reachable (Inputs and, inside nested
    graphs, Outputs are kept: they are the interface)."""
    g = node_digraph(graph)
    live = set()
    for output in graph.outputs:
        live |= nx.ancestors(g, output) | {output}
    dead = [n for n, op in graph.nodes.items() if n not in live and not isinstance(op, Input)]
    graph = graph.without_nodes(dead)
    nested = {
        name: op.replace(graph=eliminate_dead_nodes(op.graph))
        for name, op in graph.nodes.items()
        if isinstance(op, Subgraph)
    }
    return graph.with_nodes(nested) if nested else graph

