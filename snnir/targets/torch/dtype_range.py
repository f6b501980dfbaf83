"""The torch target's dtype must hold the graph: every float parameter (:mod:`snnir.targets.precision`)
and every neuron's step coefficients stay finite (and non-zero where they were) once cast, or the module would step a
different model than the reference without a word. In float32 a weight of 1e39 becomes inf, a
``tau`` of 1e-300 becomes 0 and ``dt / tau`` inf: such a graph is refused, naming the node and
the parameter, and runs in float64."""

from __future__ import annotations

import numpy as np
import torch

from snnir.errors import SnnirError
from snnir.ir import Graph
from snnir.ir.ops import Neuron
from snnir.targets.precision import check_params_fit
from snnir.targets.torch.neuron_update import coefficients

_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


def check_dtype_range(graph: Graph, dtype: torch.dtype) -> None:
    """Refuse ``graph`` (naming node and parameter) where ``dtype`` cannot hold a parameter or a
    neuron's step coefficient that float64 holds."""
    remedy = "compile with dtype=torch.float64"
    check_params_fit(graph, _NUMPY[dtype], str(dtype), remedy)
    like = torch.zeros((), dtype=dtype)
    for path, op in graph.walk():
        if isinstance(op, Neuron):
            for name, coefficient in coefficients(op, {}, like).items():
                if isinstance(coefficient, torch.Tensor) and not bool(torch.isfinite(coefficient).all()):
                    raise SnnirError(f"the step coefficient {name} (from the time constants and dt) is not finite "
                                     f"in {dtype}: {remedy}", path)
