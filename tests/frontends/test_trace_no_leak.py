"""snnTorch neurons whose decay is exactly 1 for some neurons and below 1 for others (a per-neuron
``beta`` or ``alpha`` tensor, as training with clamping leaves it; or a Synaptic's scalar ``alpha``
of 1, a current that never decays). They were refused ("no finite
time constant"); a decay of 1 is now the time constant ``dt * NO_LEAK_STEPS``, whose decay rounds
to exactly 1, and the spikes equal snnTorch's in the reference, through a file and in the torch
target. A trained decay at 1 is still refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import snnir
from snnir.errors import SnnirError
from snnir.frontends.dialects import as_euler, decay_gain
from snnir.ir.ops import LIF
from snnir.ir.semantics import NO_LEAK_STEPS, Semantics

snn = pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")

T, B, N_IN, N = 40, 5, 4, 3


class Loop(torch.nn.Module):
    def __init__(self, neuron):
        super().__init__()
        self.fc = torch.nn.Linear(N_IN, N)
        with torch.no_grad():
            self.fc.weight.mul_(3)
        self.neuron = neuron

    def forward(self, x):
        state = self.neuron.init_synaptic() if isinstance(self.neuron, snn.Synaptic) else (self.neuron.init_leaky(),)
        out = []
        for t in range(x.shape[0]):
            spk, *state = self.neuron(self.fc(x[t]), *state)
            out.append(spk)
        return torch.stack(out)


MIXED = torch.tensor([1.0, 0.9, 0.5])
NEURONS = {
    "leaky-subtract": lambda: snn.Leaky(beta=MIXED),
    "leaky-zero": lambda: snn.Leaky(beta=MIXED, reset_mechanism="zero"),
    "leaky-subtract-undelayed": lambda: snn.Leaky(beta=MIXED, reset_delay=False),
    "synaptic": lambda: snn.Synaptic(alpha=MIXED, beta=MIXED.flip(0)),
    "synaptic-undelayed": lambda: snn.Synaptic(alpha=MIXED, beta=MIXED.flip(0), reset_delay=False),
    "synaptic-alpha-one": lambda: snn.Synaptic(alpha=1.0, beta=0.9),
}


@pytest.mark.parametrize("name", NEURONS)
def test_a_decay_of_one_among_others_traces_exactly(name, tmp_path):
    torch.manual_seed(0)
    model = Loop(NEURONS[name]())
    x = torch.rand(T, B, N_IN, generator=torch.Generator().manual_seed(1)) * 2 - 0.5
    expected = model(x).detach().numpy()
    assert expected.any() and not expected.all()
    graph = snnir.trace(model, x)
    np.testing.assert_array_equal(snnir.run(graph, x.numpy())["output"], expected)
    snnir.write(graph, tmp_path / "m.nir")
    read = snnir.read(tmp_path / "m.nir")
    np.testing.assert_array_equal(snnir.run(read, x.numpy())["output"], expected)
    module = snnir.compile(snnir.optimize(read), target="torch")
    with torch.no_grad():
        got = module(x)
    got = got if torch.is_tensor(got) else next(iter(got.values()))
    np.testing.assert_array_equal(got.numpy(), expected)


def test_a_trained_decay_at_one_is_refused_by_name():
    model = Loop(snn.Leaky(beta=MIXED, learn_beta=True))
    with pytest.raises(SnnirError, match=r"node 'neuron'.*learn_beta with beta = 1"):
        snnir.trace(model, torch.rand(T, B, N_IN))


def test_as_euler_keeps_a_decay_of_one():
    """A library's Euler form of a neuron that does not leak (exp, tau far beyond dt) keeps decay 1
    and every gain; it was refused."""
    op = LIF(tau=np.array([1e300, 2e-3]), r=np.array([2.0, 3.0]), v_leak=np.zeros(()), v_threshold=np.ones(()),
             sem=Semantics(dt=1e-3, discretisation="exp"))
    euler = as_euler(op, 1e-4, "lif")
    _, gain = decay_gain(op.tau, op.sem)
    assert euler.tau[0] == 1e-4 * NO_LEAK_STEPS
    np.testing.assert_array_equal(1.0 - euler.sem.dt / euler.tau, [1.0, 1.0 - 1e-4 / euler.tau[1]])
    assert 1.0 - euler.sem.dt / euler.tau[1] == pytest.approx(np.exp(-0.5))
    np.testing.assert_allclose(euler.sem.dt / euler.tau * euler.r, gain * op.r, rtol=1e-12)
