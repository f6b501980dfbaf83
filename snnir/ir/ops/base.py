"""The op base class: a small frozen dataclass whose array fields are read-only.

Invariants every op keeps:
- fields declared with :func:`param` hold read-only ``numpy`` arrays of real
  numbers, in the dtype they were given (so files round-trip losslessly), except a float
  wider than float64 (HDF5's long double), held as float64 where that is exact and else refused
  (no target computes in it);
- ``op_type`` is the registry key and, for NIR primitives, the NIR type name;
- ``infer_shape`` maps one input shape (per sample: no time, no batch) to the
  output shape, or raises :class:`SnnirError` naming the node;
- stateful ops list their state variables in ``state_names`` and count them in ``state_elements``.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np

from snnir.errors import SnnirError

Shape = tuple[int, ...]

#: Parameters larger than this many elements are refused as absurd.
MAX_PARAM_ELEMENTS = 1 << 28


def param(**kwargs: Any) -> Any:
    """Declare a numeric array field of an op."""
    return field(metadata={"kind": "param"}, **kwargs)


def _freeze_array(name: str, value: Any, op_type: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        array = value
    else:
        try:
            array = np.asarray(value)
        except Exception as exc:  # noqa: BLE001 - anything numpy refuses is bad input
            raise SnnirError(f"{op_type}.{name} is not an array: {exc}") from None
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
    ):
        raise SnnirError(f"{op_type}.{name} must be numeric, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise SnnirError(f"{op_type}.{name} must be real, got dtype {array.dtype}")
    if array.size > MAX_PARAM_ELEMENTS:
        raise SnnirError(
            f"{op_type}.{name} has {array.size} elements, more than the limit {MAX_PARAM_ELEMENTS}"
        )
    if array.dtype.kind == "f" and array.dtype.itemsize > 8:
        wide, array = array, array.astype(np.float64)
        if not np.array_equal(array.astype(wide.dtype), wide, equal_nan=True):
            raise SnnirError(f"{op_type}.{name} is stored as {wide.dtype} with values float64 cannot hold exactly "
                             "(no target computes in it): store it as float64")
    array = array.copy() if array.flags.writeable or array.base is not None else array
    array.setflags(write=False)
    return array


def values_equal(a: Any, b: Any) -> bool:
    """Deep equality for op fields and metadata: arrays compare by dtype, shape and value."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a_arr, b_arr = np.asarray(a), np.asarray(b)
        return (
            a_arr.dtype == b_arr.dtype
            and a_arr.shape == b_arr.shape
            and bool(np.array_equal(a_arr, b_arr, equal_nan=a_arr.dtype.kind == "f"))
        )
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return set(a) == set(b) and all(values_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b))
    return bool(a == b)


@dataclass(frozen=True, eq=False)
class Op:
    """Base of all ops. ``metadata`` is free-form and travels with the node;
    ``trainable`` names the parameters a regenerated module should train."""

    op_type: ClassVar[str] = "Op"
    stateful: ClassVar[bool] = False

    metadata: Mapping[str, Any] = field(default_factory=dict, kw_only=True)
    trainable: tuple[str, ...] = field(default=(), kw_only=True)

    def __post_init__(self) -> None:
        for name in self.param_names():
            object.__setattr__(self, name, _freeze_array(name, getattr(self, name), self.op_type))
        object.__setattr__(self, "trainable", tuple(self.trainable))
        unknown = [t for t in self.trainable if t not in self.trainable_params()]
        if unknown:
            raise SnnirError(f"{self.op_type} has no parameters {unknown} to train")

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        return _param_names(cls)

    @classmethod
    def trainable_params(cls) -> tuple[str, ...]:
        """The parameters a compiled module may train: all, unless the op says otherwise."""
        return _param_names(cls)

    @classmethod
    def attribute_names(cls) -> tuple[str, ...]:
        """Non-array fields that define the op (not metadata or trainable)."""
        return tuple(
            f.name
            for f in dataclasses.fields(cls)
            if f.metadata.get("kind") != "param" and f.name not in ("metadata", "trainable")
        )

    def params(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.param_names()}

    @property
    def state_names(self) -> tuple[str, ...]:
        return ()

    def state_elements(self, shape: Shape, node: str = "?") -> int:
        """Numbers of state one sample needs, given the op's output ``shape``: one
        per output element and state variable (0 for a stateless op)."""
        return int(np.prod(shape, dtype=object)) * len(self.state_names)

    def infer_shape(self, input_shape: Shape | None, node: str) -> Shape:
        raise NotImplementedError

    def replace(self, **changes: Any) -> "Op":
        """A new op with ``changes`` applied; the original is untouched."""
        return dataclasses.replace(self, **changes)

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        return all(
            values_equal(getattr(self, f.name), getattr(other, f.name))
            for f in dataclasses.fields(self)
        )

    __hash__ = None  # type: ignore[assignment]

    def summary(self) -> str:
        """Parameters in a few words, for printing."""
        parts = []
        for name, value in self.params().items():
            if value.size == 1:
                parts.append(f"{name}={value.reshape(-1)[0]:.4g}")
            else:
                parts.append(f"{name}:{list(value.shape)}")
        for name in self.attribute_names():
            if name in ("sem", "graph"):
                continue
            parts.append(f"{name}={getattr(self, name)!r}")
        return " ".join(parts)


def require_input(op: Op, input_shape: Shape | None, node: str) -> Shape:
    if input_shape is None:
        raise SnnirError(f"{op.op_type} has no input", node)
    return input_shape


def broadcast_param_shape(op: Op, input_shape: Shape, node: str, names: tuple[str, ...]) -> None:
    """Every named parameter must be a scalar or broadcast to ``input_shape``."""
    for name in names:
        shape = getattr(op, name).shape
        try:
            out = np.broadcast_shapes(shape, input_shape)
        except ValueError:
            out = None
        if out != tuple(input_shape):
            raise SnnirError(
                f"{op.op_type}.{name} has shape {list(shape)}, which does not fit input shape {list(input_shape)}",
                node,
            )


@functools.cache
def _param_names(cls: type) -> tuple[str, ...]:
    """The array fields of an op class, in field order (once per class: runtimes ask per call)."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("kind") == "param")
