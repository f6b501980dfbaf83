"""snnir's spiking layers for writing torch networks: ``LIF``, ``CubaLIF``, ``LI``, ``IF``, ``I``.

Each layer is one neuron op as a torch module, stepped exactly as
:mod:`snnir.ir.ops.neuron` states (the same code the torch target compiles to):

- ``layer(x, state=None) -> (y, new_state)``: one step on ``[B, *shape]``; the
  state is an explicit dict (``None`` starts from zero);
- ``layer.sequence(x)``: all steps of ``[T, B, *shape]`` -> ``[T, B, *shape]``;
- ``layer.to_op()``: the snnir op with the current parameter values (tracing
  uses it), its ``trainable`` naming the parameters this layer trains.

Parameters are scalars or arrays broadcast to the neuron shape; time constants
are in the unit of ``dt``. Semantics options (``discretisation``, ``reset``,
``reset_timing``, ``threshold_compare``, ``spike_mode``, ``current_order``) are
keyword arguments, as in :class:`snnir.ir.semantics.Semantics`.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch

from snnir.ir import ops
from snnir.ir.semantics import DEFAULT_DT, Semantics
from snnir.targets.torch.modules import LoweringContext
from snnir.targets.torch.neuron_module import NeuronModule
from snnir.targets.torch.surrogate import Surrogate


def _array(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


class _NeuronLayer(NeuronModule):
    op_class: type[ops.Neuron]

    def __init__(
        self,
        params: dict[str, Any],
        dt: float,
        surrogate: str | Surrogate,
        trainable: Iterable[str],
        semantics: dict[str, Any],
    ):
        trainable = tuple(trainable)
        op = self.op_class(
            **{k: _array(v) for k, v in params.items()}, sem=Semantics.from_dict({"dt": dt, **semantics}),
            trainable=trainable,
        )
        ctx = LoweringContext(
            path=self.op_class.op_type,
            trainable=frozenset(trainable),
            surrogate=surrogate if isinstance(surrogate, Surrogate) else Surrogate(surrogate),
            dtype=torch.get_default_dtype(),
            in_shape=None,
            out_shape=op.neuron_shape(),
        )
        super().__init__(op, ctx)

    def forward(self, x: torch.Tensor, state: dict[str, torch.Tensor] | None = None):
        if state is None:
            state = {name: torch.zeros_like(x) for name in self.source_op.state_names}
        return self.step(x, state)

    def sequence(self, x: torch.Tensor, state: dict[str, torch.Tensor] | None = None, record: bool = False):
        """All steps of ``x`` ``[T, B, ...]``; returns ``[T, B, ...]`` (and traces with ``record``)."""
        if state is None:
            state = {name: torch.zeros_like(x[0]) for name in self.source_op.state_names}
        out, _, traces = super().sequence(x, state, record)
        return (out, traces) if record else out


class I(_NeuronLayer):  # noqa: E742 - NIR's name
    """Integrator: v += dt r x; y = v."""

    op_class = ops.I

    def __init__(self, r: Any = 1.0, *, dt: float = DEFAULT_DT, surrogate="fast_sigmoid", trainable=(), **semantics):
        super().__init__({"r": r}, dt, surrogate, trainable, semantics)


class IF(_NeuronLayer):
    """Integrate-and-fire: v += dt r x; spikes above v_threshold, then reset."""

    op_class = ops.IF

    def __init__(self, r: Any = 1.0, v_threshold: Any = 1.0, v_reset: Any = 0.0, *, dt: float = DEFAULT_DT,
                 surrogate="fast_sigmoid", trainable=(), **semantics):
        super().__init__({"r": r, "v_threshold": v_threshold, "v_reset": v_reset}, dt, surrogate, trainable,
                         semantics)


class LI(_NeuronLayer):
    """Leaky integrator: tau dv/dt = (v_leak - v) + r x; y = v."""

    op_class = ops.LI

    def __init__(self, tau: Any, r: Any = 1.0, v_leak: Any = 0.0, *, dt: float = DEFAULT_DT,
                 surrogate="fast_sigmoid", trainable=(), **semantics):
        super().__init__({"tau": tau, "r": r, "v_leak": v_leak}, dt, surrogate, trainable, semantics)


class LIF(_NeuronLayer):
    """Leaky integrate-and-fire: LI dynamics, spikes above v_threshold, then reset."""

    op_class = ops.LIF

    def __init__(self, tau: Any, r: Any = 1.0, v_leak: Any = 0.0, v_threshold: Any = 1.0, v_reset: Any = 0.0, *,
                 dt: float = DEFAULT_DT, surrogate="fast_sigmoid", trainable=(), **semantics):
        super().__init__({"tau": tau, "r": r, "v_leak": v_leak, "v_threshold": v_threshold, "v_reset": v_reset},
                         dt, surrogate, trainable, semantics)


class CubaLIF(_NeuronLayer):
    """Current-based LIF: tau_syn di/dt = -i + w_in x; LIF membrane driven by r i."""

    op_class = ops.CubaLIF

    def __init__(self, tau_syn: Any, tau_mem: Any, r: Any = 1.0, v_leak: Any = 0.0, v_threshold: Any = 1.0,
                 v_reset: Any = 0.0, w_in: Any = 1.0, *, dt: float = DEFAULT_DT, surrogate="fast_sigmoid",
                 trainable=(), **semantics):
        super().__init__({"tau_syn": tau_syn, "tau_mem": tau_mem, "r": r, "v_leak": v_leak,
                          "v_threshold": v_threshold, "v_reset": v_reset, "w_in": w_in},
                         dt, surrogate, trainable, semantics)


__all__ = ["I", "IF", "LI", "LIF", "CubaLIF"]
