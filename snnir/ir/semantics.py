"""Time semantics that NIR leaves implicit, made explicit per stateful node.

NIR describes neurons in continuous time. Simulators step them in discrete
time, and they differ in how: the step ``dt``, the discretisation, how and
when a spike resets the membrane, how a spike is detected, and (for
current-based neurons) whether the membrane sees this step's current or the
last one. A :class:`Semantics` value pins every one of these down; the
reference interpreter executes exactly what it says.
"""

from __future__ import annotations

import math
import numbers
import reprlib
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping

import numpy as np

from snnir.errors import SnnirError

DISCRETISATIONS = ("euler", "exp")
RESETS = ("zero", "subtract", "none")
RESET_TIMINGS = ("same", "next", "next_after_input")
#: Timings that apply the previous step's spikes, so a spiking neuron keeps them as state ``z``.
DELAYED_RESET_TIMINGS = ("next", "next_after_input")
THRESHOLD_COMPARES = ("gt", "ge")
SPIKE_MODES = ("single", "multi")
CURRENT_ORDERS = ("current_first", "voltage_first")

#: NIR's paper and snnTorch's exporter use this step when a file names none.
DEFAULT_DT = 1e-4

#: a decay of exactly 1 (no leak) as a time constant of this many steps: ``1 - dt/tau`` rounds to 1 in
#: float32 and float64 and ``(dt/tau) (tau/dt)`` is exactly 1, everything scaled by powers of two
NO_LEAK_STEPS = 2.0**60


def euler_tau(decay: np.ndarray, dt: float) -> np.ndarray:
    """The forward-Euler time constant ``dt / (1 - decay)`` of per-step decays, a decay of exactly 1
    as :data:`NO_LEAK_STEPS` steps."""
    no_leak = decay == 1.0
    return np.where(no_leak, dt * NO_LEAK_STEPS, dt / np.where(no_leak, 1.0, 1.0 - decay))


def resets_after_input(reset: str, reset_timing: str) -> bool:
    """True when a delayed reset applies to ``leak(v) + drive`` (``"next_after_input"``, or
    ``"next"`` with a subtract reset), False when it applies before the input or in the same step."""
    return reset_timing == "next_after_input" or (reset_timing == "next" and reset == "subtract")


@dataclass(frozen=True)
class Semantics:
    """How one stateful node is stepped in discrete time.

    - ``dt``: the step in the same unit as the node's time constants (> 0).
    - ``discretisation``: ``"euler"`` (forward Euler: decay ``1 - dt/tau``, as
      snnTorch and Norse step) or ``"exp"`` (exponential integrator: decay
      ``exp(-dt/tau)`` with the input held over the step; exact for LI/LIF).
    - ``reset``: ``"zero"`` (to ``v_reset``), ``"subtract"`` (``v -= v_threshold``)
      or ``"none"``.
    - ``reset_timing``: ``"same"`` resets in the step that spikes; ``"next"``
      applies the reset of step t-1 at step t (snnTorch's default
      ``reset_delay=True``): a zero reset replaces the decayed membrane before
      the input is added; a subtract reset is subtracted after it, as
      ``(leak(v) + drive) - z thr`` (snnTorch's and Spyx's float rounding);
      ``"next_after_input"``
      applies it after decay *and* input, so a zero reset discards this step's
      input too (snnTorch's Synaptic, RLeaky, RSynaptic and Lapicque with
      ``reset_mechanism="zero"`` and ``reset_delay=True``).
    - ``threshold_compare``: spike when ``v > thr`` (``"gt"``) or ``v >= thr``.
    - ``spike_mode``: ``"single"`` (one spike at most per step) or ``"multi"``
      (``floor(v / thr)`` spikes, as Sinabs' MultiSpike; needs ``"ge"``).
    - ``current_order``: for current-based neurons, whether the membrane is
      driven by this step's updated current (``"current_first"``, snnTorch)
      or by the previous one (``"voltage_first"``, Norse).
    - ``gain_held``: how a trained time constant moves the step. False: training moves
      ``tau`` (and both the decay ``a`` and the input gain ``b r`` with it, NIR's continuous
      form). True: training moves the decay ``a`` with the input gain (``b r``, and ``b_syn
      w_in`` for ``tau_syn``) held, as snnTorch's ``learn_beta``/``learn_alpha`` train ``beta``
      and ``alpha`` with gain 1; a trained op then states ``tau`` for its decay and ``r``
      (``w_in``) for the held gain. Stepping is the same either way. Written only when True.
    - ``detached``: the node's output passes no gradient back (training only; the forward is
      the same): the spikes a Delay feeds into a subtract-reset membrane read-out, as
      snnTorch's reset is detached. Written only when True; Delay nodes only (verified).
    """

    dt: float = DEFAULT_DT
    discretisation: str = "euler"
    reset: str = "zero"
    reset_timing: str = "same"
    threshold_compare: str = "gt"
    spike_mode: str = "single"
    current_order: str = "current_first"
    gain_held: bool = False
    detached: bool = False

    def __post_init__(self) -> None:
        dt = self.dt
        try:
            value = math.nan if isinstance(dt, bool) or not isinstance(dt, numbers.Real) else float(dt)
        except OverflowError:  # an int past the float range (a JSON 10**400)
            value = math.inf
        if not math.isfinite(value) or value <= 0:
            raise SnnirError(f"dt must be a finite positive number, got {reprlib.repr(dt)}")
        for flag in ("gain_held", "detached"):
            if not isinstance(getattr(self, flag), bool):
                raise SnnirError(f"semantics {flag} must be True or False, got {getattr(self, flag)!r}")
        object.__setattr__(self, "dt", value)
        for name, allowed in (
            ("discretisation", DISCRETISATIONS),
            ("reset", RESETS),
            ("reset_timing", RESET_TIMINGS),
            ("threshold_compare", THRESHOLD_COMPARES),
            ("spike_mode", SPIKE_MODES),
            ("current_order", CURRENT_ORDERS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise SnnirError(f"semantics {name} must be one of {allowed}, got {value!r}")

    @property
    def resets_after_input(self) -> bool:
        """See :func:`resets_after_input`."""
        return resets_after_input(self.reset, self.reset_timing)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for flag in ("gain_held", "detached"):
            if not data[flag]:
                del data[flag]  # files of ops without it read as before
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Semantics":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise SnnirError(f"unknown semantics fields {unknown}")
        return cls(**known)

    def with_(self, **changes: Any) -> "Semantics":
        """A copy with ``changes`` applied (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
