"""Which values of a graph level are exactly 0/1 spikes, decided from the graph alone.

Used by the torch target (a Linear fed spikes keeps them as bools) and by the NIR writer
(a max pool of spikes has a standard NIR form). A value is 0/1 when it is a single-spike
neuron's or a Threshold's output, an Input declared binary, or a Flatten or Delay (or a
node ``keeps_binary`` accepts) fed by exactly one such value (a sum of two spike trains is
not 0/1). :func:`spike_outputs` tells the CLI which outputs to count and draw as spikes.
"""

from __future__ import annotations

from typing import Callable

from snnir.ir.graph import Graph
from snnir.ir.ops import Delay, Flatten, Input, Op, Output, Threshold
from snnir.ir.ops.fused import FusedLayerNeuron
from snnir.ir.ops.neuron import Neuron
from snnir.ir.schedule import Schedule, schedule

Sources = dict[str, list[tuple[str, str | None, bool]]]  # node -> (source key, port, delayed) per edge


def edge_sources(graph: Graph, sched: Schedule) -> Sources:
    """Per node, each incoming edge's source key (``"node"`` or ``"node.port"``), the
    destination port, and whether the edge is delayed (carries the previous step)."""
    sources: Sources = {}
    for src, dst in graph.edges:
        node, port = graph.resolve(dst, as_source=False)
        s_node, s_port = graph.resolve(src, as_source=True)
        key = f"{s_node}.{s_port}" if s_port is not None else s_node
        sources.setdefault(node, []).append((key, port, (src, dst) in sched.delayed))
    return sources


def emits_spikes(op: Op, counts: bool = False) -> bool:
    """Every output value of ``op`` is exactly 0 or 1 (with ``counts``: a whole number of spikes,
    as a neuron emitting several a step gives)."""
    if isinstance(op, Threshold):
        return True
    neuron = op.neuron if isinstance(op, FusedLayerNeuron) else op
    return isinstance(neuron, Neuron) and neuron.spiking and (counts or neuron.sem.spike_mode == "single")


def binary_values(
    graph: Graph, order: tuple[str, ...], sources: Sources, binary_inputs: frozenset[str],
    keeps_binary: Callable[[str, Op], bool] | None = None,
) -> set[str]:
    """Nodes of one level whose output is exactly 0/1 (see the module docstring)."""
    binary: set[str] = set()
    for name in order:
        op = graph.nodes[name]
        if (isinstance(op, Input) and name in binary_inputs) or emits_spikes(op):
            binary.add(name)
        elif fed_binary(sources, name, binary) and (
            isinstance(op, (Flatten, Delay)) or (keeps_binary is not None and keeps_binary(name, op))
        ):
            binary.add(name)
    return binary


def spike_outputs(graph: Graph) -> set[str]:
    """The Output nodes of ``graph``'s level that carry spikes: a spiking neuron's (counts too) or a
    Threshold's, through Flatten or Delay. Any other output (a membrane, a layer's sum, a nested
    graph's port: flatten it first) carries values."""
    sched = schedule(graph)
    sources = edge_sources(graph, sched)
    spikes: set[str] = set()
    for name in sched.order:
        op = graph.nodes[name]
        passes_on = isinstance(op, (Flatten, Delay, Output)) and fed_binary(sources, name, spikes)
        if emits_spikes(op, counts=True) or passes_on:
            spikes.add(name)
    return spikes & set(graph.outputs)


def fed_binary(sources: Sources, name: str, binary: set[str]) -> bool:
    """Node ``name`` is fed by exactly one edge, from a node in ``binary``."""
    feeds = sources.get(name, ())
    return len(feeds) == 1 and feeds[0][0] in binary
