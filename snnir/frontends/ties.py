"""Parameter ties of a trace: a layer with trainable parameters called on several inputs in a
step is one node per call (:meth:`Recorder.instance`); the graph ties each of its nodes to the
same node of the other calls, so a compiled module trains one parameter, as the model does."""

from __future__ import annotations

from snnir.errors import warn
from snnir.frontends.recorder import Recorder
from snnir.ir.ties import shares_parameters


def traced_ties(recorder: Recorder) -> tuple[tuple[str, ...], ...]:
    """Tie groups for the recorded graph: per layer called on several inputs, per node of its
    fragment with trainable parameters, that node of every call. A copy whose op came out
    different (one call stateless, another not) is left untied, with a warning naming it."""
    ties = []
    for names in recorder.names.values():
        if len(names) < 2:
            continue
        first = recorder.layer_nodes[names[0]]
        for key in first.nodes:
            nodes = [recorder.layer_nodes[n].name(n, key) for n in names if key in recorder.layer_nodes[n].nodes]
            ops = [recorder.nodes.get(node) for node in nodes]
            if ops[0] is None or not ops[0].trainable:
                continue
            group = tuple(node for node, op in zip(nodes, ops) if op is not None and shares_parameters(ops[0], op))
            apart = [node for node in nodes if node not in group]
            if apart:
                warn(f"nodes {apart} come from the same layer as '{nodes[0]}' but trace as different ops: "
                     "a compiled module trains their parameters apart")
            if len(group) > 1:
                ties.append(group)
    return tuple(ties)
