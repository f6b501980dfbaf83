"""Neuron-scan test cases shared by the kernels' tests: every op under every semantics
option its update has, with the options that do not change the update's structure rotated."""

from __future__ import annotations

import itertools

from snnir.ir import Semantics
from snnir.ir.ops import IF, LI, LIF, CubaLI, CubaLIF, I
from snnir.targets.torch.surrogate import DEFAULT_SLOPES

T, B, N = 16, 3, 5
SURROGATES = tuple(DEFAULT_SLOPES)


def _cases():
    cases = []
    for cls in (I, LI, CubaLI, IF, LIF, CubaLIF):
        spiking = cls.spiking
        for disc, reset, timing, (cmp, mode), order in itertools.product(
            ("euler", "exp"),
            ("zero", "subtract", "none") if spiking else ("zero",),
            ("same", "next", "next_after_input") if spiking else ("same",),
            (("gt", "single"), ("ge", "single"), ("ge", "multi")) if spiking else (("gt", "single"),),
            ("current_first", "voltage_first") if cls.has_current else ("current_first",),
        ):
            k = len(cases)
            sem = Semantics(discretisation=disc, reset=reset, reset_timing=timing, threshold_compare=cmp,
                            spike_mode=mode, current_order=order)
            # rotate the options that do not change the update's structure
            cases.append((cls, sem, SURROGATES[k % len(SURROGATES)], k % 2 == 0, k % 3 == 0, k % 4 == 1))
    return cases


CASES = _cases()
IDS = [
    f"{c.__name__}-{s.discretisation}-{s.reset}-{s.reset_timing}-{s.threshold_compare}-{s.spike_mode}-"
    f"{s.current_order}-{g}-{'perneuron' if pn else 'scalar'}-{'static' if st else 'dynamic'}"
    f"{'-detach' if dr else ''}"
    for c, s, g, pn, st, dr in CASES
]


def random_op(cls, sem, rng, per_neuron):
    shape = (N,) if per_neuron else ()
    u = lambda lo, hi: rng.uniform(lo, hi, shape)  # noqa: E731
    fields = {
        "tau": u(2e-4, 2e-3), "tau_syn": u(2e-4, 1e-3), "tau_mem": u(2e-4, 2e-3), "v_leak": u(-0.2, 0.2),
        "v_threshold": u(0.5, 1.5), "v_reset": u(-0.3, 0.1), "w_in": u(0.5, 2.0),
        "r": u(0.5, 2.0) * (1e4 if cls in (I, IF) else 5.0),
    }
    names = set(cls.__dataclass_fields__) - {"sem", "metadata", "trainable"}
    return cls(**{k: v for k, v in fields.items() if k in names}, sem=sem)
