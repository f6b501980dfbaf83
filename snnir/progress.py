"""Progress for long work: a tqdm bar on stderr when it is a terminal, silence otherwise.

One helper for every long loop (the reference interpreter over many steps, kernel builds,
benchmarks, the interop matrix, the demo's training). A bar appears only after ``delay``
seconds, so short work prints nothing; piped or captured output never gets one.
"""

from __future__ import annotations

import sys
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, *, desc: str, total: int | None = None, unit: str = "it",
             delay: float = 0.5) -> tqdm:
    """``iterable`` wrapped in a bar (or, without one, a bar to ``update()`` by hand up to ``total``);
    use it as an iterator or a context manager. ``set_postfix_str`` adds a one-line status."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, disable=not _is_terminal(),
                leave=False, delay=delay, dynamic_ncols=True)


def steps(count: int, desc: str = "steps") -> Iterator[int]:
    """``range(count)`` with a bar in time steps."""
    return iter(progress(range(count), desc=desc, unit="step"))


def echo(text: str) -> None:
    """Print a line to stdout without breaking a bar that is showing."""
    tqdm.write(text, file=sys.stdout)
    sys.stdout.flush()


def _is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False
