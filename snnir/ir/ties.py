"""Parameter ties: the rule a graph's ``ties`` keep (see :mod:`snnir.ir.graph`).

A tie group names two or more distinct nodes of one level, none in another group, whose ops
are equal but for their metadata (type, parameters to the dtype, attributes, ``trainable``): the
same layer called on several inputs. Targets that train keep one parameter per group.
"""

from __future__ import annotations

from snnir.ir.graph import Graph
from snnir.ir.ops.base import Op


def shares_parameters(a: Op, b: Op) -> bool:
    """``a`` and ``b`` may be tied: the same op (type, parameters, attributes, trainable names)
    but for their metadata."""
    return type(a) is type(b) and a.replace(metadata={}) == b.replace(metadata={})


def broken_tie(graph: Graph) -> tuple[str, str] | None:
    """``(reason, node)`` for the first tie of ``graph`` (this level) that does not hold, or None."""
    seen: set[str] = set()
    for group in graph.ties:
        if len(group) < 2 or len(set(group)) != len(group):
            return f"a tie needs two or more distinct nodes, got {list(group)}", (group[0] if group else "")
        for name in group:
            if name in seen:
                return "is in two ties", name
            seen.add(name)
            if name not in graph.nodes:
                return f"is tied with {[n for n in group if n != name]} but is not a node of this graph", name
        first = graph.nodes[group[0]]
        for name in group[1:]:
            if not shares_parameters(first, graph.nodes[name]):
                return (f"is tied to '{group[0]}' (they share parameters) but its op differs from that "
                        "node's (type, parameters, attributes or trainable names)"), name
    return None


def inlined_ties(graph: Graph, prefix: str = "") -> tuple[tuple[str, ...], ...]:
    """The ties of ``graph`` and of its nested graphs, nested nodes named ``"<sub>.<inner>"``
    (as ``flatten_subgraphs`` names them)."""
    ties = tuple(tuple(prefix + name for name in group) for group in graph.ties)
    for name, op in graph.nodes.items():
        nested = getattr(op, "graph", None)
        if isinstance(nested, Graph):
            ties += inlined_ties(nested, f"{prefix}{name}.")
    return ties
