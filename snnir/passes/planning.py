"""Execution plans for compiled targets, recorded in graph metadata (ops unchanged).

``metadata["snnir.plan"]`` (from ``time_batch``): segments in schedule order,
covering every top-level node once, stored file-safe as a mapping
``{"0000_batched": [node, ...], "0001_stepwise": [...], ...}``; read it with
:func:`execution_plan`, which gives ``[("batched", [node, ...]), ...]``. A target runs a *batched* segment layer by layer, each
node over all T steps before the next node (no node in it lies on a cycle, so
every input it needs for all T is ready); a *stepwise* segment (the nodes of
recurrent strongly connected components, and nested graphs) runs step by
step, all its nodes per step, as the reference interpreter does.

``metadata["snnir.static_inputs"]``: Input names whose value is the same at
every step (declared by the user). ``metadata["snnir.hoisted"]`` (from
``hoist_time_invariant``): the stateless nodes, in schedule order, whose
inputs all derive from static Inputs only; their output is computed once and
reused for all T. A compiled module then takes ``module(x, steps=T)`` with
static inputs given as ``[B, ...]``; the torch target applies this same rule
itself at run time (also inside nested graphs and fused layer-neuron nodes),
so it hoists whether or not this metadata is present.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import networkx as nx

from snnir.errors import SnnirError
from snnir.ir.graph import HOISTED_KEY, PLAN_KEY, STATIC_KEY, Graph
from snnir.ir.ops import Input, Output, Subgraph
from snnir.ir.schedule import node_digraph, schedule
from snnir.passes.analysis import in_edges, recurrent_nodes
from snnir.passes.base import register_pass



@register_pass("time_batch")
def time_batch(graph: Graph) -> Graph:
    """Record the batched/stepwise plan in ``metadata["snnir.plan"]``."""
    order = schedule(graph).order
    position = {name: i for i, name in enumerate(order)}
    stepwise = recurrent_nodes(graph) | {n for n, op in graph.nodes.items() if isinstance(op, Subgraph)}
    g = node_digraph(graph)
    condensed = nx.condensation(g)
    members = condensed.graph["mapping"]
    blocks = {c: sorted((n for n, b in members.items() if b == c), key=position.get) for c in condensed.nodes}
    ordered = nx.lexicographical_topological_sort(condensed, key=lambda c: position[blocks[c][0]])
    plan: list[tuple[str, list[str]]] = []
    for block in ordered:
        names = blocks[block]
        kind = "stepwise" if names[0] in stepwise else "batched"
        if plan and plan[-1][0] == kind:
            plan[-1][1].extend(names)
        else:
            plan.append((kind, list(names)))
    stored = {f"{index:04d}_{kind}": names for index, (kind, names) in enumerate(plan)}
    return graph.replace(metadata={**graph.metadata, PLAN_KEY: stored})


def execution_plan(graph: Graph) -> list[tuple[str, list[str]]] | None:
    """The ``time_batch`` plan as ``[(kind, [node, ...]), ...]`` in order, or ``None``
    when there is none or it is stale (does not list exactly this graph's nodes)."""
    stored = graph.metadata.get(PLAN_KEY)
    if not isinstance(stored, Mapping):
        return None
    plan = [(key.split("_", 1)[-1], [str(n) for n in stored[key]]) for key in sorted(stored)]
    listed = [n for _, names in plan for n in names]
    if sorted(listed) != sorted(graph.nodes) or any(kind not in ("batched", "stepwise") for kind, _ in plan):
        return None
    return plan


def hoisted_nodes(graph: Graph) -> list[str]:
    """The ``hoist_time_invariant`` result: nodes computed once, in schedule order."""
    return [str(n) for n in graph.metadata.get(HOISTED_KEY, ())]


def declare_static(graph: Graph, inputs: Iterable[str]) -> Graph:
    """A copy whose ``metadata["snnir.static_inputs"]`` lists ``inputs`` (Input node names)."""
    names = list(inputs)
    for name in names:
        if not isinstance(graph.nodes.get(name), Input):
            raise SnnirError(f"cannot declare '{name}' static: it is not an Input node (inputs: {list(graph.inputs)})")
    return graph.replace(metadata={**graph.metadata, STATIC_KEY: names})


@register_pass("hoist_time_invariant")
def hoist_time_invariant(graph: Graph, *, static_inputs: Iterable[str] | None = None) -> Graph:
    """Record in ``metadata["snnir.hoisted"]`` the stateless nodes fed only by
    static Inputs (``static_inputs`` or ``metadata["snnir.static_inputs"]``)."""
    if static_inputs is not None:
        graph = declare_static(graph, static_inputs)
    static = {str(n) for n in graph.metadata.get(STATIC_KEY, ())}
    invariant = set(static)
    hoisted = []
    for name in schedule(graph).order:
        op = graph.nodes[name]
        if isinstance(op, (Input, Output, Subgraph)) or op.stateful:
            continue
        sources = [graph.resolve(src, as_source=True)[0] for src, _ in in_edges(graph, name)]
        if sources and all(s in invariant for s in sources):
            invariant.add(name)
            hoisted.append(name)
    return graph.replace(metadata={**graph.metadata, HOISTED_KEY: hoisted})
