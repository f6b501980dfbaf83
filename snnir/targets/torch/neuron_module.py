"""The torch module of every standard neuron (registered in ``modules.LOWERINGS``).

A neuron is called on a whole sequence ``[T, B, ...]`` with an explicit state. Its
fast paths (the scans, a fused following layer or max pool, a fed-back layer) give
the same spikes as :meth:`NeuronModule.step`, which states the update exactly.

The fast paths' autograd Functions (the BPTT of ``bptt.py``, the C++ and Triton kernels) give
first derivatives only: a backward building a graph of its own through one of them
(``create_graph=True``: double backward, gradient penalties, ``gradgradcheck``) is a
SnnirError naming the node, before any of them runs (``modules.first_order_only``); the step
loop (``fast=False``) is autograd throughout and differentiates again.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib

import torch
from torch import nn

from snnir.ir.ops import CubaLI, CubaLIF, I, IF, LI, LIF
from snnir.ir.ops.neuron import Neuron
from snnir.ir.semantics import DELAYED_RESET_TIMINGS
from snnir.targets.torch.modules import LOWERINGS, AffineModule, LoweringContext, OpModule, State, first_order_only
from snnir.targets.torch.neuron_update import _decay, decay_of, held_decays, held_gain_changes


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
        trained, wide = {}, False
        for tau, decay in self._decays.items():
            value = getattr(self, decay).detach().cpu()
            changed = value != decay_of(op, tau).to(value.dtype)  # unchanged: keep the exact originals
            if bool(changed.any()):
                trained[tau] = (value.double(), changed)
                wide = wide or value.dtype == torch.float64
        changes = held_gain_changes(op, trained, self.path, wide)
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

    def step(self, x, state, fed=None):
        """One step; ``fed``: the fed-back drive (:mod:`snnir.ir.schedule`), through the input's
        gain right after the drive (into the current of a Cuba neuron)."""
        op, sem = self.source_op, self.sem
        new: State = {}

        def driven(base, gain_of):  # base + drive, then + the fed-back drive
            return base if fed is None else base + gain_of(fed)

        if op.has_current:
            a_syn, b_syn = self._decay_and_gain("tau_syn")
            a_mem, b_mem = self._decay_and_gain("tau_mem")
            i_new = driven(a_syn * state["i"] + b_syn * self.w_in * x, lambda f: b_syn * self.w_in * f)
            new["i"] = i_new
            drive = b_mem * self.r * (i_new if sem.current_order == "current_first" else state["i"])
            leaked = self.v_leak + a_mem * (state["v"] - self.v_leak)
            fed = None  # it entered the current
        elif isinstance(op, (I, IF)):
            drive = sem.dt * self.r * x
            leaked = state["v"]
            gain = lambda f: sem.dt * self.r * f  # noqa: E731
        else:
            a, b = self._decay_and_gain("tau")
            drive = b * self.r * x
            leaked = self.v_leak + a * (state["v"] - self.v_leak)
            gain = lambda f: b * self.r * f  # noqa: E731
        if fed is None:
            gain = None
        if not op.spiking:
            new["v"] = driven(leaked + drive, gain)
            return new["v"], new
        if sem.reset_timing in DELAYED_RESET_TIMINGS:
            if sem.resets_after_input:
                u = self._reset(driven(leaked + drive, gain), state["z"])
            else:
                u = driven(self._reset(leaked, state["z"]) + drive, gain)
            z = self._spike(u)
            new.update(v=u, z=z)
        else:
            u = driven(leaked + drive, gain)
            z = self._spike(u)
            new["v"] = self._reset(u, z)
        return z, new

    def forward(self, x, state, record=False, steps=None, then=None, pool=None, fed=None):
        return self.sequence(x, state, record, steps, then, pool, fed)

    def sequence(self, x, state, record=False, steps=None, then=None, pool=None, fed=None):
        """``x`` is ``[T, B, ...]``, or with ``steps=T`` a static ``[B, ...]`` held over T steps.
        ``then``: an :class:`AffineModule` fed only these spikes; the output is then that layer's
        (run fused with the scan where :mod:`~snnir.targets.torch.neuron_linear` applies).
        ``pool``: a max pool module whose output only this neuron takes; ``x`` is then its input
        (pooled in the scan where :mod:`~snnir.targets.torch.pool_neuron` applies).
        ``fed``: the fed-back drive ``[T, B, ...]`` (a recurrent component's step loop; see
        :meth:`step`), run by the Triton or Python scan (or the step loop without the fast path)."""
        if fed is not None:
            return self._sequence_fed(x, state, record, fed)
        scan = _scan_module() if self.fast else None
        if scan is not None:
            x = self._widened(x, state)
            params = self._params()
            coeffs = self._coefficients(scan, params, x)
            if pool is not None and not record and steps is None:
                from snnir.targets.torch.pool_neuron import pooled_sequence

                fused = pooled_sequence(self, pool, x, state, coeffs)
                if fused is not None:  # no gradient wanted (pool_neuron.py)
                    return fused if then is None else (then(fused[0]),) + fused[1:]
        if pool is not None:
            x = pool(x)
        if scan is not None:
            if then is not None and not record:
                fused = self._fused_with(then, scan, params, coeffs, x, state, steps)
                if fused is not None:
                    first_order_only(self.path, *fused)
                    return fused
            out = scan.neuron_sequence(
                self.source_op, params, x, state, self.surrogate, record=record, steps=steps,
                detach_reset=self.detach_reset, coeffs=coeffs, native=self.native,
                triton=self.triton,
            )
            first_order_only(self.path, *out)
        else:
            out = super().sequence(x if steps is None else x.expand((steps,) + tuple(x.shape)), state, record)
        return out if then is None else (then(out[0]),) + tuple(out[1:])

    def _sequence_fed(self, x, state, record, fed):
        """:meth:`sequence` of a per-step ``x`` with the fed-back drive ``fed``."""
        scan = _scan_module() if self.fast else None
        if scan is None:
            return super().sequence(x, state, record, fed=fed)
        x, fed = self._widened(x, state), self._widened(fed, state)
        params = self._params()
        out = scan.neuron_sequence(
            self.source_op, params, x, state, self.surrogate, record=record, detach_reset=self.detach_reset,
            coeffs=self._coefficients(scan, params, x), native=False, triton=self.triton, fed=fed,
        )
        first_order_only(self.path, *out)
        return out

    def sequence_with_states(self, x, state, steps=None, fed=None):
        """``(out, final state, {state: [T, B, ...]})`` by the step loop, the states kept in
        autograd (a :class:`~snnir.ir.ops.probe.StateProbe` reads them as values)."""
        return super().sequence(x if steps is None else x.expand((steps,) + tuple(x.shape)), state, True, fed=fed)

    def _fused_with(self, layer: AffineModule, scan, params, coeffs, x, state, steps):
        """``(layer output, final state, None)`` from one fused neuron-then-layer op (the Triton
        one on :func:`gpu.enabled <snnir.targets.torch.gpu.enabled>` tensors), or None where
        it does not apply (the caller then runs the two in turn)."""
        from snnir.targets.torch import gpu, neuron_linear
        from snnir.targets.torch.neuron_update import _config

        if torch.is_autocast_enabled(x.device.type):
            return None  # the layer runs as F.linear under autocast, in autocast's dtype
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

    def _widened(self, x: torch.Tensor, state: State) -> torch.Tensor:
        """``x`` in the dtype the step loop computes this neuron in, off the Triton kernels (which
        widen as they read): torch's promotion of the input and state dtypes. Under autocast a
        float32 state keeps a bf16 layer output's membrane in float32, as snnTorch's does."""
        from snnir.targets.torch import gpu

        dtypes = {v.dtype for v in state.values() if isinstance(v, torch.Tensor) and v.is_floating_point()}
        if dtypes <= {x.dtype} or not x.is_floating_point() or gpu.enabled(self.triton, x):
            return x
        dtype = x.dtype
        for other in dtypes:
            dtype = torch.promote_types(dtype, other)
        return x.to(dtype)

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
        if scan is None or torch.is_autocast_enabled(x.device.type):
            return None  # under autocast the step loop runs the layer as F.linear, in autocast's dtype
        if gpu.enabled(self.triton, x):
            from snnir.targets.torch.gpu import recurrent as kernels

            if not kernels.supports(self, layer, cfg, x):
                return None
        elif recurrent.supports(self, layer, cfg, x, record=False):
            kernels = recurrent
        else:
            return None
        like = self._state_like(x)
        c = self.coefficients(scan, like)
        init = {name: state[name].to(like.dtype) for name in self.source_op.state_names}
        carried = carry.get((self, layer))
        r0 = carried[1] if carried is not None and carried[0] is prev else layer(prev[None])[0]
        result = kernels.feedback_sequence(cfg, c, x, init, r0, layer.weight, getattr(layer, "bias", None))
        first_order_only(self.path, *result)
        if kernels is not recurrent:
            return result
        out, final, last, r = result
        carry[(self, layer)] = (last, r)
        return out, final, last

    def coefficients(self, scan, like: torch.Tensor) -> dict:
        """The scan's coefficients in ``like``'s dtype and device: the memo of :meth:`_coefficients`
        where no parameter trains, else computed (autograd-tracked)."""
        params = self._params()
        memo = self._coefficients(scan, params, like)
        return memo if memo is not None else scan.coefficients(self.source_op, params, like)

    def _coefficients(self, scan, params: dict[str, torch.Tensor], like: torch.Tensor):
        """The scan's coefficients, computed once while no parameter trains or changes
        (keyed by each tensor's identity and version, and by inference mode: tensors made
        under ``torch.inference_mode`` cannot be saved for a later backward); None when one trains."""
        if any(p.requires_grad for p in params.values()):
            return None
        key = (like.dtype, like.device, torch.is_inference_mode_enabled()) + tuple(
            (p.data_ptr(), p._version) for p in params.values())
        memo = self.__dict__.get("_coefficient_memo")
        if memo is None or memo[0] != key:
            memo = (key, scan.coefficients(self.source_op, params, like))
            self.__dict__["_coefficient_memo"] = memo
        return memo[1]


@functools.cache
def _scan_module():
    """The fast-path neuron scans, when that module is present."""
    try:
        return importlib.import_module("snnir.targets.torch.scan")
    except ModuleNotFoundError as exc:
        if exc.name != "snnir.targets.torch.scan":
            raise
        return None


LOWERINGS.update({op: NeuronModule for op in (I, IF, LI, LIF, CubaLI, CubaLIF)})
