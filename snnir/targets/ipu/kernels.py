"""Fused neuron steps: which specialisations a graph needs and their coefficients.

Every neuron op is one fused step over element-wise coefficients computed here
in float64 from the op's parameters and ``sem`` (so the discretisation is
folded in and never reaches the device):

    cuba:  i' = a_syn i + g_syn x;   d = i' (current_first) | i (voltage_first)
    else:  d = x
    leaked = v_leak + a_mem (v - v_leak);   drive = g_mem d
    then spike/reset exactly as :mod:`snnir.ir.ops.neuron` states.

with ``g_syn = b_syn w_in`` and ``g_mem = b_mem r`` (``dt r``, ``a_mem = 1``,
``v_leak = 0`` for I and IF). A :class:`Kernel` names one specialisation (the
custom op name in domain :data:`DOMAIN`); only the graph's kernels are emitted.

A kernel with ``fed`` takes the neuron's fed-back drive ``f`` (:mod:`snnir.ir.schedule`) as its
second input: ``i' = (a_syn i + g_syn x) + g_syn f``, else ``u = (leaked + g_mem x) + g_mem f``
before a delayed reset; its gradient is x's.

Backward (one BPTT step, used by the grad ops): the spike's derivative is the
surrogate at ``u - thr``; resets are detached (the spike that triggers a
reset carries no gradient through it, as snnTorch does), so ``z_prev`` gets
no gradient; coefficients are constants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snnir.errors import SnnirError
from snnir.ir.ops import IF, LI, LIF, CubaLI, CubaLIF, I
from snnir.ir.ops.neuron import Neuron
from snnir.ir.semantics import DELAYED_RESET_TIMINGS, resets_after_input
from snnir.targets.reference.kernels import decay_and_gain

DOMAIN = "ai.snnir"
DOMAIN_VERSION = 1
#: The standalone surrogate spike op: y = H(x) = [x > 0], dy/dx := surrogate(x).
SPIKE_OP = "Spike"
SURROGATES = ("fast_sigmoid", "arctan", "sigmoid", "straight_through", "triangular")
NEURON_OPS = (I, IF, LI, LIF, CubaLI, CubaLIF)


@dataclass(frozen=True)
class Kernel:
    """One fused neuron step specialisation."""

    family: str
    spiking: bool
    has_current: bool
    reset: str = "none"
    reset_timing: str = "same"
    threshold_compare: str = "gt"
    spike_mode: str = "single"
    current_order: str = "current_first"
    fed: bool = False  # takes a fed-back drive (input "fed")

    @property
    def name(self) -> str:
        parts = [self.family]
        if self.has_current:
            parts.append(self.current_order)
        if self.spiking:
            parts += [self.reset, self.reset_timing, self.threshold_compare, self.spike_mode]
        return "_".join(parts + (["fed"] if self.fed else []))

    @property
    def step_timing(self) -> str:
        """The timing the step computes: a delayed subtract reset comes after the input
        (:func:`~snnir.ir.semantics.resets_after_input`), so it is stepped as "next_after_input"."""
        return "next_after_input" if resets_after_input(self.reset, self.reset_timing) else self.reset_timing

    @property
    def state_names(self) -> tuple[str, ...]:
        names = ("i", "v") if self.has_current else ("v",)
        return names + (("z",) if self.spiking and self.reset_timing in DELAYED_RESET_TIMINGS else ())

    @property
    def coeff_names(self) -> tuple[str, ...]:
        names = ("a_syn", "g_syn") if self.has_current else ()
        names += ("a_mem", "v_leak", "g_mem")
        if self.spiking:
            names += ("thr",) + (("v_reset",) if self.reset == "zero" else ())
        return names

    @property
    def input_names(self) -> tuple[str, ...]:
        """Custom op inputs in order: x (and fed), states, coefficients."""
        return ("x",) + (("fed",) if self.fed else ()) + self.state_names + self.coeff_names

    @property
    def grad_names(self) -> tuple[str, ...]:
        """The inputs that receive gradients, in order: x (and fed), then the states."""
        return ("x",) + (("fed",) if self.fed else ()) + self.state_names

    @property
    def output_names(self) -> tuple[str, ...]:
        """Custom op outputs in order: y, then each state's next value."""
        return ("y",) + tuple(f"{s}_next" for s in self.state_names)


def kernel_for(op: Neuron, fed: bool = False) -> Kernel:
    """The kernel of ``op``; ``fed``: it takes a fed-back drive."""
    if not isinstance(op, NEURON_OPS):
        raise SnnirError(f"{op.op_type} is not a neuron the IPU target fuses")
    sem = op.sem
    return Kernel(
        family=op.op_type,
        spiking=op.spiking,
        has_current=op.has_current,
        reset=sem.reset if op.spiking else "none",
        reset_timing=sem.reset_timing if op.spiking else "same",
        threshold_compare=sem.threshold_compare if op.spiking else "gt",
        spike_mode=sem.spike_mode if op.spiking else "single",
        current_order=sem.current_order if op.has_current else "current_first",
        fed=fed,
    )


def coefficients(op: Neuron) -> dict[str, np.ndarray]:
    """float64 coefficients by name (``Kernel.coeff_names``), each broadcast to the op's parameter shape."""
    kernel = kernel_for(op)

    def f(name: str) -> np.ndarray:
        return np.asarray(getattr(op, name), dtype=np.float64)

    out: dict[str, np.ndarray] = {}
    if kernel.has_current:
        a_syn, b_syn = decay_and_gain(f("tau_syn"), op.sem)
        out["a_syn"], out["g_syn"] = a_syn, b_syn * f("w_in")
        a_mem, b_mem = decay_and_gain(f("tau_mem"), op.sem)
    elif isinstance(op, (LI, LIF)):
        a_mem, b_mem = decay_and_gain(f("tau"), op.sem)
    else:
        a_mem, b_mem = np.ones(()), op.sem.dt
    out["a_mem"] = a_mem
    out["v_leak"] = f("v_leak") if "v_leak" in op.param_names() else np.zeros(())
    out["g_mem"] = b_mem * f("r")
    if kernel.spiking:
        out["thr"] = f("v_threshold")
        if kernel.reset == "zero":
            out["v_reset"] = f("v_reset")
    shape = op.neuron_shape()
    return {k: np.broadcast_to(np.asarray(v, dtype=np.float64), shape).copy() for k, v in out.items()}
