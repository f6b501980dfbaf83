"""Torch modules for single ops, and the lowering table that builds them.

Every module keeps its op's parameters as tensors named like the op's fields:
``nn.Parameter`` when trained, buffers otherwise, so ``state_dict`` holds them
all. Stateless modules map ``[*lead, *shape]`` for any leading dims (time and
batch at once: one GEMM or convolution for a whole sequence); stateful ones
are called on a whole sequence ``[T, B, *shape]`` with an explicit state.

Gradients: spikes use the surrogate's derivative. A zero reset carries no
gradient through the spike; a subtract reset ``u - z thr`` carries none through
``z`` when ``detach_reset`` (snnTorch's default) and the surrogate's otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from snnir.errors import SnnirError
from snnir.ir.ops import Affine, Delay, Flatten, Linear, Op, Scale, Threshold
from snnir.ir.ops.norm import BatchNorm
from snnir.ir.ops.probe import StateProbe
from snnir.targets.torch import native as native_kernels
from snnir.targets.torch.autograd_calls import recorded
from snnir.targets.torch.spike_linear import spike_linear
from snnir.targets.torch.surrogate import Surrogate

State = dict[str, torch.Tensor]


class Shared:
    """Holds an immutable IR value (op, graph) that module copies share: ``copy.deepcopy``
    of a module keeps the same value (graphs hold read-only mappings, which cannot be copied)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __deepcopy__(self, memo: dict) -> "Shared":
        return self


@dataclass(frozen=True)
class LoweringContext:
    """What a lowering needs besides the op: ``trainable`` names the op's
    parameters to train; ``in_shape``/``out_shape`` are per sample."""

    path: str
    trainable: frozenset[str]
    surrogate: Surrogate
    dtype: torch.dtype
    in_shape: tuple[int, ...] | None
    out_shape: tuple[int, ...]
    fast: bool = True
    detach_reset: bool = True
    #: every input value is exactly 0 or 1 (spikes of one single-spike neuron)
    binary_input: bool = False
    #: use the native C++ kernels (None: where built, as ``native.enabled`` decides)
    native: bool | None = None
    #: use the Triton GPU kernels (None: on CUDA tensors, as ``gpu.enabled`` decides)
    triton: bool | None = None


class OpModule(nn.Module):
    """One op as a module. Stateless: ``forward(x)`` on ``[*lead, *shape]``.
    Stateful: ``forward(x, state, record)`` runs a whole sequence (``sequence``,
    by default a loop over ``step``), with an explicit state dict. ``to_op``
    gives the op back with the current parameter values."""

    stateful = False
    #: a stateful module whose ``forward`` takes ``steps=T`` with a static ``[B, ...]`` input
    #: held over T steps (others get the input expanded to ``[T, B, ...]``)
    takes_held_input = False

    def __init__(self, op: Op, ctx: LoweringContext):
        super().__init__()
        self._source = Shared(op)
        self.path = ctx.path
        self.in_rank = len(ctx.in_shape) if ctx.in_shape is not None else 0
        self.surrogate = ctx.surrogate
        self._param_dtypes: dict[str, np.dtype] = {}
        for name, value in op.params().items():
            tensor = torch.tensor(np.array(value, dtype=np.float64), dtype=ctx.dtype)
            self._param_dtypes[name] = value.dtype
            if name in ctx.trainable:
                self.register_parameter(name, nn.Parameter(tensor))
            else:
                self.register_buffer(name, tensor)

    @property
    def source_op(self) -> Op:
        """The op this module was lowered from (original parameter values)."""
        return self._source.value

    def to_op(self) -> Op:
        """The source op with this module's current parameter values, in their original dtypes
        where those hold them exactly (a module trained in float64 keeps float64 values); values
        this module's dtype holds unchanged keep their exact originals."""
        changes = {}
        for name, dtype in self._param_dtypes.items():
            current = getattr(self, name).detach().cpu().numpy()
            original = getattr(self.source_op, name)
            if not np.array_equal(current, original.astype(current.dtype)):
                changes[name] = lossless(current, dtype)
        return self.source_op.replace(**changes) if changes else self.source_op

    def extra_repr(self) -> str:
        return self.source_op.summary()

    def forward(self, x: torch.Tensor, state: State, record: bool = False):
        """Stateful ops: ``sequence``; stateless ones override this."""
        return self.sequence(x, state, record)

    def initial_state(self, batch: int, shape: tuple[int, ...], dtype: torch.dtype, device: Any) -> State:
        return {}

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def sequence(self, x: torch.Tensor, state: State, record: bool = False, fed: torch.Tensor | None = None):
        """``x`` is ``[T, B, ...]``; returns ``(y [T, B, ...], final state, traces or None)``.
        ``fed`` (a neuron's fed-back drive, ``[T, B, ...]``) goes to each ``step`` as ``fed``."""
        outs, traces = [], {name: [] for name in state} if record else None
        for t in range(x.shape[0]):
            y, state = self.step(x[t], state) if fed is None else self.step(x[t], state, fed=fed[t])
            outs.append(y)
            if traces is not None:
                for name, value in state.items():
                    traces[name].append(value)
        stacked = {k: torch.stack(v) for k, v in traces.items()} if traces is not None else None
        return torch.stack(outs), state, stacked


def first_order_only(node: str, *results) -> None:
    """Hook each tensor autograd tracks in ``results`` (tensors, dicts of them, None), the
    outputs of a fast path whose autograd Function gives first derivatives only, so that a
    backward building a graph of its own (``create_graph=True``) stops there with a SnnirError
    naming ``node`` before that Function's backward runs; a plain backward passes unchanged."""
    if not torch.is_grad_enabled():
        return

    def refuse(grad: torch.Tensor) -> None:
        if torch.is_grad_enabled():  # the backward records a graph: a second derivative is wanted
            raise SnnirError("this node's fast path differentiates once: a second derivative through it "
                             "(create_graph=True: double backward, a gradient penalty) needs compile(..., "
                             "fast=False), which autograd differentiates again", node)

    for item in results:
        for tensor in item.values() if isinstance(item, dict) else (item,):
            if isinstance(tensor, torch.Tensor) and tensor.requires_grad:
                tensor.register_hook(refuse)


# --- stateless ---------------------------------------------------------------------------
#: (input shape, weight shape, bias?, dtype, device, threads, autocast) -> :func:`rows_alike`'s answer
_ROWS_ALIKE: dict[tuple, bool] = {}
#: a call whose probe would allocate more than this many bytes runs step by step, unprobed
PROBE_BYTES = 64 * 2**20


def rows_alike(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether ``F.linear`` over all steps of ``x`` (``[T, rows..., K]``) gives every step the
    bits of its own product: the shape a step-by-step network (snnTorch's) multiplies. A BLAS
    chooses its kernels by shape (MKL on a 2-vCPU AVX-512 VM with two threads rounded
    ``[128, 1000] x [1000, 10]`` over 8 steps unlike per step; cuBLAS on an H200 likewise), so
    this is probed once per shape, dtype, device, thread count and autocast state, on random values
    from a generator of its own; a call too large to probe cheaply (:data:`PROBE_BYTES`) is taken
    as unlike."""
    key = (tuple(x.shape), tuple(weight.shape), bias is not None, x.dtype, x.device, torch.get_num_threads(),
           torch.is_autocast_enabled(x.device.type))
    found = _ROWS_ALIKE.get(key)
    if found is None and (x.numel() + x.shape[:-1].numel() * weight.shape[0]) * x.element_size() > PROBE_BYTES:
        found = _ROWS_ALIKE[key] = False
    if found is None:
        gen = torch.Generator(device=x.device).manual_seed(0)
        like = dict(dtype=x.dtype, device=x.device, generator=gen)
        with torch.no_grad():
            probe, w = torch.randn(x.shape, **like), torch.randn(weight.shape, **like)
            b = None if bias is None else torch.randn(bias.shape, **like)
            whole = F.linear(probe, w, b)
            found = all(torch.equal(whole[t], F.linear(probe[t], w, b)) for t in range(x.shape[0]))
        _ROWS_ALIKE[key] = found
    return found


def _steps_into(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
    """``F.linear`` of each step of ``[T, B, K]`` ``x`` written into one ``[T, B, O]`` tensor (the
    GEMM ``F.linear`` makes of a 2-D input: ``addmm`` with a bias, else ``mm``, so the same bits),
    without the copy ``torch.stack`` makes; None where autograd records or autocast casts (their
    results must be made by the ops themselves)."""
    if x.dim() != 3 or x.dtype != weight.dtype or (bias is not None and bias.dtype != x.dtype):
        return None
    if torch.is_autocast_enabled(x.device.type) or recorded(x, weight, bias):
        return None
    y = x.new_empty((x.shape[0], x.shape[1], weight.shape[0]))
    w_t = weight.t()
    for step, out in zip(x, y):
        if bias is None:
            torch.mm(step, w_t, out=out)
        else:
            torch.addmm(bias, step, w_t, out=out)
    return y


#: a layer fed 0/1 values runs each step's product as a sum at them where fewer than this
#: fraction fired (else the GEMM): ``AffineModule._spike_product``
SPIKE_PRODUCT_BELOW = 0.2
#: ... and where it has at least this many outputs (one tile of the sum's registers: a narrower
#: layer reads whole tiles for few outputs, and its GEMM is cheap; the bench's recurrent net's
#: output layer, 10 outputs at 11 % fired: inference 5.2 -> 6.6 ms with the sum)
SPIKE_PRODUCT_MIN_OUTPUTS = 128


class AffineModule(OpModule):
    """y = x W^T + b, rounded as ``torch.nn.Linear`` rounds it (bias inside the GEMM), each
    step's rows as a step-by-step network's product rounds them: over all steps at once where
    the BLAS gives those bits (:func:`rows_alike`), else step by step.
    Fed spikes (``binary_input``), it keeps its input as bools for the backward."""

    def __init__(self, op: Op, ctx: LoweringContext):
        super().__init__(op, ctx)
        self._linear = spike_linear if ctx.binary_input and ctx.fast else F.linear
        self._native = ctx.native
        #: (weight's pointer and version, its padded W^T or None: made at the second call with that weight)
        self._spike_rows: tuple[tuple, torch.Tensor | None] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = getattr(self, "bias", None)
        per_step = x.dim() == self.in_rank + 2  # [T, B, ...], not a held [B, ...]
        y = self._spike_product(x, bias) if per_step else None
        if y is not None:
            return y
        if per_step and x.shape[0] > 1 and not rows_alike(x, self.weight, bias):
            y = _steps_into(x, self.weight, bias) if self._linear is F.linear else None
            if y is None:
                y = torch.stack([self._linear(step, self.weight, bias) for step in x])
        else:
            y = self._linear(x, self.weight, bias)
        if self._linear is spike_linear and self.weight.requires_grad:
            first_order_only(self.path, y)  # its weight gradient, from the bools, is not one in the spikes
        return y

    def _spike_product(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
        """Each step's ``F.linear`` bits for ``[T, B, K]`` steps of 0/1 values (rate-coded spikes fed
        to the network) as a sum at them, in the order the BLAS sums the step's product (probed
        per shape; ``csrc/neuron_linear.cpp`` ``spike_product``), or None where that does not
        apply (:meth:`spike_rows`) or no order was found (the GEMM runs)."""
        rows = self.spike_rows(x)
        if rows is None:
            return None
        extension = native_kernels.extension("neuron_linear")
        y = extension.spike_product(x.reshape(-1, x.shape[-1]), self.weight.detach(), rows,
                                    self.weight.new_empty(0) if bias is None else bias.detach(), x.shape[1])
        return y.view(x.shape[0], x.shape[1], -1) if y.numel() else None

    def spike_rows(self, x: torch.Tensor) -> torch.Tensor | None:
        """The padded copy of W^T that ``spike_product`` reads to multiply ``[T, B, K]`` steps ``x``
        as a sum at their spikes, or None where that does not apply: float32 on a CPU with the
        native kernels, a wide layer (:data:`SPIKE_PRODUCT_MIN_OUTPUTS`), nothing recorded for
        autograd, no autocast; a value other than 0 or 1 or many fired in the first rows
        (:data:`SPIKE_PRODUCT_BELOW`), a weight not finite. The copy is made at the second call with
        the same weight (pointer and version): a weight that changes between calls (an evaluation
        after each training step) runs the GEMM and makes no copy."""
        weight, bias = self.weight, getattr(self, "bias", None)
        if not (x.dim() == 3 and x.dtype == weight.dtype == torch.float32 and x.device.type == "cpu"
                and weight.shape[0] >= SPIKE_PRODUCT_MIN_OUTPUTS
                and (bias is None or bias.dtype == torch.float32) and not torch.is_autocast_enabled("cpu")
                and not recorded(x, weight, bias) and native_kernels.enabled(self._native, "neuron_linear")):
            return None
        extension = native_kernels.extension("neuron_linear")
        if extension is None or not extension.sparse_sample(x.reshape(-1, x.shape[-1]), SPIKE_PRODUCT_BELOW):
            return None  # (an analog or dense input: no copy of W^T is made for it)
        key = (weight.data_ptr(), weight._version, tuple(weight.shape))
        if self._spike_rows is None or self._spike_rows[0] != key:
            self._spike_rows = (key, None)  # a weight seen once (it may change before its next call): the GEMM
            return None
        rows = self._spike_rows[1]
        if rows is None:
            rows = extension.spike_rows(weight.detach())
            self._spike_rows = (key, rows)
        return rows if rows.numel() else None


class LinearModule(AffineModule):
    """y = x W^T"""


class ScaleModule(OpModule):
    """y = s * x"""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class BatchNormModule(OpModule):
    """y = (x - mean) / sqrt(var + eps) * weight + bias per channel, by torch's eval kernel
    (``F.batch_norm``): the bits of the model's own eval-mode BatchNorm. Its input is made
    contiguous: on a CPU torch computes another formula for a strided one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        samples = x.reshape((-1,) + tuple(x.shape[x.dim() - self.in_rank:])).contiguous()
        y = F.batch_norm(samples, self.mean, self.var, self.weight, self.bias, training=False, eps=self.source_op.eps)
        return y.reshape(x.shape)


class FlattenModule(OpModule):
    """Joins per-sample dims start..end (leading dims are kept)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        start, end = self.source_op.dims(self.in_rank, self.path)
        lead = x.dim() - self.in_rank
        return torch.flatten(x, start + lead, end + lead)


class ThresholdModule(OpModule):
    """y = H(x - threshold), surrogate gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.surrogate.spike(x - self.threshold)


class StateProbeModule(OpModule):
    """y = x: the graph module feeds a probe its neuron's state, not the neuron's output
    (:class:`~snnir.ir.ops.probe.StateProbe`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def lossless(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``values`` in ``dtype`` where that holds every one exactly, else as they are."""
    cast = values.astype(dtype)
    return cast if np.array_equal(cast.astype(values.dtype), values, equal_nan=True) else values


# --- stateful ----------------------------------------------------------------------------
class DelayModule(OpModule):
    """y[t] = x[t - n]; state ``buffer`` [depth, B, ...] holds the last inputs, newest last."""

    stateful = True

    def __init__(self, op: Delay, ctx: LoweringContext):
        super().__init__(op, dataclasses.replace(ctx, trainable=frozenset()))
        steps = np.broadcast_to(op.steps(ctx.path), ctx.out_shape)
        self.depth = int(steps.max()) if steps.size else 0
        self.register_buffer("_lag", torch.as_tensor(self.depth - steps, dtype=torch.long), persistent=False)

    def initial_state(self, batch, shape, dtype, device):
        return {"buffer": torch.zeros((self.depth, batch) + tuple(shape), dtype=dtype, device=device)}

    def step(self, x, state):
        history = torch.cat([state["buffer"], x[None]], dim=0)
        index = self._lag.expand(x.shape)[None]
        y = torch.gather(history, 0, index)[0]
        return y.detach() if self.source_op.sem.detached else y, {"buffer": history[1:]}


# --- the lowering table ----------------------------------------------------------------
Lowering = Callable[[Op, LoweringContext], OpModule]

#: op class -> lowering; ``Input``, ``Output`` and ``Subgraph`` are handled by the graph module,
#: and extension ops without a lowering run by their reference expansion.
LOWERINGS: dict[type[Op], Lowering] = {
    Affine: AffineModule, Linear: LinearModule, Scale: ScaleModule, Flatten: FlattenModule,
    Threshold: ThresholdModule, Delay: DelayModule, StateProbe: StateProbeModule, BatchNorm: BatchNormModule,
}  # and the neurons of ``neuron_module.py``, the convolutions and pools of ``spatial.py``


def register_lowering(op_class: type[Op], lowering: Lowering | None = None):
    """Register how ``op_class`` becomes a module (usable as a decorator).

    A lowering is ``fn(op, ctx: LoweringContext) -> OpModule``; stateless modules
    implement ``forward(x)``, stateful ones ``initial_state``/``step`` (and may
    override ``sequence``).
    """
    if lowering is None:
        return lambda fn: register_lowering(op_class, fn)
    LOWERINGS[op_class] = lowering
    return lowering
