"""Batch normalisation by fixed statistics, an extension op (NIR has none): ``snnir.BatchNorm``.

Per channel ``c`` of the per-sample shape ``[C, ...]`` (an eval-mode ``torch.nn.BatchNorm1d`` or
``BatchNorm2d``)::

    y[c, ...] = x[c, ...] * a[c] + b[c],   a = weight / sqrt(var + eps),   b = bias - mean * a

Rounding: the torch target computes it as torch's own eval kernel does (``F.batch_norm``), so a
traced model's values keep their bits; the reference computes the formula above in float64.
Written to a NIR file, a BatchNorm whose only source is a Linear, Affine or convolution feeding
nothing else is folded into that layer (``nir_io.batchnorm``): standard NIR, rounded otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snnir.errors import SnnirError
from snnir.ir.ops.base import Op, Shape, param, require_input
from snnir.ir.registry import register_op


@dataclass(frozen=True, eq=False)
class BatchNorm(Op):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, per channel (axis 0 of the sample)."""

    op_type = "snnir.BatchNorm"
    mean: np.ndarray = param()
    var: np.ndarray = param()
    weight: np.ndarray = param()
    bias: np.ndarray = param()
    eps: float = 1e-5

    def __post_init__(self) -> None:
        eps = self.eps
        if isinstance(eps, np.ndarray) and eps.size == 1:
            eps = eps.reshape(()).item()
        if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)):
            raise SnnirError(f"BatchNorm.eps must be a number, got {eps!r}")
        object.__setattr__(self, "eps", float(eps))
        super().__post_init__()
        if not (np.isfinite(self.eps) and self.eps >= 0):
            raise SnnirError(f"BatchNorm.eps must be finite and >= 0, got {self.eps!r}")
        shapes = {name: value.shape for name, value in self.params().items()}
        if len(set(shapes.values())) != 1 or len(self.mean.shape) != 1 or not self.mean.size:
            raise SnnirError(f"BatchNorm's mean, var, weight and bias must be 1-D, one value per channel, "
                             f"got shapes {', '.join(f'{n} {list(s)}' for n, s in shapes.items())}")
        for name, value in self.params().items():
            if not np.all(np.isfinite(value)):
                raise SnnirError(f"BatchNorm.{name} holds NaN or inf (channel {int(np.argmin(np.isfinite(value)))})")
        bad = np.flatnonzero(~(self.var.astype(np.float64) + self.eps > 0))
        if bad.size:
            raise SnnirError(f"BatchNorm.var + eps must be > 0, got {float(self.var[bad[0]])!r} + {self.eps!r} "
                             f"at channel {int(bad[0])}")

    @classmethod
    def trainable_params(cls) -> tuple[str, ...]:
        """Its statistics are fixed (torch keeps them as buffers): only weight and bias train."""
        return ("weight", "bias")

    @property
    def channels(self) -> int:
        return int(self.mean.size)

    def infer_shape(self, input_shape: Shape | None, node: str) -> Shape:
        shape = require_input(self, input_shape, node)
        if not shape or shape[0] != self.channels:
            raise SnnirError(f"BatchNorm of {self.channels} channels expects an input [{self.channels}, ...] "
                             f"(channels first), got {list(shape)}", node)
        return shape

    def coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        """``(a, b)`` in float64: ``y = x * a + b`` per channel."""
        f64 = {name: value.astype(np.float64) for name, value in self.params().items()}
        a = f64["weight"] / np.sqrt(f64["var"] + self.eps)
        return a, f64["bias"] - f64["mean"] * a


register_op(BatchNorm)
