"""The torch target: any snnir graph as a trainable ``torch.nn.Module``.

``compile_torch(graph)`` returns a :class:`SnnirModule` whose submodules are
named as the graph's nodes. It matches :func:`snnir.run` (the reference):
identical spikes, membranes within 1e-6 relative in float64.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from snnir.errors import SnnirError
from snnir.ir.graph import Graph
from snnir.ir.ops import Input, Output
from snnir.ir.memory import Footprint, resolve_limits
from snnir.ir.verify import verify
from snnir.limits import Limits
from snnir.targets.torch import spatial  # noqa: F401 (registers the convolutions' and pools' lowerings)
from snnir.targets.torch.dtype_range import check_dtype_range
from snnir.targets.torch.graph_module import GraphModule
from snnir.targets.torch.run_state import FreshState, State
from snnir.targets.torch.modules import LOWERINGS, LoweringContext, OpModule, register_lowering
from snnir.targets.torch.options import Options
from snnir.targets.torch.plan import ExecutionPlan, check_layer_chunks, check_memory_budget
from snnir.targets.torch.planner import Planner
from snnir.targets.torch.surrogate import Surrogate, chosen_surrogate

_OPTIONS = (
    "surrogate", "slope", "trainable", "dtype", "device", "fast", "detach_reset", "time_chunk", "recompute", "native",
    "triton", "limits", "layer_chunks", "memory_budget",
)


def _finite(x: torch.Tensor) -> bool:
    """No NaN or inf in ``x``: its sum is finite (one read, about 0.2 ms for a 10 MB input on 2 CPU
    threads), else every element is checked (a sum of finite values may overflow). Not on a GPU,
    where the answer would stop the host until the device catches up, every call."""
    with torch.no_grad():
        return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


class SnnirModule(GraphModule):
    """A compiled graph.

    - ``module(x)``: ``x`` is ``[T, B, *shape]`` (or a dict by Input name); returns
      ``[T, B, ...]`` for one Output, else a dict by Output name. ``record=True``
      also returns state traces keyed ``"<node>.<state>"`` (as :func:`snnir.run`);
      ``return_state=True`` also returns the final state.
    - ``module(x, steps=T)``: static inputs, the same at every step, given once as
      ``[B, *shape]`` (a dict may mix them with ``[T, B, *shape]`` ones). A
      ``[T, B, *shape]`` tensor with time stride 0 (from ``expand``) is static too.
      Stateless nodes fed only static values run once on ``[B, ...]``.
    - ``module.step(x_t, state)``: one step on ``[B, *shape]``; returns ``(out, new_state)``.
      The state is explicit: ``module.initial_state(batch)`` gives a fresh one.
    - ``module.to_graph()``: the graph with the current (trained) parameters.
    - ``module.plan``: the execution plan of the last call (``None`` before the first);
      ``module.plans``: every plan chosen so far, by call shape (see ``plan.py``).
    """

    def __init__(
        self, graph: Graph, options: Options, limits: Limits | None = None,
        layer_chunks: Mapping[str, int] | None = None, memory_budget: int | str | None = "auto",
    ):
        shapes = verify(graph).shapes
        check_dtype_range(graph, options.dtype)
        super().__init__(graph, shapes, "", "", options)
        self.limits = limits
        self._footprint = Footprint.of(graph, shapes)
        self._planner = Planner(self, self._footprint, options.time_chunk, layer_chunks or {}, memory_budget)
        self.register_buffer("_dtype_probe", torch.zeros((), dtype=options.dtype), persistent=False)

    @property
    def plan(self) -> ExecutionPlan | None:
        """The execution plan of the last call (``None`` before the first)."""
        return self._planner.last

    @property
    def plans(self) -> dict[tuple, ExecutionPlan]:
        """Every plan chosen so far, by (grad enabled, traces recorded, T, B, static inputs, dtype, device)."""
        return dict(self._planner.plans)

    def run(self, inputs, state, record, steps, static=frozenset()):
        """:meth:`GraphModule.run` under the plan for this call's shape (chosen at its first call)."""
        with self._planner.planning(inputs, static, steps, record) as (run_length, chunk_of, chains):
            return super().run(inputs, state, record, steps, static, run_length, chunk_of, chains)

    @property
    def graph(self) -> Graph:
        """The graph this module was compiled from (original parameters)."""
        return self._graph

    def initial_state(self, batch: int, dtype: torch.dtype | None = None, device: Any = None) -> State:
        """All-zero state for ``batch`` samples, in the module's dtype and device by default;
        refused before allocating when its state, or parameters, state and a step's values, are over
        the module's ``limits`` (see :mod:`snnir.limits`)."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise SnnirError(f"batch must be a positive integer, got {batch!r}")
        itemsize = (dtype or self._dtype_probe.dtype).itemsize
        self._footprint.check(batch, itemsize=itemsize, limits=self.limits)
        return super().initial_state(
            batch, dtype or self._dtype_probe.dtype, device if device is not None else self._dtype_probe.device
        )

    def forward(
        self, x: Any, state: State | None = None, record: bool = False, return_state: bool = False,
        steps: int | None = None,
    ):
        if torch._C._are_functorch_transforms_active():
            raise SnnirError(
                "torch.func transforms (vmap, grad, jacrev, ...) cannot run a compiled module: its surrogate "
                "spikes and kernels are autograd Functions without functorch rules. Use torch.autograd "
                "(loss.backward(), torch.autograd.grad) and put samples on the batch dimension")
        inputs, static, steps, batch = self._check_sequences(x, steps)
        state = self._check_state(state, batch)
        outs, new_state, traces = self.run(inputs, state, record, steps, static)
        result: tuple = (self._unwrap(outs),)
        if record:
            result += (traces,)
        if return_state:
            result += (new_state,)
        return result[0] if len(result) == 1 else result

    def step(self, x: Any, state: State | None = None):
        """One step: ``x`` is ``[B, *shape]`` (or a dict); returns ``(out, new_state)``."""
        inputs, batch = self._check_step_inputs(x)
        state = self._check_state(state, batch)
        outs, new_state, _ = self.run({k: v[None] for k, v in inputs.items()}, state, False, 1)
        return self._unwrap({k: v[0] for k, v in outs.items()}), new_state

    # --- input checks -----------------------------------------------------------------
    def _unwrap(self, outs: dict[str, torch.Tensor]):
        return next(iter(outs.values())) if len(outs) == 1 else outs

    def _check_sequences(self, x: Any, steps: int | None) -> tuple[dict[str, torch.Tensor], frozenset[str], int, int]:
        """Inputs for :meth:`run`: (tensors by Input name, the static ones as ``[B, ...]``, T, B)."""
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise SnnirError(f"steps must be a positive integer, got {steps!r}")
        given = self._graph.bind_inputs(x)
        inputs, static, batch, found = {}, set(), None, None
        for name, value in given.items():
            value = self._as_tensor(name, value)
            shape = tuple(self._shapes.outputs[name])
            dims = ", ".join(map(str, shape))
            if value.dim() == len(shape) + 1 and tuple(value.shape[1:]) == shape:
                if steps is None:
                    raise SnnirError(
                        f"input of shape {list(value.shape)} is a static [B, {dims}] input: give steps=T "
                        f"(module(x, steps=T)) or a [T, B, {dims}] sequence",
                        name,
                    )
                static.add(name)
            elif value.dim() == len(shape) + 2 and tuple(value.shape[2:]) == shape:
                t = value.shape[0]
                if steps is not None and t != steps:
                    raise SnnirError(f"input has {t} time steps but steps={steps}", name)
                if found is not None and t != found:
                    raise SnnirError(f"inputs disagree on T: {found} vs {t}", name)
                found = t
                if value.stride(0) == 0 and t > 0:  # expand()ed over time: the same at every step
                    value = value[0]
                    static.add(name)
            else:
                raise SnnirError(
                    f"input must have shape [T, B, {dims}], got {list(value.shape)} "
                    f"(or [B, {dims}] with steps=T for a static input)",
                    name,
                )
            b = value.shape[0] if name in static else value.shape[1]
            if batch is not None and b != batch:
                raise SnnirError(f"inputs disagree on the batch size B: {batch} vs {b}", name)
            batch = b
            inputs[name] = value
        steps = steps if steps is not None else found
        if steps == 0:
            raise SnnirError("input has no time steps (T = 0)")
        return inputs, frozenset(static), steps, batch

    def _as_tensor(self, name: str, value: Any) -> torch.Tensor:
        """``value`` as a tensor in the module's dtype and device, or a SnnirError naming the Input."""
        dtype, device = self._dtype_probe.dtype, self._dtype_probe.device
        if not isinstance(value, torch.Tensor):
            try:
                value = torch.as_tensor(value)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise SnnirError(f"input is not numeric: {exc}", name) from None
        if value.dtype != dtype:
            other = (f" or compile it in {value.dtype} (dtype={value.dtype})"
                     if value.dtype in (torch.float32, torch.float64) else "")
            raise SnnirError(f"input has dtype {value.dtype} but the module computes in {dtype}; cast the input "
                             f"(x.to({dtype})){other}", name)
        if value.device != device:
            raise SnnirError(f"input is on {value.device} but the module is on {device}", name)
        if device.type == "cpu" and value.is_floating_point() and not _finite(value):
            raise SnnirError("input contains NaN or inf", name)  # as the reference refuses it
        if device.type == "meta":
            raise SnnirError("the module and its input are on the meta device, which holds no values, and a call "
                             "computes spikes from values: move the module to a real device with .to_empty(device=...) "
                             "and load its weights (for shapes alone: snnir.verify(module.graph).shapes)", name)
        return value

    def _check_step_inputs(self, x: Any) -> tuple[dict[str, torch.Tensor], int]:
        """Inputs of one step, ``[B, *shape]`` by Input name, and B."""
        inputs, batch = {}, None
        for name, value in self._graph.bind_inputs(x).items():
            value = self._as_tensor(name, value)
            shape = tuple(self._shapes.outputs[name])
            if value.dim() != len(shape) + 1 or tuple(value.shape[1:]) != shape:
                dims = ", ".join(map(str, shape))
                raise SnnirError(f"input must have shape [B, {dims}], got {list(value.shape)}", name)
            if batch is not None and value.shape[0] != batch:
                raise SnnirError(f"inputs disagree on the batch size B: {batch} vs {value.shape[0]}", name)
            batch = value.shape[0]
            inputs[name] = value
        return inputs, batch

    def _check_state(self, state: State | None, batch: int) -> State:
        if state is None:
            return FreshState(self.initial_state(batch))
        if not isinstance(state, Mapping):
            raise SnnirError(f"state must be a dict of tensors (see initial_state), got {type(state).__name__}")
        expected = self.initial_state(batch, device="meta")
        missing = sorted(set(expected) - set(state))
        extra = sorted(set(state) - set(expected))
        if missing or extra:
            raise SnnirError(f"state keys do not fit this module: missing {missing}, unexpected {extra}")
        probe = self._dtype_probe
        for key, ref in expected.items():
            value = state[key]
            node = key[: -len("@prev")] if key.endswith("@prev") else key.rsplit(".", 1)[0]
            if not isinstance(value, torch.Tensor):
                raise SnnirError(f"state '{key}' must be a tensor of shape {list(ref.shape)}, got "
                                 f"{type(value).__name__} (see initial_state)", node)
            if value.shape != ref.shape:
                got = list(value.shape)
                raise SnnirError(
                    f"state '{key}' has shape {got}, expected {list(ref.shape)} for batch {batch} "
                    f"(a state from another batch size?)", node)
            if value.dtype != probe.dtype or value.device != probe.device:
                raise SnnirError(f"state '{key}' is {value.dtype} on {value.device}, where this module runs "
                                 f"{probe.dtype} on {probe.device} (see initial_state)", node)
        return dict(state)


def compile_torch(
    graph: Graph,
    *,
    surrogate: str | Surrogate | None = None,
    slope: float | None = None,
    trainable: str | list[str] = "metadata",
    dtype: torch.dtype = torch.float32,
    device: Any = None,
    fast: bool = True,
    detach_reset: bool = True,
    time_chunk: int | None = None,
    recompute: bool = False,
    native: bool | None = None,
    triton: bool | None = None,
    limits: Limits | None = None,
    layer_chunks: Mapping[str, int] | None = None,
    memory_budget: int | str | None = "auto",
    **unknown: Any,
) -> SnnirModule:
    """Lower ``graph`` to a :class:`SnnirModule`.

    - ``surrogate``: a :class:`Surrogate` or its name (snnTorch's ``atan`` is ``arctan``; ``slope``
      overrides the default slope);
      ``None``: the one the graph's neurons were traced with where their ops record it (snnTorch's
      ``spike_grad``, see :func:`~snnir.targets.torch.surrogate.traced_surrogate`), else ``"fast_sigmoid"``.
    - ``trainable``: ``"metadata"`` (each op's ``trainable``), ``"all"`` (every float
      parameter), or a list of ``"name"`` / ``"node.name"`` entries.
    - ``dtype``: ``torch.float32`` or ``torch.float64``; ``device``: where to put it.
    - ``fast``: use the time-batched neuron scans of ``snnir.targets.torch.scan`` when present.
    - ``detach_reset``: no gradient through the spike in a subtract reset (snnTorch's default).
    - ``time_chunk``: run sequences in runs of at most this many steps (0: all at once),
      every layer over a whole run. ``None`` (the default): runs of 32 steps (64 where the
      top level holds a recurrent component; fewer under ``memory_budget``), and each segment
      of layers (up to and including a neuron) in calls of as many steps as a short
      measurement at the first call of each shape found fastest
      (``module.plan`` shows it; see ``plan.py``). Results are identical either way; training
      memory no longer grows with T for a held input (see docs/performance.md).
    - ``layer_chunks``: ``{top-level node: steps per call}`` pins the segment holding that
      node (1: step by step, snnTorch's order), the others as ``time_chunk`` says.
    - ``memory_budget``: under ``no_grad``, bytes of intermediate values a call may hold at
      once (parameters, state, inputs and outputs aside), bounding the runs of steps (never
      below one step) when ``time_chunk`` is ``None``. ``"auto"`` (default): what keeps the
      call's peak within twice a step-by-step run's (snnTorch's), at least 4 MiB (8 MiB with a
      recurrent component, whose runs cost a fixed time each), and on a GPU at least an
      eighth of the device's free memory (one-step calls cost kernel launches there); ``None``: no bound.
    - ``recompute``: training keeps only each run's inputs and starting state and reruns
      its forward in the backward (activation checkpointing over runs of steps): with
      ``time_chunk`` > 0, memory stops growing with T for any input, for about one more
      forward's time. Identical results and gradients.
    - ``native``: run neurons with the C++ kernels (``True``; built on first use, about
      35 s, then cached; where they cannot be built, one warning and the Python loop),
      never (``False``), or (``None``) as ``SNNIR_NATIVE`` says, which unset means: where
      already built (``make install`` / ``snnir native --build``), never compiling.
    - ``triton``: run neuron scans with the Triton GPU kernels (:mod:`snnir.targets.torch.gpu`):
      ``None`` on CUDA tensors where Triton is installed (unless ``SNNIR_TRITON=0``),
      ``False`` never, ``True`` also on CPU tensors under ``TRITON_INTERPRET=1``.
    - ``limits``: a :class:`snnir.limits.Limits` whose ``state_bytes`` bounds a run's state
      and ``memory_bytes`` its parameters, state and one step's values (default: the
      environment's, see :mod:`snnir.limits`).
    """
    if unknown:
        raise SnnirError(f"unknown torch compile options {sorted(unknown)} (known: {', '.join(_OPTIONS)})")
    if not isinstance(graph, Graph):
        raise SnnirError(f"compile_torch needs a Graph, got {type(graph).__name__}")
    if dtype not in (torch.float32, torch.float64):
        raise SnnirError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    surrogate = chosen_surrogate(graph, surrogate, slope)
    if isinstance(time_chunk, bool) or not isinstance(time_chunk, int) or time_chunk < 0:
        if time_chunk is not None:
            raise SnnirError(f"time_chunk must be None or a non-negative integer, got {time_chunk!r}")
    if not isinstance(recompute, bool):
        raise SnnirError(f"recompute must be True or False, got {recompute!r}")
    if native is not None and not isinstance(native, bool):
        raise SnnirError(f"native must be True, False or None, got {native!r}")
    if triton is not None and not isinstance(triton, bool):
        raise SnnirError(f"triton must be True, False or None, got {triton!r}")
    options = Options(
        graph, trainable, surrogate, dtype, bool(fast), bool(detach_reset), time_chunk, recompute, native,
        triton,
    )
    top_level = [n for n, op in graph.nodes.items() if not isinstance(op, (Input, Output))]
    module = SnnirModule(
        graph, options, resolve_limits(limits) if limits is not None else None,
        check_layer_chunks(layer_chunks, top_level), check_memory_budget(memory_budget),
    )
    return module.to(device) if device is not None else module


__all__ = [
    "compile_torch", "SnnirModule", "LOWERINGS", "register_lowering", "LoweringContext", "OpModule", "Surrogate",
]
