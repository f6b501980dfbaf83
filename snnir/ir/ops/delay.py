"""``Delay``: y[t] = x[t - n] with n = delay / dt steps per element (x[t < 0] = 0).

``delay`` is in the unit of ``sem.dt`` and must be a whole number of steps.
State ``buffer`` holds the last max(n) inputs, newest last.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from snnir.errors import SnnirError
from snnir.ir.ops.base import Op, Shape, broadcast_param_shape, param, require_input
from snnir.ir.semantics import Semantics


@dataclass(frozen=True, eq=False)
class Delay(Op):
    op_type = "Delay"
    stateful = True
    delay: np.ndarray = param()
    sem: Semantics = field(default_factory=Semantics, kw_only=True)

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("buffer",)

    def steps(self, node: str = "?") -> np.ndarray:
        """Delay in whole steps (int64), or an error if not a whole number."""
        steps = np.asarray(self.delay, dtype=np.float64) / self.sem.dt
        rounded = np.round(steps)
        if not np.all(np.isfinite(steps)) or np.any(np.abs(steps - rounded) > 1e-6 * np.maximum(1, np.abs(steps))):
            raise SnnirError(f"Delay {self.delay.tolist()} is not a whole number of steps of dt={self.sem.dt}", node)
        if np.any(rounded < 0) or np.any(rounded > 1_000_000):
            raise SnnirError("Delay must be between 0 and 1e6 steps", node)
        return rounded.astype(np.int64)

    def state_elements(self, shape: Shape, node: str = "?") -> int:
        """The buffer: the longest delay in steps times the output size."""
        depth = int(self.steps(node).max()) if self.delay.size else 0
        return depth * int(np.prod(shape, dtype=object))

    def infer_shape(self, input_shape: Shape | None, node: str) -> Shape:
        shape = require_input(self, input_shape, node)
        broadcast_param_shape(self, shape, node, ("delay",))
        self.steps(node)
        return tuple(shape)
