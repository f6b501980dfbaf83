r"""A Linear or Affine layer fed spikes, which keeps its input for the backward as bools.

``spike_linear(s, W, b)`` is ``F.linear(s, W, b)`` (the same call, so the same
rounding) for an ``s`` whose every value is exactly 0 or 1: single spikes of a
neuron. Autograd's own linear keeps ``s`` for ``dL/dW = g^T s`` in its dtype (4
bytes per value in float32, 8 in float64); this keeps one byte per value (one
pass each way; packing 8 per byte measured 2-3x slower here for a 1/8 of what
is already small). Gradients are those of ``F.linear``. The caller
guarantees the 0/1 invariant (the torch target checks the graph: the input
comes from one single-spike neuron, directly or through Flatten or Delay).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


class _SpikeLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, s, weight, bias):  # type: ignore[override]
        ctx.dtype, ctx.bias_shape = s.dtype, (None if bias is None else bias.shape)
        ctx.save_for_backward(s.to(torch.bool) if ctx.needs_input_grad[1] else None, weight)
        return F.linear(s, weight, bias)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        spikes, weight = ctx.saved_tensors
        g_s = g.matmul(weight) if ctx.needs_input_grad[0] else None
        g_w = g_b = None
        if ctx.needs_input_grad[1]:
            g_w = _weight_grad(g.reshape(-1, g.shape[-1]), spikes.reshape(-1, spikes.shape[-1]), ctx.dtype)
        if ctx.bias_shape is not None and ctx.needs_input_grad[2]:
            g_b = g.reshape(-1, g.shape[-1]).sum(0).sum_to_size(ctx.bias_shape)
        return g_s, g_w, g_b


def _weight_grad(g: Tensor, spikes: Tensor, dtype: torch.dtype, block_bytes: int = 1 << 20) -> Tensor:
    """``g^T s`` with the bool ``s`` converted a block of rows at a time into one small
    buffer (a full-size float copy of ``s`` would be a fresh allocation of the size this
    module avoids keeping, paid again at every step in page faults)."""
    rows = max(1, block_bytes // max(1, spikes.shape[1] * spikes.element_size() * 4))
    if spikes.shape[0] <= rows:
        return g.T.matmul(spikes.to(dtype))
    g_w = g.new_zeros(g.shape[1], spikes.shape[1])
    block = torch.empty((rows, spikes.shape[1]), dtype=dtype, device=g.device)
    for start in range(0, spikes.shape[0], rows):
        part = spikes[start : start + rows]
        converted = block[: part.shape[0]].copy_(part)
        g_w.addmm_(g[start : start + rows].T, converted)
    return g_w


def spike_linear(s: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(s, weight, bias)`` for 0/1 ``s``, keeping ``s`` as bools for the backward."""
    if not torch.is_grad_enabled() or not weight.requires_grad:
        return F.linear(s, weight, bias)
    return _SpikeLinear.apply(s, weight, bias)
