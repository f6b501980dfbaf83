r"""The fast path: a whole sequence of neuron steps as one autograd op.

:func:`neuron_sequence` runs a snnir neuron (I, IF, LI, LIF, CubaLI, CubaLIF,
every :class:`~snnir.ir.semantics.Semantics` option) over ``T`` steps in a
loop under ``no_grad`` and differentiates it with a hand-written BPTT
recursion, instead of letting autograd record every elementwise op of every
step. The update is exactly the one in :mod:`snnir.ir.ops.neuron` (same
operation order as the reference kernels, so float64 spikes are identical).

Gradient conventions (what an unrolled autograd implementation built from
:meth:`Surrogate.spike` would give):

- single spikes: ``dz/du = surrogate.grad(u - thr)``, ``dz/dthr = -dz/du``;
- multi spikes (``floor(u / thr)``): the same derivative as a single spike;
- zero reset ``where(z > 0, v_reset, u)``: no gradient through ``z``;
- subtract reset ``u - z thr``: gradient through ``z`` unless
  ``detach_reset=True`` (snnTorch's behaviour).

Memory: for training it keeps the pre-reset membranes ``u`` (one tensor of
``x``'s dtype per step), the synaptic currents for Cuba neurons, and the
input only when a parameter multiplying it needs a gradient; spikes,
resets and surrogate derivatives are recomputed from ``u`` in backward
(saved tensors are never modified, so ``retain_graph`` works). Under
``no_grad`` nothing is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from snnir.errors import SnnirError
from snnir.ir.ops.neuron import IF, LI, LIF, I, Neuron
from snnir.ir.semantics import DELAYED_RESET_TIMINGS
from snnir.targets.torch.surrogate import Surrogate

Tensor = torch.Tensor
_COEFFS = ("a_mem", "v_leak", "gain", "thr", "v_reset", "a_syn", "gain_syn")


@dataclass(frozen=True)
class _Config:
    """What the step does, fixed by the op's class and semantics."""

    spiking: bool
    has_current: bool
    next_timing: bool  # a delayed reset: state z holds the last spikes
    reset: str
    inclusive: bool
    multi: bool
    current_first: bool
    detach_reset: bool
    surrogate: Surrogate
    after_input: bool  # the delayed reset comes after the input ("next_after_input")


def _config(op: Neuron, surrogate: Surrogate, detach_reset: bool) -> _Config:
    sem = op.sem
    return _Config(
        spiking=op.spiking,
        has_current=op.has_current,
        next_timing=op.spiking and sem.reset_timing in DELAYED_RESET_TIMINGS,
        reset=sem.reset if op.spiking else "none",
        inclusive=sem.threshold_compare == "ge",
        multi=sem.spike_mode == "multi",
        current_first=sem.current_order == "current_first",
        detach_reset=detach_reset,
        surrogate=surrogate,
        after_input=op.spiking and sem.reset_timing == "next_after_input",
    )


def _decay(tau: Tensor, discretisation: str, dt: float) -> tuple[Tensor, Tensor]:
    """(a, b) of the neuron docstring, differentiable in ``tau``."""
    if discretisation == "euler":
        return 1.0 - dt / tau, dt / tau
    a = torch.exp(-dt / tau)
    return a, 1.0 - a


def coefficients(op: Neuron, params: Mapping[str, Tensor], like: Tensor) -> dict[str, Tensor | None]:
    """The step's coefficients from the op's parameters (autograd-tracked).

    ``params`` overrides the op's own arrays by name. Coefficients are
    computed in float64 and cast to ``like``'s dtype, so that e.g. an Euler
    decay of ``1 - 1e-4 / 1e-3`` is exactly ``float32(0.9)``. ``None`` means
    "absent" (decay 1, zero leak, no reset value, no current).
    """
    known = set(op.param_names())
    unknown = sorted(set(params) - known)
    if unknown:
        raise SnnirError(f"{op.op_type} has no parameters {unknown} (it has {sorted(known)})")

    def get(name: str) -> Tensor:
        value = params.get(name)
        if value is None:
            return torch.tensor(np.asarray(getattr(op, name), dtype=np.float64), device=like.device)
        return value.to(device=like.device, dtype=torch.float64)

    def cast(t: Tensor | None) -> Tensor | None:
        """``t`` in ``like``'s dtype; one value when all its values are equal and it needs no
        gradient (so the step uses a Python float: much faster per op)."""
        if t is None:
            return None
        t = t.to(like.dtype)
        if t.dim() and not t.requires_grad and bool((t == t.reshape(-1)[0]).all()):
            return t.reshape(-1)[0].clone()
        return t

    sem = op.sem
    out: dict[str, Tensor | None] = dict.fromkeys(_COEFFS)
    if isinstance(op, (I, IF)):
        out["gain"] = sem.dt * get("r")
    elif isinstance(op, (LI, LIF)):
        a, b = _decay(get("tau"), sem.discretisation, sem.dt)
        out["a_mem"], out["gain"] = a, b * get("r")
    else:
        a_syn, b_syn = _decay(get("tau_syn"), sem.discretisation, sem.dt)
        a_mem, b_mem = _decay(get("tau_mem"), sem.discretisation, sem.dt)
        out.update(a_mem=a_mem, gain=b_mem * get("r"), a_syn=a_syn, gain_syn=b_syn * get("w_in"))
    if "v_leak" in known:
        v_leak = get("v_leak")
        if v_leak.requires_grad or bool((v_leak != 0).any()):
            out["v_leak"] = v_leak
    if op.spiking:
        out["thr"] = get("v_threshold")
        if sem.reset == "zero":
            out["v_reset"] = get("v_reset")
    return {k: cast(v) for k, v in out.items()}


# --- elementwise pieces shared by forward and backward ---------------------------
# ``c`` holds the coefficients with 0-d ones as Python floats (much faster per op).
def _scalars(c: Mapping[str, Tensor | None]) -> dict:
    return {k: float(v) if v is not None and v.dim() == 0 else v for k, v in c.items()}


def _leak(c: dict, v: Tensor, out: Tensor | None = None) -> Tensor:
    if c["a_mem"] is None:
        return v
    if c["v_leak"] is None:
        return torch.mul(v, c["a_mem"], out=out)
    return c["v_leak"] + c["a_mem"] * (v - c["v_leak"])


def _spike(cfg: _Config, c: dict, u: Tensor, out: Tensor | None = None) -> Tensor:
    """Spikes of pre-reset membranes ``u`` (written into ``out`` when given)."""
    thr = c["thr"]
    if cfg.multi:
        z = torch.clamp(torch.floor(u / thr), min=0.0)
        return z if out is None else out.copy_(z)
    out = torch.empty_like(u) if out is None else out
    return (torch.ge if cfg.inclusive else torch.gt)(u, thr, out=out)


def _reset(cfg: _Config, c: dict, u: Tensor, z: Tensor, out: Tensor | None = None) -> Tensor:
    """The reset of ``u`` by spikes ``z`` (a subtract reset may write into ``out``)."""
    if cfg.reset == "zero":
        if isinstance(c["v_reset"], float):
            return u.masked_fill(z > 0, c["v_reset"])
        return torch.where(z > 0, c["v_reset"], u)
    if cfg.reset == "subtract":
        if isinstance(c["thr"], float) and not cfg.multi:  # z is 0/1: u - thr z is exact either way
            return torch.add(u, z, alpha=-c["thr"], out=out)
        return u - z * c["thr"]
    return u


def _v_after(cfg: _Config, c: dict, u: Tensor) -> Tensor:
    """The stored membrane after a step whose pre-reset membrane was ``u``."""
    if not cfg.spiking or cfg.next_timing:
        return u
    return _reset(cfg, c, u, _spike(cfg, c, u))


def _run(
    cfg: _Config, c: dict, x: Tensor, steps: int, static: bool, state: dict, keep: bool, record: bool,
    spikes: bool = True,
):
    """The forward loop. Returns (out, final state, u per step or None, i per step or None, traces).
    ``spikes=False`` (a backward's recompute): spikes go to a two-step ring, and ``out`` is None."""
    c = _scalars(c)
    v, i, z = state["v"], state.get("i"), state.get("z")
    ring = cfg.spiking and not spikes
    out = torch.empty((2 if ring else steps,) + v.shape, dtype=v.dtype, device=v.device)
    per_step = lambda: torch.empty((steps,) + v.shape, dtype=v.dtype, device=v.device)  # noqa: E731
    us = out if not cfg.spiking else (per_step() if keep else None)
    is_ = per_step() if cfg.has_current and keep else None
    traces = {name: per_step() for name in state} if record else None
    gain, gain_syn = c["gain"], c["gain_syn"]

    def scaled(k, value):  # k * value, skipping an exact multiply by one
        return value if isinstance(k, float) and k == 1.0 else k * value

    scratch = torch.empty_like(v)  # leak and reset are written here, u into us[t] or pong[t % 2]
    pong = None if us is not None else (torch.empty_like(v), torch.empty_like(v))
    drive_const = None
    if static:
        drive_const = scaled(gain_syn, x) if cfg.has_current else scaled(gain, x)
    for t in range(steps):
        xt = x if static else x[t]
        if cfg.has_current:
            i_new = c["a_syn"] * i + (drive_const if static else scaled(gain_syn, xt))
            drive = scaled(gain, i_new if cfg.current_first else i)
            i = i_new
            if is_ is not None:
                is_[t] = i
        else:
            drive = drive_const if static else scaled(gain, xt)
        leaked = _leak(c, v, out=scratch)
        if cfg.next_timing and not cfg.after_input:
            leaked = _reset(cfg, c, leaked, z, out=scratch if leaked is scratch else None)
        u = torch.add(leaked, drive, out=us[t] if us is not None else pong[t % 2])
        if cfg.after_input:
            after = _reset(cfg, c, u, z, out=u)
            u = after if after is u else u.copy_(after)
        if cfg.spiking:
            z = _spike(cfg, c, u, out=out[t % 2 if ring else t])
            v = u if cfg.next_timing else _reset(cfg, c, u, z)
        else:
            v = u
        if record:
            traces["v"][t] = v
            if i is not None:
                traces["i"][t] = i
            if cfg.next_timing:
                traces["z"][t] = z
    final = {"v": v}
    if cfg.has_current:
        final["i"] = i
    if cfg.next_timing:
        final["z"] = z
    return (None if ring else out), final, us, is_, traces


def _sum_to(g: Tensor | None, like: Tensor | None) -> Tensor | None:
    """``g`` summed down to ``like``'s (broadcast) shape."""
    if g is None or like is None:
        return None
    lead = g.dim() - like.dim()
    if lead:
        g = g.sum(dim=tuple(range(lead)))
    dims = tuple(d for d, n in enumerate(like.shape) if n == 1 and g.shape[d] != 1)
    return g.sum(dim=dims, keepdim=True) if dims else g


def _surrogate_grad(surrogate: Surrogate, x: Tensor) -> Tensor:
    """``surrogate.grad(x)``, computed in place in ``x`` for the built-in shapes."""
    k = float(surrogate.slope)
    if surrogate.name == "fast_sigmoid":
        return x.abs_().mul_(k).add_(1.0).square_().reciprocal_()
    if surrogate.name == "arctan":
        return x.mul_(math.pi / 2 * k).square_().add_(1.0).reciprocal_().mul_(k / 2)
    if surrogate.name == "triangular":
        return x.abs_().mul_(-k).add_(1.0).clamp_(min=0.0).mul_(k)
    return surrogate.grad(x)


class _NeuronSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cfg, steps, static, x, v0, i0, z0, *coeff_values):  # type: ignore[override]
        c = dict(zip(_COEFFS, coeff_values))
        state = {"v": v0}
        if cfg.has_current:
            state["i"] = i0
        if cfg.next_timing:
            state["z"] = z0
        # a held input is recomputed from: keep nothing of size T (see the module docstring)
        out, final, us, is_, _ = _run(cfg, c, x, steps, static, state, keep=not static, record=False)
        ctx.cfg, ctx.steps, ctx.static = cfg, steps, static
        needs_x = static or ctx.needs_input_grad[7 + _COEFFS.index("gain_syn" if cfg.has_current else "gain")]
        kept = (None, None) if static else (us, is_)
        ctx.save_for_backward(x if needs_x else None, v0, i0, z0, *kept, *coeff_values)
        dummy = torch.zeros((), dtype=x.dtype, device=x.device)
        i_t, z_t = final.get("i", dummy), final.get("z", dummy)
        return out, final["v"].clone(), i_t.clone(), z_t.clone()

    @staticmethod
    def backward(ctx, g_out, g_v, g_i, g_z):  # type: ignore[override]
        cfg, steps, static = ctx.cfg, ctx.steps, ctx.static
        x, v0, i0, z0, us, is_, *coeff_values = ctx.saved_tensors
        shapes = dict(zip(_COEFFS, coeff_values))
        c = _scalars(shapes)
        need = {n: ctx.needs_input_grad[7 + k] for k, n in enumerate(_COEFFS)}
        owned = static  # membranes recomputed here, so the backward may overwrite them
        if owned:
            state = {"v": v0, "i": i0, "z": z0}
            with torch.no_grad():
                _, _, us, is_, _ = _run(cfg, shapes, x, steps, static, state, keep=True, record=False, spikes=False)
        if _linear_backward_applies(cfg, c, need):
            g_x, g_v0 = _linear_bptt(cfg, c, static, us, owned, g_out, g_v, g_z)
            g_i0 = g_z0 = None
            acc: dict[str, Tensor] = {}
        else:
            g_x, g_v0, g_i0, g_z0, acc = _bptt(cfg, c, need, steps, static, x, v0, i0, z0, us, is_, g_out, g_v, g_i, g_z)
        g_coeffs = [_sum_to(acc.get(n), shapes[n]) if need[n] else None for n in _COEFFS]
        if cfg.next_timing and g_z0 is None and ctx.needs_input_grad[6]:
            g_z0 = torch.zeros_like(v0)
        return (
            None, None, None,
            g_x if ctx.needs_input_grad[3] else None,
            g_v0 if ctx.needs_input_grad[4] else None,
            g_i0 if cfg.has_current and ctx.needs_input_grad[5] else None,
            g_z0 if cfg.next_timing and ctx.needs_input_grad[6] else None,
            *g_coeffs,
        )


def _linear_backward_applies(cfg: _Config, c: dict, need: dict) -> bool:
    """True when the BPTT recursion is ``g_u[t] = g_out[t] s[t] + a g_u[t+1]`` with scalars:
    single spikes, no current, a subtract reset without gradient through the spike
    (snnTorch's ``Leaky``) or no reset, scalar decay and gain, no coefficient gradient."""
    return (
        cfg.spiking and not cfg.multi and not cfg.has_current and not cfg.after_input
        and (cfg.reset == "none" or (cfg.reset == "subtract" and cfg.detach_reset))
        and c["v_leak"] is None and not isinstance(c["thr"], Tensor)
        and not isinstance(c["a_mem"], Tensor) and not isinstance(c["gain"], Tensor)
        and not any(need.values())
    )


def _linear_bptt(cfg: _Config, c: dict, static: bool, us: Tensor, owned: bool, g_out, g_v, g_z):
    """(dL/dx, dL/dv0) for :func:`_linear_backward_applies`: the surrogate derivative of all
    steps at once, then one scaled add per step (``owned``: ``us`` may be overwritten)."""
    a, gain = (1.0 if c["a_mem"] is None else c["a_mem"]), c["gain"]
    g_u = torch.sub(us, c["thr"], out=us if owned else None)  # every step's surrogate slope...
    g_u = _surrogate_grad(cfg.surrogate, g_u)
    last = g_u[-1] * (g_out[-1] + g_z) if cfg.next_timing else None  # z_T feeds the next step's state
    g_u.mul_(g_out)  # ...times dL/dz: the direct gradient of each u_t
    if last is not None:
        g_u[-1] = last
    g_u[-1] += g_v  # v_T is u_T (or u_T minus a detached reset)
    for t in range(g_u.shape[0] - 2, -1, -1):
        g_u[t].add_(g_u[t + 1], alpha=a)
    g_v0 = g_u[0] * a
    g_x = g_u.sum(0) if static else g_u
    return (g_x if gain == 1.0 else g_x * gain), g_v0


def _bptt(cfg, c, need, steps, static, x, v0, i0, z0, us, is_, g_out, g_v, g_i, g_z):
    """The general BPTT recursion: (dL/dx, dL/dv0, dL/di0, dL/dz0, coefficient gradients)."""
    acc: dict[str, Tensor] = {}

    def add(name: str, value: Tensor) -> None:
        if name in acc:
            acc[name].add_(value)
        else:
            acc[name] = value  # always a fresh tensor here

    scratch = torch.empty_like(v0)
    thr, gain, a_mem, a_syn = c["thr"], c["gain"], c["a_mem"], c["a_syn"]
    subtract_grad = cfg.reset == "subtract" and not cfg.detach_reset
    g_x = torch.zeros_like(v0) if static else torch.empty_like(us)
    # with unit gain and no current, dL/dx_t is dL/du_t: compute it in place
    direct = not (static or cfg.has_current or cfg.after_input) and isinstance(gain, float) and gain == 1.0
    g_v = g_v.expand_as(v0)
    g_i = g_i.expand_as(v0) if cfg.has_current else None
    g_zs = g_z.expand_as(v0) if cfg.next_timing else None  # gradient at z_t as next step's state (None: 0)
    for t in range(steps - 1, -1, -1):
        u = us[t]
        if cfg.spiking:
            s = _surrogate_grad(cfg.surrogate, torch.sub(u, thr, out=scratch))
            g_spike = g_out[t] if g_zs is None else g_out[t] + g_zs  # all gradient at z_t
            g_u = g_v
            if not cfg.next_timing and cfg.reset == "zero":
                fired = _spike(cfg, c, u) > 0 if cfg.multi else (u >= thr if cfg.inclusive else u > thr)
                g_u = g_v.masked_fill(fired, 0.0)
                if need["v_reset"]:
                    add("v_reset", g_v - g_u)
            elif not cfg.next_timing and cfg.reset == "subtract":
                z = _spike(cfg, c, u)
                if not cfg.detach_reset:
                    g_spike = g_spike - g_v * thr
                if need["thr"]:
                    add("thr", -g_v * z)
            g_u = torch.addcmul(g_u, g_spike, s, out=g_x[t]) if direct else torch.addcmul(g_u, g_spike, s)
            if need["thr"]:
                add("thr", -g_spike * s)
        else:
            g_u = torch.add(g_v, g_out[t], out=g_x[t]) if direct else g_v + g_out[t]
        # u = [reset(]leak(v_prev)[, z_prev)] + gain * drive_input
        g_leaked = g_u
        if cfg.next_timing:
            g_zs = -g_u * thr if subtract_grad else None
            if cfg.reset == "zero" or (cfg.reset == "subtract" and need["thr"]):
                z_prev = z0 if t == 0 else _spike(cfg, c, us[t - 1])
                if cfg.reset == "zero":
                    g_leaked = g_u.masked_fill(z_prev > 0, 0.0)
                    if need["v_reset"]:
                        add("v_reset", g_u - g_leaked)
                else:
                    add("thr", -g_u * z_prev)
            if cfg.after_input:
                g_u = g_leaked  # the drive also entered before the reset
        if a_mem is None:
            g_v = g_leaked
        else:
            g_v = g_leaked * a_mem
            if need["a_mem"] or need["v_leak"]:
                v_prev = v0 if t == 0 else _v_after(cfg, c, us[t - 1])
                if need["a_mem"]:
                    add("a_mem", g_leaked * (v_prev if c["v_leak"] is None else v_prev - c["v_leak"]))
                if need["v_leak"]:
                    add("v_leak", g_leaked * (1.0 - a_mem))
        g_drive_in = g_u if direct else g_u * gain
        if cfg.has_current:
            i_prev = i0 if t == 0 else is_[t - 1]
            if need["gain"]:
                add("gain", g_u * (is_[t] if cfg.current_first else i_prev))
            g_i_in = g_i + g_drive_in if cfg.current_first else g_i  # gradient at i_t
            g_i = g_i_in * a_syn if cfg.current_first else g_drive_in + g_i_in * a_syn
            if need["a_syn"]:
                add("a_syn", g_i_in * i_prev)
            if need["gain_syn"]:
                add("gain_syn", g_i_in * (x if static else x[t]))
            g_in = g_i_in * c["gain_syn"]
        else:
            if need["gain"]:
                add("gain", g_u * (x if static else x[t]))
            g_in = g_drive_in
        if static:
            g_x += g_in
        elif not direct:
            g_x[t] = g_in
    if cfg.next_timing and g_zs is None:
        g_zs = torch.zeros_like(v0)
    return g_x, g_v, (g_i if cfg.has_current else None), (g_zs if cfg.next_timing else None), acc


def _broadcasts(shape, target) -> bool:
    """``shape`` broadcasts to ``target`` without changing it (numpy's rule)."""
    shape, target = tuple(shape), tuple(target)
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(reversed(shape), reversed(target)))


def _initial_state(op: Neuron, state: Mapping[str, Tensor] | None, batch_shape, like: Tensor) -> dict[str, Tensor]:
    state = dict(state or {})
    unknown = sorted(set(state) - set(op.state_names))
    if unknown:
        raise SnnirError(f"{op.op_type} has no states {unknown} (it has {list(op.state_names)})")
    out = {}
    for name in op.state_names:
        value = state.get(name)
        if value is None:
            out[name] = torch.zeros(batch_shape, dtype=like.dtype, device=like.device)
        elif tuple(value.shape) != tuple(batch_shape):
            raise SnnirError(f"{op.op_type} state '{name}' has shape {list(value.shape)}, expected {list(batch_shape)}")
        else:
            out[name] = value.to(like.dtype)
    return out


def neuron_sequence(
    op: Neuron,
    params: Mapping[str, Tensor],
    x: Tensor,
    state: Mapping[str, Tensor] | None,
    surrogate: Surrogate | None = None,
    record: bool = False,
    steps: int | None = None,
    detach_reset: bool = False,
    coeffs: Mapping[str, Tensor | None] | None = None,
) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor] | None]:
    """Run ``op`` over all steps of ``x``; returns ``(out, final_state, traces)``.

    - ``x``: ``[T, B, *shape]``, the summed input of every step; or, with
      ``steps=T``, ``[B, *shape]`` held constant over ``T`` steps (a hoisted,
      time-invariant input: its gradient is the sum over steps).
    - ``params``: torch tensors by parameter name, broadcastable to
      ``shape``; missing names take the op's own values. Gradients reach
      every one that requires grad.
    - ``state``: ``[B, *shape]`` tensors named as ``op.state_names``
      (missing ones start at zero); ``final_state`` has the same names.
    - ``out``: ``[T, B, *shape]`` spikes (spiking neurons) or membranes.
    - ``traces`` (``record=True``): ``{state: [T, B, *shape]}`` after each
      step, detached from autograd (while training, an extra forward loop
      computes them); otherwise ``None``.
    - ``coeffs``: :func:`coefficients` of ``op`` and ``params`` computed before (a caller
      running many sequences with unchanged parameters saves their cost).
    """
    if not isinstance(op, Neuron):
        raise SnnirError(f"neuron_sequence runs neuron ops, got {type(op).__name__}")
    if not torch.is_floating_point(x):
        raise SnnirError(f"{op.op_type}: input must be a floating tensor, got {x.dtype}")
    static = steps is not None
    if static and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise SnnirError(f"{op.op_type}: steps must be a positive int, got {steps!r}")
    if not static and x.dim() < 2:
        raise SnnirError(f"{op.op_type}: input must be [T, B, ...], got shape {list(x.shape)}")
    n_steps = steps if static else x.shape[0]
    batch_shape = tuple(x.shape if static else x.shape[1:])
    for name in op.param_names():
        shape = tuple(params[name].shape) if params.get(name) is not None else np.shape(getattr(op, name))
        if not _broadcasts(shape, batch_shape[1:]):
            raise SnnirError(
                f"{op.op_type} parameter '{name}' of shape {list(shape)} does not broadcast to the "
                f"neuron shape {list(batch_shape[1:])}"
            )
    cfg = _config(op, surrogate or Surrogate(), detach_reset)
    c = coefficients(op, params, x) if coeffs is None else coeffs
    init = _initial_state(op, state, batch_shape, x)
    tracked = torch.is_grad_enabled() and (
        x.requires_grad
        or any(v.requires_grad for v in init.values())
        or any(v is not None and v.requires_grad for v in c.values())
    )
    from snnir.targets.torch import native  # imported here: native builds on this module

    if native.supports(op, cfg, x, record):
        return native.neuron_sequence(cfg, c, x, n_steps, static, init, tracked)
    if record or not tracked:
        with torch.no_grad():
            out, final, _, _, traces = _run(cfg, c, x, n_steps, static, init, keep=False, record=record)
        if not tracked:
            return out, final, traces
    else:
        traces = None
    dummy = torch.zeros((), dtype=x.dtype, device=x.device)
    out, v_t, i_t, z_t = _NeuronSequence.apply(
        cfg, n_steps, static, x, init["v"], init.get("i", dummy), init.get("z", dummy),
        *(c[n] for n in _COEFFS),
    )
    final = {"v": v_t}
    if cfg.has_current:
        final["i"] = i_t
    if cfg.next_timing:
        final["z"] = z_t
    return out, final, traces


__all__ = ["neuron_sequence", "coefficients"]
