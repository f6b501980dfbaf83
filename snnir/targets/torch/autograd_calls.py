"""Whether autograd records a call, and calling a ``torch.autograd.Function`` only where it does."""

from __future__ import annotations

import torch


def recorded(*values) -> bool:
    """Whether autograd records an op on ``values``: gradients are on and a tensor among them
    (non-tensors and None are skipped) requires one."""
    return torch.is_grad_enabled() and any(isinstance(v, torch.Tensor) and v.requires_grad for v in values)


class _Untracked:
    """The ``ctx`` a Function's forward gets when called outside autograd: no input needs a
    gradient, and nothing is kept."""

    def __init__(self, inputs: int):
        self.needs_input_grad = (False,) * inputs

    def save_for_backward(self, *tensors) -> None:
        pass


def untracked_apply(function: type[torch.autograd.Function], *args):
    """``function.apply(*args)`` where autograd records the call, else its forward alone.

    Under ``no_grad``, ``apply`` still reports a parameter as needing its gradient
    (``ctx.needs_input_grad`` follows ``requires_grad`` only), so a forward that keeps what its
    backward reads would keep it for a backward that never runs."""
    if recorded(*args):
        return function.apply(*args)
    with torch.no_grad():
        return function.forward(_Untracked(len(args)), *args)
