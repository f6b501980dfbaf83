r"""Gradients of the compiled module.

The check: a surrogate gradient is the exact gradient of a *relaxed* network
in which, around the trajectory x* of the real forward pass, every spike
H(x) is replaced by  H(x*) + S(x) - S(x*),  where S is an antiderivative of
the surrogate (S' = surrogate.grad). At the real parameters the relaxed
network has the same values as the real one at every step, and its ordinary
derivative is the surrogate chain rule along the real trajectory. So the
module's autograd gradient must equal a float64 central finite difference
of the relaxed network. (Hard decisions - which neurons spike, resets - are
locally constant as long as no x* sits within the finite-difference step of
a threshold, which the test asserts.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from snnir.ir import LI, LIF, CubaLIF, Graph, Input, Linear, Output, Semantics
from snnir.targets.torch import compile_torch
from snnir.targets.torch.modules import OpModule
from snnir.targets.torch.surrogate import DEFAULT_SLOPES, Surrogate

from torch_target_graphs import _dense, neuron

EPS = 1e-6


def antiderivative(surrogate: Surrogate, x: torch.Tensor) -> torch.Tensor:
    """S with S' = surrogate.grad (checked numerically below)."""
    k = float(surrogate.slope)
    if surrogate.name == "fast_sigmoid":
        return torch.sign(x) * (1 - 1 / (k * x.abs() + 1)) / k
    if surrogate.name == "arctan":
        return torch.atan(math.pi / 2 * k * x) / math.pi
    if surrogate.name == "sigmoid":
        return torch.sigmoid(k * x)
    if surrogate.name == "straight_through":
        return x
    a = torch.clamp(x.abs(), max=1 / k)
    return torch.sign(x) * k * (a - k * a * a / 2)


class RelaxedSpike:
    """Records x* on the first pass, then returns H(x*) + S(x) - S(x*)."""

    def __init__(self, surrogate: Surrogate):
        self.surrogate = surrogate
        self.recorded: list[torch.Tensor] = []
        self.replay = False
        self.calls = 0

    def spike(self, x: torch.Tensor, inclusive: bool = False) -> torch.Tensor:
        if not self.replay:
            self.recorded.append(x.detach().clone())
            return self.surrogate.spike(x, inclusive)
        star = self.recorded[self.calls]
        self.calls += 1
        hard = (star >= 0 if inclusive else star > 0).to(x.dtype)
        return hard + antiderivative(self.surrogate, x) - antiderivative(self.surrogate, star)


def small_graph(sem: Semantics) -> Graph:
    rng = np.random.default_rng(3)
    nodes = dict([
        ("in", Input((3,))), _dense("fc", 3, 4, rng), ("lif", neuron(CubaLIF, 4, rng, sem)),
        ("rec", Linear(weight=rng.normal(0, 0.3, (4, 4)))), _dense("fc2", 4, 2, rng),
        ("li", neuron(LI, 2, rng, Semantics(dt=sem.dt))), ("out", Output()),
    ])
    edges = (("in", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "fc2"), ("fc2", "li"), ("li", "out"))
    return Graph(nodes, edges)


def _loss(module, x, weights):
    return (module(x) * weights).sum()


@pytest.mark.parametrize("name", sorted(DEFAULT_SLOPES))
def test_antiderivatives(name):
    surrogate = Surrogate(name)
    x = torch.linspace(-2, 2, 101, dtype=torch.float64) + 1e-3
    numeric = (antiderivative(surrogate, x + 1e-6) - antiderivative(surrogate, x - 1e-6)) / 2e-6
    torch.testing.assert_close(numeric, surrogate.grad(x), rtol=1e-5, atol=1e-7)


SEMS = {
    "subtract_detached": (Semantics(dt=1e-3, reset="subtract"), True),
    "subtract_through": (Semantics(dt=1e-3, reset="subtract", reset_timing="next", threshold_compare="ge"), False),
    "zero_multi_exp": (Semantics(dt=1e-3, reset="zero", discretisation="exp", spike_mode="multi",
                                 threshold_compare="ge"), True),
}


@pytest.mark.parametrize("sem_name", sorted(SEMS))
@pytest.mark.parametrize("name", sorted(DEFAULT_SLOPES))
def test_gradient_is_the_relaxed_networks_derivative(name, sem_name):
    sem, detach_reset = SEMS[sem_name]
    graph = small_graph(sem)
    surrogate = Surrogate(name)
    module = compile_torch(graph, dtype=torch.float64, trainable="all", surrogate=surrogate, fast=False,
                           detach_reset=detach_reset)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(12, 2, 3, generator=gen, dtype=torch.float64) * 2 + 0.5
    weights = torch.randn(12, 2, 2, generator=gen, dtype=torch.float64)
    params = dict(module.named_parameters())
    grads = torch.autograd.grad(_loss(module, x, weights), list(params.values()), allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params.values(), grads)]

    relaxed = RelaxedSpike(surrogate)
    for sub in module.modules():
        if isinstance(sub, OpModule):
            sub.surrogate = relaxed
    with torch.no_grad():
        reference = _loss(module, x, weights)
    stars = torch.cat([s.flatten() for s in relaxed.recorded])
    assert stars.abs().min() > 1e2 * EPS, "a membrane sits on its threshold; pick another seed"
    relaxed.replay = True

    def relaxed_loss() -> float:
        relaxed.calls = 0
        with torch.no_grad():
            return float(_loss(module, x, weights))

    assert relaxed_loss() == pytest.approx(float(reference), rel=1e-12)
    for (pname, param), grad in zip(params.items(), grads):
        direction = torch.randn(param.shape, generator=gen, dtype=torch.float64)
        if pname.endswith(("tau", "tau_syn", "tau_mem")):
            direction *= 1e-3  # time constants are ~1e-2: keep the step relative
        with torch.no_grad():
            param += EPS * direction
            plus = relaxed_loss()
            param -= 2 * EPS * direction
            minus = relaxed_loss()
            param += EPS * direction
        numeric = (plus - minus) / (2 * EPS)
        analytic = float((grad * direction).sum())
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-7), pname


@pytest.mark.parametrize("sem_name", sorted(SEMS))
def test_scan_gradients_equal_per_step_gradients(sem_name):
    sem, detach_reset = SEMS[sem_name]
    graph = small_graph(sem)
    x = torch.randn(12, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2 + 0.5
    results = []
    for fast in (True, False):
        module = compile_torch(graph, dtype=torch.float64, trainable="all", fast=fast, detach_reset=detach_reset)
        out = module(x)
        grads = torch.autograd.grad(out.square().sum(), list(module.parameters()), allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(module.parameters(), grads)]
        results.append((out.detach(), grads))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_training_reduces_loss():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    sem = Semantics(dt=1e-3, reset="subtract")
    graph = Graph.sequential(
        ("in", Input((6,))), _dense("fc1", 6, 16, rng), ("lif", neuron(LIF, 16, rng, sem)),
        _dense("fc2", 16, 2, rng), ("li", neuron(LI, 2, rng, Semantics(dt=1e-3))), ("out", Output()),
    )
    module = compile_torch(graph, trainable="all", surrogate="arctan")
    labels = torch.randint(0, 2, (32,))
    rates = torch.where(labels[:, None] == 1, torch.linspace(0.1, 0.6, 6), torch.linspace(0.6, 0.1, 6))
    x = (torch.rand(20, 32, 6) < rates).float() * 3
    optimiser = torch.optim.Adam(module.parameters(), lr=0.02)
    losses = []
    for _ in range(25):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(module(x).mean(0) * 20, labels)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert not torch.equal(module.lif.tau, torch.tensor(np.array(graph.nodes["lif"].tau), dtype=torch.float32))


@pytest.mark.parametrize("discretisation", ["euler", "exp"])
def test_a_held_gain_trains_the_decays_and_writes_back_time_constants_that_keep_the_gain(discretisation):
    """``sem.gain_held``: the trained time constants train as decays (``a_syn``, ``a_mem``); the op
    written back has those decays, the input gains it had, and the module's spikes."""
    from snnir import run
    from snnir.targets.torch.neuron_update import decay_of

    sem = Semantics(dt=1e-3, discretisation=discretisation, reset="subtract", gain_held=True)
    op = CubaLIF(tau_syn=np.full(3, 4e-3), tau_mem=np.array([5e-3, 8e-3, 2e-2]), r=np.full(3, 2.0), v_leak=np.zeros(3),
                 v_threshold=np.full(3, 0.05), w_in=np.full(3, 3.0), sem=sem, trainable=("tau_syn", "tau_mem"))
    graph = Graph.sequential(("in", Input((3,))), ("lif", op), ("out", Output()))
    module = compile_torch(graph, dtype=torch.float64)
    lif = module.node_module("lif")
    assert {n for n, p in module.named_parameters()} == {"lif.a_syn", "lif.a_mem"}
    with torch.no_grad():
        lif.a_syn.mul_(0.9), lif.a_mem.sub_(torch.tensor([0.05, 0.1, 0.0]))
    trained = module.to_graph().nodes["lif"]
    assert trained.tau_mem[2] == op.tau_mem[2] and trained.r[2] == op.r[2]  # unchanged: exact originals
    for tau, decay, scaled in (("tau_syn", "a_syn", "w_in"), ("tau_mem", "a_mem", "r")):
        np.testing.assert_allclose(decay_of(trained, tau).numpy(), getattr(lif, decay).detach().numpy(), rtol=1e-13)
        gain = lambda o: (1 - decay_of(o, tau).numpy()) * getattr(o, scaled)  # noqa: E731 - b = 1 - a (exp)
        if discretisation == "euler":
            gain = lambda o: o.sem.dt / getattr(o, tau) * getattr(o, scaled)  # noqa: E731
        np.testing.assert_allclose(gain(trained), gain(op), rtol=1e-13)
    x = np.random.default_rng(0).random((30, 2, 3)) * 0.1
    np.testing.assert_array_equal(module(torch.as_tensor(x)).detach().numpy(),
                                  run(module.to_graph(), x)["out"])
