"""Graph passes: named ``Graph -> Graph`` callables run by a pass manager.

Importing this package registers every built-in pass in :data:`PASSES` and
the extension ops' standard-NIR lowering (when :mod:`snnir.ir.nir_io` exists).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from snnir.ir.graph import Graph
from snnir.passes import canonical, fusion, planning, structure  # noqa: F401 - register the passes
from snnir.passes.analysis import Cost, estimate_cost
from snnir.passes.base import PASSES, Match, Pass, PassManager, RewritePass, Rule, get_pass, register_pass
from snnir.passes.pipeline import LEVELS, pipeline
from snnir.passes.planning import declare_static, execution_plan, hoisted_nodes


def optimize(graph: Graph, level: int | None = None, passes: Any = None, **options: Any) -> Graph:
    """Run the level's pipeline (or ``passes``) and return a new Graph."""
    from snnir.passes.pipeline import optimize as _optimize

    return _optimize(graph, level=level, passes=passes, **options)


def _register_nir_lowering() -> None:
    """Writing a .nir file lowers extension ops to standard NIR via their expansion."""
    if importlib.util.find_spec("snnir.ir.nir_io") is None:
        return
    from snnir.ir.nir_io import LOWER_EXTENSION
    from snnir.ir.ops.fused import EXTENSION_OPS

    for cls in EXTENSION_OPS:
        LOWER_EXTENSION.setdefault(cls, cls.expand)


_register_nir_lowering()

__all__ = [
    "optimize", "PASSES", "Pass", "PassManager", "Rule", "Match", "RewritePass", "register_pass", "get_pass",
    "LEVELS", "pipeline", "declare_static", "execution_plan", "hoisted_nodes", "Cost", "estimate_cost",
]
