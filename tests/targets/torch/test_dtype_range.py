"""Found by the pipeline fuzz run (tests/ir/fuzz_pipeline.py): a graph whose parameters or step
coefficients float32 cannot hold compiled in float32 stepped another model than the reference
(inf weights, a tau rounded to 0, dt / tau overflowing), spikes differing without a word. It is
refused, naming node and parameter; in float64 it gives the reference's spikes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import snnir
from snnir.errors import SnnirError
from snnir.ir import LI, LIF, Affine, Graph, Input, Output

N = 3


def _lif(**changes) -> LIF:
    return LIF(**{"tau": np.full(N, 1e-2), "r": np.ones(N), "v_leak": np.zeros(N), "v_threshold": np.ones(N),
                  **changes})


CASES = {
    "weight beyond float32": (Affine(weight=np.full((N, N), 1e39), bias=np.zeros(N)), "parameter weight"),
    "r beyond float32": (LI(tau=np.full(N, 1e-2), r=np.full(N, 1e308), v_leak=np.zeros(N)), "parameter r"),
    "v_leak beyond float32": (_lif(v_leak=np.full(N, 1e308)), "parameter v_leak"),
    "tau rounds to 0": (_lif(tau=np.full(N, 1e-300)), "parameter tau"),
    "dt / tau overflows": (_lif(tau=np.full(N, 1e-43)), "step coefficient a_mem"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_float32_refuses_what_it_cannot_hold_and_float64_matches_the_reference(case):
    op, named = CASES[case]
    graph = Graph.sequential(("in", Input((N,))), ("op", op), ("out", Output()))
    with pytest.raises(SnnirError, match=f"node 'op': (the )?{named}.*dtype=torch.float64"):
        snnir.compile(graph, target="torch")
    x = (np.random.default_rng(0).random((6, 2, N)) < 0.5).astype(np.float64)
    module = snnir.compile(graph, target="torch", dtype=torch.float64)
    np.testing.assert_allclose(module(torch.from_numpy(x)).detach().numpy(), snnir.run(graph, x)["out"], rtol=1e-12)


def test_values_float32_holds_compile():
    """Subnormal but non-zero, and exactly representable extremes, are not refused."""
    graph = Graph.sequential(("in", Input((N,))), ("lif", _lif(v_leak=np.full(N, 1e-40), r=np.full(N, 3e38))),
                             ("out", Output()))
    snnir.compile(graph, target="torch")
