"""Torch modules for the convolutions and pools (registered in ``modules.LOWERINGS``).

Each maps ``[*lead, C, *spatial]`` for any leading dims (time and batch folded into one
batch dim: one convolution for a whole sequence or a call's steps).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from snnir.ir.ops import AvgPool2d, Conv1d, Conv2d, SumPool2d
from snnir.ir.ops.pool import MaxPool1d, MaxPool2d
from snnir.targets.torch.modules import LOWERINGS, OpModule


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
        inside = bias.dim() == 1 and x.dtype == torch.float32 and x.device.type == "cpu"
        y = conv(x, self.weight, bias if inside else None, op.stride, op.explicit_padding(), op.dilation, op.groups)
        if inside:
            return y
        return y + (bias.reshape((-1,) + (1,) * op.spatial_rank) if bias.dim() else bias)


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
    """torch's max_pool1d / max_pool2d, time and batch folded into one batch dim."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _per_sample(self, x, self._pool)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        op = self.source_op
        pool = F.max_pool1d if op.spatial_rank == 1 else F.max_pool2d
        return pool(x, op.kernel_size, op.stride, op.padding, op.dilation, ceil_mode=op.ceil_mode)


LOWERINGS.update({Conv1d: ConvModule, Conv2d: ConvModule, SumPool2d: PoolModule, AvgPool2d: PoolModule,
                  MaxPool1d: MaxPoolModule, MaxPool2d: MaxPoolModule})
