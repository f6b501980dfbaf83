"""``flatten_subgraphs`` (inline nested graphs) and ``change_dt`` (re-express
stateful nodes for a new step)."""

from __future__ import annotations

import numpy as np

from snnir.errors import SnnirError
from snnir.ir.graph import Graph
from snnir.ir.ops import IF, Delay, I, Input, Output, Subgraph
from snnir.ir.ops.fused import FusedLayerNeuron
from snnir.ir.ops.neuron import Neuron
from snnir.passes.analysis import recurrent_nodes
from snnir.passes.base import Match, RewritePass, Rule, register_pass


class InlineSubgraph(Rule):
    """Replace a nested graph node ``sub`` by its nodes, renamed ``"sub.inner"``;
    its Input and Output nodes dissolve into direct edges (an Input port no edge enters
    adds zero: its edges go, unless a node would be left with no edge into it)."""

    name = "inline_subgraph"
    pattern = ((Subgraph,),)

    def check(self, graph: Graph, match: Match) -> str | None:
        (node,) = match.nodes
        if node in recurrent_nodes(graph):
            return "it lies on a cycle of the outer graph; inlining could change which edges carry last step's value"
        inner = graph.nodes[node].graph
        clashes = [f"{node}.{n}" for n in inner.nodes if f"{node}.{n}" in graph.nodes]
        if clashes:
            return f"inlined names {clashes} are already taken"
        edges = self._edges(graph, node)
        if len(set(edges)) != len(edges):
            return "inlining would duplicate an edge (one source would reach a node twice through its ports)"
        starved = self._starved(graph, node, self.rewrite(graph, match))
        if starved:
            return (f"its Input ports no edge enters are zero, and inlining would leave {starved} with no edge "
                    "into them")
        return None

    @staticmethod
    def _starved(graph: Graph, node: str, after: Graph) -> list[str]:
        """Nodes of ``after`` (``graph`` with ``node`` inlined) with an edge into them before
        (inside ``node``, too) and none after: fed only through ports no edge enters."""
        inner = graph.nodes[node].graph
        had = {graph.resolve(dst, as_source=False)[0] for _, dst in graph.edges}
        had |= {f"{node}.{inner.resolve(dst, as_source=False)[0]}" for _, dst in inner.edges}
        fed = {after.resolve(dst, as_source=False)[0] for _, dst in after.edges}
        return sorted(n for n in after.nodes if n in had and n not in fed)

    def rewrite(self, graph: Graph, match: Match) -> Graph:
        (node,) = match.nodes
        inner = graph.nodes[node].graph
        nodes = {n: op for n, op in graph.nodes.items() if n != node}
        for name, op in inner.nodes.items():
            if not isinstance(op, (Input, Output)):
                nodes[f"{node}.{name}"] = op
        ties = graph.ties + tuple(tuple(f"{node}.{name}" for name in group) for group in inner.ties)
        return graph.replace(nodes=nodes, edges=self._edges(graph, node), ties=ties)

    @staticmethod
    def _edges(graph: Graph, node: str) -> tuple:
        inner = graph.nodes[node].graph
        feeding: dict[str, list[str]] = {port: [] for port in inner.inputs}  # inner Input -> outer sources
        reading: dict[str, list[str]] = {port: [] for port in inner.outputs}  # inner Output -> outer destinations
        kept = []
        for src, dst in graph.edges:
            src_node, src_port = graph.resolve(src, as_source=True)
            dst_node, dst_port = graph.resolve(dst, as_source=False)
            if dst_node == node:
                feeding[dst_port].append(src)
            if src_node == node:
                reading[src_port].append(dst)
            if node not in (src_node, dst_node):
                kept.append((src, dst))
        edges = list(kept)
        for src, dst in inner.edges:
            sources = feeding[src] if src in feeding else [f"{node}.{src}"]
            targets = reading[dst] if dst in reading else [f"{node}.{dst}"]
            edges += [(s, d) for s in sources for d in targets]
        return tuple(edges)


flatten_subgraphs = register_pass()(
    RewritePass("flatten_subgraphs", (InlineSubgraph(),), "inline nested graphs, naming nodes 'sub.inner'")
)


def _rescaled(op, ratio: float, new_dt: float, path: str):
    """``op`` stepping identically with ``dt = new_dt``: time constants and delays
    scale by ``ratio = new_dt / dt``, integrator gains ``r`` by ``1 / ratio``."""
    changes = {"sem": op.sem.with_(dt=new_dt)}
    names = ("delay",) if isinstance(op, Delay) else ("tau", "tau_mem", "tau_syn")
    for name in names:
        if name in op.param_names():
            changes[name] = _scaled(op, name, ratio, path)
    if isinstance(op, (I, IF)):
        changes["r"] = _scaled(op, "r", 1.0 / ratio, path)
    return op.replace(**changes)


def _scaled(op, name: str, factor: float, path: str) -> np.ndarray:
    value = getattr(op, name)
    if value.dtype.kind != "f":
        scaled = value * factor
        if not np.allclose(scaled, np.round(scaled), rtol=1e-9, atol=0):
            raise SnnirError(
                f"cannot change dt exactly: integer parameter {name} times {factor:g} is not a whole number", path
            )
        return np.round(scaled).astype(value.dtype)
    return value.astype(np.float64) * factor  # float64 so each step's update is kept to float64 rounding


def _change_dt(graph: Graph, dt: float, prefix: str) -> Graph:
    nodes = {}
    for name, op in graph.nodes.items():
        path = prefix + name
        if isinstance(op, Subgraph):
            op = op.replace(graph=_change_dt(op.graph, dt, path + "."))
        elif isinstance(op, FusedLayerNeuron):
            op = op.replace(neuron=_rescaled(op.neuron, dt / op.neuron.sem.dt, dt, path))
        elif isinstance(op, (Neuron, Delay)):
            op = _rescaled(op, dt / op.sem.dt, dt, path)
        nodes[name] = op
    return graph.replace(nodes=nodes)


@register_pass("change_dt")
def change_dt(graph: Graph, *, dt: float | None = None) -> Graph:
    """Give every stateful node step ``dt`` while keeping each step's update:
    ``dt/tau`` and ``dt*r`` (I, IF) and delays in steps are preserved, so the
    graph behaves identically step by step (to parameter rounding). Refuses
    (naming the node) when a parameter is an integer that cannot be rescaled."""
    if dt is None:
        raise SnnirError("change_dt needs the new step: dt=...")
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not np.isfinite(dt) or dt <= 0:
        raise SnnirError(f"change_dt: dt must be a finite positive number, got {dt!r}")
    return _change_dt(graph, float(dt), "")
