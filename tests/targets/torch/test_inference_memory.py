"""Inference memory beyond the plan's budget: what a call holds for its whole length."""

from __future__ import annotations

import torch

from snnir.targets.torch import compile_torch
from snnir.targets.torch.run_state import FreshState

from test_plan import B, conv_net


def test_a_call_without_state_drops_its_initial_zeros_once_replaced():
    """A call that makes its own initial state (none passed) holds no value of it after the run
    that replaced it: the wide MLP's inference held 8 MB of initial zeros over the whole call
    (28.6 MB against 20.4 MB, 2026-12-03). A state the caller passed is left as it was, and the
    results are the same either way."""
    module = compile_torch(conv_net(), time_chunk=4)
    x = torch.rand(12, B, 1, 12, 12)
    given = module.initial_state(B)
    kept = dict(given)
    fresh = FreshState(module.initial_state(B))
    with torch.no_grad():
        out, final, _ = module.run({"x": x}, given, False, 12)
        out_fresh, final_fresh, _ = module.run({"x": x}, fresh, False, 12)
        default, default_final = module(x, return_state=True)
    assert fresh == {} and given.keys() == kept.keys() and all(given[k] is kept[k] for k in kept)
    torch.testing.assert_close(out_fresh["y"], out["y"], rtol=0, atol=0)
    torch.testing.assert_close(default, out["y"], rtol=0, atol=0)
    for key in final:
        torch.testing.assert_close(final_fresh[key], final[key], rtol=0, atol=0)
        torch.testing.assert_close(default_final[key], final[key], rtol=0, atol=0)
