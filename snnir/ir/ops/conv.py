"""Convolutions and pooling over the per-sample shape [C, *spatial].

- ``Conv1d`` / ``Conv2d``: y = b + sum over (C_in/groups, kernel) of W * x_padded
  (cross-correlation, as torch), W: [C_out, C_in/groups, *k]; spatial output
  floor((n + 2p - d(k - 1) - 1) / s) + 1. ``padding`` is integers or
  ``"same"`` / ``"valid"``. ``input_shape`` (spatial only) is optional, as in NIR.
- ``SumPool2d``: y = sum of each (zero-padded) kernel window.
- ``AvgPool2d``: y = mean of each window, zero padding counted (torch's
  ``count_include_pad=True``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from snnir.errors import SnnirError
from snnir.ir.ops.base import Op, Shape, param, require_input
from snnir.ir.ops.shape_utils import as_int_tuple, as_shape


def _spatial_out(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


class _ConvBase(Op):
    spatial_rank = 0

    def _normalise(self) -> None:
        rank = self.spatial_rank
        set_ = object.__setattr__
        set_(self, "stride", as_int_tuple(self.stride, rank, f"{self.op_type}.stride", 1))
        set_(self, "dilation", as_int_tuple(self.dilation, rank, f"{self.op_type}.dilation", 1))
        padding = self.padding
        if isinstance(padding, bytes):
            padding = padding.decode()
        if isinstance(padding, np.ndarray) and padding.dtype.kind in "SUO":
            padding = str(padding.reshape(()).item())
            padding = padding.decode() if isinstance(padding, bytes) else padding
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise SnnirError(f"{self.op_type}.padding must be 'same', 'valid' or integers, got {padding!r}")
            set_(self, "padding", padding)
        else:
            set_(self, "padding", as_int_tuple(padding, rank, f"{self.op_type}.padding", 0))
        groups = self.groups
        if isinstance(groups, np.ndarray):
            groups = groups.reshape(()).item() if groups.size == 1 else groups
        set_(self, "groups", as_int_tuple(groups, 1, f"{self.op_type}.groups", 1)[0])
        if self.input_shape is not None:
            set_(self, "input_shape", as_shape(self.input_shape, f"{self.op_type}.input_shape"))

    def explicit_padding(self) -> tuple[int, ...]:
        """Symmetric integer padding; ``same`` needs odd effective kernels and stride 1."""
        if self.padding == "valid":
            return (0,) * self.spatial_rank
        if self.padding == "same":
            pads = []
            for k, d, s in zip(self.weight.shape[2:], self.dilation, self.stride):
                total = d * (k - 1)
                if total % 2 or s != 1:
                    raise SnnirError(f"{self.op_type} padding 'same' needs an odd effective kernel and stride 1")
                pads.append(total // 2)
            return tuple(pads)
        return tuple(self.padding)

    def infer_shape(self, input_shape: Shape | None, node: str) -> Shape:
        shape = require_input(self, input_shape, node)
        rank = self.spatial_rank
        weight = self.weight
        if weight.ndim != rank + 2 or 0 in weight.shape:
            raise SnnirError(
                f"{self.op_type}.weight must be {rank + 2}-D and non-empty, got shape {list(weight.shape)}", node
            )
        if len(shape) != rank + 1:
            raise SnnirError(f"{self.op_type} expects input [C, {rank} spatial dims], got {list(shape)}", node)
        c_out, c_in_per_group = int(weight.shape[0]), int(weight.shape[1])
        if shape[0] != c_in_per_group * self.groups or c_out % self.groups:
            raise SnnirError(
                f"{self.op_type} weight {list(weight.shape)} with groups={self.groups} "
                f"does not fit input channels {shape[0]}",
                node,
            )
        if self.bias.shape not in ((), (c_out,)):
            raise SnnirError(f"{self.op_type}.bias has shape {list(self.bias.shape)}, expected [{c_out}]", node)
        if self.input_shape is not None and tuple(shape[1:]) != self.input_shape:
            raise SnnirError(
                f"{self.op_type} declares input_shape {list(self.input_shape)} but receives {list(shape[1:])}",
                node,
            )
        try:
            pads = self.explicit_padding()
        except SnnirError as exc:
            raise SnnirError(exc.reason, node) from None
        spatial = tuple(
            _spatial_out(n, k, s, p, d)
            for n, k, s, p, d in zip(shape[1:], weight.shape[2:], self.stride, pads, self.dilation)
        )
        if any(n <= 0 for n in spatial):
            raise SnnirError(f"{self.op_type} output would be empty for input {list(shape)}", node)
        return (c_out,) + spatial


@dataclass(frozen=True, eq=False)
class Conv1d(_ConvBase):
    op_type = "Conv1d"
    spatial_rank = 1
    weight: np.ndarray = param()
    bias: np.ndarray = param(default_factory=lambda: np.zeros(()))
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    input_shape: Shape | None = None

    def __post_init__(self) -> None:
        self._normalise()
        super().__post_init__()


@dataclass(frozen=True, eq=False)
class Conv2d(_ConvBase):
    op_type = "Conv2d"
    spatial_rank = 2
    weight: np.ndarray = param()
    bias: np.ndarray = param(default_factory=lambda: np.zeros(()))
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    input_shape: Shape | None = None

    def __post_init__(self) -> None:
        self._normalise()
        super().__post_init__()


class _Pool2dBase(Op):
    def _normalise(self) -> None:
        set_ = object.__setattr__
        set_(self, "kernel_size", as_int_tuple(self.kernel_size, 2, f"{self.op_type}.kernel_size", 1))
        stride = self.kernel_size if self.stride is None else self.stride
        set_(self, "stride", as_int_tuple(stride, 2, f"{self.op_type}.stride", 1))
        set_(self, "padding", as_int_tuple(self.padding, 2, f"{self.op_type}.padding", 0))

    def infer_shape(self, input_shape: Shape | None, node: str) -> Shape:
        shape = require_input(self, input_shape, node)
        if len(shape) != 3:
            raise SnnirError(f"{self.op_type} expects input [C, H, W], got {list(shape)}", node)
        spatial = tuple(
            _spatial_out(n, k, s, p, 1)
            for n, k, s, p in zip(shape[1:], self.kernel_size, self.stride, self.padding)
        )
        if any(n <= 0 for n in spatial):
            raise SnnirError(f"{self.op_type} output would be empty for input {list(shape)}", node)
        return (shape[0],) + spatial


@dataclass(frozen=True, eq=False)
class SumPool2d(_Pool2dBase):
    op_type = "SumPool2d"
    kernel_size: Any = 2
    stride: Any = None
    padding: Any = 0

    def __post_init__(self) -> None:
        self._normalise()
        super().__post_init__()


@dataclass(frozen=True, eq=False)
class AvgPool2d(_Pool2dBase):
    op_type = "AvgPool2d"
    kernel_size: Any = 2
    stride: Any = None
    padding: Any = 0

    def __post_init__(self) -> None:
        self._normalise()
        super().__post_init__()
