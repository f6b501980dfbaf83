"""Max pooling in traced models: snnTorch's tutorial 6 and 7 conv nets (rebuilt from their
published architecture with random weights), nn.MaxPool1d/2d with every option and the F. forms,
each with spikes identical to snnTorch's float64 forward through snnir.run, the compiled torch
module and the NIR file; ``snnir export`` and ``snnir inspect`` on the tutorials."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snnir
from snnir.cli.main import main
from snnir.errors import SnnirError, SnnirWarning
from snnir.ir.ops.pool import MaxPool1d, MaxPool2d
from tests.frontends._harness import as_float64, check_same, run_step_model

snn = pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")
from snntorch import surrogate  # noqa: E402

STEPS, BATCH = 25, 3

#: snnTorch tutorial 6 (MNIST, 1x28x28) and tutorial 7 (N-MNIST, 2x34x34) as published:
#: Conv2d-MaxPool2d-Leaky twice, then Flatten-Linear-Leaky; ``gains`` scale the weights so
#: that 5-30 % of the neurons fire on these random inputs.
TUTORIALS = """
import torch
from torch import nn
import snntorch as snn
from snntorch import surrogate


def _scaled(net, gains):
    torch.manual_seed(0)
    layers = [module for module in net if isinstance(module, (nn.Conv2d, nn.Linear))]
    for module, gain in zip(layers, gains):
        torch.nn.init.normal_(module.weight, 0.0, gain / module.weight[0].numel() ** 0.5)
        torch.nn.init.normal_(module.bias, 0.0, 0.1)
    return net


def tutorial_6():
    grad = surrogate.fast_sigmoid(slope=25)
    return _scaled(nn.Sequential(
        nn.Conv2d(1, 12, 5), nn.MaxPool2d(2), snn.Leaky(beta=0.5, spike_grad=grad, init_hidden=True),
        nn.Conv2d(12, 64, 5), nn.MaxPool2d(2), snn.Leaky(beta=0.5, spike_grad=grad, init_hidden=True),
        nn.Flatten(), nn.Linear(64 * 4 * 4, 10),
        snn.Leaky(beta=0.5, spike_grad=grad, init_hidden=True, output=True),
    ), (1.5, 1.5, 4.0))


def tutorial_7():
    grad = surrogate.atan()
    return _scaled(nn.Sequential(
        nn.Conv2d(2, 12, 5), nn.MaxPool2d(2), snn.Leaky(beta=0.5, spike_grad=grad, init_hidden=True),
        nn.Conv2d(12, 32, 5), nn.MaxPool2d(2), snn.Leaky(beta=0.5, spike_grad=grad, init_hidden=True),
        nn.Flatten(), nn.Linear(32 * 5 * 5, 10),
        snn.Leaky(beta=0.5, spike_grad=grad, init_hidden=True, output=True),
    ), (1.0, 2.5, 4.0))
"""

SHAPES = {"tutorial_6": (1, 28, 28), "tutorial_7": (2, 34, 34)}


@pytest.fixture(scope="module")
def tutorials(tmp_path_factory):
    path = tmp_path_factory.mktemp("tutorials") / "snntorch_tutorials.py"
    path.write_text(TUTORIALS)
    namespace: dict = {}
    exec(compile(TUTORIALS, str(path), "exec"), namespace)  # noqa: S102 - our own source above
    return path, namespace


def _inputs(shape, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((STEPS, BATCH) + shape, generator=generator, dtype=torch.float64)


def _check_every_path(net: nn.Module, x: torch.Tensor, tmp_path) -> snnir.Graph:
    """Traced spikes equal the model's through snnir.run, the torch target and a NIR file."""
    spikes, states = run_step_model(net, x)
    graph = snnir.trace(net, x[0])
    out = check_same(graph, spikes, states, x.numpy())
    for key, value in out.items():
        if key.endswith(".z") or key == "output":
            assert 0.0 < value.mean() < 0.5, f"{key}: firing rate {value.mean():.3f}"
    module = snnir.compile(graph, target="torch", dtype=torch.float64)
    with torch.no_grad():
        compiled = module(x)
    compiled = compiled["output"] if isinstance(compiled, dict) else compiled  # other outputs: membranes
    np.testing.assert_array_equal(compiled.numpy(), spikes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SnnirWarning)
        snnir.write(graph, tmp_path / "model.nir")
        back = snnir.read(tmp_path / "model.nir")
    assert back == graph
    np.testing.assert_array_equal(snnir.run(back, x.numpy())["output"], spikes)
    return graph


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_tutorial_conv_nets_trace_exactly(name, tutorials, tmp_path):
    net = as_float64(tutorials[1][name]())
    graph = _check_every_path(net, _inputs(SHAPES[name]), tmp_path)
    assert [op.op_type for op in graph.nodes.values()].count("snnir.MaxPool2d") == 2


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_snnir_export_and_inspect_on_the_tutorials(name, tutorials, tmp_path, capsys):
    path, namespace = tutorials
    out = tmp_path / f"{name}.nir"
    shape = ",".join(str(d) for d in (1,) + SHAPES[name])
    assert main(["export", f"{path}:{name}", "--input-shape", shape, "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert "wrote" in printed.out and "only snnir reads: '1', '4'" in printed.err  # the warning, in one line
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SnnirWarning)
        assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    pools = [line for line in text.splitlines() if "snnir.MaxPool2d" in line]
    assert len(pools) == 2 and all("kernel_size=(2, 2)" in line for line in pools), text
    model = as_float64(namespace[name]())
    x = _inputs(SHAPES[name], seed=1)
    spikes, _ = run_step_model(model, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SnnirWarning)
        np.testing.assert_array_equal(snnir.run(snnir.read(out), x.numpy())["output"], spikes)
    assert main(["export", f"{path}:{name}", "--input-shape", shape, "-o", str(out), "--dialect", "snntorch"]) == 1
    err = capsys.readouterr().err.strip()  # the first node snnTorch cannot import, named (max pools: test_max_pool.py)
    assert "error: node '" in err and "\n" not in err, err


class _Functional(nn.Module):
    """Step-style, pooling with F.max_pool2d / F.max_pool1d between snnTorch neurons."""

    def __init__(self, one_d: bool):
        super().__init__()
        torch.manual_seed(1)
        self.one_d = one_d
        conv = nn.Conv1d(2, 6, 3) if one_d else nn.Conv2d(2, 6, 3)
        self.conv, self.lif1 = conv, snn.Leaky(beta=0.8, init_hidden=True)
        self.fc = nn.Linear(6 * 2 if one_d else 6 * 3 * 3, 4)
        self.lif2 = snn.Leaky(beta=0.8, init_hidden=True)
        for layer in (self.conv, self.fc):
            nn.init.normal_(layer.weight, 0.0, 2.0 / layer.weight[0].numel() ** 0.5)
            nn.init.constant_(layer.bias, -0.3)

    def forward(self, x):
        if self.one_d:
            spk = self.lif1(F.max_pool1d(self.conv(x), 3, stride=2, padding=1, ceil_mode=True))
            pooled = F.max_pool1d(spk, kernel_size=2, stride=1, dilation=2)
        else:
            spk = self.lif1(F.max_pool2d(self.conv(x), kernel_size=2, stride=2, padding=1))
            pooled = torch.max_pool2d(spk, 2, 1, 0, 1, True)
        return self.lif2(self.fc(pooled.flatten(1)))


@pytest.mark.parametrize("one_d", [False, True], ids=["F.max_pool2d", "F.max_pool1d"])
def test_functional_max_pools_trace_exactly(one_d, tmp_path):
    net = as_float64(_Functional(one_d))
    graph = _check_every_path(net, _inputs((2, 9) if one_d else (2, 8, 8)), tmp_path)
    cls = MaxPool1d if one_d else MaxPool2d
    assert sum(isinstance(op, cls) for op in graph.nodes.values()) == 2


@pytest.mark.parametrize(
    "pool",
    [nn.MaxPool2d(3, stride=2, padding=1, dilation=2, ceil_mode=True), nn.MaxPool2d((2, 3), stride=(1, 2)),
     nn.MaxPool1d(4, stride=3, padding=2, ceil_mode=True)],
    ids=["2d-all-options", "2d-rectangular", "1d-ceil"],
)
def test_max_pool_modules_with_every_option_trace_exactly(pool, tmp_path):
    one_d = isinstance(pool, nn.MaxPool1d)
    torch.manual_seed(2)
    conv = nn.Conv1d(2, 4, 3) if one_d else nn.Conv2d(2, 4, 3)
    nn.init.normal_(conv.weight, 0.0, 0.4)
    nn.init.constant_(conv.bias, -0.2)
    net = as_float64(nn.Sequential(conv, pool, snn.Leaky(beta=0.7, init_hidden=True, output=True)))
    graph = _check_every_path(net, _inputs((2, 11) if one_d else (2, 10, 9)), tmp_path)
    assert graph.nodes["1"].ceil_mode == pool.ceil_mode


def test_return_indices_is_refused_naming_the_layer():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2, return_indices=True))
    with pytest.raises(SnnirError, match="return_indices=True is not supported") as err:
        snnir.trace(net, torch.zeros(1, 1, 6, 6))
    assert err.value.node == "1"
