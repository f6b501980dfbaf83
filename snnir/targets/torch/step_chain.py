r"""Layers and neurons in a line, run for inference one step at a time in one native call.

A *step chain* of a compiled module's top level (:func:`plan_chains`, once, when it is built):
consecutive segments (``plan.py``) whose nodes make a line ``L_0 -> N_0 -> L_1 -> N_1 -> ... -> N_k``
of Linear/Affine layers and single-spike neurons of shape ``[N]``, each the only consumer of the
one before and fed by nothing else (fused layer-neuron nodes, or layers and neurons as nodes of
their own), after the stateless nodes of its first segment (its Inputs, a Flatten: the *lead*,
run as usual). Where ``N_k`` hands its spikes to the next layer (``spike_flow.py``), that layer
is the line's last, and its output the value of ``N_k``'s node.

Under ``no_grad``, without traces, hooks or autocast, on a CPU in float32 or float64 with the native
kernels and neurons whose update ``neuron_linear.native_step`` states (:func:`ready`),
``csrc/neuron_linear.cpp`` ``chain_forward`` runs the line over a run of steps in snnTorch's order,
time outside and layers inside: per step each neuron's update, then its layer's product of the
spikes (the step's ``F.linear`` bits, as ``neuron_linear.py`` makes them). The first layer
multiplies ``block`` steps of its input at once, where the BLAS gives each step its own
product's bits (``modules.rows_alike``), or sums at the spikes where ``AffineModule`` would
(``spike_rows``). Only one step's values exist at a time, besides that block, where the
segments one after another hold each layer's output over a call of several steps: under a
memory budget such calls are short and each costs a chain of Python calls (the per-step tutorial
MLP's inference: ``memory_budget="auto"`` 27.0 ms in calls of 2 steps, ``None`` 21.0 ms at
several times the peak; 2 CPU threads). Spikes, states and outputs are the segments' bit for bit;
where the chain cannot run at a call, its segments run as usual (:func:`run_chain`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from snnir.ir.spikes import emits_spikes
from snnir.targets.torch import native as kernels
from snnir.targets.torch.modules import AffineModule, rows_alike
from snnir.targets.torch.neuron_linear import native_step
from snnir.targets.torch.neuron_module import NeuronModule, _scan_module
from snnir.targets.torch.neuron_update import _config, _scalars
from snnir.targets.torch.plan import no_hooks
from snnir.targets.torch.spike_flow import _consumers, _first_layer, _in_loop, _inner, _spike_neuron


@dataclass(frozen=True, eq=False, repr=False)
class StepChain:
    """The line over segments ``first`` to ``last`` of a level: ``lead``, the components of the
    first segment before it; ``nodes``, its top-level nodes, in order; ``layers[i]``, the layer
    before ``neurons[i]``, and one more where the last neuron hands its spikes on; ``states[i]``,
    the state keys of ``neurons[i]`` by state name; ``keys``, the value keys of its last node;
    ``watched``, every module a forward hook on which stops the chain."""

    first: int
    last: int
    lead: tuple
    nodes: tuple[str, ...]
    layers: tuple[AffineModule, ...]
    neurons: tuple[NeuronModule, ...]
    states: tuple[dict[str, str], ...]
    keys: tuple[str, ...]
    watched: tuple[nn.Module, ...]

    def __repr__(self) -> str:
        return f"StepChain({' -> '.join(self.nodes)})"

    def runs_on(self, like: torch.Tensor) -> bool:
        """:func:`ready` finds the neurons' updates for values like ``like``."""
        return ready(self, like) is not None

    def run(self, level, block: int, inputs, static, values, held, state, new_state, steps, cache) -> None:
        """:func:`run_chain`."""
        run_chain(level, self, block, inputs, static, values, held, state, new_state, steps, cache)


class _Part(NamedTuple):
    """A segment that ends with a layer and the neuron it alone feeds (one fused node, or two
    nodes): the components before them, those nodes, the layer, (the neuron's level, the neuron),
    the modules a hook on which stops the chain, and whether the layer is given (a neuron before
    applies it: ``spike_flow.py``)."""

    lead: tuple
    nodes: tuple[str, ...]
    layer: AffineModule
    neuron: tuple
    modules: tuple
    given: bool


def plan_chains(level) -> dict[int, StepChain]:
    """The step chains of ``level``'s segments, by their first segment's index (call after
    ``plan_handovers`` and ``plan_probes``). A part whose layer a neuron before applies joins
    that neuron's chain, or none."""
    found: dict[int, StepChain] = {}
    line: list[tuple[int, _Part]] = []  # the chain being grown
    for index, components in enumerate(level._segments + [None]):
        part = _part(level, components) if components is not None else None
        if part is not None and line and not part.lead and _hands(line[-1][1], part.layer):
            line.append((index, part))
            continue
        if line:
            chain = _chain(level, line)
            found[chain.first] = chain
        line = [(index, part)] if part is not None and not part.given else []
    return found


def _part(level, components) -> _Part | None:
    """The :class:`_Part` of a segment, or None."""
    if any(recurrent for _, recurrent in components):
        return None
    names = [members[0] for members, _ in components]
    last = names[-1]
    inner = _inner(level, last) if last in level._attrs else None
    if inner is not None:
        layer, neuron = _first_layer(level, last), _spike_neuron(level, last)
        if (layer is None or neuron is None or layer[0] is not inner or neuron[0] is not inner
                or set(inner._attrs) != {layer[1], neuron[1]} or not _feeds_only(inner, layer[1], neuron[1])
                or not _is_neuron(inner, neuron[1])):
            return None
        modules = (level.node_module(last), inner.node_module(layer[1]), inner.node_module(neuron[1]))
        return _Part(tuple(components[:-1]), (last,), modules[1], neuron, modules, layer[1] in inner._given)
    if len(names) < 2 or not all(n in level._attrs for n in names[-2:]):
        return None
    layer, neuron = names[-2:]
    if not (isinstance(level.node_module(layer), AffineModule) and _is_neuron(level, neuron)
            and _feeds_only(level, layer, neuron)):
        return None
    modules = (level.node_module(layer), level.node_module(neuron))
    return _Part(tuple(components[:-2]), (layer, neuron), modules[0], (level, neuron), modules, layer in level._given)


def _is_neuron(level, name: str) -> bool:
    """Node ``name`` is a single-spike neuron of shape ``[N]`` on the fast path, unprobed."""
    module = level.node_module(name)
    return (isinstance(module, NeuronModule) and module.fast and emits_spikes(module.source_op)
            and len(level._shapes.outputs[level._shape_prefix + name]) == 1 and name not in level._probed)


def _feeds_only(level, layer: str, neuron: str) -> bool:
    """A layer of rank-1 input whose output only ``neuron`` takes, its only input."""
    module = level.node_module(layer)
    return (module.in_rank == 1 and module.weight.dim() == 2 and not _in_loop(level, neuron)
            and level._sources.get(neuron) == [(layer, None, False)]
            and _consumers(level).get(layer) == [(neuron, False)] and layer not in level._graph.outputs)


def _hands(part: _Part, layer: AffineModule) -> bool:
    """The neuron of ``part`` hands its spikes to ``layer`` (``spike_flow.plan_handovers``)."""
    neuron_level, neuron = part.neuron
    return neuron_level._then.get(neuron) is layer


def _chain(level, line: list[tuple[int, _Part]]) -> StepChain:
    neurons, layers, states, watched = [], [], [], []
    for _, part in line:
        neuron_level, neuron = part.neuron
        layers.append(part.layer)
        neurons.append(neuron_level.node_module(neuron))
        key = f"{neuron_level._prefix}{neuron}."
        states.append({s: key + s for s in neuron_level._state_names[neuron]})
        watched += part.modules
    neuron_level, neuron = line[-1][1].neuron
    then = neuron_level._then.get(neuron)
    if then is not None:
        layers.append(then)
        watched.append(then)
    last = line[-1][1].nodes[-1]
    inner = _inner(level, last)
    keys = (last,) if inner is None else tuple(f"{last}.{port}" for port in inner._output_names) + (last,)
    nodes = tuple(n for _, part in line for n in part.nodes)
    return StepChain(line[0][0], line[-1][0], line[0][1].lead, nodes, tuple(layers), tuple(neurons), tuple(states),
                     keys, tuple(watched))


def ready(chain: StepChain, like: torch.Tensor) -> list[tuple] | None:
    """Each neuron's update for ``chain_forward`` (``native_step``) where the chain runs natively
    for values like ``like``, else None: no gradients, no autocast, a CPU float32 or float64
    tensor, the native kernel built and chosen for every neuron, the layers' parameters in that
    dtype, no forward hook on any of its modules."""
    if (torch.is_grad_enabled() or like.device.type != "cpu" or like.dtype not in (torch.float32, torch.float64)
            or torch.is_autocast_enabled("cpu") or not all(no_hooks(m) for m in chain.watched)):
        return None
    for layer in chain.layers:
        bias = getattr(layer, "bias", None)
        if layer.weight.dtype != like.dtype or (bias is not None and bias.dtype != like.dtype):
            return None
    scan = _scan_module()
    steps = []
    for neuron in chain.neurons:
        cfg = _config(neuron.source_op, neuron.surrogate, neuron.detach_reset)
        if scan is None or not kernels.supports(neuron.source_op, cfg, like, False, neuron.native, "neuron_linear"):
            return None
        step = native_step(cfg, _scalars(neuron.coefficients(scan, like)))
        if step is None:
            return None
        steps.append(step)
    return steps


def run_chain(level, chain: StepChain, block: int, inputs, static, values, held, state, new_state, steps, cache):
    """Run segments ``chain.first`` to ``chain.last`` of ``level`` over ``steps`` steps (:func:`run_line`),
    the line by one native call, its first layer over at most ``block`` steps per product."""
    def native():
        summed, static_ports, _ = level._gather(chain.nodes[0], values, held)
        (port, x), = summed.items()
        return _native(chain, x, port in static_ports, block, state, steps, cache)

    run_line(level, chain, native, inputs, static, values, held, state, new_state, steps, cache)


def run_line(level, chain, native, inputs, static, values, held, state, new_state, steps, cache) -> None:
    """Segments ``chain.first`` to ``chain.last`` of ``level`` (a step or conv chain) over ``steps``
    steps, adding to ``values`` and ``new_state`` as ``GraphModule._run_components`` does (no
    traces): the chain's lead as usual, then ``native()`` -> ``(y, final states by key)``, ``y``
    the value of each of ``chain.keys``; where it returns None, the segments' other nodes as usual."""
    level._run_components(chain.lead, inputs, static, values, held, state, new_state, None, steps, cache)
    found = native()
    if found is None:
        rest = [c for s in level._segments[chain.first:chain.last + 1] for c in s if c not in chain.lead]
        level._run_components(rest, inputs, static, values, held, state, new_state, None, steps, cache)
        return
    y, finals = found
    values.update(dict.fromkeys(chain.keys, y))
    new_state.update(finals)


def _native(chain: StepChain, x: torch.Tensor, is_static: bool, block: int, state, steps: int, cache):
    """``(y, final states by key)`` of the line by ``chain_forward``, or None where it cannot run."""
    updates = ready(chain, x)
    v0s = [state[keys["v"]] for keys in chain.states]
    if updates is None or x.dim() != (2 if is_static else 3) or any(v.dtype != x.dtype or v.dim() != 2 for v in v0s):
        return None
    first, empty = chain.layers[0], x.new_empty(0)
    if is_static:  # the first layer runs once (the hoisting rule), its output held over the steps
        key = ("step chain", first.path)
        if key not in cache:
            cache[key] = first(x)
        x, in_weight, in_bias, in_rows, block = cache[key], empty, empty, empty, 1
    else:
        x = x.contiguous()
        bias = getattr(first, "bias", None)
        in_weight, in_bias = first.weight.detach(), empty if bias is None else bias.detach()
        rows = first.spike_rows(x)
        in_rows = empty if rows is None else rows
        block = _block(first, x, block)
    z0s = [state[keys["z"]] if "z" in keys else empty for keys in chain.states]
    after = chain.layers[1:]
    weights = [layer.weight.detach() for layer in after]
    biases = [empty if getattr(layer, "bias", None) is None else layer.bias.detach() for layer in after]
    params = [float(value) for update in updates for value in update]
    owned = getattr(state, "owned", ())  # the call's own tensors (run_state.RunState): overwritten
    in_place = all(key in owned for keys in chain.states for key in keys.values())
    found = kernels.extension("neuron_linear").chain_forward(
        x, is_static, steps, in_weight, in_bias, in_rows, block, v0s, z0s, params, weights, biases, in_place)
    finals = {}
    for keys, v, z in zip(chain.states, found[1::2], found[2::2]):
        finals[keys["v"]] = v
        if "z" in keys:
            finals[keys["z"]] = z
    return found[0], finals


def _block(layer: AffineModule, x: torch.Tensor, most: int) -> int:
    """Steps of ``x`` ``[T, B, K]`` per product of ``layer``, at most ``most``: the most, or else the
    largest power of two below, whose rows one GEMM rounds as each step's own product, as it rounds
    the rest of ``T`` such blocks leave (1: step by step)."""
    steps, bias = x.shape[0], getattr(layer, "bias", None)
    size = min(most, steps)
    while size > 1:
        rest = steps % size
        if rows_alike(x[:size], layer.weight, bias) and (rest <= 1 or rows_alike(x[:rest], layer.weight, bias)):
            return size
        size = 1 << (size - 1).bit_length() - 1
    return 1
