"""snnTorch parameters a user trains (``learn_threshold``, ``learn_beta``...) stay trainable in the
compiled module with snnTorch's gradient, or a warning names those that become constants. Found by
probing (2026-12-04): a neuron reset at every step (traced as a Threshold) and Alpha dropped a
trained threshold without a word, and reset_delay=False and Alpha dropped trained decays."""

from __future__ import annotations


import numpy as np
import pytest
import torch

import snnir

snn = pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")

T, B, N_IN, N = 6, 3, 4, 5


class Loop(torch.nn.Module):
    """A loop over the steps; ``fresh`` makes the state anew at every step (tutorial 6's style)."""

    def __init__(self, neuron, fresh=False):
        super().__init__()
        self.fc, self.neuron, self.fresh = torch.nn.Linear(N_IN, N), neuron, fresh

    def forward(self, x):
        state, out = self.neuron.reset_mem(), []
        for t in range(x.shape[0]):
            if self.fresh:
                state = self.neuron.reset_mem()
            spk, *rest = self.neuron(self.fc(x[t]), *(state if isinstance(state, tuple) else (state,)))
            state = tuple(rest) if len(rest) > 1 else rest[0]
            out.append(spk)
        return torch.stack(out)


@pytest.mark.parametrize("neuron,fresh", [
    (lambda: snn.Leaky(beta=0.8, learn_threshold=True), True),
    (lambda: snn.Synaptic(alpha=0.5, beta=0.8, learn_threshold=True), True),
    (lambda: snn.Alpha(alpha=0.9, beta=0.6, reset_mechanism="none", learn_threshold=True), False),
], ids=["Leaky-fresh", "Synaptic-fresh", "Alpha"])
def test_a_trained_threshold_gets_snntorchs_gradient(neuron, fresh):
    torch.manual_seed(0)
    model = Loop(neuron(), fresh)
    x = torch.rand(T, B, N_IN, generator=torch.Generator().manual_seed(1)) * 3
    module = snnir.compile(snnir.trace(model, x), target="torch")
    model(x).sum().backward()
    module(x).sum().backward()
    ours = dict(module.named_parameters())["neuron.threshold"].grad
    assert model.neuron.threshold.grad != 0
    torch.testing.assert_close(ours, model.neuron.threshold.grad.reshape(ours.shape), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("neuron,names", [
    (lambda: snn.Alpha(alpha=0.9, beta=0.6, reset_mechanism="none", learn_beta=True), "learn_beta"),
    (lambda: snn.Leaky(beta=0.8, reset_delay=False, learn_threshold=True, learn_beta=True),
     "learn_threshold, learn_beta"),
    (lambda: snn.Synaptic(alpha=0.5, beta=0.8, reset_delay=False, learn_alpha=True), "learn_alpha"),
], ids=["Alpha-beta", "Leaky-undelayed", "Synaptic-undelayed"])
def test_a_trained_value_held_by_several_nodes_is_named(neuron, names):
    with pytest.warns(UserWarning, match=rf"layer 'neuron': {names}: .*compiled modules keep it constant"):
        snnir.trace(Loop(neuron()), torch.rand(T, B, N_IN))


def test_a_trained_scalar_trains_as_one_value_after_optimize():
    """optimize's canonical form broadcast a trained scalar to every neuron, which then trained
    apart (6 of 240 spikes differed from snnTorch's after one SGD step)."""
    torch.manual_seed(0)
    model = Loop(snn.Leaky(beta=0.8, learn_beta=True, learn_threshold=True))
    x = torch.rand(T, B, N_IN, generator=torch.Generator().manual_seed(1)) * 3
    module = snnir.compile(snnir.optimize(snnir.trace(model, x)), target="torch")
    trained = {name: p for name, p in module.named_parameters() if "threshold" in name or "a_mem" in name}
    assert len(trained) == 2 and all(p.dim() == 0 for p in trained.values())
    model(x).sum().backward()
    module(x).sum().backward()
    ours = next(p for name, p in trained.items() if "threshold" in name).grad
    torch.testing.assert_close(ours, model.neuron.threshold.grad.reshape(()), rtol=1e-5, atol=1e-6)


def test_a_trained_decay_below_0_is_refused_by_name():
    """snnTorch's clamp gives a beta below 0 no gradient; the traced decay 0 trained (found by probing)."""
    from snnir.errors import SnnirError

    with pytest.raises(SnnirError, match=r"node 'neuron'.*learn_beta with beta < 0"):
        snnir.trace(Loop(snn.Leaky(beta=-0.3, learn_beta=True)), torch.rand(T, B, N_IN))


def test_to_graph_keeps_float64_training():
    """A module trained in float64 exported its weights in the traced float32, which moved a
    membrane 1.5e-8 across its threshold (1 of 1600 spikes, found by probing)."""
    model = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False),
                                snn.Leaky(beta=0.5, threshold=0.5, init_hidden=True, learn_beta=True))
    module = snnir.compile(snnir.trace(model, torch.zeros(1, 1)), target="torch", dtype=torch.float64)
    with torch.no_grad():
        module.get_parameter("0.weight").fill_(0.5 + 3e-9)
        next(p for name, p in module.named_parameters() if "a_mem" in name).fill_(0.5 + 3e-9)
    graph = module.to_graph()
    assert graph.nodes["0"].weight.dtype == np.float64 and graph.nodes["0"].weight.item() == 0.5 + 3e-9
    assert graph.nodes["1"].tau.dtype == np.float64
    x = np.ones((3, 1, 1))
    np.testing.assert_array_equal(snnir.run(graph, x)[graph.outputs[0]], module(torch.from_numpy(x)).detach().numpy())
