"""Graph ports.

``Input``: y = x, the graph's external input of per-sample ``shape``.
``Output``: y = x, a graph result; ``shape`` is declared by files and checked
against inference when present (``None`` means "infer").
"""

from __future__ import annotations

from dataclasses import dataclass

from snnir.errors import SnnirError
from snnir.ir.ops.base import Op, Shape
from snnir.ir.ops.shape_utils import as_shape


@dataclass(frozen=True, eq=False)
class Input(Op):
    op_type = "Input"
    shape: Shape

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", as_shape(self.shape, "Input.shape"))
        super().__post_init__()

    def infer_shape(self, input_shape: Shape | None, node: str) -> Shape:
        if input_shape is not None and tuple(input_shape) != self.shape:
            raise SnnirError(f"Input expects shape {list(self.shape)}, got {list(input_shape)}", node)
        return self.shape


@dataclass(frozen=True, eq=False)
class Output(Op):
    op_type = "Output"
    shape: Shape | None = None

    def __post_init__(self) -> None:
        if self.shape is not None:
            object.__setattr__(self, "shape", as_shape(self.shape, "Output.shape"))
        super().__post_init__()

    def infer_shape(self, input_shape: Shape | None, node: str) -> Shape:
        if input_shape is None:
            raise SnnirError("Output has no input edge", node)
        return tuple(input_shape)
