"""Execution order of one graph level: which edges carry last step's value,
and a topological order of the rest."""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from snnir.errors import SnnirError, shown
from snnir.ir.graph import Edge, Graph


@dataclass(frozen=True)
class Schedule:
    """``order`` lists every node once; sources of ``delayed`` edges may come
    after their destination, and their value is the previous step's."""

    order: tuple[str, ...]
    delayed: frozenset[Edge]


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
    return Schedule(order, frozenset(delayed))
