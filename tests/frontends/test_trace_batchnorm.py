"""BatchNorm keeps the model's bits: traced as its own op (``snnir.BatchNorm``), run by torch's eval
kernel, folded into the layer before it only when written to a NIR file (with a warning).

Folding it at trace time changed spikes: the spiking autoencoder's encoder at batch 128 gave 10
of 1.5 million hidden spikes otherwise than snnTorch (a membrane within rounding of its threshold)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

import snnir
from snnir.errors import SnnirError
from snnir.ir.nir_io.batchnorm import fold_batchnorms

T, B = 8, 32


class _ConvBN(nn.Module):
    """``Conv2d -> BatchNorm2d -> Leaky`` then ``Linear -> BatchNorm1d -> Leaky``, per step, returning
    the output spikes and both layers' membranes (snnTorch's tutorial style)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv, self.bn1, self.lif1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), snn.Leaky(beta=0.9)
        self.fc, self.bn2, self.lif2 = nn.Linear(8 * 8 * 8, 10), nn.BatchNorm1d(10), snn.Leaky(beta=0.9)
        with torch.no_grad():
            for bn in (self.bn1, self.bn2):
                bn.running_mean.uniform_(-0.3, 0.3)
                bn.running_var.uniform_(0.2, 2.0)
                bn.weight.uniform_(0.5, 2.0)
                bn.bias.uniform_(-0.2, 0.4)
        self.eval()

    def forward(self, x):
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spikes, mems1, mems2 = [], [], []
        for step in range(x.shape[0]):
            spk1, mem1 = self.lif1(self.bn1(self.conv(x[step])), mem1)
            spk2, mem2 = self.lif2(self.bn2(self.fc(spk1.flatten(1))), mem2)
            spikes.append(spk2)
            mems1.append(mem1)
            mems2.append(mem2)
        return torch.stack(spikes), torch.stack(mems1), torch.stack(mems2)


def _input(batch: int = B) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    return (torch.rand(T, batch, 1, 8, 8, generator=g) < 0.4).float() * 2.0


def _membranes(graph, x):
    """(output spikes, lif1's and lif2's membrane traces) of the compiled ``graph``."""
    with torch.no_grad():
        outputs, traces = snnir.compile(graph, target="torch")(x, record=True)
    return outputs[graph.outputs[0]], traces["lif1.v"], traces["lif2.v"]


def test_batchnorm_is_its_own_node_and_keeps_the_models_bits():
    """Every membrane of both layers equals snnTorch's bit for bit (the BatchNorm of each step is
    computed as the model computes it); the same graph with each BatchNorm folded into its layer
    rounds otherwise, which this check sees."""
    model, x = _ConvBN(), _input()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: no folding
        graph = snnir.trace(model, x)
    assert graph.nodes["bn1"].op_type == "snnir.BatchNorm" and graph.nodes["bn2"].op_type == "snnir.BatchNorm"
    with torch.no_grad():
        want = model(x)
    got = _membranes(graph, x)
    assert want[0].sum() > 0 and 0 < want[1].gt(1).float().mean() < 1  # spikes in both layers
    for name, a, b in zip(("spikes", "lif1 membranes", "lif2 membranes"), got, want):
        assert torch.equal(a, b), f"{int((a != b).sum())} of the {name} differ"
    folded, names, kept = fold_batchnorms(graph)
    assert sorted(names) == ["bn1", "bn2"] and not kept
    assert any(not torch.equal(a, b) for a, b in zip(_membranes(folded, x)[1:], want[1:])), "the check has no teeth"


def test_batchnorm_trains_its_own_weight_and_bias():
    """A trainable BatchNorm's weight and bias are the compiled module's parameters, with the
    model's gradients (eval-mode statistics) to rounding."""
    model, x = _ConvBN(), _input(4)
    graph = snnir.trace(model, x)
    assert graph.nodes["bn1"].trainable == ("weight", "bias")
    module = snnir.compile(graph, target="torch", surrogate="arctan")
    outputs = module(x)
    sum(outputs[name].sum() for name in graph.outputs[1:]).backward()  # the membranes
    sum(m.sum() for m in model(x)[1:]).backward()
    for name in ("bn1.weight", "bn1.bias", "bn2.weight", "bn2.bias"):
        torch.testing.assert_close(module.get_parameter(name).grad, model.get_parameter(name).grad,
                                   rtol=1e-4, atol=1e-5)


def test_batchnorm_first_or_beside_its_layer_traces():
    """A BatchNorm needs no layer before it, and a layer's raw output may also be used elsewhere
    (folding refused both)."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.bn0, self.fc, self.bn = nn.BatchNorm1d(3), nn.Linear(3, 3), nn.BatchNorm1d(3)
            self.out, self.lif = nn.Linear(3, 2), snn.Leaky(beta=0.8, init_hidden=True)
            for bn in (self.bn0, self.bn):
                bn.running_mean.uniform_(-0.2, 0.2)
                bn.running_var.uniform_(0.5, 2.0)
            self.eval()

        def forward(self, x):
            h = self.fc(self.bn0(x))
            return self.lif(self.out(self.bn(h) + h))

    x = torch.rand(4, 3) * 3
    graph = snnir.trace(Net(), x)
    assert graph.nodes["bn0"].op_type == graph.nodes["bn"].op_type == "snnir.BatchNorm"
    with torch.no_grad():
        assert torch.equal(snnir.compile(graph, target="torch")(x[None])[0], Net()(x))


@pytest.mark.parametrize("bn,x,expect", [
    (nn.BatchNorm1d(3), torch.rand(2, 4), r"BatchNorm1d takes inputs \[B, 3\] or \[B, 3, L\]"),
    (nn.BatchNorm2d(3), torch.rand(2, 3, 5), r"BatchNorm2d takes inputs \[B, 3, H, W\]"),
    (nn.BatchNorm1d(3, track_running_stats=False), torch.rand(2, 3), "without running statistics"),
])
def test_a_batchnorm_it_cannot_state_is_refused_naming_it(bn, x, expect):
    with pytest.raises(SnnirError, match=expect) as info:
        snnir.trace(nn.Sequential(bn.eval(), nn.Flatten()), x)
    assert info.value.node == "0"


def test_written_folded_where_it_follows_its_layer(tmp_path):
    """A file gets each BatchNorm folded into the Conv or Linear before it (standard NIR, with a
    warning naming it); reading it back gives the folded layers, equal to the graph to rounding."""
    model, x = _ConvBN(), _input(3)
    graph = snnir.trace(model, x)
    with pytest.warns(UserWarning, match=r"BatchNorm folded into the layer before it.*'bn1', 'bn2'"):
        snnir.write(graph, tmp_path / "m.nir")
    back = snnir.read(tmp_path / "m.nir")
    assert not any(op.op_type == "snnir.BatchNorm" for _, op in back.walk())
    assert back.nodes["conv"].op_type == "Conv2d" and back.nodes["fc"].op_type == "Affine"
    xs = x.double().numpy()
    want, got = snnir.run(graph, xs), snnir.run(back, xs)
    for name in graph.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-9, atol=1e-9)


def test_written_as_itself_where_no_layer_takes_it(tmp_path):
    """A BatchNorm with no layer of its own before it is written as the extension op (read back
    exactly, with a warning); a library dialect refuses it, naming it."""
    graph = snnir.trace(nn.Sequential(nn.BatchNorm1d(3).eval(), snn.Leaky(beta=0.8, init_hidden=True)),
                        torch.rand(2, 3))
    with pytest.warns(UserWarning, match=r"written as snnir.BatchNorm extension ops.*'0'"):
        snnir.write(graph, tmp_path / "m.nir")
    assert snnir.read(tmp_path / "m.nir") == graph
    with pytest.raises(SnnirError, match="cannot write a BatchNorm") as info:
        snnir.write(graph, tmp_path / "m2.nir", dialect="snntorch")
    assert info.value.node == "0"


def test_a_strided_input_gets_the_models_bits():
    """On a CPU torch's BatchNorm computes another formula for a strided input (206,308 of 442,368
    values differed, 64 x 12 x 24 x 24): the compiled module makes its input contiguous first."""
    bn = nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.2, 3)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    bn.eval()
    x = torch.randn(T, 8, 6, 12, 12)
    graph = snnir.trace(nn.Sequential(bn), x[0])
    strided = x.transpose(3, 4).contiguous().transpose(3, 4)
    with torch.no_grad():
        assert torch.equal(snnir.compile(graph, target="torch")(strided), torch.stack([bn(step) for step in x]))


class _Loop(nn.Module):
    """``body -> Leaky -> head -> Leaky`` per step; returns the output spikes and the first
    neuron's membranes."""

    def __init__(self, body: nn.Module, head: nn.Module):
        super().__init__()
        torch.manual_seed(1)
        self.body, self.head, self.l1, self.l2 = body, head, snn.Leaky(beta=0.8), snn.Leaky(beta=0.8)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    module.running_mean.uniform_(-0.3, 0.3)
                    module.running_var.uniform_(0.3, 2.0)
                    if module.affine:
                        module.weight.uniform_(0.5, 2.0)
                        module.bias.uniform_(-0.2, 0.5)
            for p in self.parameters():
                p.mul_(2.0)
        self.eval()

    def forward(self, x):
        mem1, mem2 = self.l1.init_leaky(), self.l2.init_leaky()
        spikes, membranes = [], []
        for step in range(x.shape[0]):
            spk1, mem1 = self.l1(self.body(x[step]), mem1)
            spk2, mem2 = self.l2(self.head(spk1), mem2)
            spikes.append(spk2)
            membranes.append(mem1)
        return torch.stack(spikes), torch.stack(membranes)


PLACES = {
    "conv1d_bn1d": (lambda: nn.Sequential(nn.Conv1d(2, 6, 3, padding=1), nn.BatchNorm1d(6)),
                    lambda: nn.Sequential(nn.Flatten(), nn.Linear(6 * 20, 5)), (2, 20)),
    "after_max_pool": (lambda: nn.Sequential(nn.Conv2d(1, 6, 3), nn.MaxPool2d(2), nn.BatchNorm2d(6)),
                       lambda: nn.Sequential(nn.Flatten(), nn.Linear(6 * 5 * 5, 5)), (1, 12, 12)),
    "on_the_input": (lambda: nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 6, 3)),
                     lambda: nn.Sequential(nn.Flatten(), nn.Linear(6 * 10 * 10, 5)), (1, 12, 12)),
    "no_affine": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(144, 40), nn.BatchNorm1d(40, affine=False)),
                  lambda: nn.Linear(40, 5), (1, 12, 12)),
    "after_avg_pool_eps": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.AvgPool2d(2),
                                                 nn.BatchNorm2d(4, eps=1e-3)),
                           lambda: nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 5)), (1, 12, 12)),
}


@pytest.mark.parametrize("optimized", [False, True], ids=["traced", "optimized"])
@pytest.mark.parametrize("place", PLACES)
def test_batchnorm_anywhere_keeps_every_membrane(place, optimized):
    """Wherever the BatchNorm sits (after a Conv1d, a pool, on the input, without affine, another
    eps), the first neuron's membranes and the output spikes are snnTorch's bit for bit, as traced
    and after ``snnir.optimize``. Folding refused three of these places."""
    body, head, shape = PLACES[place]
    model = _Loop(body(), head())
    x = (torch.rand((10, 16) + shape, generator=torch.Generator().manual_seed(2)) < 0.4).float() * 2
    graph = snnir.trace(model, x)
    graph = snnir.optimize(graph) if optimized else graph
    with torch.no_grad():
        want_spikes, want_membranes = model(x)
        outputs, traces = snnir.compile(graph, target="torch")(x, record=True)
    assert want_spikes.sum() > 0
    assert torch.equal(outputs[graph.outputs[0]], want_spikes)
    assert torch.equal(traces["l1.v"], want_membranes)
