"""Choosing a compiled module's execution plan per call shape (the rules are in ``plan.py``)."""

from __future__ import annotations

import contextlib
import numpy as np
import torch

from snnir.ir.memory import Footprint
from snnir.ir.ops import Input, Output, Subgraph
from snnir.ir.ops.conv import _ConvBase
from snnir.targets.torch.modules import AffineModule
from snnir.targets.torch.plan import (
    AUTO_DEVICE_SHARE, AUTO_FLOOR, AUTO_FLOOR_RECURRENT, DEFAULT_RUN, RECURRENT_RUN, ExecutionPlan, balanced, choose_chunk, no_hooks, node_of, run_for_budget,
)
from snnir.targets.torch.spike_flow import _first_layer, _spike_neuron, hands_over
from snnir.targets.torch.step_chain import StepChain


#: the largest block glibc's malloc serves from its heap (its dynamic mmap threshold's ceiling on a
#: 64-bit system): a larger tensor is mapped afresh at every allocation and its pages faulted in
#: again, so a training call on a CPU keeps each value under it (:meth:`Planner._fault_caps`; the
#: tutorial conv net's training step with conv2's segment at 25 steps per call: 258-265 ms against
#: 193-206 at 8 steps, and with the threshold raised out of reach 182.6 against 187.7; the wide
#: MLP's, runs of 32 steps 1674 ms against 1539 at 15; 2 CPU threads)
MMAP_CEILING = 32 * 2**20


class Planner:
    """The plans of one compiled module (its top level), cached by call shape."""

    def __init__(self, module, footprint: Footprint, time_chunk: int | None, layer_chunks: dict, memory_budget):
        self._module, self._footprint = module, footprint
        self.time_chunk, self.layer_chunks, self.memory_budget = time_chunk, layer_chunks, memory_budget
        self.plans: dict[tuple, ExecutionPlan] = {}
        self.last: ExecutionPlan | None = None
        graph = module._graph
        #: per top-level node, numbers per sample and step of its values (nested ones included)
        outputs = module._shapes.outputs
        self._elements = {
            name: sum(_size(shape) for key, shape in outputs.items() if key == name or key.startswith(name + "."))
            for name, op in graph.nodes.items() if not isinstance(op, (Input, Output))
        }
        self._output_elements = sum(_size(outputs.get(name)) for name in graph.outputs)

    @contextlib.contextmanager
    def planning(self, inputs, static, steps: int, record: bool = False):
        """``(run length, chunk_of, chains)`` for :meth:`GraphModule.run`; the plan is kept afterwards."""
        batch = next((v.shape[0] if n in static else v.shape[1]) for n, v in inputs.items())
        probe = next(iter(inputs.values()))
        key = (torch.is_grad_enabled(), record, steps, batch, tuple(sorted(static)), probe.dtype, str(probe.device))
        plan = self.plans.get(key)
        if plan is None:
            active = self._active_chains(probe, record)
            run, caps, budget = self._run_length(static, steps, batch, probe.element_size(), probe.device, active)
            chunks, chosen = self._pinned_chunks(run, caps, active)
            blocks = self._chain_blocks(active, static, run, budget, batch * probe.element_size())
        else:
            run, budget, chunks, chosen, blocks = plan.run, plan.budget, list(plan.chunks), list(plan.chosen), plan.chains
        chains = {first: (self._module._chains[first], block) for first, block in blocks}
        # a recomputed run (recompute=True) must make the same calls in the backward: no trials
        measure = plan is None and no_hooks(self._module) and not self._module.recompute

        def chunk_of(index: int, run_steps: int, trial) -> int:
            if chunks[index] is None:
                largest = run_steps if caps is None else min(caps[index], run_steps)
                chunks[index], chosen[index] = choose_chunk(trial, largest) if measure else (largest, "whole run")
            return chunks[index]

        yield run, chunk_of, chains
        if plan is None:
            # segments a call never reached (none, unless it failed) stay unplanned
            if all(c is not None for c in chunks):
                segments = tuple(tuple(m for members, _ in s for m in members) for s in self._module._segments)
                plan = ExecutionPlan(run, segments, tuple(chunks), tuple(chosen), budget, blocks)
                self.plans[key] = plan
        self.last = plan

    def _pinned_chunks(self, run: int, caps: list[int] | None, chains: list) -> tuple[list, list]:
        """Per segment: the whole run in a step chain that runs (``chains``), the chunk pinned by
        ``layer_chunks``, or, without a convolution or with ``time_chunk`` given, the whole run
        (or the budget's cap ``caps[i]``); else ``None`` (measured at the first call)."""
        chunks: list = []
        chosen: list = []
        chained = {i for c in chains for i in range(c.first, c.last + 1)}
        for index, components in enumerate(self._module._segments):
            names = [m for members, _ in components for m in members]
            pinned = [self.layer_chunks[n] for n in names if n in self.layer_chunks]
            if index in chained:
                chunks.append(run)
                chosen.append("step chain")
            elif pinned:
                chunks.append(min(min(pinned), run))
                chosen.append("pinned")
            elif self.time_chunk is not None or not any(self._convolves(n) for n in names):
                cap = run if caps is None else caps[len(chunks)]
                chunks.append(cap)
                chosen.append("whole run" if cap == run else "budget")
            else:
                chunks.append(None)
                chosen.append(None)
        return chunks, chosen

    def _convolves(self, name: str) -> bool:
        """Node ``name`` holds a convolution (also nested, or as a fused node's layer)."""
        op = self._module._graph.nodes[name]
        inner = op.graph.walk() if isinstance(op, Subgraph) else ()
        return any(isinstance(o, _ConvBase) or isinstance(getattr(o, "layer", None), _ConvBase)
                   for o in [op, *(o for _, o in inner)])

    def _chain_blocks(self, chains: list, static, run: int, budget: int | None, scale: int) -> tuple:
        """Per step chain, ``(first segment, the most steps its first layer multiplies at once)``:
        its block of outputs within half the budget (``scale`` bytes per sample element), at most
        the run; 0 where the layer's input is held (it runs once); -1 for a conv chain (no block)."""
        held = self._static_nodes(static) | set(static)
        found = []
        for chain in chains:
            sources = self._module._sources.get(chain.nodes[0], ())
            if not isinstance(chain, StepChain):
                found.append((chain.first, -1))
            elif all(key in held or node_of(key) in held for key, _, _ in sources):
                found.append((chain.first, 0))
            else:
                width = chain.layers[0].weight.shape[0]
                found.append((chain.first, run if budget is None else max(1, min(run, budget // 2 // (scale * width)))))
        return tuple(found)

    def _active_chains(self, probe: torch.Tensor, record: bool) -> list:
        """The top level's step and conv chains that run at this call shape (``runs_on``: under
        no_grad, among others), except where ``layer_chunks`` pins a node of one."""
        if record or torch.is_grad_enabled():
            return []
        return [chain for chain in self._module._chains.values()
                if not any(n in self.layer_chunks for n in chain.nodes) and chain.runs_on(probe)]

    def _run_length(self, static, steps: int, batch: int, itemsize: int, device: torch.device, chains=()):
        """(steps per run, per segment the most steps per call or None, the values budget or None).

        Under ``no_grad`` with a budget: half of it for the values a later segment reads, kept
        for the whole run (counted twice: the calls' parts and their join), a quarter for one
        call's values of a segment and a quarter for its kernels' working memory (a fused
        layer-neuron call with half the budget peaked 1.3x over it, measured on the per-step
        tutorial MLP): ``run * 2 * exported <= budget / 2``, ``chunk * values <= budget / 4``, each
        then :func:`~snnir.targets.torch.plan.balanced` (as few calls, of even length);
        a segment with a recurrent component runs the whole run per call (see ``plan.py``), so
        its exported values are made in one piece and count once. With a recurrent component the
        run is at most ``RECURRENT_RUN`` and ``"auto"`` at least ``AUTO_FLOOR_RECURRENT``; on a GPU
        ``"auto"`` allows at least ``1 / AUTO_DEVICE_SHARE`` of the device's free memory. Training
        on a CPU keeps each value of a call under :data:`MMAP_CEILING` (:meth:`_fault_caps`). A step
        chain that runs (``chains``) holds one step's values and a block of its first layer's
        outputs, which takes the half of the budget a call's values and kernels would: only its last
        segment's exported values count."""
        if self.time_chunk is not None:
            return min(self.time_chunk or steps, steps), None, None
        whole = [any(recurrent for _, recurrent in components) for components in self._module._segments]
        base = min(RECURRENT_RUN if any(whole) else DEFAULT_RUN, steps)
        if torch.is_grad_enabled():
            if device.type != "cpu":
                return base, None, None
            caps = self._fault_caps(static, batch * itemsize, base)
            convolves = [any(self._convolves(m) for members, _ in components for m in members)
                         for components in self._module._segments]
            run = min([base] + [cap for cap, conv in zip(caps, convolves) if not conv])
            return run, [min(cap, run) if conv else run for cap, conv in zip(caps, convolves)], None
        if self.memory_budget is None:
            return base, None, None
        scale = batch * itemsize
        if self.memory_budget == "auto":  # a step-by-step run holds one step's values
            budget = max(AUTO_FLOOR_RECURRENT if any(whole) else AUTO_FLOOR, scale * self._footprint.values)
            if device.type == "cuda":
                budget = max(budget, torch.cuda.mem_get_info(device)[0] // AUTO_DEVICE_SHARE)
        else:
            budget = self.memory_budget
        per_segment = self._step_elements(static)
        for chain in chains:
            for index in range(chain.first, chain.last):
                per_segment[index] = (0, 0)
            per_segment[chain.last] = (0, per_segment[chain.last][1])
        exported = scale * sum(e if w else 2 * e for (_, e), w in zip(per_segment, whole))
        run = balanced(steps, run_for_budget(budget // 2, exported, base))
        caps = [run if w else balanced(run, run_for_budget(budget // 4, scale * values, run))
                for w, (values, _) in zip(whole, per_segment)]
        return run, caps, budget

    def _fault_caps(self, static, scale: int, run: int) -> list[int]:
        """Per segment, the most steps of a training call on a CPU that keep each of its values
        (``scale`` bytes per sample element) under :data:`MMAP_CEILING` bytes, at most ``run``. A
        segment with a convolution is held to it per call (its calls are measured within the run);
        for the others it bounds the run, whose values are joined over it."""
        held = self._static_nodes(static) | set(static)
        outputs = self._module._shapes.outputs
        caps = []
        for components in self._module._segments:
            names = [m for members, _ in components for m in members if m not in held]
            largest = max((_size(shape) for key, shape in outputs.items()
                           if any(key == n or key.startswith(n + ".") for n in names)), default=0)
            caps.append(max(1, min(run, (MMAP_CEILING - 1) // max(1, scale * largest))))
        return caps

    def _step_elements(self, static) -> list[tuple[int, int]]:
        """Per segment, numbers per sample and step of (all its values, those a later segment
        reads): values fed only static ones are made once; a fused layer-neuron node also makes
        its layer's output; a neuron applying the next layer makes that layer's output instead
        of its spikes (``spike_flow.py``)."""
        module = self._module
        held = self._static_nodes(static)
        made = dict(self._elements)  # what a node hands on
        inner = dict.fromkeys(made, 0)  # what it makes and keeps to itself
        for name in made:
            op = module._graph.nodes[name]
            fed_static = all(k in held or k in static for k, _, _ in module._sources.get(name, ()))
            if getattr(op, "layer", None) is not None and not fed_static:
                inner[name] = _size(module._shapes.outputs.get(name))
        for owner, (consumer, layer_out) in _handovers(module).items():
            if owner in made and consumer in made:
                made[owner] += layer_out - _size(module._shapes.outputs.get(owner))
                if isinstance(module.node_module(consumer), AffineModule):
                    made[consumer] = 0  # the layer itself: its output is made upstream
                inner[consumer] = 0  # a fused node's layer output likewise
        found = []
        for components, later in zip(module._segments, module._read_later):
            names = [m for members, _ in components for m in members if m in made and m not in held]
            read = [n for n in names if any(k == n or node_of(k) == n for k in later)]
            found.append((sum(made[n] + inner[n] for n in names), sum(made[n] for n in read)))
        return found

    def _static_nodes(self, static) -> set[str]:
        """Top-level nodes fed only static values (computed once; the hoisting rule)."""
        module = self._module
        found = set(static)
        for members, recurrent in module._plan:
            name = members[0]
            op = module._graph.nodes[name]
            if recurrent or name in found or isinstance(op, (Input, Output)) or op.stateful:
                continue
            sources = module._sources.get(name, ())
            if sources and all(not d and (k in found or node_of(k) in found) for k, _, d in sources):
                found.add(name)
        return found - set(static)


def _handovers(module) -> dict[str, tuple[str, int]]:
    """Top-level node -> (its consumer, numbers per sample and step of the output of that
    consumer's first layer) where the node's neuron applies that layer in its own scan
    (``spike_flow.py``; the neuron or the layer may sit inside a fused or nested node)."""
    found = {}
    for consumer, feeds in module._sources.items():
        if len(feeds) != 1 or consumer not in module._attrs or feeds[0][0] not in module._attrs:
            continue
        neuron, layer = _spike_neuron(module, feeds[0][0]), _first_layer(module, consumer)
        if neuron is None or layer is None:
            continue
        (level, name), (layer_level, layer_name) = neuron, layer
        then = level._then.get(name)
        if then is layer_level.node_module(layer_name) and hands_over(level.node_module(name), then):
            shape = layer_level._shapes.outputs.get(layer_level._shape_prefix + layer_name)
            found[feeds[0][0]] = (consumer, _size(shape))
    return found


def _size(shape) -> int:
    return int(np.prod(shape)) if shape is not None else 0
