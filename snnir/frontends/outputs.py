"""What a traced ``forward`` returns, as graph outputs, and neurons that keep no state.

Every tensor ``forward`` returns (tuples, lists and dicts flattened in order)
becomes one Output node: ``output``, then ``output_1``, ``output_2``... by
position. A returned value must come from traced layers: one that went
through an untraceable op (``torch.relu`` after the last layer) is refused
naming the op; nothing is dropped.

A returned neuron *state* (``mem``, ``syn``) becomes standard ops computing
the same value beside the neuron, fed the neuron's own input (a *read-out*):

- reset "none": a twin LI / I / CubaLI with the neuron's parameters;
- subtract reset with the delay (``reset_timing="next"``): the twin plus the
  neuron's spikes delayed one step, scaled to subtract ``thr`` from the
  membrane, fed into a leaky integrator with the membrane's decay (linear, so
  the sum is the membrane);
- ``syn`` of a Cuba neuron: an LI with ``tau_syn`` and gain ``w_in``;
- the ``reset_delay=False`` subtract structure already holds ``u``: the read-out
  is ``u - thr * spikes``; Alpha without reset: its two scaled synapses.

The read-outs equal snnTorch's states to rounding (the guard checks them).
Where the membrane is not linear in the spikes (a zero reset) or the neuron has
trainable parameters (a twin's would not train with them), the read-out is the
neuron's own state, read by a ``snnir.StateProbe`` (exact; an extension op, so a
file holding it is for snnir only, and the writer warns). A neuron whose state
is set to zero at every call (``init_leaky()`` in a step ``forward``) is
stateless: it becomes what it computes from a zero state (:func:`snnir.frontends.snntorch_map.stateless_fragment`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from snnir.errors import SnnirError
from snnir.frontends.recorder import Recorder, Tag
from snnir.ir.ops import IF, LI, LIF, CubaLI, CubaLIF, Delay, I, Output, Scale, Threshold
from snnir.ir.ops.probe import StateProbe
from snnir.ir.semantics import Semantics
from snnir.targets.reference.kernels import decay_and_gain


def make_stateless(recorder: Recorder, carried: frozenset[str] = frozenset()) -> None:
    """Swap the ops of every snnTorch neuron whose every call started from zero state, except
    those in ``carried``: the step-model neurons that a second call starts from the state the
    first left (a state made at the first call only: they keep state, from zero)."""
    from snnir.frontends.snntorch_map import stateless_fragment

    for name, calls in recorder.fresh_calls.items():
        if name in carried or (not all(calls) and not any(calls[1:])):
            continue
        if not all(calls):
            raise SnnirError(
                "its state is set to zero at some calls and carried at others; snnir traces a state that is "
                "either carried over every step or zero at every step", name)
        old = recorder.layer_nodes[name]
        new = stateless_fragment(recorder.modules[name], name)
        inner = {old.name(name, key) for key in old.nodes}
        sources = recorder.inputs_of[name][0]
        recorder.edges = [(a, b) for a, b in recorder.edges if b not in inner and (a not in inner or a == name)]
        for node in inner:
            del recorder.nodes[node]
        recorder.nodes.update({new.name(name, key): op for key, op in new.nodes.items()})
        recorder.edges += [(src, new.name(name, e)) for e in new.entries for src in sources]
        recorder.layer_nodes[name] = new


def _idle_layers(recorder: Recorder) -> str:
    """A hint naming the first module with ``to_op()`` that no traced call reached (an ``snnir.nn``
    layer run by ``layer.sequence(...)``), or ``""``."""
    called = {recorder.path_of.get(id(m)) for m in recorder.modules.values()}
    idle = [p for p in recorder.declared if p not in called]
    return (f"; '{idle[0].replace('.', '_')}' was never called as a layer: trace calls it one step at a time, "
            "layer(x_t, state), not layer.sequence(...)") if idle else ""


def wire_outputs(recorder: Recorder, returned: list[Any]) -> tuple[dict, list]:
    """Output nodes and their edges, one per returned tensor, in order."""
    import torch

    tensors = [r for r in returned if isinstance(r, torch.Tensor)]
    if not tensors:
        raise SnnirError("the model's forward returns no tensor")
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    for k, value in enumerate(tensors):
        out = "output" if k == 0 else f"output_{k}"
        tag = recorder.tag_of(value)
        what = f"the {_ordinal(k)} value forward returns"
        if tag is None or tag.kind in ("fresh", "sequence"):
            raise SnnirError(f"{what} does not come from any traced layer{_idle_layers(recorder)}", out)
        if tag.kind == "bad":
            raise SnnirError(f"{what} went through {tag.why}, which cannot be traced; return the last layer's "
                             f"value and apply it outside the model{_idle_layers(recorder)}", out)
        nodes[out] = Output()
        sources = tag.sources if tag.kind == "value" else _readout(recorder, tag, nodes)
        edges += [(src, out) for src in sources]
    return nodes, edges


def _ordinal(k: int) -> str:
    return {0: "first", 1: "second", 2: "third"}.get(k, f"{k + 1}th")


def _readout(recorder: Recorder, tag: Tag, extra: dict) -> tuple[str, ...]:
    """Nodes computing state ``tag.why`` of neuron ``tag.sources[0]``; returns the nodes to sum."""
    name, state = tag.sources[0], tag.why
    fragment = recorder.layer_nodes.get(name)
    module = recorder.modules.get(name)
    if fragment is None or module is None:
        raise SnnirError(f"returns '{state}', which is not a state snnir can read out", name)
    sources = recorder.inputs_of[name][0]
    op = fragment.nodes[""]

    def add(base: str, new_op: Any, inputs: tuple[str, ...]) -> str:
        node = recorder.node_name(f"{name}_{base}")
        recorder.nodes[node] = new_op
        recorder.edges.extend((src, node) for src in inputs)
        return node

    refuse = f"the model returns its {state}, which"
    if set(fragment.nodes) == {""} and isinstance(op, Threshold):  # a stateless neuron: its state is its input
        if state == "syn" or getattr(module, "reset_delay", True) or module.reset_mechanism == "none":
            return sources
        if module.reset_mechanism == "subtract":
            return sources + (add(f"{state}_reset", Scale(scale=-np.asarray(op.threshold)), (name,)),)
        raise SnnirError(f"{refuse} with reset_mechanism='zero' and reset_delay=False is not linear in its "
                         "spikes and has no read-out; return the spikes", name)
    if {"mem", "recheck"} <= set(fragment.nodes):  # reset_delay=False subtract: u - thr * spikes
        if state == "syn" and "syn" in fragment.nodes:
            return (fragment.name(name, "syn"),)
        thr = np.asarray(fragment.nodes[""].threshold)
        return (fragment.name(name, "mem"), add(f"{state}_reset", Scale(scale=-thr), (name,)))
    if "exc" in fragment.nodes:  # Alpha without reset: its LIs hold syn_exc and syn_inh
        alpha = {"mem": ("exc_scale", "inh_scale"), "syn_exc": ("exc",), "syn_inh": ("inh",)}
        return tuple(fragment.name(name, key) for key in alpha[state])
    if not set(fragment.nodes) <= {"", "recurrent"} or not isinstance(op, (IF, LIF, CubaLIF)):
        raise SnnirError(f"{refuse} cannot be stated as a graph output for {type(module).__name__}; "
                         "return the spikes", name)
    sem, own = op.sem, {"mem": "v", "syn": "i"}.get(state)
    linear = sem.reset == "none" or sem.reset == "subtract" and sem.reset_timing == "next"
    if own in op.state_names and (op.trainable or not linear):
        # the neuron's own state: a twin's parameters would not train with it, and a zero reset
        # makes the membrane non-linear in the spikes
        return (add(state, StateProbe(own), (name,)),)
    if "recurrent" in fragment.nodes:  # its output at t is already recurrent(spikes at t - 1)
        sources = sources + (fragment.name(name, "recurrent"),)
    if state == "syn" and isinstance(op, CubaLIF):
        return (add("syn", LI(tau=op.tau_syn, r=op.w_in, v_leak=np.zeros(()), sem=_plain(op.sem)), sources),)
    if state != "mem":
        raise SnnirError(f"{refuse} ('{state}') has no read-out; return the spikes or the membrane", name)
    twin = add("mem", _twin(op), sources)
    if sem.reset == "none":
        return (twin,)
    tau = op.tau_mem if isinstance(op, CubaLIF) else getattr(op, "tau", None)
    gain = op.r * sem.dt if tau is None else op.r * decay_and_gain(np.asarray(tau, np.float64), sem)[1]
    # detached: snnTorch's reset passes no gradient through the spikes
    last = add("mem_last", Delay(delay=np.full((), sem.dt), sem=Semantics(dt=sem.dt, detached=True)), (name,))
    reset = add("mem_reset", Scale(scale=-np.asarray(op.v_threshold) / gain), (last,))
    if isinstance(op, CubaLIF):
        return (twin, add("mem_reset_leak", LI(tau=op.tau_mem, r=op.r, v_leak=op.v_leak, sem=_plain(sem)),
                          (reset,)))
    recorder.edges.append((reset, twin))
    return (twin,)


def _plain(sem: Semantics) -> Semantics:
    return Semantics(dt=sem.dt, discretisation=sem.discretisation, current_order=sem.current_order)


def _twin(op: Any) -> Any:
    """The non-spiking neuron whose ``v`` is ``op``'s membrane when ``op`` never resets."""
    sem = _plain(op.sem)
    if isinstance(op, IF):
        return I(r=op.r, sem=sem)
    if isinstance(op, LIF):
        return LI(tau=op.tau, r=op.r, v_leak=op.v_leak, sem=sem)
    return CubaLI(tau_syn=op.tau_syn, tau_mem=op.tau_mem, r=op.r, v_leak=op.v_leak, w_in=op.w_in, sem=sem)

