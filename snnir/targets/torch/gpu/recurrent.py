r"""A recurrent component on Triton, forward and BPTT backward: :func:`feedback_sequence`.

The component and its specification are those of :mod:`snnir.targets.torch.recurrent` (a
single-spike neuron and the Linear/Affine layer feeding its spikes back; the step-by-step
loop of the graph module defines it). Per step, three launches:

    z_t = N(x_t, fed r_{t-1})    the scan kernel (:mod:`.scan_kernels`) for one step, r_{t-1}
                                 its fed-back drive (``(leak + g x_t) + g r_{t-1}``)
    r_t = F.linear(z_t, W, b)    the GEMM the step loop's layer makes (cuBLAS on a GPU)

so spikes, states and ``r`` equal the step loop's (run on the same kernels) bit for bit. The
states before every step go to ``[T + 1, B x N]`` buffers, which training keeps with ``x_t +
r_{t-1}`` (what the input gains' gradients are by), each step's pre-reset membrane and the spikes
as bytes. The backward walks time back: ``dL/dz_t = g_out_t + dL/dr_t W`` (one GEMM), the scan's
backward kernel for that step from its kept states gives ``dL/dx_t`` (``= dL/dr_{t-1}``, one gain
scales both) and the gradients at the states before it; ``dL/dW`` and ``dL/db`` are one GEMM
over all steps. bf16/fp16 inputs: a float32 state, as :mod:`.scan` keeps; the spikes and the
layer in the input's dtype.

Not one persistent kernel: ``r_t`` needs every neuron's spikes of step ``t``, and Triton has no
barrier across programs (a spinning one would hang its interpreter, which runs programs one after
another); a program owning whole batch rows could multiply inside (``tl.dot``), but that rounds
differently from ``F.linear`` (another reduction order, TF32 by default), so the spikes could
drift from the specification's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from snnir.targets.torch.autograd_calls import recorded
from snnir.targets.torch.bptt import _sum_to
from snnir.targets.torch.gpu import scan
from snnir.targets.torch.neuron_update import _COEFFS, _Config, _state
from snnir.targets.torch.spike_flow import hands_over

Tensor = torch.Tensor


def supports(module, layer, cfg: _Config, x: Tensor) -> bool:
    """Whether the kernels run this loop now (else the step loop does): the scan kernels take
    the neuron and the input's dtype, the layer is in that dtype, no hook watches either."""
    bias = getattr(layer, "bias", None)
    return (
        cfg.spiking and not cfg.multi and x.dim() == 3 and scan.supports(cfg, x, record=False)
        and layer.weight.dtype == x.dtype and (bias is None or bias.dtype == x.dtype) and hands_over(module, layer)
    )


def _states(cfg: _Config, v0: Tensor, i0: Tensor, z0: Tensor, slots: int) -> list[Tensor | None]:
    """``[slots, M]`` buffers of v, i and z (None where the neuron has no such state), row 0 the initial one."""
    buffers = []
    for value, present in ((v0, True), (i0, cfg.has_current), (z0, cfg.next_timing)):
        buffer = v0.new_empty((slots, v0.numel())) if present else None
        if present:
            buffer[0] = value.reshape(-1)
        buffers.append(buffer)
    return buffers


def _row(buffer: Tensor | None, j: int) -> Tensor | None:
    return None if buffer is None else buffer[j]


def _forward(cfg: _Config, k, x, v0, i0, z0, r0, weight, bias, keep: bool):
    """``(out [T, B, N], states [slots, M] (v, i, z), ins, us)``; with ``keep`` the states
    before every step, each step's ``x_t + r_{t-1}`` and pre-reset membrane, else the last two states."""
    steps, batch, n = x.shape
    x = x.contiguous()
    states = _states(cfg, v0, i0, z0, steps + 1 if keep else 2)
    ins = x.new_empty((steps, batch, n)) if keep else None
    us = v0.new_empty((steps, v0.numel())) if keep else None
    r, outs = r0, []
    for t in range(steps):
        a, b = (t, t + 1) if keep else (t % 2, (t + 1) % 2)
        if keep:
            torch.add(x[t], r, out=ins[t])
        z_t = x.new_empty((batch, n))  # fresh, as the step loop's spikes are
        scan.launch_forward(
            cfg, 1, False, k, x[t], *(_row(s, a) for s in states), *(_row(s, b) for s in states), out=z_t,
            us=_row(us, t), is_=_row(states[1], b) if keep else None, fed=r.contiguous(),
        )
        if t < steps - 1:  # r_{T-1} is the delayed edge's business, from the spikes it keeps
            r = F.linear(z_t, weight, bias)
        outs.append(z_t)
    return torch.stack(outs), states, ins, us


def _final(states, slot: int, shape) -> tuple[Tensor, Tensor, Tensor]:
    v, i, z = (None if s is None else s[slot].view(shape).clone() for s in states)
    dummy = v.new_zeros(())
    return v, dummy if i is None else i, dummy.clone() if z is None else z


class _TritonRecurrent(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cfg, x, v0, i0, z0, r0, weight, bias, *coeff_values):  # type: ignore[override]
        steps, batch, n = x.shape
        k = scan.per_neuron(coeff_values, (n,), v0)
        out, states, ins, us = _forward(cfg, k, x, v0, i0, z0, r0, weight.detach(), _detached(bias), keep=True)
        ctx.cfg, ctx.absent = cfg, [c is None for c in coeff_values]
        present = (c for c in coeff_values if c is not None)
        ctx.save_for_backward(ins, us, *states, out.to(torch.uint8), weight, *present)
        return (out, *_final(states, steps, (batch, n)))

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_v, g_i, g_z):  # type: ignore[override]
        cfg, need = ctx.cfg, ctx.needs_input_grad
        ins, us, vs, is_, zs, spikes, weight, *present = ctx.saved_tensors
        present = iter(present)
        coeffs = [None if absent else next(present) for absent in ctx.absent]
        steps, batch, n = ins.shape
        k = scan.per_neuron(coeffs, (n,), vs)
        g_out = g_out.contiguous()

        def carried(g: Tensor, has: bool) -> Tensor | None:  # a copy of a state's gradient, walked back in place
            return vs.new_empty((batch, n)).copy_(g.expand(batch, n)).view(-1) if has else None

        g_state = [carried(g_v, True), carried(g_i, cfg.has_current), carried(g_z, cfg.next_timing)]
        states = (vs, is_ if cfg.has_current else None, zs if cfg.next_timing else None)
        need_coeffs = [need[8 + j] for j in range(len(_COEFFS))]
        acc = vs.new_zeros((len(_COEFFS), vs.shape[1])) if any(need_coeffs) else None
        acc_t = torch.empty_like(acc) if acc is not None else None
        g_x = torch.empty_like(ins)
        surr = scan.surrogate_constants(cfg, vs)
        for t in reversed(range(steps)):
            g_z_t = g_out[t] if t == steps - 1 else torch.addmm(g_out[t], g_x[t + 1], weight)
            current = states[1][t + 1] if cfg.has_current else None  # the step's, as the kernel keeps it
            scan.launch_backward(
                cfg, 1, False, k, surr, ins[t], *(_row(s, t) for s in states), us[t], current, g_z_t,
                *g_state, *g_state, g_x=g_x[t], acc=acc_t,
            )
            if acc is not None:
                acc += acc_t
        g_w = g_b = None
        if need[6] or need[7]:  # dL/dr_t is dL/dx_{t+1}; r_{T-1} is not used
            g_r = g_x[1:].reshape(-1, n)
            if need[6]:
                g_w = g_r.T.matmul(spikes[:-1].view(-1, n).to(g_x.dtype))
            if need[7]:
                g_b = g_r.sum(0)
        shape = (batch, n)
        g_v0, g_i0, g_z0 = (None if g is None else g.view(shape) for g in g_state)
        g_coeffs = [
            _sum_to(acc[j].view(shape), c).to(c.dtype) if need_coeffs[j] else None for j, c in enumerate(coeffs)
        ]
        return (
            None, g_x if need[1] else None, g_v0 if need[2] else None, g_i0 if need[3] else None,
            g_z0 if need[4] else None, g_x[0] if need[5] else None, g_w, g_b, *g_coeffs,
        )


def _detached(bias: Tensor | None) -> Tensor | None:
    return None if bias is None else bias.detach()


def feedback_sequence(
    cfg: _Config, c: dict, x: Tensor, init: dict[str, Tensor], r0: Tensor, weight: Tensor, bias: Tensor | None,
) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """``(spikes [T, B, N], the neuron's final state, the last spikes [B, N])`` as the first three
    that ``recurrent.feedback_sequence`` returns (no ``r`` carried to the next run of steps); ``c`` and ``init`` in the state's dtype (:func:`~snnir.targets.torch.gpu.state_dtype`)."""
    dummy = init["v"].new_zeros(())
    args = (cfg, x, init["v"], init.get("i", dummy), init.get("z", dummy), r0, weight, bias)
    coeff_values = tuple(c[name] for name in _COEFFS)
    if recorded(x, r0, weight, bias, *init.values(), *coeff_values):
        out, v, i, z = _TritonRecurrent.apply(*args, *coeff_values)
    else:
        k = scan.per_neuron(coeff_values, (x.shape[2],), init["v"])
        out, states, _, _ = _forward(cfg, k, *args[1:], keep=False)
        v, i, z = _final(states, x.shape[0] % 2, tuple(x.shape[1:]))
    return out, _state(cfg, v, i, z), out[-1].clone()
