"""Checks the tests of the fused and chained inference paths share (step chains, conv chains, pool-neuron)."""

from __future__ import annotations

import torch


def assert_same_run(a, b) -> None:
    """Two ``(output, final state)`` results are the same bits (``b`` may carry autograd history)."""
    (out_a, state_a), (out_b, state_b) = a, b
    assert torch.equal(out_a, out_b.detach())
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key].detach()), key


def random_state(module, batch: int, dtype: torch.dtype, seed: int) -> dict:
    """A random initial state for ``module``: last spikes ``z`` in {0, 1}, the rest N(0, 0.3^2)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in module.initial_state(batch).items():
        noise = torch.randn(value.shape, generator=g, dtype=torch.float64)
        state[key] = ((noise > 0) if key.endswith(".z") else noise * 0.3).to(dtype)
    return state
