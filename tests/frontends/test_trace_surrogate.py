"""A traced snnTorch neuron records the surrogate gradient it trains with (its ``spike_grad``,
snnTorch's default ``atan(alpha=2)`` included), and the compiled torch module trains with it
unless told otherwise: gradients equal snnTorch's to rounding (float64)."""

from __future__ import annotations

import warnings

import pytest
import torch

import snnir

snn = pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")
from snntorch import surrogate  # noqa: E402

from snnir.frontends.guard import in_float64  # noqa: E402
from snnir.targets.torch.surrogate import Surrogate  # noqa: E402

T, B, N_IN, N = 30, 3, 5, 6


class Net(torch.nn.Module):
    def __init__(self, first=None, second=None, kind: str = "Leaky"):
        super().__init__()
        torch.manual_seed(5)
        self.fc1, self.fc2 = torch.nn.Linear(N_IN, N), torch.nn.Linear(N, N)
        with torch.no_grad():
            self.fc1.weight.mul_(2.0)
        options = {"alpha": 0.7} if kind == "Synaptic" else {}
        self.lif1 = getattr(snn, kind)(beta=0.8, spike_grad=first, init_hidden=True, **options)
        self.lif2 = snn.Leaky(beta=0.9, spike_grad=second if second is not None else first, init_hidden=True,
                              output=True)

    def forward(self, x):
        return self.lif2(self.fc2(self.lif1(self.fc1(x))))[0]


def _sample() -> torch.Tensor:
    return torch.rand((T, B, N_IN), generator=torch.Generator().manual_seed(2), dtype=torch.float64)


def _their_grads(model) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    for module in model.modules():
        if isinstance(module, snn.SpikingNeuron):
            module.reset_mem()
    spikes = torch.stack([model(x) for x in _sample()])
    (spikes.mean(0) - 0.3).square().sum().backward()
    return spikes, {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def _our_grads(graph, **options) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    module = snnir.compile(graph, target="torch", dtype=torch.float64, trainable="all", **options)
    spikes = module(_sample())
    (spikes.mean(0) - 0.3).square().sum().backward()
    return spikes, {f"{layer}.{name}": module.node_module(layer).get_parameter(name).grad
                    for layer in ("fc1", "fc2") for name in ("weight", "bias")}


SNNTORCH_SURROGATES = {
    "default atan": (None, "arctan", 2.0),
    "atan(3)": (surrogate.atan(alpha=3.0), "arctan", 3.0),
    "fast_sigmoid(10)": (surrogate.fast_sigmoid(slope=10), "fast_sigmoid", 10.0),
    "sigmoid()": (surrogate.sigmoid(), "sigmoid", 25.0),
    "straight_through": (surrogate.straight_through_estimator(), "straight_through", 1.0),
}


@pytest.mark.parametrize("kind", ["Leaky", "Synaptic"])
@pytest.mark.parametrize("name", list(SNNTORCH_SURROGATES))
def test_compiled_module_trains_with_the_traced_surrogate(name, kind):
    spike_grad, ours, slope = SNNTORCH_SURROGATES[name]
    model = Net(spike_grad, kind=kind)
    graph = snnir.trace(model, _sample()[0].float())
    assert graph.nodes["lif1"].metadata["surrogate"] == {"name": ours, "slope": slope}
    their_spikes, theirs = _their_grads(in_float64(model))
    our_spikes, grads = _our_grads(graph)
    torch.testing.assert_close(our_spikes, their_spikes, rtol=0, atol=0)
    fused = snnir.compile(snnir.optimize(graph), target="torch").node_module("lif1")  # the neuron's record kept
    assert {m.surrogate for m in fused.modules() if hasattr(m, "surrogate")} == {Surrogate(ours, slope)}
    for key, grad in grads.items():
        assert theirs[key].abs().max() > 0, key
        # ~5e-8 of the largest: snnTorch's float32 parameters cast up (as test_trace_learn_decay finds)
        scale = float(theirs[key].abs().max())
        torch.testing.assert_close(grad, theirs[key], rtol=1e-6, atol=1e-6 * scale,
                                   msg=lambda m, key=key: f"{key}: {m}")
    if name != "fast_sigmoid(10)":  # the check is not vacuous: another surrogate trains otherwise
        other = _our_grads(graph, surrogate="fast_sigmoid", slope=10.0)[1]
        assert not torch.allclose(other["fc1.weight"], theirs["fc1.weight"])


def test_different_or_unknown_surrogates_are_said():
    graph = snnir.trace(Net(None, surrogate.fast_sigmoid()), _sample()[0].float())
    with pytest.raises(snnir.SnnirError, match="'lif2'.*different surrogate gradients.*arctan slope 2 at 'lif1'"):
        snnir.compile(graph, target="torch")
    snnir.compile(graph, target="torch", surrogate="arctan")  # the caller's choice
    graph = snnir.trace(Net(surrogate.triangular()), _sample()[0].float())
    assert graph.nodes["lif1"].metadata["surrogate"] == {"unknown": "snntorch.surrogate.triangular.<locals>.inner"}
    with pytest.warns(snnir.errors.SnnirWarning, match="'lif1' .and 1 more. .*triangular.*fast_sigmoid slope 25"):
        snnir.compile(graph, target="torch")
    mixed = snnir.trace(Net(surrogate.triangular(), surrogate.atan()), _sample()[0].float())
    with pytest.warns(snnir.errors.SnnirWarning, match="'lif1'.*triangular.*by default the other neurons' arctan slope 2"):
        assert snnir.compile(mixed, target="torch").node_module("lif1").surrogate == Surrogate("arctan", 2.0)


def test_files_keep_the_traced_surrogate(tmp_path):
    graph = snnir.trace(Net(surrogate.atan(alpha=3.0)), _sample()[0].float())
    snnir.write(graph, tmp_path / "g.nir")
    back = snnir.read(tmp_path / "g.nir")
    assert back.nodes["lif1"].metadata["surrogate"] == {"name": "arctan", "slope": 3.0}
    assert snnir.compile(back, target="torch").node_module("lif1").surrogate == Surrogate("arctan", 3.0)


def test_the_standalone_source_trains_with_the_traced_surrogate(tmp_path):
    """It trained with fast_sigmoid slope 25 whatever the trace said (and warned so)."""
    from snnir.targets.torch.codegen import write_module

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        source, _ = write_module(snnir.trace(Net(None), _sample()[0].float()), tmp_path / "atan.py")
    assert "SURROGATE, SLOPE = 'arctan', 2.0\n" in source.read_text()


def test_the_ipu_build_takes_the_traced_surrogate(tmp_path):
    from snnir.targets.ipu import compile_ipu

    graph = snnir.trace(Net(surrogate.atan(alpha=3.0)), _sample()[0].float())
    module = compile_ipu(graph, tmp_path / "traced").load_module()
    assert (module.SURROGATE, module.SLOPE) == ("arctan", 3.0)
    module = compile_ipu(graph, tmp_path / "given", surrogate="sigmoid").load_module()
    assert (module.SURROGATE, module.SLOPE) == ("sigmoid", 5.0)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_reset_without_delay_says_its_gradient_differs(reset):
    """snnTorch's ``reset_delay=False`` subtracts ``spike - reset`` with the spike not detached: a
    gradient through the reset that no compiled module has (the forward is exact)."""
    model = Net(surrogate.fast_sigmoid())
    model.lif1 = snn.Leaky(beta=0.8, reset_mechanism=reset, reset_delay=False, spike_grad=surrogate.fast_sigmoid(),
                           init_hidden=True)
    with pytest.warns(snnir.errors.SnnirWarning, match="'lif1'.*reset_delay=False.*gradients differ"):
        graph = snnir.trace(model, _sample()[0].float())
    their_spikes, theirs = _their_grads(in_float64(model))
    our_spikes, grads = _our_grads(graph)
    torch.testing.assert_close(our_spikes, their_spikes, rtol=0, atol=0)
    assert not torch.allclose(grads["fc1.weight"], theirs["fc1.weight"], rtol=1e-3)  # what the warning says
