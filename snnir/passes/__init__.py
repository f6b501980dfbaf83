"""Graph passes: named ``Graph -> Graph`` callables run by a pass manager."""

from __future__ import annotations

from typing import Any

from snnir.ir.graph import Graph


def optimize(graph: Graph, level: int = 2, passes: Any = None, **options: Any) -> Graph:
    """Run the level's pipeline (or ``passes``) and return a new Graph."""
    from snnir.passes.pipeline import optimize as _optimize

    return _optimize(graph, level=level, passes=passes, **options)
