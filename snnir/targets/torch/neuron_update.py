r"""One neuron update as the fast path runs it: its configuration, its coefficients and the
forward loop over T steps (:func:`_run`).

Invariant: the loop performs the update of :mod:`snnir.ir.ops.neuron` in the reference
kernels' operation order, so float64 spikes equal :func:`snnir.run`'s; the backward
(:mod:`snnir.targets.torch.bptt`) and the native kernel recompute membranes with this
same order. Coefficients are computed in float64 and cast to the input's dtype.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import torch

from snnir.errors import SnnirError
from snnir.ir.ops.neuron import IF, LI, LIF, CubaLI, CubaLIF, I, Neuron
from snnir.ir.semantics import DELAYED_RESET_TIMINGS, euler_tau
from snnir.targets.torch.surrogate import Surrogate

Tensor = torch.Tensor
_COEFFS = ("a_mem", "v_leak", "gain", "thr", "v_reset", "a_syn", "gain_syn")
_MEM = {"tau": ("a_mem", "gain", "r")}
_SYN = {"tau_syn": ("a_syn", "gain_syn", "w_in"), "tau_mem": ("a_mem", "gain", "r")}
#: {time constant: (its decay's coefficient, its gain's coefficient, the parameter b scales in it)}
_DECAYS: dict[type, dict[str, tuple[str, str, str]]] = {LI: _MEM, LIF: _MEM, CubaLI: _SYN, CubaLIF: _SYN}


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
    input_first: bool  # the forward adds the input before the delayed reset (sem.resets_after_input)


def _config(op: Neuron, surrogate: Surrogate, detach_reset: bool) -> _Config:
    return _config_of(type(op), op.sem, surrogate, detach_reset)


@functools.lru_cache(maxsize=256)
def _config_of(cls: type[Neuron], sem, surrogate: Surrogate, detach_reset: bool) -> _Config:
    """:func:`_config` from what it depends on: the class's ``spiking`` and ``has_current`` and the
    semantics (cached: asked per call)."""
    return _Config(
        spiking=cls.spiking,
        has_current=cls.has_current,
        next_timing=cls.spiking and sem.reset_timing in DELAYED_RESET_TIMINGS,
        reset=sem.reset if cls.spiking else "none",
        inclusive=sem.threshold_compare == "ge",
        multi=sem.spike_mode == "multi",
        current_first=sem.current_order == "current_first",
        detach_reset=detach_reset,
        surrogate=surrogate,
        after_input=cls.spiking and sem.reset_timing == "next_after_input",
        input_first=cls.spiking and sem.resets_after_input,
    )


def _state(cfg: _Config, v: Tensor, i: Tensor | None, z: Tensor | None) -> dict[str, Tensor]:
    """The states this neuron has, by name (``i``/``z`` may be placeholders otherwise)."""
    state = {"v": v}
    if cfg.has_current:
        state["i"] = i
    if cfg.next_timing:
        state["z"] = z
    return state


def _decay(tau: Tensor, discretisation: str, dt: float) -> tuple[Tensor, Tensor]:
    """(a, b) of the neuron docstring, differentiable in ``tau``, rounded as the reference's:
    ``dt / tau`` is a true division (torch's ``float / tensor`` multiplies by ``1 / tau``,
    which differs in the last bit for about 1 value in 4)."""
    if discretisation == "euler":
        b = tau.new_tensor(dt) / tau
        return 1.0 - b, b
    a = torch.exp(tau.new_tensor(-dt) / tau)
    return a, 1.0 - a


def decays(op: Neuron) -> dict[str, tuple[str, str, str]]:
    """{time constant: (its decay's coefficient, its gain's coefficient, the parameter the gain
    scales: ``r`` or ``w_in``)} of ``op`` (empty for I and IF)."""
    return next((d for cls, d in _DECAYS.items() if isinstance(op, cls)), {})


def held_decays(op: Neuron, trainable: frozenset[str] | set[str]) -> dict[str, str]:
    """{time constant: its decay's coefficient name} for each of ``op``'s ``trainable`` time
    constants that trains as its decay with the input gain held (``sem.gain_held``)."""
    if not op.sem.gain_held:
        return {}
    return {tau: decay for tau, (decay, _, _) in decays(op).items() if tau in trainable}


def decay_of(op: Neuron, tau: str) -> Tensor:
    """The decay of ``op``'s time constant ``tau``, in float64."""
    return _decay(torch.tensor(getattr(op, tau), dtype=torch.float64), op.sem.discretisation, op.sem.dt)[0]


def held_gain_changes(op: Neuron, trained: Mapping[str, tuple[Tensor, Tensor]], node: str,
                      wide: bool = False) -> dict[str, np.ndarray]:
    """The parameter changes that give ``op`` the ``trained`` decays {time constant: (a, where a
    changed)}, clamped to [0, 1], with each input gain held: the time constant, and the parameter
    its gain scales (``r``, ``w_in``), in their original dtypes (float64 where ``wide``: a module
    trained in float64); elements whose decay did not change keep their exact values."""
    sem, changes = op.sem, {}
    for tau, (a, changed) in trained.items():
        a = a.clamp(0.0, 1.0)  # the decay the module steps with (:func:`coefficients`)
        if sem.discretisation == "exp" and bool((a == 1).any()):
            raise SnnirError(f"the trained decay of {tau} is 1 or more, clamped to 1 as snnTorch clamps beta and "
                             "alpha: an exp time constant of decay 1 has no input gain to hold", node)
        if sem.discretisation == "exp" and bool((a == 0).any()):
            raise SnnirError(f"the trained decay of {tau} is 0 or less, clamped to 0: no exp time constant gives it",
                             node)
        scaled = decays(op)[tau][2]
        old_tau, old_scaled = (torch.tensor(getattr(op, name), dtype=torch.float64) for name in (tau, scaled))
        new_tau = (torch.from_numpy(euler_tau(a.numpy(), sem.dt)) if sem.discretisation == "euler"
                   else a.new_tensor(-sem.dt) / torch.log(a))
        gain = old_scaled * _decay(old_tau, sem.discretisation, sem.dt)[1]
        new_scaled = gain / _decay(new_tau, sem.discretisation, sem.dt)[1]
        for name, new, old in ((tau, new_tau, old_tau), (scaled, new_scaled, old_scaled)):
            changes[name] = torch.where(changed, new, old).numpy().astype(np.float64 if wide else getattr(op, name).dtype)
    return changes


def coefficients(op: Neuron, params: Mapping[str, Tensor], like: Tensor) -> dict[str, Tensor | None]:
    """The step's coefficients from the op's parameters (autograd-tracked).

    ``params`` overrides the op's own arrays by name; it may also give a decay (``a_mem``,
    ``a_syn``) of an op whose ``sem.gain_held``: that decay is used clamped to [0, 1], as
    snnTorch clamps ``beta``/``alpha`` (gradient zero outside), the input gain still from the
    op's time constant (held while the decay trains). Coefficients are
    computed in float64 and cast to ``like``'s dtype, so that e.g. an Euler
    decay of ``1 - 1e-4 / 1e-3`` is exactly ``float32(0.9)``; for a bf16/fp16 ``like``, in
    that dtype from the parameters in it, as the step loop of a module cast to it computes them. ``None`` means
    "absent" (decay 1, zero leak, no reset value, no current).
    """
    known = set(op.param_names())
    held = set(held_decays(op, known).values())
    unknown = sorted(set(params) - known - held)
    if unknown:
        raise SnnirError(f"{op.op_type} has no parameters {unknown} (it has {sorted(known)})")

    wide = torch.float64 if like.dtype not in (torch.float16, torch.bfloat16) else like.dtype

    def get(name: str) -> Tensor:
        value = params.get(name)
        if value is None:
            return torch.tensor(np.asarray(getattr(op, name), dtype=np.float64), device=like.device).to(wide)
        return value.to(device=like.device, dtype=wide)

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
    for tau, (decay, gain, scaled) in decays(op).items():
        a, b = _decay(get(tau), sem.discretisation, sem.dt)
        out[decay] = a if params.get(decay) is None else get(decay).clamp(0.0, 1.0)
        out[gain] = b * get(scaled)
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
    spikes: bool = True, then: Callable[[int, Tensor], None] | None = None, fed: Tensor | None = None,
):
    """The forward loop. Returns (out, final state, u per step or None, i per step or None, traces).
    ``spikes=False`` (a backward's recompute, or ``then`` consumes them): spikes go to a ring of
    two steps' buffers, and ``out`` is None.
    ``then(t, z)`` is called with each step's output as it is made. ``fed`` (``[T, B, ...]``, with
    a per-step ``x``): the fed-back drive (:mod:`snnir.ir.schedule`), added through the input's
    gain right after the drive: ``(leak + drive) + fed``, or into the current."""
    c = _scalars(c)
    v, i, z = state["v"], state.get("i"), state.get("z")
    ring = (torch.empty_like(v), torch.empty_like(v)) if cfg.spiking and not spikes else None  # as aligned as fresh
    out = None if ring is not None else v.new_empty((steps,) + v.shape)
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
            if fed is not None:
                i_new = i_new + scaled(gain_syn, fed[t])
            drive = scaled(gain, i_new if cfg.current_first else i)
            i = i_new
            if is_ is not None:
                is_[t] = i
        else:
            drive = drive_const if static else scaled(gain, xt)
        leaked = _leak(c, v, out=scratch)
        if cfg.next_timing and not cfg.input_first:
            leaked = _reset(cfg, c, leaked, z, out=scratch if leaked is scratch else None)
        u = torch.add(leaked, drive, out=us[t] if us is not None else pong[t % 2])
        if fed is not None and not cfg.has_current:
            u.add_(scaled(gain, fed[t]))
        if cfg.input_first:
            after = _reset(cfg, c, u, z, out=u)
            u = after if after is u else u.copy_(after)
        if cfg.spiking:
            z = _spike(cfg, c, u, out=out[t] if ring is None else ring[t % 2])
            v = u if cfg.next_timing else _reset(cfg, c, u, z)
        else:
            v = u
        if then is not None:
            then(t, z if cfg.spiking else u)
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
    return out, final, us, is_, traces
