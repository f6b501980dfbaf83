"""What ``forward`` returns is what the traced graph outputs, or the trace is refused.

Regression tests for models that used to trace silently wrong: a returned membrane became
the spikes, a neuron reset at every call carried state, ops after the last layer were dropped.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import snnir
from snnir.errors import SnnirError, SnnirWarning
from snnir.ir.printer import format_graph

snn = pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")

from tests.frontends._harness import as_float64  # noqa: E402

T, B, N_IN, N_HID, N_OUT = 30, 3, 5, 8, 4


def sequence(scale: float = 2.0, seed: int = 0) -> torch.Tensor:
    return torch.rand((T, B, N_IN), generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


class Loop(torch.nn.Module):
    """Tutorial-style loop; ``returns`` picks what forward gives back."""

    def __init__(self, make, returns):
        super().__init__()
        torch.manual_seed(3)
        self.fc1, self.fc2 = torch.nn.Linear(N_IN, N_HID), torch.nn.Linear(N_HID, N_OUT)
        with torch.no_grad():
            self.fc2.weight.mul_(3.0)
        self.lif1, self.lif2 = make(N_HID), make(N_OUT)
        self.returns = returns

    def forward(self, x):
        self.lif1.reset_mem()
        self.lif2.reset_mem()
        records = {"spk": [], "mem": [], "syn": []}
        for step in range(x.shape[0]):
            out1 = self.lif1(self.fc1(x[step]))
            out2 = self.lif2(self.fc2(out1[0]))
            for key, value in zip(("spk", "syn", "mem") if len(out2) == 3 else ("spk", "mem"), out2):
                records[key].append(value)
        return tuple(torch.stack(records[key]) for key in self.returns)


def model_outputs(model, x):
    with torch.no_grad():
        return [v.double().numpy() for v in as_float64(model)(x)]


@pytest.mark.parametrize("make,returns", [
    (lambda n: snn.Leaky(beta=0.8, init_hidden=True, output=True), ("spk", "mem")),
    (lambda n: snn.Leaky(beta=0.8, init_hidden=True, output=True), ("mem", "spk")),
    (lambda n: snn.Leaky(beta=0.8, reset_mechanism="none", init_hidden=True, output=True), ("mem",)),
    (lambda n: snn.Leaky(beta=0.8, reset_delay=False, init_hidden=True, output=True), ("spk", "mem")),
    (lambda n: snn.Synaptic(alpha=0.6, beta=0.8, init_hidden=True, output=True), ("spk", "syn", "mem")),
    (lambda n: snn.RLeaky(beta=0.8, linear_features=n, init_hidden=True, output=True), ("mem",)),
    (lambda n: snn.Alpha(alpha=0.9, beta=0.8, reset_mechanism="none", init_hidden=True, output=True), ("mem",)),
], ids=["spk_mem", "mem_spk", "mem_no_reset", "no_delay", "synaptic", "rleaky", "alpha"])
def test_returned_states_are_graph_outputs_in_order(make, returns, tmp_path):
    model = Loop(make, returns)
    x = sequence()
    graph = snnir.trace(model, x.float())
    assert len(graph.outputs) == len(returns)
    expected = model_outputs(model, x)
    snnir.write(graph, tmp_path / "m.nir")
    for got in (snnir.run(graph, x.numpy()), snnir.run(snnir.read(tmp_path / "m.nir"), x.numpy())):
        for name, kind, value in zip(graph.outputs, returns, expected):
            if kind == "spk":
                assert 0 < value.mean() < 1 and (got[name] == value).all(), name
            else:
                np.testing.assert_allclose(got[name], value, rtol=0, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("make,returns", [
    (lambda n: snn.Leaky(beta=0.8, reset_mechanism="zero", init_hidden=True, output=True), ("spk", "mem")),
    (lambda n: snn.Leaky(beta=0.8, reset_mechanism="zero", reset_delay=False, init_hidden=True, output=True),
     ("mem", "spk")),
    (lambda n: snn.Synaptic(alpha=0.6, beta=0.8, reset_mechanism="zero", init_hidden=True, output=True),
     ("spk", "syn", "mem")),
    (lambda n: snn.RLeaky(beta=0.8, linear_features=n, reset_mechanism="zero", init_hidden=True, output=True),
     ("mem",)),
    (lambda n: snn.Leaky(beta=0.8, learn_beta=True, learn_threshold=True, init_hidden=True, output=True),
     ("spk", "mem")),
], ids=["leaky", "no_delay", "synaptic", "rleaky", "learnable_subtract"])
def test_a_zero_reset_or_trainable_neurons_state_is_read_exactly(make, returns, tmp_path):
    """Its membrane is not linear in the spikes (zero reset), or a twin would not train with it:
    the graph reads the neuron's own state (snnir.StateProbe), exactly, also through a file."""
    model = Loop(make, returns)
    x = sequence()
    graph = snnir.trace(model, x.float())
    assert [op.op_type for op in graph.nodes.values()].count("snnir.StateProbe") == len(returns) - returns.count("spk")
    expected = model_outputs(model, x)
    with pytest.warns(SnnirWarning, match="StateProbe"):
        snnir.write(graph, tmp_path / "m.nir")
    module = snnir.compile(graph, target="torch", dtype=torch.float64)
    with torch.no_grad():
        out = module(x)
        compiled = {k: v.numpy() for k, v in (out if isinstance(out, dict) else {graph.outputs[0]: out}).items()}
    for got in (snnir.run(graph, x.numpy()), snnir.run(snnir.read(tmp_path / "m.nir"), x.numpy()), compiled):
        for name, kind, value in zip(graph.outputs, returns, expected):
            if kind == "spk":
                assert 0 < value.mean() < 1 and (got[name] == value).all(), name
            else:
                np.testing.assert_allclose(got[name], value, rtol=0, atol=1e-9, err_msg=name)


class ResetEveryCall(torch.nn.Module):
    """Tutorial 6's first Net: init_leaky() inside the step forward, so nothing carries over."""

    def __init__(self, neuron=snn.Leaky):
        super().__init__()
        torch.manual_seed(4)
        self.fc1, self.fc2 = torch.nn.Linear(N_IN, N_HID), torch.nn.Linear(N_HID, N_OUT)
        with torch.no_grad():
            self.fc2.weight.mul_(3.0)
        self.lif1, self.lif2 = neuron(beta=0.9), neuron(beta=0.9)

    def forward(self, x):
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spk1, mem1 = self.lif1(self.fc1(x), mem1)
        spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
        return spk2, mem2


def test_a_neuron_reset_at_every_call_is_stateless():
    model = ResetEveryCall()
    x = sequence(3.0)
    graph = snnir.trace(model, x[0].float())
    assert graph.nodes["lif1"].op_type == "Threshold" and graph.nodes["lif2"].op_type == "Threshold"
    twin = as_float64(model)
    with torch.no_grad():
        steps = [twin(x[t]) for t in range(T)]
    got = snnir.run(graph, x.numpy())
    spikes = np.stack([s.double().numpy() for s, _ in steps])
    assert 0 < spikes.mean() < 1 and (got["output"] == spikes).all()
    np.testing.assert_allclose(got["output_1"], np.stack([m.numpy() for _, m in steps]), atol=1e-9, rtol=0)


def test_a_state_reset_at_some_steps_only_is_refused():
    class Sometimes(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.lif = torch.nn.Linear(N_IN, N_OUT), snn.Leaky(beta=0.9)

        def forward(self, x):
            mem, out = self.lif.init_leaky(), []
            for step in range(x.shape[0]):
                if step == 2:
                    mem = self.lif.init_leaky()
                spk, mem = self.lif(self.fc(x[step]), mem)
                out.append(spk)
            return torch.stack(out)

    with pytest.raises(SnnirError, match="'lif'.*zero at some calls"):
        snnir.trace(Sometimes(), sequence().float())


TAILS = {
    "torch.relu": lambda y: torch.relu(y),
    "nn.ReLU": torch.nn.ReLU(),
    "sigmoid*3": lambda y: y.sigmoid() * 3,
    "tanh": torch.tanh,
    "softmax": lambda y: torch.softmax(y, -1),
    "exp": torch.exp,
    "abs": torch.abs,
    "clamp": lambda y: y.clamp(0, 1),
    "pow": lambda y: y ** 2,
    "sum": lambda y: y.sum(-1),
    "mean": lambda y: y.mean(),
}


@pytest.mark.parametrize("name", list(TAILS))
@pytest.mark.parametrize("after", ["linear", "membrane"])
def test_ops_after_the_last_layer_are_refused_naming_the_op(name, after):
    tail = TAILS[name]

    class Tail(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.lif, self.tail = torch.nn.Linear(N_IN, N_OUT), snn.Leaky(beta=0.9), tail

        def forward(self, x):
            cur = self.fc(x)
            spk, mem = self.lif(cur)
            return self.tail(cur if after == "linear" else mem)

    op = {"nn.ReLU": "relu", "sigmoid*3": "sigmoid", "pow": "pow"}.get(name, name.split(".")[-1])
    with pytest.raises(SnnirError, match=f"node 'output'.*{op}"):
        snnir.trace(Tail(), torch.rand(B, N_IN))


@pytest.mark.parametrize("tail", [lambda y: y * 3, lambda y: -y, lambda y: y + y, lambda y: 0.5 * y - y])
def test_tails_the_graph_can_state_are_exact(tail):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(5)
            self.fc = torch.nn.Linear(N_IN, N_OUT)

        def forward(self, x):
            return tail(self.fc(x))

    x = sequence()
    graph = snnir.trace(Net(), x[0].float())
    with torch.no_grad():
        expected = Net().double()(x).numpy()
    np.testing.assert_allclose(snnir.run(graph, x.numpy())["output"], expected, atol=1e-12)


def test_the_guard_refuses_a_wrong_mapping_naming_the_output(monkeypatch):
    """Any translation bug shows up as a refusal: here every Leaky is mapped with the wrong beta."""
    from snnir.frontends import snntorch_map

    original = snntorch_map._leaky
    monkeypatch.setattr(snntorch_map, "_leaky", lambda module, *a, **k: original(module, *a, **k).replace(
        tau=np.asarray(original(module, *a, **k).tau) * 2))
    model = Loop(lambda n: snn.Leaky(beta=0.8, init_hidden=True, output=True), ("spk", "mem"))
    with pytest.raises(SnnirError, match="node 'output.*does not compute what the model returns"):
        snnir.trace(model, sequence().float())


def test_the_guard_warns_where_a_membrane_ties_with_its_threshold(monkeypatch):
    """A membrane exactly on its threshold may spike either way by rounding: a difference there
    is reported as undecidable (a warning), not as an error."""
    from snnir.frontends import snntorch_map

    original = snntorch_map._leaky
    monkeypatch.setattr(snntorch_map, "_leaky", lambda module, *a, **k: original(module, *a, **k).replace(
        tau=np.asarray(original(module, *a, **k).tau) * 2))
    fc = torch.nn.Linear(1, 1)
    with torch.no_grad():
        fc.weight.zero_()
        fc.bias.fill_(1.0)  # the membrane is exactly 1.0, the threshold, at the first step

    class Static(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.lif = fc, snn.Leaky(beta=0.5, threshold=1.0)

        def forward(self, x):
            mem, out = self.lif.init_leaky(), []
            for _ in range(5):
                spk, mem = self.lif(self.fc(x), mem)
                out.append(spk)
            return torch.stack(out)

    with pytest.warns(UserWarning, match="could not check output 'output'.*'lif' on its threshold"):
        snnir.trace(Static(), torch.ones(2, 1))


def _through(route: str, graph, tmp_path):
    """``(run(x) -> membrane output, {twin's parameter name: our parameter})`` of ``graph``
    compiled directly, after a file, after -O2, or as the standalone source."""
    if route == "standalone":
        from tests.frontends.test_trace_learn_decay import load_standalone

        model = load_standalone(graph, tmp_path / "model.py")
        params = {key.replace(":", "."): p for key, p in model.params.items()}
        return (lambda x: model(x)[graph.outputs[1]]), params
    if route == "file":
        snnir.write(graph, tmp_path / "g.nir")
        graph = snnir.read(tmp_path / "g.nir")
    elif route == "optimized":
        graph = snnir.optimize(graph, level=2)
    module = snnir.compile(graph, target="torch", dtype=torch.float64)
    fused = "lif1.expansion.layer."  # -O2 fuses fc1 into lif1
    return (lambda x: module(x)[graph.outputs[1]]), {name.replace(fused, "fc1."): p
                                                     for name, p in module.named_parameters()}


@pytest.mark.parametrize("route", ["compiled", "file", "optimized", "standalone"])
@pytest.mark.parametrize("kind", ["Leaky", "Synaptic"])
def test_a_returned_subtract_reset_membrane_has_snntorchs_gradients(kind, route, tmp_path):
    """snnTorch detaches its reset from the gradient; so does the read-out's Delay of the spikes
    (``sem.detached``), in standard NIR, through files, passes and the standalone source."""
    from tests.frontends.tutorial_models import SPIKE_GRAD

    decays = {"beta": 0.8, "alpha": 0.6} if kind == "Synaptic" else {"beta": 0.8}
    model = Loop(lambda n: getattr(snn, kind)(**decays, spike_grad=SPIKE_GRAD, init_hidden=True, output=True),
                 ("spk", "mem"))
    x = sequence()
    graph = snnir.trace(model, x.float())
    assert not any(type(op).__name__ == "StateProbe" for op in graph.nodes.values())  # standard NIR only
    assert "lif2_mem_last" in format_graph(graph) and "dt=0.0001 detached" in format_graph(graph)
    twin = as_float64(model)
    spikes, mem = twin(x)
    assert 0 < spikes.mean() < 1
    mem.square().sum().backward()
    run, ours = _through(route, graph, tmp_path)
    run(x).square().sum().backward()
    for name, p in twin.named_parameters():
        torch.testing.assert_close(ours[name].grad, p.grad, rtol=1e-6, atol=1e-9 * p.grad.abs().max().item())


def test_detached_is_refused_on_any_node_but_a_delay():
    graph = snnir.trace(Loop(lambda n: snn.Leaky(beta=0.8, init_hidden=True, output=True), ("spk", "mem")),
                        sequence().float())
    lif = graph.nodes["lif2"]
    with pytest.raises(SnnirError, match="'lif2'.*'detached' is defined for Delay nodes only"):
        snnir.verify(graph.with_nodes(lif2=lif.replace(sem=lif.sem.with_(detached=True))))