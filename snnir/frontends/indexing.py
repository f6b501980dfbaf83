"""Shape helpers of the recorder: which index picks a step, which reshape is a flatten."""

from __future__ import annotations

from typing import Any


def picks_one(index: Any, dim: int, ndim: int) -> bool:
    """``index`` takes one integer position along ``dim`` and everything of the other dims."""
    items = list(index) if isinstance(index, tuple) else [index]
    if items.count(Ellipsis) > 1:
        return False
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at : at + 1] = [slice(None)] * (ndim - len(items) + 1)
    items += [slice(None)] * (ndim - len(items))
    whole = [isinstance(i, slice) and i == slice(None) for i in items]
    picked = items[dim] if dim < len(items) else None
    return (len(items) == ndim and isinstance(picked, int) and not isinstance(picked, bool)
            and all(w for k, w in enumerate(whole) if k != dim))


def time_index(index: Any) -> bool:
    """``x[t]``, ``x[a:b]`` or ``x[None]``: an index that only touches the leading (time) dimension."""
    return index is None or isinstance(index, slice) or (isinstance(index, int) and not isinstance(index, bool))


def flatten_dims(before: tuple[int, ...], after: tuple[int, ...]) -> tuple[int, int] | None:
    """(start, end) with ``flatten(start, end)`` mapping ``before`` to ``after`` (batched shapes)."""
    if before == after or not before or not after or before[0] != after[0]:
        return None
    for start in range(1, len(before)):
        for end in range(start + 1, len(before)):
            joined = 1
            for d in before[start : end + 1]:
                joined *= d
            if before[:start] + (joined,) + before[end + 1 :] == after:
                return start, end - len(before) if end == len(before) - 1 else end
    return None
