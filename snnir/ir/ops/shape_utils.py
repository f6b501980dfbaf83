"""Normalising shape-like values from users and files."""

from __future__ import annotations

from typing import Any

import numpy as np

from snnir.errors import SnnirError

#: A per-sample tensor with more elements than this is refused as absurd.
MAX_ELEMENTS = 1 << 31


def as_shape(value: Any, what: str) -> tuple[int, ...]:
    """A tuple of positive ints, or a clear error."""
    try:
        array = np.asarray(value)
        if array.ndim > 1 or array.dtype.kind not in "iub" and not (
            array.dtype.kind == "f" and np.all(np.mod(array, 1) == 0)
        ):
            raise ValueError
        dims = tuple(int(v) for v in np.atleast_1d(array))
    except (TypeError, ValueError, OverflowError):
        raise SnnirError(f"{what} must be a list of positive integers, got {value!r}") from None
    if any(d <= 0 for d in dims):
        raise SnnirError(f"{what} must be positive, got {list(dims)}")
    if int(np.prod(dims, dtype=object)) > MAX_ELEMENTS:
        raise SnnirError(f"{what} {list(dims)} has more than {MAX_ELEMENTS} elements")
    return dims


def as_int_tuple(value: Any, length: int, what: str, minimum: int = 0) -> tuple[int, ...]:
    """An int or sequence of ints, broadcast to ``length`` entries >= ``minimum``."""
    try:
        array = np.atleast_1d(np.asarray(value))
        if array.ndim != 1 or array.dtype.kind not in "iuf" or np.any(np.mod(array, 1) != 0):
            raise ValueError
        dims = tuple(int(v) for v in array)
    except (TypeError, ValueError, OverflowError):
        raise SnnirError(f"{what} must be integers, got {value!r}") from None
    if len(dims) == 1:
        dims = dims * length
    if len(dims) != length or any(d < minimum for d in dims):
        raise SnnirError(f"{what} must be {length} integers >= {minimum}, got {list(dims)}")
    return dims
