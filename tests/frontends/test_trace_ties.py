"""A layer called on several inputs in a step traces as tied nodes: the graph records the tie, files
keep it, passes keep it or leave the nodes alone, and a compiled module trains one parameter per
tie, with snnTorch's gradients (float64)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import snnir
from snnir.errors import SnnirWarning

snn = pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")

from snnir.frontends.guard import in_float64  # noqa: E402
from snnir.ir import verify  # noqa: E402
from tests.frontends.tutorial_models import SPIKE_GRAD, Regression2, seeded  # noqa: E402

T, B = 25, 2


def regression(learn: bool = True):
    """The regression tutorial as published (``li_out`` called for two layers in a step)."""
    return seeded(lambda: Regression2(learn=learn), gain=2.0)()


def sample() -> torch.Tensor:
    return torch.rand((T, B, 1), generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2


def loss(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    return first.square().sum() + (second - 1).square().sum()


def traced():
    with warnings.catch_warnings():
        warnings.simplefilter("error", SnnirWarning)  # tied: nothing trains apart, nothing to warn about
        return snnir.trace(regression(), sample().float())


def test_the_shared_neuron_traces_as_tied_nodes_kept_by_files_and_passes(tmp_path):
    graph = traced()
    assert graph.ties == (("li_out", "li_out_2"),)
    assert snnir.trace(regression(learn=False), sample().float()).ties == ()  # nothing trains: nothing to tie
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the membranes are read by StateProbes: snnir-only file
        snnir.write(graph, tmp_path / "g.nir")
    back = snnir.read(tmp_path / "g.nir")
    assert back == graph and back.ties == graph.ties
    for level in (0, 1, 2):
        optimized = snnir.optimize(graph, level=level)
        verify(optimized)
        assert optimized.ties == graph.ties
        np.testing.assert_allclose(snnir.run(optimized, sample().numpy())["output"],
                                   snnir.run(graph, sample().numpy())["output"], rtol=1e-12)


def test_compiled_gradients_equal_snntorchs_and_a_step_keeps_the_copies_equal():
    model, graph = regression(), traced()
    twin = in_float64(model)
    loss(*twin(sample())).backward()
    theirs = {name.replace("lif1.recurrent", "lif1_recurrent"): p.grad for name, p in twin.named_parameters()}

    module = snnir.compile(graph, target="torch", dtype=torch.float64)
    out = module(sample())
    loss(out["output"], out["output_1"]).backward()
    ours = dict(module.named_parameters())
    # beta trains as the decay itself (its input gain held: sem.gain_held), shared by the tie
    assert "li_out_2.a_mem" not in ours and ours["li_out.a_mem"] is module.node_module("li_out_2").a_mem
    for name, grad in theirs.items():
        if name.startswith("li_out."):
            continue
        torch.testing.assert_close(ours[name].grad, grad, rtol=1e-6, atol=1e-9 * grad.abs().max().item())
    # both calls' gradient summed
    torch.testing.assert_close(ours["li_out.a_mem"].grad, theirs["li_out.beta"], rtol=1e-9, atol=0)
    assert theirs["li_out.threshold"] is None and ours["li_out.v_threshold"].grad is None  # reset "none"

    before = module.to_graph().nodes["li_out"]
    torch.optim.SGD(module.parameters(), lr=1e-6).step()
    after = module.to_graph()
    verify(after)  # the tie holds: both copies took the one step
    assert after.nodes["li_out"] == after.nodes["li_out_2"] and after.nodes["li_out"] != before


class SharedLinear(torch.nn.Module):
    """One Linear (trainable, as every nn.Linear) applied to two inputs in a step, each into its neuron."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.fc_in, self.shared = torch.nn.Linear(3, 6), torch.nn.Linear(6, 6)
        self.lif_a = snn.Leaky(beta=0.9, init_hidden=True, spike_grad=SPIKE_GRAD)  # the compiled default
        self.lif_b = snn.Leaky(beta=0.8, init_hidden=True, output=True, spike_grad=SPIKE_GRAD)

    def forward(self, x):
        first = self.lif_a(self.shared(self.fc_in(x)))
        return self.lif_b(self.shared(first))[0]


def test_a_linear_called_twice_is_tied_and_trains_as_one():
    model = SharedLinear()
    x = torch.rand((T, B, 3), generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", SnnirWarning)
        graph = snnir.trace(model, x[0].float())
    assert graph.ties == (("shared", "shared_2"),)
    twin = in_float64(model)  # its neurons' hidden states reset
    spikes = torch.stack([twin(x[t]) for t in range(T)])
    assert 0 < spikes.mean() < 1
    spikes.sum().backward()  # through the surrogate
    module = snnir.compile(graph, target="torch", dtype=torch.float64)
    out = module(x)
    out.sum().backward()
    ours = dict(module.named_parameters())
    assert "shared_2.weight" not in ours
    for name, p in twin.named_parameters():
        torch.testing.assert_close(ours[name].grad, p.grad, rtol=1e-6, atol=1e-9 * p.grad.abs().max().item())
