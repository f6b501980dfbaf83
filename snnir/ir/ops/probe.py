"""Reading a neuron's state as a value, an extension op (NIR has none): ``snnir.StateProbe``.

A probe has exactly one incoming edge, from a neuron node of the same graph level, and
its output at step t is that neuron's state variable ``state`` after the neuron's step t
(see :mod:`snnir.ir.ops.neuron` for ``v'``, ``i'`` and ``z``)::

    y[t] = s[t]   where (out[t], s[t]) = neuron(x[t], s[t - 1])

So for ``reset_timing`` "same" ``v`` is the membrane after its reset, and for "next" the
membrane before the reset its spike causes (applied at the next step), which is the
membrane snnTorch's neurons return. The edge carries no value (the neuron's output is not
summed in); it must not be delayed (a probe cannot feed back into its own neuron in the
step it reads it), and the graph must not be rewritten so that the neuron's state changes
meaning (passes that fuse or replace a probed neuron leave it alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from snnir.errors import SnnirError
from snnir.ir.ops.base import Op, Shape, require_input
from snnir.ir.ops.neuron import Neuron
from snnir.ir.registry import register_op

if TYPE_CHECKING:
    from snnir.ir.graph import Graph


@dataclass(frozen=True, eq=False)
class StateProbe(Op):
    """y[t] = state ``state`` of the neuron on its one incoming edge, after step t."""

    op_type = "snnir.StateProbe"
    state: str = "v"

    def __post_init__(self) -> None:
        if not isinstance(self.state, str) or not self.state.isidentifier():
            raise SnnirError(f"StateProbe.state must name a state variable, got {self.state!r}")
        super().__post_init__()

    def infer_shape(self, input_shape: Shape | None, node: str) -> Shape:
        return tuple(require_input(self, input_shape, node))  # a neuron's states have its output's shape


register_op(StateProbe)


def probe_sources(graph: "Graph", prefix: str = "") -> dict[str, str]:
    """Probe node -> the neuron node it reads, for one graph level; a SnnirError naming the
    probe where it has not exactly one edge, from a neuron node (not a nested port) of that
    level that has the state it reads. (Delayed edges are refused by :func:`check_probes`.)"""
    found: dict[str, str] = {}
    for name, op in graph.nodes.items():
        if not isinstance(op, StateProbe):
            continue
        feeds = [src for src, dst in graph.edges if dst == name]
        if len(feeds) != 1 or feeds[0] not in graph.nodes:
            raise SnnirError(f"a StateProbe needs exactly one incoming edge, from a neuron node; it has {len(feeds)}"
                             + ("" if len(feeds) != 1 else f" from {feeds[0]!r}, which is not a node of its level"),
                             prefix + name)
        neuron = graph.nodes[feeds[0]]
        if not isinstance(neuron, Neuron) or op.state not in neuron.state_names:
            has = list(neuron.state_names) if isinstance(neuron, Neuron) else "no neuron state"
            raise SnnirError(f"StateProbe reads state {op.state!r} of node {feeds[0]!r} "
                             f"({neuron.op_type}), which has {has}", prefix + name)
        found[name] = feeds[0]
    return found


def probed_neurons(graph: "Graph") -> set[str]:
    """Neuron nodes of one level that a probe reads (passes must keep their meaning)."""
    return {src for src, dst in graph.edges if isinstance(graph.nodes.get(dst), StateProbe)}


def check_probes(graph: "Graph", delayed: frozenset, prefix: str = "") -> None:
    """:func:`probe_sources`, and no probe's edge is delayed (in a cycle through its neuron)."""
    for probe, neuron in probe_sources(graph, prefix).items():
        if (neuron, probe) in delayed:
            raise SnnirError(f"a StateProbe of {neuron!r} feeds back into that neuron; a probe's value "
                             "cannot be an input of the neuron it reads", prefix + probe)
