"""Neuron-scan test cases shared by the kernels' tests: every op under every semantics
option its update has, with the options that do not change the update's structure rotated."""

from __future__ import annotations

import itertools
from typing import Callable

import numpy as np
import torch

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


def random_arrays(cls, sem, rng, per_neuron, static, steps=T):
    """``(op, x, state)``: a random ``op`` (:func:`random_op`), its input (``[B, N]`` held for a
    static case, else ``[steps, B, N]``; larger for multi-spike neurons) and a random initial state
    as float64 numpy arrays, last spikes ``z`` in {0, 1}."""
    op = random_op(cls, sem, rng, per_neuron)
    scale = 3.0 if sem.spike_mode == "multi" else 1.0
    x = rng.normal(0.4, 1.0, (B, N) if static else (steps, B, N)) * scale
    state = {s: rng.normal(0, 0.3, (B, N)) for s in op.state_names}
    if "z" in state:
        state["z"] = (state["z"] > 0).astype(np.float64)
    return op, x, state


def check_broadcast_parameters(run_both: Callable, steps: int, device="cpu") -> None:
    """Parameters of shape [3] on neurons of shape [2, 3] (float64): ``run_both(op, params, x,
    state)`` gives the kernel's and the Python loop's results; outputs identical, gradients
    summed back to [3] and equal to 1e-10."""
    rng = np.random.default_rng(7)
    op = LIF(tau=rng.uniform(5e-4, 2e-3, 3), r=rng.uniform(1, 5, 3), v_leak=np.zeros(3),
             v_threshold=np.full(3, 0.8), sem=Semantics(reset="subtract"))
    params = {k: torch.tensor(np.array(v), device=device, requires_grad=True) for k, v in op.params().items()}
    x = torch.from_numpy(rng.normal(0.5, 1.0, (steps, B, 2, 3))).to(device).requires_grad_(True)
    (out, _, _), (out_py, _, _) = run_both(op, params, x, None)
    torch.testing.assert_close(out, out_py, rtol=0, atol=0)
    leaves = [x, *params.values()]
    w = torch.from_numpy(rng.normal(size=out.shape)).to(device)
    got = torch.autograd.grad((out * w).sum(), leaves, allow_unused=True)
    want = torch.autograd.grad((out_py * w).sum(), leaves, allow_unused=True)
    for g, e, leaf in zip(got, want, leaves):
        if leaf is params["v_reset"]:  # unused by a subtract reset
            assert g is None and e is None
            continue
        assert g.shape == e.shape == leaf.shape
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)
