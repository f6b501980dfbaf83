"""Whether a narrower float type holds a graph's parameters: a target computing in it must keep
every finite value finite and every non-zero value non-zero once cast, or it would step another
model than the reference without a word. Such a graph is refused, naming node and parameter."""

from __future__ import annotations

import numpy as np

from snnir.errors import SnnirError
from snnir.ir.graph import Graph


def check_params_fit(graph: Graph, dtype: type[np.floating], shown: str, remedy: str) -> None:
    """Refuse ``graph`` where casting a float parameter to ``dtype`` (called ``shown`` in the
    message, which ends with ``remedy``) makes a finite value infinite or a non-zero one 0."""
    for path, op in graph.walk():
        for name, value in op.params().items():
            if value.dtype.kind != "f":
                continue
            with np.errstate(over="ignore", under="ignore"):
                cast = value.astype(dtype)
            if np.any(np.isfinite(value) & ~np.isfinite(cast)) or np.any((value != 0) & (cast == 0)):
                raise SnnirError(f"parameter {name} has values {shown} cannot hold (beyond "
                                 f"+-{np.finfo(dtype).max:.3g}, or non-zero values it rounds to 0): {remedy}", path)
