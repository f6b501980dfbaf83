"""Functional layers, shared layers and BatchNorm in time loops trace exactly (checked by the guard
inside ``snnir.trace`` and here against the model's own float64 run)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import snnir
from snnir.errors import SnnirError, SnnirWarning

snn = pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")

from snnir.frontends.guard import in_float64  # noqa: E402

T, B = 20, 3


def run_both(model, x):
    """The traced graph's outputs and the model's own float64 ones."""
    graph = snnir.trace(model, x.float())
    with torch.no_grad():
        expected = in_float64(model)(x)
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = snnir.run(graph, x.numpy().reshape(x.shape[:2] + graph.nodes["input"].shape))  # Input: as unsqueezed
    return graph, [got[name] for name in graph.outputs], [e.numpy() for e in expected]


class Functional(torch.nn.Module):
    """Loop-style: F.conv2d / F.avg_pool2d / F.linear with the modules' own weights, BatchNorm
    inside the loop, x.unsqueeze(1) on the input, and rec[..., t] of a stacked record."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.bn = torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4 * 3 * 3, 5)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 1.5)
            self.fc.weight.mul_(4)
        self.lif1, self.lif2 = snn.Leaky(beta=0.8), snn.Leaky(beta=0.8)

    def forward(self, x):
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        first = []
        for step in range(x.shape[0]):
            cur = self.bn(F.conv2d(x[step].unsqueeze(1), self.conv.weight, self.conv.bias, padding=1))
            spk1, mem1 = self.lif1(F.avg_pool2d(cur, 2), mem1)
            first.append(spk1)
        first = torch.stack(first, dim=-1)
        out = []
        for step in range(x.shape[0]):
            spk2, mem2 = self.lif2(F.linear(first[..., step].flatten(1), self.fc.weight, self.fc.bias), mem2)
            out.append(spk2)
        return torch.stack(out)


def test_functional_layers_in_a_loop_are_exact():
    x = torch.rand((T, B, 6, 6), generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    graph, got, expected = run_both(Functional().eval(), x)
    assert graph.nodes["conv"].op_type == "Conv2d" and graph.nodes["avg_pool2d"].op_type == "AvgPool2d"
    assert graph.nodes["fc"].op_type == "Affine" and graph.nodes["input"].shape == (1, 6, 6)
    assert 0 < expected[0].mean() < 1 and (got[0] == expected[0]).all()


def test_avg_pool1d_is_a_depthwise_conv():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(2)
            self.conv, self.pool, self.lif = torch.nn.Conv1d(2, 3, 3), torch.nn.AvgPool1d(2), snn.Leaky(beta=0.9)
            self.lif2 = snn.Leaky(beta=0.9)

        def forward(self, x):
            spk, mem = self.lif(self.pool(self.conv(x)))
            return self.lif2(F.avg_pool1d(spk, 3, stride=1) * 2.0)[0]

    x = torch.rand((T, B, 2, 12), generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 3
    graph = snnir.trace(Net(), x[0].float())
    assert graph.nodes["pool"].op_type == "Conv1d" and graph.nodes["avg_pool1d"].op_type == "Conv1d"


class SharedOutputNet(torch.nn.Module):
    """The regression tutorial's shape: one output neuron called for two layers within a step."""

    def __init__(self, learn_beta: bool = False):
        super().__init__()
        torch.manual_seed(4)
        self.fc1, self.fc2 = torch.nn.Linear(4, 6), torch.nn.Linear(4, 6)
        self.li_out = snn.Leaky(beta=0.8, reset_mechanism="none", learn_beta=learn_beta)

    def forward(self, x):
        mem_a, mem_b = self.li_out.init_leaky(), self.li_out.init_leaky()
        rec_a, rec_b = [], []
        for step in range(x.shape[0]):
            _, mem_a = self.li_out(self.fc1(x[step]), mem_a)
            _, mem_b = self.li_out(self.fc2(x[step]), mem_b)
            rec_a.append(mem_a)
            rec_b.append(mem_b)
        return torch.stack(rec_a), torch.stack(rec_b)


def test_a_neuron_called_on_two_inputs_is_two_neurons():
    x = torch.rand((T, B, 4), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SnnirWarning)  # no warning (tied copies: tests/frontends/test_trace_ties.py)
        graph, got, expected = run_both(SharedOutputNet(), x)
    assert {"li_out", "li_out_2"} <= set(graph.nodes)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-9, rtol=0)


@pytest.mark.parametrize("call,needle", [
    (lambda x: F.avg_pool2d(x, 2, ceil_mode=True), "ceil_mode"),
    (lambda x: F.avg_pool2d(x, 3, padding=1, count_include_pad=False), "count_include_pad"),
])
def test_inexact_pooling_options_are_refused(call, needle):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.lif = torch.nn.Conv2d(1, 2, 3), snn.Leaky(beta=0.9, init_hidden=True)

        def forward(self, x):
            return self.lif(call(self.conv(x)))

    with pytest.raises(SnnirError, match=needle):
        snnir.trace(Net(), torch.rand(2, 1, 7, 7))


class Divided(torch.nn.Module):
    """A loop scaling the layer's output by division, as ``fc(x[t]) / divisor``."""

    def __init__(self, divisor):
        super().__init__()
        torch.manual_seed(0)
        self.fc, self.lif, self.divisor = torch.nn.Linear(4, 6), snn.Leaky(beta=0.9), divisor

    def forward(self, x):
        mem, out = self.lif.init_leaky(), []
        for t in range(x.shape[0]):
            spk, mem = self.lif(self.fc(x[t]) / self.divisor, mem)
            out.append(spk)
        return torch.stack(out)


def test_division_by_a_power_of_two_traces_and_others_say_how():
    """``x / 2`` is the Scale ``x * 0.5`` exactly; ``x / 3`` rounds otherwise than any Scale and is
    refused saying to write the multiplication (both were refused as "div cannot be traced")."""
    x = torch.rand(T, B, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 8
    graph, got, expected = run_both(Divided(2), x)
    assert any(isinstance(op, snnir.ir.ops.Scale) for op in graph.nodes.values())
    np.testing.assert_array_equal(got[0], expected[0])
    assert expected[0].any()
    with pytest.raises(SnnirError, match=r"x / 3\.0 .*write x \* 0\.333"):
        snnir.trace(Divided(3.0), x.float())
