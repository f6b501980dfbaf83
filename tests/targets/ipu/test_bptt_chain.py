"""The grad ops' BPTT step, chained over time, gives the torch target's gradients.

On the IPU, PopART chains one grad op per step; here the float64 numpy BPTT
step (which the C++ backward vertices match, see test_codelets_host.py) is
chained over 12 steps and compared with autograd through the torch target
(``snnir.compile(graph, target="torch")``, the CPU fallback) in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import snnir
from snnir.ir import Graph, Input, Output
from snnir.targets.ipu.kernels import coefficients, kernel_for

from .helpers import neurons, semantics_cases
from .test_codelets_host import np_backward

STEPS, BATCH, N = 12, 3, 5


@pytest.mark.parametrize("case", range(len(semantics_cases())))
def test_chained_grad_steps_match_torch_autograd(case):
    rng = np.random.default_rng(case)
    sem = semantics_cases()[case]
    for name, op in neurons(rng, N, sem).items():
        graph = Graph.sequential(("input", Input((N,))), ("n", op), ("output", Output()))
        coeff = coefficients(op)
        x = rng.normal(0.5, 2.0, (STEPS, BATCH, N)) / max(1e-3, float(np.abs(coeff["g_mem"]).max()))
        gy = rng.normal(0, 1, (STEPS, BATCH, N))

        module = snnir.compile(graph, target="torch", dtype=torch.float64)
        xt = torch.tensor(x, requires_grad=True)
        (module(xt) * torch.tensor(gy)).sum().backward()

        kernel = kernel_for(op)
        trace = snnir.run(graph, x, record=True)
        zeros = np.zeros((BATCH, N))
        c = {**dict.fromkeys(("a_syn", "g_syn", "thr", "v_reset"), zeros), **coeff}
        grads = {"i_next": zeros, "v_next": zeros, "z_next": zeros}
        gx = np.zeros_like(x)
        for t in reversed(range(STEPS)):
            state = {s: trace[f"n.{s}"][t - 1] if t and f"n.{s}" in trace else zeros for s in ("i", "v", "z")}
            out = np_backward(kernel, "fast_sigmoid", x[t], state, c, {**grads, "y": gy[t]})
            gx[t] = out["x"]
            grads = {"i_next": out.get("i", zeros), "v_next": out["v"], "z_next": out["z"]}
        np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-9, atol=1e-9 * np.abs(gx).max(),
                                   err_msg=kernel.name)
