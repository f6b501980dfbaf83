"""Execution order of one graph level: which edges carry last step's value,
a topological order of the rest, and which edges into a neuron are its fed-back drive.

Fed-back drive: a neuron's input splits in two, the edges whose source lies in the
neuron's own strongly connected component (e.g. a recurrent Linear on the neuron's
delayed spikes) and the rest, the drive. Each part is summed over its edges in edge
order; the drive enters the update where a neuron's whole input enters it, and the
fed-back drive, through the same gain, right after it: ``(leak(v) + drive) + fed``
(for a current-based neuron into its current: ``(a_syn i + drive) + fed``), then a
delayed reset (snnTorch's ``RLeaky``/``RSynaptic`` float rounding). A neuron with no
edge from its own component, or only such edges (no drive), computes as before: its
whole input is the drive.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from snnir.errors import SnnirError, shown
from snnir.ir.graph import Edge, Graph
from snnir.ir.ops.neuron import Neuron


@dataclass(frozen=True)
class Schedule:
    """``order`` lists every node once; sources of ``delayed`` edges may come
    after their destination, and their value is the previous step's. ``fed_back``:
    the edges into neurons that are their fed-back drive (see the module docstring);
    each also has at least one edge of drive."""

    order: tuple[str, ...]
    delayed: frozenset[Edge]
    fed_back: frozenset[Edge] = frozenset()


def node_digraph(graph: Graph) -> nx.DiGraph:
    """Node-level connectivity (ports folded into their node)."""
    g = nx.DiGraph()
    g.add_nodes_from(graph.nodes)
    for src, dst in graph.edges:
        g.add_edge(graph.resolve(src, as_source=True)[0], graph.resolve(dst, as_source=False)[0])
    return g


def schedule(graph: Graph) -> Schedule:
    """Delay every edge from a stateful node into its own strongly connected
    component; what is left must be acyclic."""
    g = node_digraph(graph)
    component_of = {}
    for index, component in enumerate(nx.strongly_connected_components(g)):
        for node in component:
            component_of[node] = index
    delayed = set()
    for edge in graph.edges:
        src = graph.resolve(edge[0], as_source=True)[0]
        dst = graph.resolve(edge[1], as_source=False)[0]
        if graph.nodes[src].stateful and component_of[src] == component_of[dst]:
            delayed.add(edge)
    acyclic = nx.DiGraph()
    acyclic.add_nodes_from(graph.nodes)
    for edge in graph.edges:
        if edge not in delayed:
            acyclic.add_edge(graph.resolve(edge[0], True)[0], graph.resolve(edge[1], False)[0])
    try:
        cycle = nx.find_cycle(acyclic)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        path = " -> ".join(shown(a) for a, _ in [*cycle, cycle[0]])
        raise SnnirError(f"cycle with no stateful node: {path}", cycle[0][0])
    position = {name: i for i, name in enumerate(graph.nodes)}
    order = tuple(nx.lexicographical_topological_sort(acyclic, key=lambda n: position[n]))
    return Schedule(order, frozenset(delayed), _fed_back(graph, component_of))


def _fed_back(graph: Graph, component_of: dict[str, int]) -> frozenset[Edge]:
    """The edges into each neuron from its own component, where it also has one from outside."""
    into: dict[str, list[tuple[Edge, bool]]] = {}
    for edge in graph.edges:
        src = graph.resolve(edge[0], as_source=True)[0]
        dst = graph.resolve(edge[1], as_source=False)[0]
        if isinstance(graph.nodes[dst], Neuron):
            into.setdefault(dst, []).append((edge, component_of[src] == component_of[dst]))
    fed = set()
    for edges in into.values():
        if not all(inside for _, inside in edges):
            fed.update(edge for edge, inside in edges if inside)
    return frozenset(fed)
