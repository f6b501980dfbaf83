"""Stateless linear maps on one timestep (per sample; batch and time are outer).

- ``Affine``:  y = W x + b,  W: [out, in], b: [out]
- ``Linear``:  y = W x,      W: [out, in]
- ``Scale``:   y = s * x,    s broadcast to x
- ``Flatten``: y = reshape(x) joining dims start_dim..end_dim of the per-sample
  shape (negative dims count from the end, as in NIR).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snnir.errors import SnnirError
from snnir.ir.ops.base import Op, Shape, broadcast_param_shape, param, require_input


def _matmul_shape(op: Op, weight: np.ndarray, input_shape: Shape, node: str) -> Shape:
    if weight.ndim != 2:
        raise SnnirError(f"{op.op_type}.weight must be 2-D [out, in], got shape {list(weight.shape)}", node)
    if len(input_shape) != 1 or input_shape[0] != weight.shape[1]:
        raise SnnirError(
            f"{op.op_type} weight {list(weight.shape)} expects input [{weight.shape[1]}], got {list(input_shape)}",
            node,
        )
    return (int(weight.shape[0]),)


@dataclass(frozen=True, eq=False)
class Affine(Op):
    op_type = "Affine"
    weight: np.ndarray = param()
    bias: np.ndarray = param()

    def infer_shape(self, input_shape: Shape | None, node: str) -> Shape:
        out = _matmul_shape(self, self.weight, require_input(self, input_shape, node), node)
        if self.bias.shape not in ((), out):
            raise SnnirError(f"Affine.bias has shape {list(self.bias.shape)}, expected {list(out)}", node)
        return out


@dataclass(frozen=True, eq=False)
class Linear(Op):
    op_type = "Linear"
    weight: np.ndarray = param()

    def infer_shape(self, input_shape: Shape | None, node: str) -> Shape:
        return _matmul_shape(self, self.weight, require_input(self, input_shape, node), node)


@dataclass(frozen=True, eq=False)
class Scale(Op):
    op_type = "Scale"
    scale: np.ndarray = param()

    def infer_shape(self, input_shape: Shape | None, node: str) -> Shape:
        shape = require_input(self, input_shape, node)
        broadcast_param_shape(self, shape, node, ("scale",))
        return shape


@dataclass(frozen=True, eq=False)
class Flatten(Op):
    op_type = "Flatten"
    start_dim: int = 1
    end_dim: int = -1

    def __post_init__(self) -> None:
        for name in ("start_dim", "end_dim"):
            value = getattr(self, name)
            if isinstance(value, np.ndarray) and value.size == 1:
                value = value.reshape(()).item()
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise SnnirError(f"Flatten.{name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        super().__post_init__()

    def dims(self, rank: int, node: str) -> tuple[int, int]:
        start = self.start_dim + rank if self.start_dim < 0 else self.start_dim
        end = self.end_dim + rank if self.end_dim < 0 else self.end_dim
        if not (0 <= start <= end < rank):
            raise SnnirError(
                f"Flatten dims {self.start_dim}..{self.end_dim} do not fit an input of rank {rank}", node
            )
        return start, end

    def infer_shape(self, input_shape: Shape | None, node: str) -> Shape:
        shape = require_input(self, input_shape, node)
        start, end = self.dims(len(shape), node)
        joined = int(np.prod(shape[start : end + 1]))
        return tuple(shape[:start]) + (joined,) + tuple(shape[end + 1 :])
