"""snnTorch's ``learn_beta``/``learn_alpha`` train the decay with the input gain held at 1; a traced
op says so (``sem.gain_held``) and the compiled module trains the decay itself, so its gradients,
its SGD steps and the op it writes back are snnTorch's (float64)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

import snnir
from snnir.ir.semantics import NO_LEAK_STEPS

snn = pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")

from snnir.frontends.guard import in_float64  # noqa: E402
from snnir.targets.torch.codegen import write_module  # noqa: E402
from snnir.ir.printer import format_graph  # noqa: E402
from tests.frontends.tutorial_models import SPIKE_GRAD  # noqa: E402

T, B, N = 20, 3, 4


class Net(torch.nn.Module):
    def __init__(self, kind: str, **options):
        super().__init__()
        torch.manual_seed(3)
        self.fc = torch.nn.Linear(2, N)
        with torch.no_grad():
            self.fc.weight.mul_(3.0)
        decays = {"beta": torch.full((N,), 0.8)}
        learn = {"learn_beta": True}
        if "Synaptic" in kind:
            decays["alpha"], learn["learn_alpha"] = torch.linspace(0.5, 0.7, N), True
        if kind.startswith("R"):
            learn["linear_features"] = N
        self.lif = getattr(snn, kind)(**decays, **learn, **options, init_hidden=True, output=True,
                                      spike_grad=SPIKE_GRAD)

    def forward(self, x):
        return self.lif(self.fc(x))[0]


def sample() -> torch.Tensor:
    return torch.rand((T, B, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def step_loss(spikes: torch.Tensor) -> torch.Tensor:
    return (spikes.mean(0) - 0.3).square().sum()


def snntorch_run(model):
    for module in model.modules():
        if isinstance(module, snn.SpikingNeuron):
            module.reset_mem()
    return torch.stack([model(x) for x in sample()])


def side_by_side_sgd(twin, module, lr: float, steps: int = 4):
    """SGD steps of snnTorch's ``twin`` and our ``module`` on the same samples, their spikes equal
    at every step; yields after each backward (gradients set), before the optimisers step."""
    theirs = torch.optim.SGD(twin.parameters(), lr=lr)
    ours = torch.optim.SGD(module.parameters(), lr=lr)
    for _ in range(steps):
        their_spikes, our_spikes = snntorch_run(twin), module(sample())
        torch.testing.assert_close(our_spikes, their_spikes, rtol=0, atol=0)
        theirs.zero_grad(), ours.zero_grad()
        step_loss(their_spikes).backward()
        step_loss(our_spikes).backward()
        yield
        theirs.step(), ours.step()


@pytest.mark.parametrize("kind,decays", [(kind, {"beta": "a_mem", "alpha": "a_syn"} if "Synaptic" in kind
                                          else {"beta": "a_mem"})
                                         for kind in ("Leaky", "Synaptic", "RLeaky", "RSynaptic")])
def test_trained_decays_follow_snntorch(kind, decays):
    model = Net(kind)
    graph = snnir.trace(model, sample()[0].float())
    op = graph.nodes["lif"]
    assert op.sem.gain_held and "gain-held" in format_graph(graph)
    twin = in_float64(model)
    module = snnir.compile(graph, target="torch", dtype=torch.float64)
    lif = module.node_module("lif")
    for _ in side_by_side_sgd(twin, module, lr=0.1):
        for their_name, our_name in decays.items():
            their_grad = getattr(twin.lif, their_name).grad
            assert their_grad.abs().max() > 0
            # 1e-6: every gradient (the Linear's too) differs from snnTorch's by ~2e-8 relative
            torch.testing.assert_close(getattr(lif, our_name).grad, their_grad, rtol=1e-6, atol=0)
    trained = module.to_graph().nodes["lif"]
    dt = trained.sem.dt
    taus = {"beta": trained.tau if "Leaky" in kind else trained.tau_mem, "alpha": getattr(trained, "tau_syn", None)}
    for their_name in decays:
        beta = getattr(twin.lif, their_name).detach().numpy()
        assert not np.allclose(beta, getattr(Net(kind).lif, their_name).detach().numpy())  # it trained
        np.testing.assert_allclose(1 - dt / taus[their_name], beta, rtol=1e-6)  # the ~2e-8 gradient gap, stepped
    gain_mem = (dt / taus["beta"]) * trained.r  # b r: held at snnTorch's 1
    np.testing.assert_allclose(gain_mem, 1.0, rtol=1e-12)
    if "Synaptic" in kind:
        np.testing.assert_allclose((dt / taus["alpha"]) * trained.w_in, 1.0, rtol=1e-12)
    retrained = snnir.compile(module.to_graph(), target="torch", dtype=torch.float64)
    torch.testing.assert_close(retrained(sample()), snntorch_run(twin), rtol=0, atol=0)


def _decay_grads(graph, **options) -> dict[str, torch.Tensor]:
    module = snnir.compile(graph, target="torch", dtype=torch.float64, **options)
    step_loss(module(sample())).backward()
    lif = module.node_module("lif")
    return {name: getattr(lif, name).grad for name in ("a_mem", "a_syn") if hasattr(lif, name)}


def test_every_path_trains_the_decay_and_files_keep_the_choice(tmp_path, monkeypatch, native_kernels):
    graph = snnir.trace(Net("Synaptic"), sample()[0].float())
    snnir.write(graph, tmp_path / "g.nir")
    back = snnir.read(tmp_path / "g.nir")
    assert back.nodes["lif"].sem.gain_held and back == graph
    loop = _decay_grads(graph)
    assert set(loop) == {"a_mem", "a_syn"}
    module = snnir.compile(graph, target="torch", dtype=torch.float64)
    with torch.no_grad():
        module.node_module("lif").a_syn[0] = 1.0
    assert module.to_graph().nodes["lif"].tau_syn[0] == graph.nodes["lif"].sem.dt * NO_LEAK_STEPS
    monkeypatch.setenv("SNNIR_NATIVE", "1")
    for grads in (_decay_grads(graph, fast=False), _decay_grads(graph)):  # the step loop, the C++ kernels
        for name, grad in loop.items():
            torch.testing.assert_close(grads[name], grad, rtol=1e-12, atol=1e-15)


def _set_decays(twin, lif, kind: str, values: torch.Tensor) -> None:
    """Set snnTorch's beta (alpha) and our a_mem (a_syn) to ``values``."""
    names = {"beta": "a_mem", "alpha": "a_syn"} if "Synaptic" in kind else {"beta": "a_mem"}
    with torch.no_grad():
        for theirs, ours in names.items():
            getattr(twin.lif, theirs).copy_(values)
            getattr(lif, ours).copy_(values)


#: past 1, on 1, inside, below 0: snnTorch steps with beta.clamp(0, 1) (alpha too)
OUT_OF_RANGE = torch.tensor([1.3, 1.0, 0.6, -0.2], dtype=torch.float64)


@pytest.mark.parametrize("kind", ["Leaky", "Synaptic", "RLeaky", "RSynaptic"])
def test_decays_trained_out_of_0_1_are_clamped_as_snntorch_clamps_them(kind, monkeypatch, native_kernels):
    model = Net(kind)
    graph = snnir.trace(model, sample()[0].float())
    twin = in_float64(model)
    their_spikes = None
    for native in ("0", "1"):  # the Python loop, the C++ kernels
        monkeypatch.setenv("SNNIR_NATIVE", native)
        module = snnir.compile(graph, target="torch", dtype=torch.float64)
        lif = module.node_module("lif")
        _set_decays(twin, lif, kind, OUT_OF_RANGE)
        twin.zero_grad()
        their_spikes = snntorch_run(twin)
        our_spikes = module(sample())
        torch.testing.assert_close(our_spikes, their_spikes, rtol=0, atol=0)
        step_loss(their_spikes).backward()
        step_loss(our_spikes).backward()
        their_grad, our_grad = twin.lif.beta.grad, lif.a_mem.grad
        assert their_grad[[0, 3]].abs().max() == 0 and their_grad[[1, 2]].abs().min() > 0
        torch.testing.assert_close(our_grad, their_grad, rtol=1e-6, atol=0)
    unclamped = (their_spikes != snnir.compile(graph, target="torch", dtype=torch.float64)(sample())).any()
    assert unclamped  # the out-of-range decays change the spikes: the check above is not vacuous


def test_decays_clamped_to_0_and_to_1_are_written_back(tmp_path):
    """A decay clamped to 1 is written as the time constant dt * NO_LEAK_STEPS (it was refused)."""
    model = Net("Leaky")
    graph = snnir.trace(model, sample()[0].float())
    twin = in_float64(model)
    module = snnir.compile(graph, target="torch", dtype=torch.float64)
    _set_decays(twin, module.node_module("lif"), "Leaky", torch.tensor([-0.2, 0.5, 0.0, 0.7], dtype=torch.float64))
    trained = module.to_graph()
    np.testing.assert_allclose(trained.nodes["lif"].tau[[0, 2]], trained.nodes["lif"].sem.dt, rtol=1e-12)
    snnir.write(trained, tmp_path / "trained.nir")
    again = snnir.compile(snnir.read(tmp_path / "trained.nir"), target="torch", dtype=torch.float64)
    torch.testing.assert_close(again(sample()), snntorch_run(twin), rtol=0, atol=0)
    _set_decays(twin, module.node_module("lif"), "Leaky", OUT_OF_RANGE)
    trained = module.to_graph()
    assert (trained.nodes["lif"].tau == trained.nodes["lif"].sem.dt * NO_LEAK_STEPS).any()
    snnir.write(trained, tmp_path / "clamped.nir")
    again = snnir.compile(snnir.read(tmp_path / "clamped.nir"), target="torch", dtype=torch.float64)
    torch.testing.assert_close(again(sample()), snntorch_run(twin), rtol=0, atol=0)


def load_standalone(graph, path):
    """The generated standalone module of ``graph`` (written to ``path``), in float64."""
    source, _ = write_module(graph, path, "torch")
    spec = importlib.util.spec_from_file_location(f"standalone_{abs(hash(str(path)))}", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load_model(dtype=torch.float64)


@pytest.mark.parametrize("kind", ["Leaky", "Synaptic"])
def test_the_standalone_source_clamps_the_decays_as_snntorch(kind, tmp_path):
    model = Net(kind)
    graph = snnir.trace(model, sample()[0].float())
    twin, standalone = in_float64(model), load_standalone(graph, tmp_path / "model.py")
    with torch.no_grad():
        twin.lif.beta.copy_(OUT_OF_RANGE)
        standalone.params["lif:a_mem"].copy_(OUT_OF_RANGE)
        if kind == "Synaptic":
            twin.lif.alpha.copy_(OUT_OF_RANGE)
            standalone.params["lif:a_syn"].copy_(OUT_OF_RANGE)
    ours = standalone(sample())
    torch.testing.assert_close(ours, snntorch_run(twin), rtol=0, atol=0)
    step_loss(ours).backward()
    grad = standalone.params["lif:a_mem"].grad
    assert grad[[0, 3]].abs().max() == 0 and grad[[1, 2]].abs().min() > 0


def test_learn_beta_of_1_is_refused_and_past_1_trains_as_an_if_as_in_snntorch():
    """snnTorch's ``beta.clamp(0, 1)`` passes the gradient at exactly 1 (beta then trains below 1,
    where no IF follows it: refused) and none past 1 (beta stays, the neuron an IF: SGD steps of both
    give the same spikes and parameters)."""
    for beta, refused in ((1.0, True), (1.25, False)):
        model = Net("Leaky")
        with torch.no_grad():
            model.lif.beta.fill_(beta)
        if refused:
            with pytest.raises(snnir.SnnirError, match="'lif'.*learn_beta with beta = 1"):
                snnir.trace(model, sample()[0].float())
            continue
        graph = snnir.trace(model, sample()[0].float())
        assert graph.nodes["lif"].op_type == "IF"
        twin = in_float64(model)
        module = snnir.compile(graph, target="torch", dtype=torch.float64)
        for _ in side_by_side_sgd(twin, module, lr=0.5):
            pass
        assert bool((twin.lif.beta == beta).all())
        fc = module.node_module("fc")
        assert not torch.equal(twin.fc.weight, in_float64(Net("Leaky")).fc.weight)  # it trained
        torch.testing.assert_close(fc.weight, twin.fc.weight, rtol=1e-6, atol=1e-12)
        torch.testing.assert_close(fc.bias, twin.fc.bias, rtol=1e-6, atol=1e-12)
