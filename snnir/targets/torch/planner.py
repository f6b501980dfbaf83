"""Choosing a compiled module's execution plan per call shape (the rules are in ``plan.py``)."""

from __future__ import annotations

import contextlib
from itertools import chain

import numpy as np
import torch

from snnir.ir.memory import Footprint
from snnir.ir.ops import Input, Output, Subgraph
from snnir.ir.ops.conv import _ConvBase
from snnir.targets.torch.plan import (
    DEFAULT_RUN, ExecutionPlan, choose_chunk, no_hooks, run_for_budget,
)
from snnir.targets.torch.spike_flow import hands_over


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
    def planning(self, inputs, static, steps: int):
        """``(run length, chunk_of)`` for :meth:`GraphModule.run`; the plan is kept afterwards."""
        batch = next((v.shape[0] if n in static else v.shape[1]) for n, v in inputs.items())
        probe = next(iter(inputs.values()))
        key = (torch.is_grad_enabled(), steps, batch, tuple(sorted(static)), probe.dtype, str(probe.device))
        plan = self.plans.get(key)
        if plan is None:
            run, budget = self._run_length(inputs, static, steps, batch, probe.element_size())
            chunks, chosen = self._pinned_chunks(run)
        else:
            run, budget, chunks, chosen = plan.run, plan.budget, list(plan.chunks), list(plan.chosen)
        measure = plan is None and no_hooks(self._module)

        def chunk_of(index: int, run_steps: int, trial) -> int:
            if chunks[index] is None:
                chunks[index], chosen[index] = choose_chunk(trial, run_steps) if measure else (run_steps, "whole run")
            return chunks[index]

        yield run, chunk_of
        if plan is None:
            # segments a call never reached (none, unless it failed) stay unplanned
            if all(c is not None for c in chunks):
                segments = tuple(tuple(m for members, _ in s for m in members) for s in self._module._segments)
                plan = ExecutionPlan(run, segments, tuple(chunks), tuple(chosen), budget)
                self.plans[key] = plan
        self.last = plan

    def _pinned_chunks(self, run: int) -> tuple[list, list]:
        """Per segment: the chunk pinned by ``layer_chunks`` (or by ``time_chunk``: the whole run),
        else ``None`` (measured at the first call)."""
        chunks: list = []
        chosen: list = []
        for components in self._module._segments:
            names = [m for members, _ in components for m in members]
            pinned = [self.layer_chunks[n] for n in names if n in self.layer_chunks]
            if pinned:
                chunks.append(min(min(pinned), run))
                chosen.append("pinned")
            elif self.time_chunk is not None or not any(self._convolves(n) for n in names):
                chunks.append(run)
                chosen.append("whole run")
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

    def _run_length(self, inputs, static, steps: int, batch: int, itemsize: int) -> tuple[int, int | None]:
        """Steps per run and, under a memory budget, the bytes of values the run may hold."""
        if self.time_chunk is not None:
            return min(self.time_chunk or steps, steps), None
        base = min(DEFAULT_RUN, steps)
        if torch.is_grad_enabled() or self.memory_budget is None:
            return base, None
        held = self._static_nodes(static)
        module = self._module
        handed = {n for n, layer in module._then.items() if hands_over(module.node_module(n), layer)}
        per_step = batch * itemsize * sum(e for n, e in self._elements.items() if n not in held and n not in handed)
        held_bytes = batch * itemsize * sum(self._elements[n] for n in held if n in self._elements)
        if self.memory_budget == "auto":
            fixed = sum(t.numel() * t.element_size() for t in chain(module.parameters(), module.buffers()))
            fixed += batch * itemsize * sum(e for _, _, e in self._footprint.states)
            fixed += sum(v.numel() * v.element_size() for v in inputs.values())
            fixed += steps * batch * itemsize * self._output_elements
            step_by_step = batch * itemsize * self._footprint.values  # every value of one step
            budget = max(fixed + 2 * step_by_step - held_bytes, 0)
        else:
            budget = self.memory_budget
        return run_for_budget(budget, per_step, base), budget

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
            if sources and all(not d and (k in found or k.rsplit(".", 1)[0] in found) for k, _, d in sources):
                found.add(name)
        return found - set(static)


def _size(shape) -> int:
    return int(np.prod(shape)) if shape is not None else 0
