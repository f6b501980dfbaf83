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
import importlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from snnir.ir.ops import (
    IF, LI, LIF, Affine, CubaLI, CubaLIF, Delay, Flatten, I, Linear, Op, Scale, Threshold,
)
from snnir.ir.ops.probe import StateProbe
from snnir.ir.ops.neuron import Neuron
from snnir.ir.semantics import DELAYED_RESET_TIMINGS
from snnir.targets.torch.neuron_update import _decay, decay_of, held_decays, held_gain_changes
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
        """The source op with this module's current parameter values (in their original
        dtypes); values this module's dtype holds unchanged keep their exact originals."""
        changes = {}
        for name, dtype in self._param_dtypes.items():
            current = getattr(self, name).detach().cpu().numpy()
            original = getattr(self.source_op, name)
            if not np.array_equal(current, original.astype(current.dtype)):
                changes[name] = current.astype(dtype)
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

    def sequence(self, x: torch.Tensor, state: State, record: bool = False):
        """``x`` is ``[T, B, ...]``; returns ``(y [T, B, ...], final state, traces or None)``."""
        outs, traces = [], {name: [] for name in state} if record else None
        for t in range(x.shape[0]):
            y, state = self.step(x[t], state)
            outs.append(y)
            if traces is not None:
                for name, value in state.items():
                    traces[name].append(value)
        stacked = {k: torch.stack(v) for k, v in traces.items()} if traces is not None else None
        return torch.stack(outs), state, stacked


# --- stateless ---------------------------------------------------------------------------
class AffineModule(OpModule):
    """y = x W^T + b, rounded as ``torch.nn.Linear`` rounds it (bias inside the GEMM).
    Fed spikes (``binary_input``), it keeps its input as bools for the backward."""

    def __init__(self, op: Op, ctx: LoweringContext):
        super().__init__(op, ctx)
        self._linear = spike_linear if ctx.binary_input and ctx.fast else F.linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._linear(x, self.weight, getattr(self, "bias", None))


class LinearModule(AffineModule):
    """y = x W^T"""


class ScaleModule(OpModule):
    """y = s * x"""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


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


class NeuronModule(OpModule):
    """Any standard neuron, stepped exactly as :mod:`snnir.ir.ops.neuron` states."""

    stateful = True
    takes_held_input = True

    def __init__(self, op: Neuron, ctx: LoweringContext):
        #: {time constant: decay parameter}: these train as the decay (``a_mem``/``a_syn``, the
        #: op's ``sem.gain_held``), the time constant stays a buffer and ``to_op`` writes both back
        self._decays = held_decays(op, ctx.trainable)
        super().__init__(op, dataclasses.replace(ctx, trainable=ctx.trainable - set(self._decays)))
        for tau, decay in self._decays.items():
            self.register_parameter(decay, nn.Parameter(decay_of(op, tau).to(ctx.dtype)))
        self.fast, self.native, self.triton = ctx.fast, ctx.native, ctx.triton
        self.detach_reset = ctx.detach_reset

    def _params(self) -> dict[str, torch.Tensor]:
        """The op's parameters by name, and the decays that train in place of time constants."""
        names = list(self._param_dtypes) + list(self._decays.values())
        return {name: getattr(self, name) for name in names}

    def _decay_and_gain(self, tau: str) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = _decay(getattr(self, tau), self.sem.discretisation, self.sem.dt)
        return (getattr(self, self._decays[tau]).clamp(0.0, 1.0), b) if tau in self._decays else (a, b)

    def to_op(self) -> Neuron:
        """As :meth:`OpModule.to_op`; a trained decay is written back as its time constant and
        the gain parameter it scales (``r``, ``w_in``) so that the input gain is the one held."""
        op = super().to_op()
        trained = {}
        for tau, decay in self._decays.items():
            value = getattr(self, decay).detach().cpu()
            changed = value != decay_of(op, tau).to(value.dtype)  # unchanged: keep the exact originals
            if bool(changed.any()):
                trained[tau] = (value.double(), changed)
        changes = held_gain_changes(op, trained, self.path)
        return op.replace(**changes) if changes else op

    @property
    def sem(self):
        return self.source_op.sem

    def initial_state(self, batch, shape, dtype, device):
        return {
            name: torch.zeros((batch,) + tuple(shape), dtype=dtype, device=device)
            for name in self.source_op.state_names
        }

    def _spike(self, u: torch.Tensor) -> torch.Tensor:
        x = u - self.v_threshold
        if self.sem.spike_mode == "multi":
            # forward: the exact count (soft == hard); backward: a single spike's surrogate
            soft = self.surrogate.spike(x, inclusive=True)
            hard = (x.detach() >= 0).to(x.dtype)
            count = torch.clamp(torch.floor(u.detach() / self.v_threshold.detach()), min=0)
            return count + (soft - hard)
        return self.surrogate.spike(x, inclusive=self.sem.threshold_compare == "ge")

    def _reset(self, u: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.sem.reset == "zero":
            return torch.where(z.detach().round() > 0, self.v_reset, u)
        if self.sem.reset == "subtract":
            return u - (z.detach().round() if self.detach_reset else z) * self.v_threshold
        return u

    def step(self, x, state):
        op, sem = self.source_op, self.sem
        new: State = {}
        if op.has_current:
            a_syn, b_syn = self._decay_and_gain("tau_syn")
            a_mem, b_mem = self._decay_and_gain("tau_mem")
            i_new = a_syn * state["i"] + b_syn * self.w_in * x
            new["i"] = i_new
            drive = b_mem * self.r * (i_new if sem.current_order == "current_first" else state["i"])
            leaked = self.v_leak + a_mem * (state["v"] - self.v_leak)
        elif isinstance(op, (I, IF)):
            drive = sem.dt * self.r * x
            leaked = state["v"]
        else:
            a, b = self._decay_and_gain("tau")
            drive = b * self.r * x
            leaked = self.v_leak + a * (state["v"] - self.v_leak)
        if not op.spiking:
            new["v"] = leaked + drive
            return new["v"], new
        if sem.reset_timing in DELAYED_RESET_TIMINGS:
            if sem.resets_after_input:
                u = self._reset(leaked + drive, state["z"])
            else:
                u = self._reset(leaked, state["z"]) + drive
            z = self._spike(u)
            new.update(v=u, z=z)
        else:
            u = leaked + drive
            z = self._spike(u)
            new["v"] = self._reset(u, z)
        return z, new

    def forward(self, x, state, record=False, steps=None, then=None, pool=None):
        return self.sequence(x, state, record, steps, then, pool)

    def sequence(self, x, state, record=False, steps=None, then=None, pool=None):
        """``x`` is ``[T, B, ...]``, or with ``steps=T`` a static ``[B, ...]`` held over T steps.
        ``then``: an :class:`AffineModule` fed only these spikes; the output is then that layer's
        (run fused with the scan where :mod:`~snnir.targets.torch.neuron_linear` applies).
        ``pool``: a max pool module whose output only this neuron takes; ``x`` is then its input
        (pooled in the scan where :mod:`~snnir.targets.torch.pool_neuron` applies)."""
        scan = _scan_module() if self.fast else None
        if scan is not None:
            params = self._params()
            coeffs = self._coefficients(scan, params, x)
            if pool is not None and not record and steps is None:
                from snnir.targets.torch.pool_neuron import pooled_sequence

                fused = pooled_sequence(self, pool, x, state, coeffs)
                if fused is not None:
                    return fused if then is None else (then(fused[0]),) + fused[1:]
        if pool is not None:
            x = pool(x)
        if scan is not None:
            if then is not None and not record:
                fused = self._fused_with(then, scan, params, coeffs, x, state, steps)
                if fused is not None:
                    return fused
            out = scan.neuron_sequence(
                self.source_op, params, x, state, self.surrogate, record=record, steps=steps,
                detach_reset=self.detach_reset, coeffs=coeffs, native=self.native,
                triton=self.triton,
            )
        else:
            out = super().sequence(x if steps is None else x.expand((steps,) + tuple(x.shape)), state, record)
        return out if then is None else (then(out[0]),) + tuple(out[1:])

    def sequence_with_states(self, x, state, steps=None):
        """``(out, final state, {state: [T, B, ...]})`` by the step loop, the states kept in
        autograd (a :class:`~snnir.ir.ops.probe.StateProbe` reads them as values)."""
        return super().sequence(x if steps is None else x.expand((steps,) + tuple(x.shape)), state, True)

    def _fused_with(self, layer: AffineModule, scan, params, coeffs, x, state, steps):
        """``(layer output, final state, None)`` from one fused neuron-then-layer op (the Triton
        one on :func:`gpu.enabled <snnir.targets.torch.gpu.enabled>` tensors), or None where
        it does not apply (the caller then runs the two in turn)."""
        from snnir.targets.torch import gpu, neuron_linear
        from snnir.targets.torch.neuron_update import _config

        like = self._state_like(x)
        c = coeffs if coeffs is not None and like.dtype == x.dtype else scan.coefficients(self.source_op, params, like)
        cfg = _config(self.source_op, self.surrogate, self.detach_reset)
        init = {name: state[name].to(like.dtype) for name in self.source_op.state_names}
        if not neuron_linear.applies(cfg, c, init["v"], layer.weight):
            return None
        args = (cfg, c, x, steps or x.shape[0], steps is not None, init, layer.weight, getattr(layer, "bias", None))
        if gpu.enabled(self.triton, x):
            from snnir.targets.torch.gpu import neuron_linear as triton_linear

            if not triton_linear.supports(cfg, x, layer.weight, args[-1]):
                return None
            y, final = triton_linear.neuron_linear_sequence(*args)
        else:
            y, final = neuron_linear.neuron_linear_sequence(*args, self.native)
        return y, final, None

    def _state_like(self, x: torch.Tensor) -> torch.Tensor:
        """An empty tensor of the dtype the scans keep this neuron's state in for input ``x``:
        ``x``'s, or float32 for bf16/fp16 inputs to the Triton kernels."""
        from snnir.targets.torch import gpu

        return x.new_empty(0, dtype=gpu.state_dtype(x)) if gpu.enabled(self.triton, x) else x

    def with_feedback(self, x: torch.Tensor, state: State, layer: AffineModule, prev: torch.Tensor, carry: dict):
        """``(spikes, final state, last spikes)`` of this neuron over ``x`` (its other inputs, summed,
        ``[T, B, N]``) in a loop with ``layer`` fed back, as one native call (:mod:`~snnir.targets.torch.recurrent`;
        ``r_{-1} = layer(prev)``, or the last ``r`` of the call that made ``prev`` in an earlier run, kept in
        ``carry``), or on :func:`gpu.enabled <snnir.targets.torch.gpu.enabled>` tensors Triton kernels and
        GEMMs (:mod:`~snnir.targets.torch.gpu.recurrent`); None where neither runs."""
        from snnir.targets.torch import gpu, recurrent
        from snnir.targets.torch.neuron_update import _config

        scan = _scan_module()
        cfg = _config(self.source_op, self.surrogate, self.detach_reset)
        if scan is None:
            return None
        if gpu.enabled(self.triton, x):
            from snnir.targets.torch.gpu import recurrent as kernels

            if not kernels.supports(self, layer, cfg, x):
                return None
        elif recurrent.supports(self, layer, cfg, x, record=False):
            kernels = recurrent
        else:
            return None
        params = self._params()
        like = self._state_like(x)
        coeffs = self._coefficients(scan, params, like)
        c = coeffs if coeffs is not None else scan.coefficients(self.source_op, params, like)
        init = {name: state[name].to(like.dtype) for name in self.source_op.state_names}
        carried = carry.get((self, layer))
        r0 = carried[1] if carried is not None and carried[0] is prev else layer(prev[None])[0]
        result = kernels.feedback_sequence(cfg, c, x, init, r0, layer.weight, getattr(layer, "bias", None))
        if kernels is not recurrent:
            return result
        out, final, last, r = result
        carry[(self, layer)] = (last, r)
        return out, final, last

    def _coefficients(self, scan, params: dict[str, torch.Tensor], like: torch.Tensor):
        """The scan's coefficients, computed once while no parameter trains or changes
        (keyed by each tensor's identity and version); None when one trains."""
        if any(p.requires_grad for p in params.values()):
            return None
        key = (like.dtype, like.device) + tuple((p.data_ptr(), p._version) for p in params.values())
        memo = self.__dict__.get("_coefficient_memo")
        if memo is None or memo[0] != key:
            memo = (key, scan.coefficients(self.source_op, params, like))
            self.__dict__["_coefficient_memo"] = memo
        return memo[1]


def _scan_module():
    """The fast-path neuron scans, when that module is present."""
    try:
        return importlib.import_module("snnir.targets.torch.scan")
    except ModuleNotFoundError as exc:
        if exc.name != "snnir.targets.torch.scan":
            raise
        return None


# --- the lowering table ----------------------------------------------------------------
Lowering = Callable[[Op, LoweringContext], OpModule]

#: op class -> lowering; ``Input``, ``Output`` and ``Subgraph`` are handled by the graph module,
#: and extension ops without a lowering run by their reference expansion.
LOWERINGS: dict[type[Op], Lowering] = {
    Affine: AffineModule, Linear: LinearModule, Scale: ScaleModule, Flatten: FlattenModule,
    Threshold: ThresholdModule, Delay: DelayModule, I: NeuronModule, IF: NeuronModule, LI: NeuronModule,
    LIF: NeuronModule, CubaLI: NeuronModule, CubaLIF: NeuronModule, StateProbe: StateProbeModule,
}  # and the convolutions and pools of ``spatial.py``


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
