r"""The backward of :func:`~snnir.targets.torch.scan.neuron_sequence`: BPTT by hand.

:func:`_bptt` is the general recursion (every op, semantics option and parameter
gradient, about 8-10 elementwise ops per step); :func:`_linear_bptt` is the case
where it is ``dL/du[t] = dL/dz[t] s[t] + a dL/du[t+1]`` with scalar coefficients
(:func:`_linear_backward_applies`: snnTorch's ``Leaky`` as traced), one scaled add
per step. Both give the gradients an unrolled autograd implementation would (the
conventions are in :mod:`snnir.targets.torch.scan`); the tests hold them equal.
"""

from __future__ import annotations

import math

import torch

from snnir.targets.torch.neuron_update import _Config, _spike, _v_after
from snnir.targets.torch.surrogate import Surrogate

Tensor = torch.Tensor


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
    steps at once, then one scaled add per step (``owned``: ``us`` may be overwritten).
    ``g_out`` is dL/dz, or a function multiplying the slopes by it in place (a caller that
    makes dL/dz step by step, as :mod:`~snnir.targets.torch.neuron_linear` does)."""
    a, gain = (1.0 if c["a_mem"] is None else c["a_mem"]), c["gain"]
    g_u = torch.sub(us, c["thr"], out=us if owned else None)  # every step's surrogate slope...
    g_u = _surrogate_grad(cfg.surrogate, g_u)
    extra = g_u[-1] * g_z if cfg.next_timing else None  # z_T also feeds the next step's state
    if callable(g_out):  # ...times dL/dz: the direct gradient of each u_t
        g_out(g_u)
    else:
        g_u.mul_(g_out)
    if extra is not None:
        g_u[-1] += extra
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
