"""Optimisation levels and :func:`optimize`.

-O0: nothing. -O1: canonicalize, eliminate_dead_nodes, fold_affine (then
canonicalize again to tidy what folding left). -O2: flatten_subgraphs first,
then -O1, then fuse_layer_neuron, time_batch, hoist_time_invariant.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from snnir.errors import SnnirError
from snnir.ir.graph import Graph
from snnir.passes.base import PassManager

LEVELS: dict[int, tuple[str, ...]] = {
    0: (),
    1: ("canonicalize", "eliminate_dead_nodes", "fold_affine"),
    2: (
        "flatten_subgraphs", "canonicalize", "eliminate_dead_nodes", "fold_affine",
        "fuse_layer_neuron", "time_batch", "hoist_time_invariant",
    ),
}


def pipeline(level: int) -> tuple[str, ...]:
    """The pass names run at ``level``."""
    try:
        return LEVELS[level]
    except (KeyError, TypeError):
        raise SnnirError(f"unknown optimisation level {level!r} (known: {sorted(LEVELS)})") from None


def optimize(
    graph: Graph,
    level: int | None = None,
    passes: Iterable[Any] | None = None,
    *,
    verify_each: bool = True,
    dump_after: Iterable[str] = (),
    dump: Callable[[str, str], None] | None = None,
    **options: Any,
) -> Graph:
    """Run ``passes`` (names, Pass objects or ``Graph -> Graph`` functions; one name alone too), or
    the pipeline of ``level`` (2 by default; not both), and return the new graph. ``options`` go
    to the passes that declare them (e.g. ``dt=`` for change_dt, ``static_inputs=`` for
    hoist_time_invariant)."""
    if not isinstance(graph, Graph):
        raise SnnirError(f"optimize needs a Graph, got {type(graph).__name__}")
    if passes is not None and level is not None:
        raise SnnirError("optimize takes a level or a list of passes, not both (a level is a list of passes: "
                         "snnir.passes.pipeline(level))")
    if isinstance(passes, str):
        passes = [passes]
    names = list(passes) if passes is not None else list(pipeline(2 if level is None else level))
    manager = PassManager(names, verify_each=verify_each, dump_after=dump_after, dump=dump, options=options)
    return manager(graph)
