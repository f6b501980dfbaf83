"""``untracked_apply``: a Function's forward alone where autograd does not record the call."""

from __future__ import annotations

import torch

from snnir.targets.torch.autograd_calls import untracked_apply


class _Doubles(torch.autograd.Function):
    seen: list = []

    @staticmethod
    def forward(ctx, x, w):  # type: ignore[override]
        _Doubles.seen.append(tuple(ctx.needs_input_grad))
        ctx.save_for_backward(w)
        return x * w * 2

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (w,) = ctx.saved_tensors
        return g * w * 2, None


def test_under_no_grad_no_input_needs_a_gradient():
    """Under ``no_grad`` the forward sees no input needing a gradient, though ``apply`` would
    report the parameter as needing one; with gradients on, the call is recorded as ``apply``'s."""
    x, w = torch.ones(3), torch.nn.Parameter(torch.full((3,), 1.5))
    _Doubles.seen.clear()
    with torch.no_grad():
        _Doubles.apply(x, w)
        got = untracked_apply(_Doubles, x, w)
    assert _Doubles.seen == [(False, True), (False, False)]
    assert torch.equal(got, torch.full((3,), 3.0)) and got.grad_fn is None
    x.requires_grad_()
    untracked_apply(_Doubles, x, w).sum().backward()
    assert _Doubles.seen[-1] == (True, True) and torch.equal(x.grad, torch.full((3,), 3.0))


def test_nothing_requiring_a_gradient_is_not_recorded():
    """With gradients on but no input requiring one, the forward runs alone: nothing to record."""
    _Doubles.seen.clear()
    got = untracked_apply(_Doubles, torch.ones(2), torch.ones(2))
    assert _Doubles.seen == [(False, False)] and got.grad_fn is None
