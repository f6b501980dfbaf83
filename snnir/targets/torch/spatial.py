"""Torch modules for the convolutions and pools (registered in ``modules.LOWERINGS``).

Each maps ``[*lead, C, *spatial]`` for any leading dims (time and batch folded into one
batch dim: one convolution for a whole sequence or a call's steps).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from snnir.ir.ops import AvgPool2d, Conv1d, Conv2d, SumPool2d
from snnir.ir.ops.pool import MaxPool1d, MaxPool2d, pool_output_size
from snnir.targets.torch import native as kernels
from snnir.targets.torch.modules import LOWERINGS, OpModule

#: the native kernel holding the max pools (also fused with a neuron, ``pool_neuron.py``)
POOL_KERNEL = "pool_scan"


def _per_sample(module: OpModule, x: torch.Tensor, fn) -> torch.Tensor:
    """Apply ``fn`` on ``[N, *shape]`` with all leading dims of ``x`` folded into N."""
    lead = tuple(x.shape[: x.dim() - module.in_rank])
    y = fn(x.reshape((-1,) + tuple(x.shape[len(lead):])))
    return y.reshape(lead + tuple(y.shape[1:]))


class ConvModule(OpModule):
    """Cross-correlation as torch's conv1d/conv2d, symmetric explicit padding. The bias is
    added after the convolution (the reference's order), except a per-channel bias on CPU
    float32, which goes into the convolution call as ``nn.Conv2d`` (and so snnTorch) passes
    it: one pass over the output less; oneDNN adds it last, which measured the same bits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _per_sample(self, x, self._conv)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        op = self.source_op
        conv = F.conv1d if op.spatial_rank == 1 else F.conv2d
        bias = self.bias
        inside = self.bias_inside(x)
        y = conv(x, self.weight, bias if inside else None, op.stride, op.explicit_padding(), op.dilation, op.groups)
        if inside:
            return y
        return y + (bias.reshape((-1,) + (1,) * op.spatial_rank) if bias.dim() else bias)


    def bias_inside(self, x: torch.Tensor) -> bool:
        """The bias goes into the convolution call on ``x`` (a per-channel bias, CPU float32)."""
        return self.bias.dim() == 1 and x.dtype == torch.float32 and x.device.type == "cpu"


class PoolModule(OpModule):
    """Sum or mean over zero-padded windows (padding counted in the mean)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _per_sample(self, x, self._pool)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        op = self.source_op
        pad_h, pad_w = op.padding
        x = F.pad(x, (pad_w, pad_w, pad_h, pad_h))
        y = F.avg_pool2d(x, op.kernel_size, op.stride)
        if isinstance(op, SumPool2d):
            y = y * float(np.prod(op.kernel_size))
        return y


class MaxPoolModule(OpModule):
    """torch's max_pool1d / max_pool2d, time and batch folded into one batch dim; on CPU where
    the native kernels run, the ``max_pool_*`` of ``csrc/pool_scan.cpp`` instead (the same
    maxima and gradients; each maximum's place kept as one byte, not torch's int64 index)."""

    def __init__(self, op, ctx):
        super().__init__(op, ctx)
        self.native = ctx.native

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _per_sample(self, x, self._pool)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        op = self.source_op
        if (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and x.numel() > 0
                and np.prod(op.kernel_size) <= 256 and kernels.enabled(self.native, POOL_KERNEL)
                and kernels.extension(POOL_KERNEL) is not None):
            return _NativeMaxPool.apply(x, op)
        pool = F.max_pool1d if op.spatial_rank == 1 else F.max_pool2d
        return pool(x, op.kernel_size, op.stride, op.padding, op.dilation, ceil_mode=op.ceil_mode)


def window_args(op) -> list[int]:
    """A max pool's window as ``csrc/pool_scan.cpp`` takes it: kernel, stride, padding,
    dilation, each (h, w) (a 1-d pool as 2-d over one row)."""
    dims = [(1, 1, 0, 1)] * (2 - op.spatial_rank) + list(op._dims())
    return [d[j] for j in range(4) for d in dims]


class _NativeMaxPool(torch.autograd.Function):
    """``[N, C, *spatial]`` max pooled by the native kernel. Its backward scatters the gradient
    to each maximum's place (:class:`_ToMaxima`), differentiable again as torch's is."""

    @staticmethod
    def forward(ctx, x, op):  # type: ignore[override]
        spatial = tuple(x.shape[2:])
        out_spatial = tuple(pool_output_size(n, *dims, op.ceil_mode) for n, dims in zip(spatial, op._dims()))
        out_hw = (1,) * (2 - op.spatial_rank) + out_spatial
        planes = x.reshape((x.shape[0] * x.shape[1], 1 if op.spatial_rank == 1 else spatial[0], spatial[-1]))
        window = window_args(op)
        out, places = kernels.extension(POOL_KERNEL).max_pool_forward(planes.contiguous(), *out_hw, window)
        ctx.save_for_backward(places)
        ctx.shapes, ctx.window = (tuple(x.shape), planes.shape[1:]), window
        return out.view(tuple(x.shape[:2]) + out_spatial)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (places,) = ctx.saved_tensors
        return _ToMaxima.apply(grad, places, ctx.shapes, ctx.window), None


class _ToMaxima(torch.autograd.Function):
    """A pooled gradient ``[N, C, *out]`` added at its maxima's ``places`` -> ``[N, C, *in]``
    (the kernel's ``max_pool_backward``): linear in the gradient, so its own backward is the
    gather at the same places (:class:`_AtMaxima`), and the places get none (torch's rule)."""

    @staticmethod
    def forward(ctx, grad, places, shapes, window):  # type: ignore[override]
        ctx.save_for_backward(places)
        ctx.shapes, ctx.window, ctx.out_shape = shapes, window, tuple(grad.shape)
        in_shape, in_hw = shapes
        g = grad.reshape(places.shape).contiguous()
        return kernels.extension(POOL_KERNEL).max_pool_backward(g, places, *in_hw, window).view(in_shape)

    @staticmethod
    def backward(ctx, grad_in):  # type: ignore[override]
        (places,) = ctx.saved_tensors
        return _AtMaxima.apply(grad_in, places, ctx.shapes, ctx.window, ctx.out_shape), None, None, None


class _AtMaxima(torch.autograd.Function):
    """``[N, C, *in]`` read at each maximum's place -> ``[N, C, *out]``: the transpose of
    :class:`_ToMaxima`, whose backward it is (and which is its backward)."""

    @staticmethod
    def forward(ctx, x, places, shapes, window, out_shape):  # type: ignore[override]
        ctx.save_for_backward(places)
        ctx.shapes, ctx.window = shapes, window
        (_, in_w), (kh, kw, sh, sw, ph, pw, dh, dw) = shapes[1], window
        planes, out_h, out_w = places.shape
        at = dict(dtype=torch.long, device=places.device)
        offset = (torch.arange(kh, **at)[:, None] * (dh * in_w) + torch.arange(kw, **at) * dw).view(-1)
        corner = (torch.arange(out_h, **at)[:, None] * sh - ph) * in_w + torch.arange(out_w, **at) * sw - pw
        index = (corner + offset[places.long()]).view(planes, -1)
        return x.reshape(planes, -1).gather(1, index).view(out_shape)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (places,) = ctx.saved_tensors
        return _ToMaxima.apply(grad, places, ctx.shapes, ctx.window), None, None, None, None


LOWERINGS.update({Conv1d: ConvModule, Conv2d: ConvModule, SumPool2d: PoolModule, AvgPool2d: PoolModule,
                  MaxPool1d: MaxPoolModule, MaxPool2d: MaxPoolModule})
