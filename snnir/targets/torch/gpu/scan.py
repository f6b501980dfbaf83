r"""A neuron's scan over T steps as Triton kernels: :func:`neuron_sequence`.

The forward kernel runs every element's T steps with the state in registers; the backward
reruns it keeping each step's pre-reset membrane (and synaptic current) in a transient
``[T, B, ...]`` buffer, then walks time backwards (:mod:`.scan_kernels`). Between the two,
autograd keeps only the input and the initial state, as the native CPU kernel does.

Equal to the Python loop (:mod:`snnir.targets.torch.scan`, the specification): outputs and
final states bit for bit in float32 and float64, gradients to rounding. bf16/fp16 inputs
run with a float32 state: the result is the Python loop's on the input widened to float32,
outputs cast back to the input's dtype (spikes are exact in either).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import triton
from torch.autograd.function import once_differentiable

from snnir.targets.torch.bptt import _sum_to
from snnir.targets.torch.gpu import interpreting, state_dtype
from snnir.targets.torch.gpu import scan_kernels as kernels
from snnir.targets.torch.native import _CONFIG_FIELDS, _RESETS, _SURROGATES
from snnir.targets.torch.neuron_update import _COEFFS, _Config, _state

Tensor = torch.Tensor
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def supports(cfg: _Config, x: Tensor, record: bool) -> bool:
    """Whether the kernels run this case: every op and semantics option the Python loop has
    (a ``_Config`` flag added later and set turns them off until they learn it), any
    parameter shape and gradient; not ``record`` (traces come from the Python loop)."""
    return (
        not record
        and x.dtype in DTYPES
        and x.numel() > 0
        and cfg.surrogate.name in _SURROGATES
        and not any(getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in _CONFIG_FIELDS)
    )


def _flags(cfg: _Config, static: bool, coeffs) -> dict:
    return dict(
        SPIKING=cfg.spiking, HAS_CURRENT=cfg.has_current, NEXT=cfg.next_timing, RESET=_RESETS[cfg.reset],
        INCLUSIVE=cfg.inclusive, MULTI=cfg.multi, CURRENT_FIRST=cfg.current_first, AFTER_INPUT=cfg.after_input,
        STATIC=static, HAS_A_MEM=coeffs[0] is not None, HAS_V_LEAK=coeffs[1] is not None,
    )


def _launch(kernel, M: int, *args, **flags) -> None:
    """One program per ``BLOCK`` elements (in the interpreter one for up to 1024: numpy
    runs a block as one array operation)."""
    block = min(1024, triton.next_power_of_2(M)) if interpreting() else 256
    kernel[(triton.cdiv(M, block),)](*args, BLOCK=block, enable_fp_fusion=False, **flags)


def per_neuron(coeffs, neuron_shape, like: Tensor) -> list[Tensor]:
    """Each coefficient as a flat ``[N]`` tensor of ``like``'s dtype (None for absent ones)."""
    return [
        None if c is None else c.detach().to(like.dtype).expand(neuron_shape).reshape(-1).contiguous()
        for c in coeffs
    ]


def _given(t: Tensor | None, placeholder: Tensor) -> Tensor:
    return placeholder if t is None else t


def launch_forward(cfg, steps, static, k, x, v0, i0, z0, v, i, z, out=None, us=None, is_=None, bits=None,
                   fed=None) -> None:
    """The forward kernel over ``steps`` from (v0, i0, z0) into the final states (v, i, z),
    writing ``out``, ``us``/``is_`` (each step's pre-reset membrane and current) and ``bits``
    where given; ``k``: :func:`per_neuron` coefficients; ``fed``: the fed-back drive, laid out
    as a per-step ``x``. Every tensor contiguous, states ``[M]``-shaped in the state's dtype;
    ``i``/``z`` tensors of a neuron without them are ignored."""
    M = v0.numel()
    _launch(
        kernels.scan_forward, M, x, _given(fed, x), v0, i0 if cfg.has_current else v0, z0 if cfg.next_timing else v0,
        *(_given(c, v0) for c in k),
        _given(out, v0), v, i if cfg.has_current else v0, z if cfg.next_timing else v0, _given(us, v0),
        _given(is_, v0), _given(bits, v0), M, k[_COEFFS.index("gain")].numel(), steps, **_flags(cfg, static, k),
        WRITE_OUT=out is not None, KEEP=us is not None, BITS=bits is not None, FED=fed is not None,
    )


def surrogate_constants(cfg: _Config, like: Tensor) -> Tensor:
    """The surrogate's constants as :func:`launch_backward` takes them, on ``like``'s device."""
    slope = float(cfg.surrogate.slope)
    return torch.tensor([slope, math.pi / 2 * slope, slope / 2], dtype=like.dtype, device=like.device)


def launch_backward(cfg, steps, static, k, surr, x, v0, i0, z0, us, is_, g_out, g_v, g_i, g_z, g_v0, g_i0, g_z0,
                    g_x=None, acc=None) -> None:
    """The backward kernel over ``steps`` (after :func:`launch_forward` kept ``us``/``is_``):
    from the final-state gradients (g_v, g_i, g_z, ``[M]``) and ``g_out``, writes the initial
    states' (g_v0, g_i0, g_z0, which may be the same tensors), ``g_x`` where given and, with
    ``acc`` (``[7, M]``), each coefficient's per-element gradient summed over steps; ``surr``:
    :func:`surrogate_constants`."""
    M = v0.numel()
    _launch(
        kernels.scan_backward, M, x, v0, i0 if cfg.has_current else v0, z0 if cfg.next_timing else v0,
        *(_given(c, v0) for c in k),
        us, _given(is_, v0), g_out, g_v, g_i if cfg.has_current else v0, g_z if cfg.next_timing else v0, surr,
        _given(g_x, v0), g_v0, g_i0 if cfg.has_current else v0, g_z0 if cfg.next_timing else v0, _given(acc, v0),
        M, k[_COEFFS.index("gain")].numel(), steps, **_flags(cfg, static, k), DETACH=cfg.detach_reset,
        SURR=_SURROGATES[cfg.surrogate.name], NEED_X=g_x is not None, NEED_COEFFS=acc is not None,
    )


def _forward(cfg, steps, static, x, v0, i0, z0, coeffs, write_out=True, fed=None):
    """(out, v, i, z, us, is): out and the final states with ``write_out``, else each step's
    pre-reset membrane ``us`` and current ``is`` (``[T, M]``, None where absent); ``fed``: the
    fed-back drive (as ``x``, per step)."""
    shape, M = tuple(v0.shape), v0.numel()
    v0 = v0.contiguous()
    out = x.new_empty((steps,) + shape) if write_out else None
    v_end, i_end, z_end = torch.empty_like(v0), torch.empty_like(v0), torch.empty_like(v0)
    us = v0.new_empty((steps, M)) if not write_out else None
    is_ = v0.new_empty((steps, M)) if not write_out and cfg.has_current else None
    launch_forward(
        cfg, steps, static, per_neuron(coeffs, shape[1:], v0), x.contiguous(), v0, i0.contiguous(),
        z0.contiguous(), v_end, i_end, z_end, out=out, us=us, is_=is_, fed=None if fed is None else fed.contiguous(),
    )
    return out, v_end, i_end, z_end, us, is_


def backward(cfg, steps, static, needs_input_grad, x, v0, i0, z0, coeffs, g_out, g_v, g_i, g_z, fed=None) -> tuple:
    """The gradients of :func:`_forward`'s inputs ``(x, v0, i0, z0, *coeffs)`` (None where
    ``needs_input_grad``, in that order, wants none), the membranes recomputed (with the
    fed-back drive ``fed``, whose gradient is ``x``'s: the same gain)."""
    _, _, _, _, us, is_ = _forward(cfg, steps, static, x, v0, i0, z0, coeffs, write_out=False, fed=fed)
    if fed is not None:  # a gain's gradient is by all it scaled (to rounding)
        x = x + fed
    shape, M = tuple(v0.shape), v0.numel()
    need_x, need_v0, need_i0, need_z0, *need = needs_input_grad

    def state_grad(g: Tensor, present: bool) -> Tensor:
        return g.to(v0.dtype).expand(shape).contiguous() if present else v0

    g_x = torch.empty_like(x) if need_x else None
    g_v0, g_i0, g_z0 = torch.empty_like(v0), torch.empty_like(v0), torch.empty_like(v0)
    acc = v0.new_empty((len(_COEFFS), M)) if any(need) else None
    launch_backward(
        cfg, steps, static, per_neuron(coeffs, shape[1:], v0), surrogate_constants(cfg, v0), x.contiguous(),
        v0.contiguous(), i0.contiguous(), z0.contiguous(), us, _given(is_, v0), g_out.contiguous(),
        state_grad(g_v, True), state_grad(g_i, cfg.has_current), state_grad(g_z, cfg.next_timing), g_v0, g_i0, g_z0,
        g_x=g_x, acc=acc,
    )
    g_coeffs = [_sum_to(acc[j].view(shape), c).to(c.dtype) if need[j] else None for j, c in enumerate(coeffs)]
    return (
        g_x,
        g_v0 if need_v0 else None,
        g_i0 if cfg.has_current and need_i0 else None,
        g_z0 if cfg.next_timing and need_z0 else None,
        *g_coeffs,
    )


class _TritonSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cfg, steps, static, x, v0, i0, z0, fed, *coeff_values):  # type: ignore[override]
        out, v_end, i_end, z_end, _, _ = _forward(cfg, steps, static, x, v0, i0, z0, coeff_values, fed=fed)
        ctx.cfg, ctx.steps, ctx.static, ctx.fed = cfg, steps, static, fed is not None
        ctx.absent = [c is None for c in coeff_values]
        ctx.save_for_backward(x, v0, i0, z0, fed, *(c for c in coeff_values if c is not None))
        dummy = v0.new_zeros(())
        return out, v_end, i_end if cfg.has_current else dummy, z_end if cfg.next_timing else dummy.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_v, g_i, g_z):  # type: ignore[override]
        x, v0, i0, z0, fed, *present = ctx.saved_tensors
        present = iter(present)
        coeffs = [None if absent else next(present) for absent in ctx.absent]
        need = ctx.needs_input_grad
        need_x = need[3] or (ctx.fed and need[7])
        g_x, *grads = backward(
            ctx.cfg, ctx.steps, ctx.static, (need_x, *need[4:7], *need[8:]), x, v0, i0, z0, coeffs,
            g_out, g_v, g_i, g_z, fed,
        )
        g_fed = g_x.clone() if ctx.fed and need[7] else None
        return (None, None, None, g_x if need[3] else None, *grads[:3], g_fed, *grads[3:])


def self_test(device: torch.device) -> None:
    """A small LIF through both kernels on ``device``; raises where they cannot run (with
    gradients on, whatever mode the first caller is in)."""
    from snnir.ir.ops.neuron import LIF
    from snnir.targets.torch.neuron_update import _config, coefficients
    from snnir.targets.torch.surrogate import Surrogate

    op = LIF(tau=1e-3, r=10.0, v_leak=0.0, v_threshold=1.0)
    cfg = _config(op, Surrogate(), detach_reset=True)
    with torch.inference_mode(False), torch.enable_grad():
        x = torch.ones(2, 1, 4, device=device, requires_grad=True)
        out, _, _ = neuron_sequence(cfg, coefficients(op, {}, x), x, 2, False, {"v": x.new_zeros(1, 4)}, True)
        out.sum().backward()


def neuron_sequence(cfg: _Config, c: dict, x: Tensor, steps: int, static: bool, init: dict, tracked: bool,
                    fed: Tensor | None = None):
    """``(out, final_state, None)`` as :func:`snnir.targets.torch.scan.neuron_sequence` returns
    them (``record=False``, ``fed`` its fed-back drive); ``init`` and ``c`` in the state's dtype
    (:func:`state_dtype`)."""
    sdt = state_dtype(x)
    dummy = torch.zeros((), dtype=sdt, device=x.device)
    args = (
        cfg, steps, static, x, init["v"].to(sdt), init.get("i", dummy).to(sdt), init.get("z", dummy).to(sdt), fed,
        *(c[n] for n in _COEFFS),
    )
    if tracked:
        out, v_t, i_t, z_t = _TritonSequence.apply(*args)
    else:
        out, v_t, i_t, z_t, _, _ = _forward(*args[:7], args[8:], fed=fed)
    return out, _state(cfg, v_t, i_t, z_t), None
