r"""Convolutions, max pools and neurons in a line, run for inference one step at a time in one
native call: the step chain (``step_chain.py``) of a conv net's spatial layers.

A *conv chain* of a compiled module's top level (:func:`plan_conv_chains`): consecutive segments
(``plan.py``) whose nodes, after the Inputs of the first (its *lead*), make a line of *stages*
``[pool -> Conv2d] -> [pool] -> N`` (a pool: MaxPool2d, AvgPool2d or SumPool2d; the convolution and
neuron may be one fused node), at least two, each ``N`` a
single-spike neuron of shape ``[C, H, W]`` on the fast path, every node the only consumer of the
one before and fed by nothing else. Under ``no_grad``, without traces, hooks or autocast, on a
CPU in float32 or float64 with the native kernels (:meth:`ConvChain.runs_on`),
``csrc/pool_scan.cpp`` ``chain_forward`` runs the line over a run of steps in snnTorch's order:
per step, per stage, the pool before the convolution (Sinabs' order: after the previous neuron),
the convolution (``at::conv2d``, the call ``ConvModule`` makes), a mean or sum pool
(``PoolModule``'s calls; torch's max pool before a convolution), then the max pool and the
neuron by the fused kernel of ``pool_neuron.py`` (a stage without a max pool there takes a 1 x 1
window: the same values). Nodes before the first neuron whose input is held (a static
image) run once, as the hoisting rule has them, and the first neuron takes their held output.

Only one step's values exist inside the line, so a run holds only the last neuron's spikes and
the planner counts only those against the memory budget: the runs are long and the graph
module's Python runs once per run, not per segment and step (the static tutorial conv net's
inference: about 0.4 ms of Python per step in runs of one step, 2 CPU threads). Spikes, states
and outputs are the segments' bit for bit; where the chain cannot run at a call, its segments
run as usual (:meth:`ConvChain.run`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from snnir.ir.ops import SumPool2d
from snnir.ir.ops.pool import MaxPool2d
from snnir.ir.spikes import emits_spikes
from snnir.targets.torch import native as kernels
from snnir.targets.torch.neuron_module import NeuronModule, _scan_module
from snnir.targets.torch.neuron_update import _config
from snnir.targets.torch.plan import no_hooks
from snnir.targets.torch.pool_neuron import neuron_args
from snnir.targets.torch.spatial import POOL_KERNEL, ConvModule, MaxPoolModule, PoolModule, window_args
from snnir.targets.torch.spike_flow import _consumers, _in_loop, _inner, _spike_neuron
from snnir.targets.torch.step_chain import plan_chains, run_line

#: a stage without a pool: a 1 x 1 window at stride 1 (each value its own maximum)
_IDENTITY_WINDOW = [1, 1, 1, 1, 0, 0, 1, 1]


@dataclass(frozen=True, eq=False, repr=False)
class Stage:
    """One stage of the line: its top-level nodes (a pool, a convolution, a pool and a neuron,
    the convolution and neuron possibly one fused node); the modules of its pool before the
    convolution, its convolution, its pool after it and its neuron (None where absent); the
    cache keys of the first three (where their input is held, see ``GraphModule._run_node``); the
    neuron's state keys by state name and its shape ``(C, H, W)``."""

    nodes: tuple[str, ...]
    modules: tuple
    held_keys: tuple
    states: dict
    shape: tuple[int, int, int]

    def without_layers(self) -> "Stage":
        """The stage with its neuron alone (its pools and convolution run before)."""
        return Stage(self.nodes[-1:], (None, None, None, self.modules[3]), (None, None, None), self.states,
                     self.shape)


@dataclass(frozen=True, eq=False, repr=False)
class ConvChain:
    """The line over segments ``first`` to ``last`` of a level: ``lead``, the components of
    the first segment before it; ``stages``; ``shapes``, each neuron's ``(C, H, W)``; ``keys``,
    the value keys of its last node."""

    first: int
    last: int
    lead: tuple
    stages: tuple[Stage, ...]
    shapes: tuple[tuple[int, int, int], ...]
    keys: tuple[str, ...]

    def __repr__(self) -> str:
        return f"ConvChain({' -> '.join(self.nodes)})"

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(n for stage in self.stages for n in stage.nodes)

    def runs_on(self, like: torch.Tensor) -> bool:
        """The chain runs natively for values like ``like``: no gradients, no autocast, a CPU
        float32 or float64 tensor, the pool kernel built and chosen for every neuron, the
        convolutions' parameters in that dtype, no forward hook on any of its modules."""
        if (torch.is_grad_enabled() or like.device.type != "cpu" or like.dtype not in (torch.float32, torch.float64)
                or torch.is_autocast_enabled("cpu")
                or not all(no_hooks(m) for stage in self.stages for m in stage.modules if m is not None)):
            return False
        for stage in self.stages:
            _, conv, _, neuron = stage.modules
            cfg = _config(neuron.source_op, neuron.surrogate, neuron.detach_reset)
            if not kernels.supports(neuron.source_op, cfg, like, False, neuron.native, POOL_KERNEL):
                return False
            if conv is not None and (conv.weight.dtype != like.dtype or conv.bias.dtype != like.dtype):
                return False
        return True

    def run(self, level, block, inputs, static, values, held, state, new_state, steps, cache) -> None:
        """Run segments ``first`` to ``last`` of ``level`` over ``steps`` steps (``step_chain.run_line``),
        the line by one native call. (``block``: unused; a step chain's first layer's.)"""
        run_line(level, self, lambda: self._native(level, values, held, state, steps, cache), inputs, static, values,
                 held, state, new_state, steps, cache)

    def _native(self, level, values, held, state, steps: int, cache):
        """``(y, final states by key)`` by ``chain_forward``, or None where it cannot run."""
        summed, static_ports, _ = level._gather(self.nodes[0], values, held)
        if list(summed) != [None]:
            return None
        x, is_static = summed[None], None in static_ports
        if not self.runs_on(x):
            return None
        stages = list(self.stages)
        if is_static:  # the layers before the first neuron run once (the hoisting rule); only the
            # last one's output is kept for the call's later runs (the line alone reads the others)
            layers = [(m, k) for m, k in zip(stages[0].modules[:3], stages[0].held_keys) if m is not None]
            if layers:
                if layers[-1][1] not in cache:
                    held_value = x
                    for module, _ in layers:
                        held_value = module(held_value[None])
                    cache[layers[-1][1]] = held_value
                x = cache[layers[-1][1]]
            stages[0] = stages[0].without_layers()
            x = x.reshape((-1,) + self.shapes[0])
        elif x.dim() != 5:
            return None
        batch = x.shape[0 if is_static else 1]
        args: dict[str, list] = {k: [] for k in ("weights", "biases", "conv", "inside", "pools", "windows", "pooled",
                                                 "states", "coeffs", "flags", "slopes")}
        keys = []
        empty = x.new_empty(0)
        scan = _scan_module()
        for stage, shape in zip(stages, self.shapes):
            before, conv, pool, neuron = stage.modules
            if conv is None:
                args["weights"].append(empty)
                args["biases"].append(empty)
                args["conv"] += [1, 1, 0, 0, 1, 1, 1]
                args["inside"].append(0)
            else:
                op = conv.source_op
                args["weights"].append(conv.weight.detach())
                args["biases"].append(conv.bias.detach())
                args["conv"] += [*op.stride, *op.explicit_padding(), *op.dilation, op.groups]
                args["inside"].append(int(conv.bias_inside(x)))
            fused = pool if isinstance(pool, MaxPoolModule) else None  # the max pool the neuron's kernel takes
            args["pools"] += _pool_args(before) + _pool_args(None if fused else pool)
            args["windows"] += _IDENTITY_WINDOW if fused is None else window_args(fused.source_op)
            args["pooled"] += list(shape)
            own = stage.states
            init = {s: state[k] for s, k in own.items()}
            if any(v.dtype != x.dtype or tuple(v.shape) != (batch,) + shape for v in init.values()):
                return None
            cfg = _config(neuron.source_op, neuron.surrogate, neuron.detach_reset)
            states, flat, flags, slope = neuron_args(cfg, neuron.coefficients(scan, x), init, (batch,) + shape, x)
            args["states"] += states
            args["coeffs"] += flat
            args["flags"] += flags
            args["slopes"].append(slope)
            keys.append(own)
        found = kernels.extension(POOL_KERNEL).chain_forward(
            x.contiguous(), is_static, steps, args["weights"], args["biases"], args["conv"], args["inside"],
            args["pools"], args["windows"], args["pooled"], args["states"], args["coeffs"], args["flags"], args["slopes"])
        finals = {}
        for k, (own, shape) in enumerate(zip(keys, self.shapes)):
            for j, s in enumerate(("v", "i", "z")):
                if s in own:
                    finals[own[s]] = found[1 + 3 * k + j].view((batch,) + shape)
        return found[0].view((steps, batch) + self.shapes[-1]), finals


def plan_all_chains(level) -> dict:
    """The step chains (``step_chain.plan_chains``) and conv chains of ``level``, by first segment."""
    found = plan_chains(level)
    taken = {index for chain in found.values() for index in range(chain.first, chain.last + 1)}
    return {**found, **plan_conv_chains(level, taken)}


def plan_conv_chains(level, taken: set[int]) -> dict[int, ConvChain]:
    """The conv chains of ``level``'s segments outside ``taken`` (those of step chains), by
    their first segment's index (call after ``plan_handovers``, ``plan_probes`` and ``plan_pools``)."""
    found: dict[int, ConvChain] = {}
    line: list[tuple[int, tuple, list[Stage]]] = []  # (segment, lead, stages) being grown

    def close():
        stages = [s for _, _, part in line for s in part]
        if len(stages) >= 2 and _linked(level, [n for s in stages for n in s.nodes]):
            last = stages[-1].nodes[-1]
            inner = _inner(level, last)
            keys = (last,) if inner is None else tuple(f"{last}.{p}" for p in inner._output_names) + (last,)
            shapes = tuple(stage.shape for stage in stages)
            found[line[0][0]] = ConvChain(line[0][0], line[-1][0], line[0][1], tuple(stages), shapes, keys)

    for index, components in enumerate(level._segments):
        part = None if index in taken else _stages(level, components)
        if part is not None and line and not part[0]:
            line.append((index, *part))
            continue
        if line:
            close()
        line = [(index, *part)] if part is not None else []
    if line:
        close()
    return found


def _stages(level, components) -> tuple[tuple, list[Stage]] | None:
    """``(lead, stages)`` of a segment that ends in stages, or None."""
    if any(recurrent for _, recurrent in components):
        return None
    names = [members[0] for members, _ in components]
    stages: list[Stage] = []
    end = len(names)

    def take(fits, start: int) -> tuple[str | None, int]:
        """The node before ``start`` where ``fits`` it, and the new start."""
        before = names[start - 1] if start else None
        return (before, start - 1) if before in level._attrs and fits(level, before) else (None, start)

    while end:
        name, start = names[end - 1], end - 1
        fused = _fused_layers(level, name)  # ((level, conv node), (level, neuron node)): maybe inside the node
        pool = None
        if fused is not None:
            conv, neuron = fused
        elif _is_neuron(level, name):
            pool, start = take(_pools, start)
            conv_name, start = take(_convolves, start)
            conv, neuron = (None if conv_name is None else (level, conv_name)), (level, name)
        else:
            break
        before, start = take(_pools, start) if conv is not None else (None, start)
        owners = (None if before is None else (level, before), conv, None if pool is None else (level, pool))
        modules = tuple(None if o is None else o[0].node_module(o[1]) for o in owners + (neuron,))
        held = tuple(None if o is None else o[0]._prefix + o[1] for o in owners)
        states, shape = _neuron_facts(*neuron)
        stages.insert(0, Stage(tuple(names[start:end]), modules, held, states, shape))
        end = start
    if not stages or any(n in level._attrs for n in names[:end]):  # a lead of Inputs only: it holds no run
        return None
    return tuple(components[:end]), stages


def _fused_layers(level, name: str):
    """``((inner level, convolution node), (inner level, neuron node))`` of a fused node whose
    inner graph is a convolution feeding a neuron, or None."""
    inner = _inner(level, name) if name in level._attrs else None
    neuron = _spike_neuron(level, name) if inner is not None else None
    if neuron is None or neuron[0] is not inner or len(inner._graph.inputs) != 1 or len(inner._attrs) != 2:
        return None
    uses = _consumers(inner).get(inner._graph.inputs[0], [])
    conv = uses[0][0] if len(uses) == 1 and not uses[0][1] else None
    if (conv not in inner._attrs or not _convolves(inner, conv) or not _is_neuron(inner, neuron[1])
            or not _linked(inner, [conv, neuron[1]])):
        return None
    return (inner, conv), neuron


def _neuron_facts(level, neuron: str) -> tuple[dict[str, str], tuple[int, ...]]:
    """A neuron node's state keys by state name and its shape."""
    return ({s: f"{level._prefix}{neuron}.{s}" for s in level._state_names[neuron]},
            tuple(level._shapes.outputs[level._shape_prefix + neuron]))


def _pool_args(pool) -> list[int]:
    """A pool module as ``chain_forward``'s ``pooled_by`` takes it (zeros: none)."""
    if pool is None:
        return [0] * 10
    op = pool.source_op
    if isinstance(pool, MaxPoolModule):
        return [3, *window_args(op), int(op.ceil_mode)]
    return [2 if isinstance(op, SumPool2d) else 1, *op.kernel_size, *op.stride, *op.padding, 1, 1, 0]


def _is_neuron(level, name: str) -> bool:
    """Node ``name`` is a single-spike neuron of shape ``[C, H, W]`` on the fast path, unprobed,
    handing its spikes to no layer."""
    if name not in level._attrs:
        return False
    module = level.node_module(name)
    shape = level._shapes.outputs.get(level._shape_prefix + name)
    return (isinstance(module, NeuronModule) and module.fast and emits_spikes(module.source_op)
            and shape is not None and len(shape) == 3 and name not in level._probed and name not in level._then)


def _pools(level, name: str) -> bool:
    """A 2-d max pool of at most 256 values a window, or a mean or sum pool."""
    module = level.node_module(name)
    op = module.source_op
    return isinstance(module, PoolModule) or (isinstance(op, MaxPool2d) and int(np.prod(op.kernel_size)) <= 256)


def _convolves(level, name: str) -> bool:
    module = level.node_module(name)
    return isinstance(module, ConvModule) and module.source_op.spatial_rank == 2


def _linked(level, nodes: list[str]) -> bool:
    """Each node after the first is fed only by the one before, its only consumer, outside any
    loop and not a graph output; the first has one source."""
    consumers = _consumers(level)
    for before, after in zip(nodes, nodes[1:]):
        if (level._sources.get(after) != [(before, None, False)] or consumers.get(before) != [(after, False)]
                or before in level._graph.outputs or _in_loop(level, before) or _in_loop(level, after)):
            return False
    return len(level._sources.get(nodes[0], ())) == 1 and not _in_loop(level, nodes[0])
