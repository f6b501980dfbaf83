"""snnTorch's tutorial-6 conv nets, traced and compiled with the native kernels, spike exactly as
snnTorch in float32 where their convolutions, pools and neurons run as a conv chain
(``conv_chain.py``): written as the tutorial writes them (``nn.Sequential`` with
``init_hidden=True``; a forward loop over ``Leaky`` calls), with max and mean pools, a static
image and per-step input, under every inference memory budget."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytestmark = pytest.mark.interop
snn = pytest.importorskip("snntorch", reason="snntorch is not installed (pip install -e '.[test]')")

T, B = 12, 6


def sequential(pool) -> nn.Sequential:
    """Tutorial 6's network as its ``nn.Sequential`` (weights scaled up: deeper layers spike)."""
    torch.manual_seed(0)
    from snntorch import surrogate

    grad = surrogate.fast_sigmoid(slope=25)
    net = nn.Sequential(
        nn.Conv2d(1, 12, 5), pool(2), snn.Leaky(beta=0.5, spike_grad=grad, init_hidden=True),
        nn.Conv2d(12, 64, 5), pool(2), snn.Leaky(beta=0.5, spike_grad=grad, init_hidden=True),
        nn.Flatten(), nn.Linear(64 * 4 * 4, 10), snn.Leaky(beta=0.5, spike_grad=grad, init_hidden=True, output=True),
    )
    with torch.no_grad():
        for module in net:
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.mul_(3.0)
    return net


def run_snntorch(net: nn.Sequential, x: torch.Tensor, static: bool) -> torch.Tensor:
    """The tutorial's loop: reset the hidden states, one call per step, the output spikes stacked
    (the last ``Leaky`` returns its spikes and membrane)."""
    from snntorch import utils

    utils.reset(net)
    return torch.stack([net(x if static else x[t])[0] for t in range(T)])


@pytest.mark.parametrize("budget", ["auto", None, 1], ids=["auto", "whole", "tiny"])
@pytest.mark.parametrize("static", [True, False], ids=["static", "per-step"])
@pytest.mark.parametrize("pool", [nn.MaxPool2d, nn.AvgPool2d], ids=["max", "mean"])
def test_tutorial_conv_net_spikes_as_snntorch(native_kernels, pool, static, budget):
    import snnir

    net = sequential(pool)
    g = torch.Generator().manual_seed(1)
    x = torch.rand((B, 1, 28, 28) if static else (T, B, 1, 28, 28), generator=g) * 2
    with torch.no_grad():
        want = run_snntorch(net, x, static)
    graph = snnir.trace(net, x if static else x[0])
    graph = snnir.optimize(graph, static_inputs=list(graph.inputs) if static else ())
    module = snnir.compile(graph, target="torch", native=True, memory_budget=budget)
    with torch.no_grad():
        got = (module(x, steps=T) if static else module(x))["output"]  # the spikes; "output_1": the membranes
    assert "convolutions, pools and neurons" in str(module.plan)
    assert want.sum() > 0
    differ = (got != want).nonzero()
    assert not len(differ), f"{len(differ)} spikes differ, first {differ[:3].tolist()}"
