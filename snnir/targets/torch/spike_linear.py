r"""A Linear or Affine layer fed spikes, which keeps its input for the backward as bools.

``spike_linear(s, W, b)`` is ``F.linear(s, W, b)`` (the same call, so the same
rounding) for an ``s`` whose every value is exactly 0 or 1: single spikes of a
neuron. Autograd's own linear keeps ``s`` for ``dL/dW = g^T s`` in its dtype (4
bytes per value in float32, 8 in float64); this keeps one byte per value (one
pass each way: float -> bool, and bool read as uint8 -> float, the fast
conversions here; packing 8 per byte measured 2-3x slower). Gradients are those
of ``F.linear``. With time chunks (``graph_module``) the float copy made in the
backward is one chunk's. The caller guarantees the 0/1 invariant (the torch
target checks the graph: the input comes from one single-spike neuron, directly
or through Flatten or Delay). Spikes that their maker keeps anyway
(:func:`keeps_its_spikes`: the recurrent kernel's output) are kept as they are: no copy
either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

#: the backward nodes of the autograd Functions that save their float spikes output themselves
_KEEPERS: list[type] = []


def keeps_its_spikes(function: type) -> type:
    """Class decorator: ``function`` (an autograd Function) saves the spikes it outputs for its
    own backward, so a Linear fed them keeps the same tensor instead of a bool copy."""
    _KEEPERS.append(function._backward_cls)
    return function


class _SpikeLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, s, weight, bias):  # type: ignore[override]
        ctx.dtype, ctx.bias_shape = s.dtype, (None if bias is None else bias.shape)
        kept = isinstance(s.grad_fn, tuple(_KEEPERS))
        ctx.save_for_backward(None if not ctx.needs_input_grad[1] else s if kept else s.to(torch.bool), weight)
        return F.linear(s, weight, bias)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        spikes, weight = ctx.saved_tensors
        g_s = g.matmul(weight) if ctx.needs_input_grad[0] else None
        g_w = g_b = None
        if ctx.needs_input_grad[1]:
            # bools read as uint8 -> float: 6x faster here than bool -> float
            s = spikes if spikes.dtype == ctx.dtype else spikes.view(torch.uint8).to(ctx.dtype)
            g_w = g.reshape(-1, g.shape[-1]).T.matmul(s.reshape(-1, s.shape[-1]))
        if ctx.bias_shape is not None and ctx.needs_input_grad[2]:
            g_b = g.reshape(-1, g.shape[-1]).sum(0).sum_to_size(ctx.bias_shape)
        return g_s, g_w, g_b


def spike_linear(s: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(s, weight, bias)`` for 0/1 ``s``, keeping ``s`` as bools for the backward (not
    under autocast, whose casts autograd's own linear differentiates)."""
    if not torch.is_grad_enabled() or not weight.requires_grad or torch.is_autocast_enabled(s.device.type):
        return F.linear(s, weight, bias)
    return _SpikeLinear.apply(s, weight, bias)
