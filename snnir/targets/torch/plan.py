"""The execution plan of a compiled module: how many steps each layer runs per call.

A compiled module's top level is cut into *segments*, each ending at a stateful
component (a neuron, a fused layer-neuron node, a recurrent loop): for the
tutorial conv net, ``conv1 -> pool1 -> lif1``, ``conv2 -> pool2 -> lif2``,
``flatten -> fc -> lif3 -> outputs``. A call runs the sequence as consecutive
*runs* of at most ``run`` steps (``compile_torch(time_chunk=...)``), and inside a
run each segment, in order, as consecutive calls of at most ``chunks[i]`` steps,
its neurons' state carried from one call to the next. ``chunks[i] == 1`` is
snnTorch's order (time outside, layers inside) for that segment; ``run`` is the
time-batched order (each layer over the whole run). Only the values a later
segment reads are joined over the run; the others exist one call at a time.
Every plan gives identical results (tested for every registered op).

Where nothing is pinned, the plan is chosen per call shape (grad mode, T, B, the
static inputs) and cached on the module:

- ``run``: 32 steps (training keeps one run's gradients at a time), 64 where the top
  level holds a recurrent component (:data:`RECURRENT_RUN`). Training on a CPU keeps each
  value of a call under glibc's mmap ceiling (``planner.MMAP_CEILING``, 32 MiB: a larger
  tensor is page-faulted in afresh at every allocation): a segment without a convolution
  bounds the run by it, one with a convolution its calls (the wide bench MLP's training
  step, runs of 15 steps instead of 32: 1674 -> 1539 ms). Under
  ``no_grad`` with a memory budget (``"auto"``: the bytes of every value of one step,
  what a step-by-step run holds, at least 4 MiB (8 MiB with a recurrent component), and
  on a GPU at least an eighth of its free memory; the peak it gives on a CPU, measured
  without the input: 1.6-1.8x a step-by-step run's), half the budget bounds the values a
  later segment reads, kept over the run and counted twice (the calls' parts and
  their join), and the other half one call's values of each segment: the run and
  each segment's calls are as few as fit (at least one step each), their steps balanced
  (:func:`balanced`: 100 steps of at most 59 go as 50 + 50), except a segment
  holding a recurrent component, which runs the whole run per call (its calls walk the
  steps one by one anyway, so shorter ones save little memory and cost a kernel call
  each: the recurrent bench case went from 2 to 1 call per run); its exported values,
  made in one piece, count once (the recurrent bench case: runs of 25 steps instead of
  15; each run cost about 1 ms of CPU time under load, whatever its length). Values fed only
  static inputs count once; a neuron applying the next layer counts that layer's
  output instead of its spikes (also inside fused layer-neuron nodes).
- ``chunks``: the whole run for a segment without a convolution (a matrix multiply
  over more rows only gets faster); for one with a convolution, where a large batch
  of images measured slower than a few smaller ones, measured at the first call of
  that shape (``choose_chunk``): the segment is timed on the call's own values for
  chunk lengths 1, 2, 4, ... and the largest, each over the run's first
  ``max(chunk, 8)`` steps (time per step compared), as the call runs it: under
  ``no_grad`` the forward, and where the call trains forward and backward
  (``torch.autograd.grad`` on detached copies of the segment's inputs: the training
  kernels, not the inference ones, and no ``.grad`` touched). A round stops at a chunk
  1.5x slower than the fastest so far, a second one times again those within 1.25x, and
  the largest chunk within 5 % of the fastest is kept. A segment whose first trial takes
  under 2 ms is not measured (it keeps the whole run), nor is any while a forward hook
  watches a module (a hook would see the extra calls) or with ``recompute=True`` (the
  backward's rerun must make the forward's calls).
- step chains (``step_chain.py``): under ``no_grad`` and without traces, segments whose nodes
  make a line of layers and neurons run one step at a time in one native call per run (chosen
  ``"step chain"``); only one step's values exist then, besides a block of its first layer's
  outputs of at most half the budget, so only the line's last output counts against the budget.
  A ``layer_chunks`` pin on a node of a line keeps its segments as they were. Conv chains
  (``conv_chain.py``) do the same for a line of 2-d convolutions, max pools and spatial neurons.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from snnir.errors import SnnirError

#: runs of steps when nothing is pinned (see ``docs/performance.md``)
DEFAULT_RUN = 32
#: runs of steps where the top level holds a recurrent component: each run costs it a fixed
#: time of calls in training, whatever its length, while its step loop is as long either way
#: (training, medians of 15 raced against snnTorch and the floor, 2 CPU threads: the bench's
#: recurrent net, T=100, runs of 50 steps 21.6 ms, one run 19.4, the floor 15.1; T=300, B=32,
#: 128 neurons, runs of 60 steps 20.0 ms, 100 15.2, 150 14.4, one run of 300 16.8, the floor 11.7)
RECURRENT_RUN = 160
#: the least an ``"auto"`` budget allows: below it, calls of a few steps cost more time than they save memory
AUTO_FLOOR = 4 * 2**20
#: the same where the top level holds a recurrent component: there a run costs more fixed time
#: (its component's calls; inference of the bench's recurrent net, 2 CPU threads, interleaved:
#: runs of 25 steps 16.5 ms, of 50 steps 14.3, the GEMM floor 13.3), for a peak of 3.7 MB
#: instead of 1.7 (snnTorch's: 0.6)
AUTO_FLOOR_RECURRENT = 8 * 2**20
#: on a GPU, an ``"auto"`` budget allows at least this share of the device's free memory: there a
#: call of a few steps costs kernel launches, not cache (on an H200, one-step calls made inference
#: 7-17x slower than whole runs, and slower than snnTorch; benchmarks/RESULTS.md)
AUTO_DEVICE_SHARE = 8
#: a segment faster than this over a whole run keeps the whole run, unmeasured
MEASURE_FROM_S = 0.002
#: the largest chunk within this factor of the fastest wins (fewer calls, less noise)
TOLERANCE = 1.05
#: a trial of a shorter chunk runs this many of the run's first steps (time per step compared)
PREFIX = 8
#: measuring a chunk this much slower than the fastest so far ends a round (longer ones cost more)
STOP = 1.5
#: a second round times only the chunks within this factor of the first round's fastest
PRUNE = 1.25


@dataclass(frozen=True)
class ExecutionPlan:
    """``run``: steps per run of steps; ``segments``: the nodes of each segment, in order;
    ``chunks``: steps per call of each segment; ``chosen``: how each chunk was chosen
    (``"pinned"``, ``"measured"``, ``"whole run"``, ``"budget"``: the budget's most steps,
    ``"step chain"``: one step at a time in one native call with the segments around it);
    ``budget``: the bytes of values a no_grad call may hold, when bounded; ``chains``: per
    step chain that runs (``step_chain.py``), its first segment and the most steps its first
    layer multiplies at once (0: its input is held, it runs once; -1: a conv chain,
    ``conv_chain.py``)."""

    run: int
    segments: tuple[tuple[str, ...], ...]
    chunks: tuple[int, ...]
    chosen: tuple[str, ...]
    budget: int | None = None
    chains: tuple[tuple[int, int], ...] = ()

    def __str__(self) -> str:
        budget = f", values budget {self.budget} bytes" if self.budget is not None else ""
        lines = [f"runs of {self.run} step{'s' if self.run != 1 else ''}{budget}"]
        blocks = dict(self.chains)
        for index, (nodes, chunk, how) in enumerate(zip(self.segments, self.chunks, self.chosen)):
            if how == "step chain":
                block = blocks.get(index)
                first = ("" if block is None else ": convolutions, pools and neurons" if block == -1
                         else ", its first layer once, on the held input" if block == 0
                         else f", its first layer over at most {block} step{'s' if block != 1 else ''} at once")
                lines.append(f"  [{', '.join(nodes)}]: step by step in one call (step chain{first})")
            else:
                lines.append(f"  [{', '.join(nodes)}]: {chunk} step{'s' if chunk != 1 else ''} per call ({how})")
        return "\n".join(lines)


def time_chunks(steps: int, chunk: int) -> list[int]:
    """``steps`` split into the fewest runs of at most ``chunk`` steps, as equal as possible
    (one run when ``chunk`` is 0)."""
    if chunk <= 0 or steps <= chunk:
        return [steps]
    count = -(-steps // chunk)
    size, extra = divmod(steps, count)
    return [size + 1] * extra + [size] * (count - extra)


def segments(components: list[tuple[tuple[str, ...], bool]], stateful: Callable[[str], bool]) -> list[list]:
    """The level's components (``(members, recurrent)`` in order) cut after each stateful one."""
    found: list[list] = [[]]
    for component in components:
        found[-1].append(component)
        members, recurrent = component
        if recurrent or any(stateful(name) for name in members):
            found.append([])
    return [segment for segment in found if segment]


def later_reads(found_segments: list[list], sources: Mapping, outputs, probed: Mapping) -> list[set]:
    """Per segment, the value keys that a later segment or an Output of the level reads; a
    probed neuron's states ``(neuron, state)`` go with its output."""
    reads, found = set(outputs), []
    for components in reversed(found_segments):
        found.append(reads | {(n, s) for n, states in probed.items() if n in reads for s in states})
        reads |= {key for members, _ in components for m in members for key, _, _ in sources.get(m, ())}
    return found[::-1]


def check_layer_chunks(layer_chunks: Mapping[str, int] | None, nodes) -> dict[str, int]:
    """``compile_torch(layer_chunks=...)`` checked: top-level node names to positive integers."""
    if layer_chunks is None:
        return {}
    if not isinstance(layer_chunks, Mapping):
        raise SnnirError(f"layer_chunks must be a dict of node name to steps per call, got {type(layer_chunks).__name__}")
    for name, chunk in layer_chunks.items():
        if name not in nodes:
            raise SnnirError("layer_chunks names no top-level node of the graph", str(name))
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise SnnirError(f"layer_chunks: steps per call must be a positive integer, got {chunk!r}", str(name))
    return dict(layer_chunks)


def check_memory_budget(budget) -> int | str | None:
    """``compile_torch(memory_budget=...)`` checked: ``"auto"``, ``None`` or a positive integer."""
    if budget is None or budget == "auto":
        return budget
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise SnnirError(f"memory_budget must be 'auto', None or a positive number of bytes, got {budget!r}")
    return budget


def run_for_budget(budget: int, step_bytes: int, limit: int) -> int:
    """Steps per run whose ``step_bytes`` per step fit ``budget``: at least 1, at most ``limit``."""
    return max(1, min(limit, budget // max(step_bytes, 1)))


def balanced(steps: int, most: int) -> int:
    """The fewest steps per piece that cut ``steps`` into as few pieces of at most ``most``:
    100 steps of at most 59 go as 50 + 50, not 59 + 41 (the same calls, a lower peak, one size)."""
    pieces = -(-steps // max(most, 1))
    return -(-steps // pieces)


def choose_chunk(trial: Callable[[int], int], largest: int) -> tuple[int, str]:
    """The chunk length, at most ``largest``, for a segment, by timing ``trial(chunk)``, which
    runs the segment as the call will (forward, and backward where it trains) in calls of
    ``chunk`` steps over the run's first ``max(chunk, PREFIX)`` steps, and returns how many it
    ran: candidates compare by time per step. The first trial, of ``largest``, warms up (and
    decides where it takes under ``MEASURE_FROM_S``); then the shorter candidates are timed
    from the shortest up, a round ending at the first past ``STOP`` times the fastest so far; a
    second round times again only those within ``PRUNE`` of the fastest, and the largest chunk
    within ``TOLERANCE`` of the fastest of all wins."""
    def timed(chunk: int) -> tuple[float, float]:
        start = time.perf_counter()
        steps = trial(chunk)
        taken = time.perf_counter() - start
        return taken / steps, taken

    per_step, taken = timed(largest)
    if taken < MEASURE_FROM_S:
        return largest, "whole run"
    best = {largest: per_step}
    candidates = [c for c in (1, 2, 4, 8, 16) if c < largest]
    for _ in range(2):
        for chunk in candidates:
            best[chunk] = min(best.get(chunk, float("inf")), timed(chunk)[0])
            if best[chunk] > STOP * min(best.values()):
                break
        fastest = min(best.values())
        candidates = sorted(c for c in best if best[c] <= PRUNE * fastest)
    return max(c for c in best if best[c] <= TOLERANCE * fastest), "measured"


def node_of(key) -> str:
    """The node a value key comes from: ``"node"``, ``"node.port"`` or ``(node, state)`` (a probe)."""
    return key[0] if isinstance(key, tuple) else key.rsplit(".", 1)[0]


def no_hooks(module: torch.nn.Module) -> bool:
    """No forward hook watches ``module`` or any submodule (nor a global one)."""
    hooks = torch.nn.modules.module
    if hooks._global_forward_hooks or hooks._global_forward_pre_hooks:
        return False
    return not any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


class _Splits:
    """A run's tensors cut into the calls' steps (``sizes``, from the first; any rest left over),
    each tensor split once, at its first use."""

    def __init__(self, sizes: list[int]):
        self._sizes, self._parts = sizes, {}

    def part(self, kind: str, key: str, value: torch.Tensor, k: int) -> torch.Tensor:
        """The ``k``-th call's steps of ``value`` (an input or a value, by ``kind``, named ``key``)."""
        if (kind, key) not in self._parts:
            rest = value.shape[0] - sum(self._sizes)
            self._parts[kind, key] = value.split(self._sizes + [rest] if rest else self._sizes)
        return self._parts[kind, key][k]


class SegmentRun:
    """One segment of a graph level over a run of ``steps``, on the values computed so far:
    in consecutive calls of fewer steps (:meth:`in_calls`), or timed (:meth:`trial`)."""

    def __init__(self, level, components, inputs, static, values, held, state, steps: int):
        self.level, self.components, self.inputs, self.static = level, components, inputs, static
        self.values, self.held, self.state, self.steps = values, held, state, steps

    def _calls(self, sizes: list[int]) -> list:
        """Per call of ``sizes[k]`` steps (from the first), ``call(state, new_state, traces, cache)``:
        runs the segment over those steps and returns (its values, the static ones). A call's
        steps of each input and value are a view from one split of that tensor, made at its first
        use: the backward joins the calls' gradients once, where a slice per call gave each call a
        zero-filled gradient as long as the whole run."""
        splits = _Splits(sizes)
        return [functools.partial(self._call, splits, k, size) for k, size in enumerate(sizes)]

    def _call(self, splits: _Splits, k: int, size: int, state, new_state, traces, cache):
        """The ``k``-th call of :meth:`_calls`, ``size`` steps."""
        inputs = {n: v if n in self.static else splits.part("input", n, v, k) for n, v in self.inputs.items()}
        values = {key: v if key in self.held else splits.part("value", key, v, k) for key, v in self.values.items()}
        held = set(self.held)
        self.level._run_components(self.components, inputs, self.static, values, held, state, new_state,
                                   traces, size, cache)
        return values, held

    def in_calls(self, chunk: int, new_state, traces, cache, read_later: set[str]) -> None:
        """Run in calls of at most ``chunk`` steps, the state carried; the values in
        ``read_later`` are joined over the run into the level's values (static ones kept once)."""
        own = dict(self.state)
        parts: dict[str, list[torch.Tensor]] = {}
        trace_parts: dict[str, list[torch.Tensor]] = {}
        for call in self._calls(time_chunks(self.steps, chunk)):
            changed: dict = {}
            call_traces = {} if traces is not None else None
            values, held = call(own, changed, call_traces, cache)
            own.update(changed)
            new_state.update(changed)
            for key in read_later:
                if key in values and key not in self.values:
                    if key in held:  # the same tensor in every call (computed once, cached)
                        self.values[key] = values[key]
                        self.held.add(key)
                    else:
                        parts.setdefault(key, []).append(values[key])
            for key, value in (call_traces or {}).items():
                trace_parts.setdefault(key, []).append(value)
        self.values.update({key: torch.cat(p) for key, p in parts.items()})
        if traces is not None:
            traces.update({key: torch.cat(p) for key, p in trace_parts.items()})

    def trial(self, chunk: int) -> int:
        """Run the first ``max(chunk, PREFIX)`` steps (at most all) in calls of ``chunk`` steps,
        keeping nothing (for timing): under no_grad, or, where the call trains, forward and
        backward (:meth:`_trained_trial`). Returns how many steps ran."""
        steps = min(self.steps, max(chunk, PREFIX))
        if torch.is_grad_enabled():
            self._trained_trial(chunk, steps)
            return steps
        own, cache = dict(self.state), {}
        with torch.no_grad():
            for call in self._calls(time_chunks(steps, chunk)):
                changed: dict = {}
                call(own, changed, None, cache)
                own.update(changed)
        return steps

    def _trained_trial(self, chunk: int, steps: int) -> None:
        """The forward on detached copies of the segment's inputs and state (requiring grad where
        they do) and the backward from the outputs of its last component into those copies and
        the level's trainable parameters, by ``torch.autograd.grad``: the kernels and the
        backward a training call runs, while nothing reaches a ``.grad`` or the caller's graph."""
        leaves: list[torch.Tensor] = []

        def copy(value: torch.Tensor) -> torch.Tensor:
            if not value.requires_grad:
                return value
            leaves.append(value.detach().requires_grad_())
            return leaves[-1]

        twin = SegmentRun(self.level, self.components, {n: copy(v) for n, v in self.inputs.items()}, self.static,
                          {k: copy(v) for k, v in self.values.items()}, set(self.held),
                          {k: copy(v) for k, v in self.state.items()}, self.steps)
        ends = set(self.components[-1][0])
        outputs, own, cache = [], dict(twin.state), {}
        for call in twin._calls(time_chunks(steps, chunk)):
            changed: dict = {}
            values, _ = call(own, changed, None, cache)
            own.update(changed)
            outputs += [v for k, v in values.items() if (k in ends or node_of(k) in ends) and v.requires_grad]
        parameters = [p for p in self.level.parameters() if p.requires_grad]
        if outputs and leaves + parameters:
            torch.autograd.grad(outputs, leaves + parameters, [torch.ones_like(o) for o in outputs],
                                allow_unused=True)
