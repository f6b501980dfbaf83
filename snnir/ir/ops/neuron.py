r"""Neuron models, stepped in discrete time as their ``sem`` (:class:`Semantics`) says.

Continuous dynamics (NIR's definitions), input ``x`` being the sum of all
incoming edges at a step:

- ``I``:       dv/dt = r x;                                       y = v
- ``IF``:      dv/dt = r x;                        spikes z, reset; y = z
- ``LI``:      tau dv/dt = (v_leak - v) + r x;                    y = v
- ``LIF``:     tau dv/dt = (v_leak - v) + r x;     spikes z, reset; y = z
- ``CubaLI``:  tau_syn di/dt = -i + w_in x;  tau_mem dv/dt = (v_leak - v) + r i;  y = v
- ``CubaLIF``: as CubaLI, with spikes z and reset;                 y = z
- ``Threshold`` (stateless): y = 1 if x > threshold else 0.

Discrete step from state (v, i, z_prev) with decay a and input gain b for a
time constant tau:  euler: a = 1 - dt/tau, b = dt/tau;  exp: a = exp(-dt/tau),
b = 1 - a.  For I and IF both give v + dt r x (a = 1, gain dt).

    leak(v)  = v_leak + a_mem (v - v_leak)
    i'       = a_syn i + b_syn w_in x                 (Cuba only)
    drive    = r x  |  r i'  (current_first)  |  r i  (voltage_first)
    same:  u = leak(v) + b_mem drive;  z = spike(u);  v' = reset(u, z)
    next, zero reset:
           u = reset(leak(v), z_prev) + b_mem drive;  z = spike(u);  v' = u
    next, subtract reset; next_after_input:
           u = reset(leak(v) + b_mem drive, z_prev);  z = spike(u);  v' = u

(For a subtract reset the two delayed orders are equal in exact arithmetic;
the input-first order is snnTorch's float rounding.)

Fed-back drive (:mod:`snnir.ir.schedule`, ``Schedule.fed_back``): where some of a
neuron's edges come from its own recurrent component and some from outside, ``x``
above is the sum of the outside ones and the others' sum ``f`` enters right after
it, through the same gain: ``i' = (a_syn i + b_syn w_in x) + b_syn w_in f`` (Cuba),
else ``u = (leak(v) + b_mem r x) + b_mem r f`` before a delayed reset (snnTorch's
``RLeaky``/``RSynaptic`` rounding). Otherwise ``x`` is the sum of all its edges.

    spike(u): single: 1 if u > thr (gt) or u >= thr (ge), else 0
              multi:  max(floor(u / thr), 0)          (requires ge)
    reset(u, z): zero: v_reset where z > 0 else u;  subtract: u - z thr;  none: u

States are ``v`` (and ``i`` for Cuba neurons; ``z`` for spiking neurons with
``reset_timing`` "next" or "next_after_input"), all zero at t = 0. The
current ``i`` is never reset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from snnir.errors import SnnirError
from snnir.ir.ops.base import Op, Shape, broadcast_param_shape, param, require_input
from snnir.ir.semantics import DELAYED_RESET_TIMINGS, Semantics


class Neuron(Op):
    """A stateful elementwise op; parameters are scalars or match the input shape."""

    stateful = True
    spiking = False
    has_current = False

    def __post_init__(self) -> None:
        if not isinstance(self.sem, Semantics):
            raise SnnirError(f"{self.op_type}.sem must be a Semantics, got {type(self.sem).__name__}")
        if self.sem.spike_mode == "multi" and self.sem.threshold_compare != "ge":
            raise SnnirError(f"{self.op_type}: spike_mode 'multi' needs threshold_compare 'ge'")
        super().__post_init__()

    @property
    def state_names(self) -> tuple[str, ...]:
        names = ("i", "v") if self.has_current else ("v",)
        if self.spiking and self.sem.reset_timing in DELAYED_RESET_TIMINGS:
            names += ("z",)
        return names

    def neuron_shape(self) -> Shape:
        """The shape the parameters broadcast to (``()`` when all are scalars)."""
        try:
            return tuple(np.broadcast_shapes(*(p.shape for p in self.params().values())))
        except ValueError:
            raise SnnirError(
                f"{self.op_type} parameters have incompatible shapes "
                f"{ {k: list(v.shape) for k, v in self.params().items()} }"
            ) from None

    def infer_shape(self, input_shape: Shape | None, node: str) -> Shape:
        shape = require_input(self, input_shape, node)
        broadcast_param_shape(self, shape, node, self.param_names())
        return tuple(shape)


def _sem_field() -> Semantics:
    return field(default_factory=Semantics, kw_only=True)


def _zeros() -> np.ndarray:
    return field(default_factory=lambda: np.zeros(()), metadata={"kind": "param"})


def _ones() -> np.ndarray:
    return field(default_factory=lambda: np.ones(()), metadata={"kind": "param"})


@dataclass(frozen=True, eq=False)
class I(Neuron):  # noqa: E742 - NIR's name
    op_type = "I"
    r: np.ndarray = param()
    sem: Semantics = _sem_field()


@dataclass(frozen=True, eq=False)
class IF(Neuron):
    op_type = "IF"
    spiking = True
    r: np.ndarray = param()
    v_threshold: np.ndarray = param()
    v_reset: np.ndarray = _zeros()
    sem: Semantics = _sem_field()


@dataclass(frozen=True, eq=False)
class LI(Neuron):
    op_type = "LI"
    tau: np.ndarray = param()
    r: np.ndarray = param()
    v_leak: np.ndarray = param()
    sem: Semantics = _sem_field()


@dataclass(frozen=True, eq=False)
class LIF(Neuron):
    op_type = "LIF"
    spiking = True
    tau: np.ndarray = param()
    r: np.ndarray = param()
    v_leak: np.ndarray = param()
    v_threshold: np.ndarray = param()
    v_reset: np.ndarray = _zeros()
    sem: Semantics = _sem_field()


@dataclass(frozen=True, eq=False)
class CubaLI(Neuron):
    op_type = "CubaLI"
    has_current = True
    tau_syn: np.ndarray = param()
    tau_mem: np.ndarray = param()
    r: np.ndarray = param()
    v_leak: np.ndarray = param()
    w_in: np.ndarray = _ones()
    sem: Semantics = _sem_field()


@dataclass(frozen=True, eq=False)
class CubaLIF(Neuron):
    op_type = "CubaLIF"
    spiking = True
    has_current = True
    tau_syn: np.ndarray = param()
    tau_mem: np.ndarray = param()
    r: np.ndarray = param()
    v_leak: np.ndarray = param()
    v_threshold: np.ndarray = param()
    v_reset: np.ndarray = _zeros()
    w_in: np.ndarray = _ones()
    sem: Semantics = _sem_field()


@dataclass(frozen=True, eq=False)
class Threshold(Op):
    """y = 1 if x > threshold else 0 (stateless)."""

    op_type = "Threshold"
    threshold: np.ndarray = param()

    def infer_shape(self, input_shape: Shape | None, node: str) -> Shape:
        shape = require_input(self, input_shape, node)
        broadcast_param_shape(self, shape, node, ("threshold",))
        return tuple(shape)
