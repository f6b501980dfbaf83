"""A recurrent component of a graph level, run step by step: the specification of its timing.

A component with recurrence (:meth:`GraphModule._components`) steps through time. At step
``t`` each member, in schedule order, sums its sources' values of step ``t``, except over a
delayed edge, which reads its source's value of step ``t - 1``: the state
``"<source>@prev"``, zero at a sequence's first step (:mod:`snnir.ir.schedule`); a neuron's
fed-back edges are summed apart and handed to it as its fed-back drive. After the
last step the delayed sources' last values are that state's new values. A static input is
read as the same ``[B, ...]`` at every step; nothing inside a loop is static (a static value
a nested member returns, fed only by its unfed ports' zeros, is read as one step of it).

Where the component is a neuron and the layer feeding its spikes back (``FeedbackLoop``)
and no traces are recorded, one native call over all steps gives the same spikes and states
(``recurrent.py``); otherwise, or where that kernel does not apply, the step loop runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from snnir.targets.torch.recurrent import FeedbackLoop

if TYPE_CHECKING:
    from snnir.targets.torch.graph_module import GraphModule


def run_recurrent(level: GraphModule, members, steps, values, held, state, new_state, traces, cache) -> None:
    """Run the recurrent component ``members`` of ``level`` over ``steps`` steps, adding to
    ``values``, ``new_state`` and ``traces`` as ``GraphModule._run_components`` does."""
    loop = level._loops.get(members)
    if loop is not None and traces is None and _run_feedback(
            level, loop, steps, values, held, state, new_state, cache):
        return
    current = dict(state)
    delayed_keys = level._component_delayed[members]
    prev = {key: state[f"{level._prefix}{key}@prev"] for key in delayed_keys}
    collected: dict[str, list[torch.Tensor]] = {}
    step_traces: dict[str, list[torch.Tensor]] = {}
    for t in range(steps):
        step_values: dict[str, torch.Tensor] = {}
        for name in members:
            x, _, fed = level._gather(name, values, held, step_values, prev, t)
            outs, held_outs, node_state, node_traces = level._run_node(
                name, x, set(), current, traces is not None, 1, {}, fed  # a step of a loop holds no static value
            )
            # but a nested graph's unfed port is a static zero, and what it alone feeds static: one step of it
            step_values.update({key: value[None] if key in held_outs else value for key, value in outs.items()})
            current.update(node_state)
            new_state.update(node_state)
            for key, value in (node_traces or {}).items():
                step_traces.setdefault(key, []).append(value)
        for key in delayed_keys:
            prev[key] = step_values[key][0]
        for key, value in step_values.items():
            collected.setdefault(key, []).append(value)
    for key, value in collected.items():
        values[key] = torch.cat(value)
    for key in delayed_keys:
        new_state[f"{level._prefix}{key}@prev"] = prev[key]
    if traces is not None:
        traces.update({key: torch.cat(v) for key, v in step_traces.items()})


def _run_feedback(level: GraphModule, loop: FeedbackLoop, steps, values, held, state, new_state, cache) -> bool:
    """A neuron and the layer feeding its spikes back, over all steps in one native call, with
    the step loop's results; False (nothing done) where the kernel does not run it. ``cache``
    (the call's) carries the layer's last value from one run of steps to the next."""
    x, all_held = None, True
    for key, _, _ in level._sources[loop.neuron]:
        if key != loop.layer:
            x = values[key] if x is None else x + values[key]  # the step loop's order (feedback_loop)
            all_held = all_held and key in held
    if all_held:
        x = x.expand((steps,) + tuple(x.shape))
    layer, prefix = level.node_module(loop.layer), level._prefix
    neuron_key = f"{prefix}{loop.neuron}."
    own = {s: state[neuron_key + s] for s in level._state_names[loop.neuron]}

    prev_key = f"{prefix}{loop.neuron}@prev"
    result = level.node_module(loop.neuron).with_feedback(x, own, layer, state[prev_key], cache)
    if result is None:
        return False
    out, final, last = result
    values[loop.neuron] = out
    new_state.update({neuron_key + s: v for s, v in final.items()})
    new_state[prev_key] = last  # a fresh tensor, as the step loop's
    return True
