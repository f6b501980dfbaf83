"""The torch target's dtype must hold the graph: every float parameter and every neuron's step
coefficients stay finite (and non-zero where they were) once cast, or the module would step a
different model than the reference without a word. In float32 a weight of 1e39 becomes inf, a
``tau`` of 1e-300 becomes 0 and ``dt / tau`` inf: such a graph is refused, naming the node and
the parameter, and runs in float64."""

from __future__ import annotations

import numpy as np
import torch

from snnir.errors import SnnirError
from snnir.ir import Graph
from snnir.ir.ops import Neuron
from snnir.targets.torch.neuron_update import coefficients

_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


def check_dtype_range(graph: Graph, dtype: torch.dtype) -> None:
    """Refuse ``graph`` (naming node and parameter) where ``dtype`` cannot hold a parameter or a
    neuron's step coefficient that float64 holds."""
    like = torch.zeros((), dtype=dtype)
    for path, op in graph.walk():
        for name, value in op.params().items():
            value = np.asarray(value)
            if value.dtype.kind != "f":
                continue
            with np.errstate(over="ignore", under="ignore"):
                cast = value.astype(_NUMPY[dtype])
            if np.any(np.isfinite(value) & ~np.isfinite(cast)) or np.any((value != 0) & (cast == 0)):
                raise SnnirError(f"parameter {name} has values {dtype} cannot hold (beyond +-{torch.finfo(dtype).max:.3g}, "
                                 "or non-zero values it rounds to 0): compile with dtype=torch.float64", path)
        if isinstance(op, Neuron):
            for name, coefficient in coefficients(op, {}, like).items():
                if isinstance(coefficient, torch.Tensor) and not bool(torch.isfinite(coefficient).all()):
                    raise SnnirError(f"the step coefficient {name} (from the time constants and dt) is not finite "
                                     f"in {dtype}: compile with dtype=torch.float64", path)
