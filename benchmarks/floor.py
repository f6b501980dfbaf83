"""The floor of a feed-forward case: only the Linear and Conv2d work any implementation must do.

The layer calls are recorded from one forward of the snnTorch network (hooks on ``nn.Linear``
and ``nn.Conv2d``): each layer's input and output shapes and how many times it ran. They are
then made on random tensors of those shapes in two ways:

- ``time-batched``: each layer once over all its calls' rows (``[T*B, ...]``);
- ``per-step``: each layer once per call (``[B, ...]``, views of the same tensors).

The floor is the faster of the two (for convolutions neither bounds the other on a CPU). A
layer fed the held network input (a static image) runs once, on ``B`` rows, in both. Training
adds each weight's gradient and each input's gradient, except the network input's. Biases,
pooling and neurons are left out: the floor is GEMM/convolution only. A recurrent layer's
calls cannot be batched over time: recurrent cases bring their own floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LayerCalls:
    """One layer's calls in a forward: one call's input and output shapes, how many calls."""

    module: nn.Module
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    calls: int
    from_input: bool  # fed (a step of) the network input: no input gradient needed
    held: bool  # fed the whole held input: one call is all that is needed


def record(model: nn.Module, x: torch.Tensor) -> list[LayerCalls]:
    """The Linear/Conv2d calls of ``model(x)``, in the order of their first call."""
    found: dict[int, LayerCalls] = {}

    def hook(module, args, output):
        a = args[0]
        entry = found.get(id(module))
        if entry is None:
            from_input = a.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
            found[id(module)] = LayerCalls(module, tuple(a.shape), tuple(output.shape), 1, from_input,
                                           from_input and a.shape == x.shape)
        elif not entry.held:
            entry.calls += 1

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return list(found.values())


def _layer_ops(layer: LayerCalls, device):
    """``(forward(t), backward(t))`` over call ``t`` of this layer, ``t=None`` for all at once."""
    m = layer.module
    weight = m.weight.detach().to(device)
    a = torch.rand(layer.calls * layer.in_shape[0], *layer.in_shape[1:], device=device)
    g = torch.rand(layer.calls * layer.out_shape[0], *layer.out_shape[1:], device=device)
    rows = layer.in_shape[0]

    def part(t, tensor):
        return tensor if t is None else tensor[t * rows:(t + 1) * rows]

    if isinstance(m, nn.Linear):
        def forward(t):
            part(t, a) @ weight.T

        def backward(t):
            if not layer.from_input:
                part(t, g) @ weight  # dX
            part(t, g).T @ part(t, a)  # dW
        return forward, backward

    def forward(t):
        F.conv2d(part(t, a), weight, None, m.stride, m.padding, m.dilation, m.groups)

    def backward(t):
        torch.ops.aten.convolution_backward(part(t, g), part(t, a), weight, None, m.stride, m.padding, m.dilation,
                                            False, [0, 0], m.groups, [not layer.from_input, True, False])
    return forward, backward


def floor(model: nn.Module, x: torch.Tensor, device) -> tuple[dict, dict]:
    """``({variant: train closure}, {variant: inference closure})`` for ``measure.race``."""
    layers = [(layer, *_layer_ops(layer, device)) for layer in record(model, x)]

    def run(per_step: bool, train: bool):
        for layer, forward, backward in layers:
            for t in range(layer.calls) if per_step else (None,):
                forward(t)
                if train:
                    backward(t)

    variants = {"time-batched": False, "per-step": True}
    return ({v: (lambda p=p: run(p, True)) for v, p in variants.items()},
            {v: (lambda p=p: run(p, False)) for v, p in variants.items()})
