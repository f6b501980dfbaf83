"""The graph: named ops and directed edges. Immutable; edit by building anew.

Invariants (checked by the verifier, not the constructor, so that broken
files can still be reported and repaired):
- edges name nodes of this graph; an endpoint ``"sub.port"`` addresses the
  Input (as destination) or Output (as source) node ``port`` of the nested
  graph ``sub``; the longest prefix naming a node is the node (a node whose own
  name contains dots is matched before a shorter one: with nodes ``layer`` and
  ``layer.sub``, ``"layer.sub.a"`` is port ``a`` of ``layer.sub``);
- several edges into one node are summed;
- a cycle must pass through a stateful node; an edge from a stateful node
  to a node in the same strongly connected component carries the value of
  the previous step (zero at the first step);
- ``ties``: groups of nodes of this level that share their parameters (one
  layer called on several inputs): each group names two or more nodes of the
  same op type with equal parameters, and no node is in two groups. A target
  that trains them keeps one parameter per group; a rewrite that would leave a
  group unequal is not applied, and removing a node removes it from its group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Iterator, Mapping

from snnir.errors import SnnirError, shown
from snnir.ir.ops.base import Op, values_equal
from snnir.ir.ops.io import Input, Output

Edge = tuple[str, str]

#: Graph metadata the planning passes record (:mod:`snnir.passes.planning`): Input names
#: declared static, the nodes hoisted out of the time loop (lists of node names), and the
#: execution plan (a mapping of such lists).
STATIC_KEY = "snnir.static_inputs"
HOISTED_KEY = "snnir.hoisted"
PLAN_KEY = "snnir.plan"


@dataclass(frozen=True, eq=False)
class Graph:
    nodes: Mapping[str, Op]
    edges: tuple[Edge, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    ties: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        for what, value in (("nodes", self.nodes), ("metadata", self.metadata)):
            if not isinstance(value, Mapping):
                raise SnnirError(f"graph {what} must be a mapping, got {type(value).__name__}")
        if isinstance(self.edges, (str, bytes)) or not isinstance(self.edges, Iterable):
            raise SnnirError(f"graph edges must be a sequence of (source, destination) pairs, got {self.edges!r}")
        nodes = dict(self.nodes)
        for name, op in nodes.items():
            if not isinstance(name, str) or not name:
                raise SnnirError(f"node names must be non-empty strings, got {name!r}")
            if not isinstance(op, Op):
                raise SnnirError(f"is not an op but a {type(op).__name__}", name)
        edges = []
        for edge in self.edges:
            if not (isinstance(edge, (tuple, list)) and len(edge) == 2
                    and isinstance(edge[0], str) and isinstance(edge[1], str)):
                raise SnnirError(f"an edge must be a pair of node names, got {edge!r}")
            edges.append((edge[0], edge[1]))
        object.__setattr__(self, "nodes", MappingProxyType(nodes))
        object.__setattr__(self, "edges", tuple(edges))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        if isinstance(self.ties, (str, bytes)) or not isinstance(self.ties, Iterable):
            raise SnnirError(f"graph ties must be a sequence of groups of node names, got {self.ties!r}")
        ties = []
        for group in self.ties:
            if isinstance(group, (str, bytes)) or not isinstance(group, Iterable):
                raise SnnirError(f"a tie must be a sequence of node names, got {group!r}")
            names = tuple(group)
            if not all(isinstance(n, str) for n in names):
                raise SnnirError(f"a tie must be a sequence of node names, got {group!r}")
            ties.append(names)
        object.__setattr__(self, "ties", tuple(ties))

    def __reduce__(self):
        """Pickled as its constructor's arguments (the read-only mappings themselves do not pickle)."""
        return (type(self), (dict(self.nodes), self.edges, dict(self.metadata), self.ties))

    @classmethod
    def sequential(cls, *named_ops: tuple[str, Op], metadata: Mapping[str, Any] | None = None) -> "Graph":
        """A chain ``n0 -> n1 -> ...`` of ``(name, op)`` pairs."""
        names = [name for name, _ in named_ops]
        return cls(dict(named_ops), tuple(zip(names, names[1:])), metadata or {})

    # --- queries -------------------------------------------------------------
    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(n for n, op in self.nodes.items() if isinstance(op, Input))

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(n for n, op in self.nodes.items() if isinstance(op, Output))

    def bind_inputs(self, x: Any) -> dict[str, Any]:
        """``x`` by Input name: a mapping naming every Input exactly, or one value
        when the graph has one Input."""
        names = self.inputs
        if isinstance(x, Mapping):
            missing = [n for n in names if n not in x]
            extra = [k for k in x if k not in names]
            if missing:
                raise SnnirError(f"missing input for Input node(s) {missing}", missing[0])
            if extra:
                raise SnnirError(f"no Input node named {extra}; inputs are {list(names)}")
            return dict(x)
        if len(names) == 1:
            return {names[0]: x}
        raise SnnirError(f"the graph has {len(names)} inputs {list(names)}: pass a dict by Input name")

    def resolve(self, endpoint: str, as_source: bool) -> tuple[str, str | None]:
        """``(node, port)`` for an edge endpoint; port is ``None`` unless it
        addresses a nested graph's Input (destination) or Output (source)."""
        node, port = self._split(endpoint)
        if node not in self.nodes or port == "":
            raise SnnirError(f"edge endpoint '{shown(endpoint)}' names no node of this graph")
        op = self.nodes[node]
        subgraph = getattr(op, "graph", None)
        if subgraph is None:
            if port is not None:
                raise SnnirError(f"edge endpoint '{endpoint}' addresses a port of a node that is not a graph")
            return node, None
        ports = subgraph.outputs if as_source else subgraph.inputs
        if port is None:
            if len(ports) != 1:
                kind = "Output" if as_source else "Input"
                raise SnnirError(
                    f"edge endpoint '{endpoint}' must name one of the nested graph's {kind} nodes {list(ports)}"
                )
            port = ports[0]
        if port not in ports:
            raise SnnirError(f"edge endpoint '{endpoint}': nested graph has no port '{port}' (has {list(ports)})")
        return node, port

    def in_edges(self, node: str) -> list[Edge]:
        return [e for e in self.edges if self.resolve(e[1], as_source=False)[0] == node]

    def out_edges(self, node: str) -> list[Edge]:
        return [e for e in self.edges if self.resolve(e[0], as_source=True)[0] == node]

    def walk(self, prefix: str = "") -> Iterator[tuple[str, Op]]:
        """Every node, nested ones too, as ``("outer.inner", op)``."""
        for name, op in self.nodes.items():
            path = f"{prefix}{name}"
            yield path, op
            subgraph = getattr(op, "graph", None)
            if subgraph is not None:
                yield from subgraph.walk(path + ".")

    def tie_of(self, node: str) -> tuple[str, ...] | None:
        """The tie group ``node`` belongs to, or None."""
        return next((group for group in self.ties if node in group), None)

    # --- building new graphs ------------------------------------------------
    def replace(self, **changes: Any) -> "Graph":
        """A copy with ``nodes``, ``edges``, ``metadata`` or ``ties`` changed (ties are kept
        as they are: the verifier refuses a group left naming a missing or unequal node)."""
        return Graph(
            changes.get("nodes", self.nodes),
            changes.get("edges", self.edges),
            changes.get("metadata", self.metadata),
            changes.get("ties", self.ties),
        )

    def with_nodes(self, ops: Mapping[str, Op] | None = None, /, **named: Op) -> "Graph":
        """A copy where the nodes of ``ops`` (a mapping: any name, ``self`` included) and the
        keyword-named nodes are added or replaced."""
        nodes = dict(self.nodes)
        nodes.update(ops or {})
        nodes.update(named)
        return self.replace(nodes=nodes)

    def without_nodes(self, names: Iterable[str]) -> "Graph":
        """A copy without the named nodes, every edge that touches them and their places in ties."""
        drop = set(names)
        nodes = {n: op for n, op in self.nodes.items() if n not in drop}
        edges = tuple(
            e
            for e in self.edges
            if self._node_of(e[0]) not in drop and self._node_of(e[1]) not in drop
        )
        ties = tuple(kept for kept in (tuple(n for n in group if n not in drop) for group in self.ties)
                     if len(kept) > 1)
        return self.replace(nodes=nodes, edges=edges, ties=ties)

    def _node_of(self, endpoint: str) -> str:
        return self._split(endpoint)[0]

    def _split(self, endpoint: str) -> tuple[str, str | None]:
        """``(node, port)``: node is the longest dot-separated prefix of ``endpoint`` naming a
        node (the whole endpoint first: port ``None``), port the rest; ``(endpoint, None)`` if none."""
        node, port = endpoint, None
        while node not in self.nodes and "." in node:
            node, _, tail = node.rpartition(".")
            port = tail if port is None else f"{tail}.{port}"
        return (node, port) if node in self.nodes else (endpoint, None)

    # --- equality -----------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return (
            set(self.nodes) == set(other.nodes)
            and all(self.nodes[n] == other.nodes[n] for n in self.nodes)
            and sorted(self.edges) == sorted(other.edges)
            and values_equal(dict(self.metadata), dict(other.metadata))
            and {frozenset(g) for g in self.ties} == {frozenset(g) for g in other.ties}
        )

    __hash__ = None  # type: ignore[assignment]

    def __copy__(self) -> "Graph":
        return self  # immutable: a copy is the graph itself

    def __deepcopy__(self, memo: dict) -> "Graph":
        return self

    def __repr__(self) -> str:
        return f"Graph({len(self.nodes)} nodes, {len(self.edges)} edges)"


def require_graph(value: Any, needed_by: str) -> Graph:
    """``value``, which must be a :class:`Graph`; a file path is told to be read first."""
    if isinstance(value, Graph):
        return value
    hint = ": read the file first (snnir.read(path))" if isinstance(value, (str, bytes, os.PathLike)) else ""
    raise SnnirError(f"{needed_by} needs a Graph, got {type(value).__name__}{hint}")
