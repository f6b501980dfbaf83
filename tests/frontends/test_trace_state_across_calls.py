"""State that lives across calls of a step model, as users write it: ``utils.reset`` inside
``forward``, a state made at the first call, a call counter. Each traces to the spikes snnTorch
gives over many calls, or is refused naming what the graph cannot follow; tracing leaves the
user's model (and snnTorch's registry of neurons) alone. Found by probing tutorial-style models
(2026-12-04): before, the first three gave other spikes without a word."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import snnir
from snnir.errors import SnnirError

snn = pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")
from snntorch import utils  # noqa: E402

from tests.frontends._harness import as_float64, check_same, random_input, run_step_model  # noqa: E402

N_IN, N_HID, N_OUT = 6, 12, 5


def _layers(init_hidden: bool) -> list[torch.nn.Module]:
    """Linear -> Leaky -> Linear -> Leaky, weights scaled 3x so that one step from zero fires."""
    torch.manual_seed(0)
    fc1, fc2 = torch.nn.Linear(N_IN, N_HID), torch.nn.Linear(N_HID, N_OUT)
    with torch.no_grad():
        fc1.weight.mul_(3.0)
        fc2.weight.mul_(3.0)
    return [fc1, snn.Leaky(beta=0.9, init_hidden=init_hidden),
            fc2, snn.Leaky(beta=0.9, init_hidden=init_hidden, output=init_hidden)]


class ResetEveryCall(torch.nn.Module):
    """``utils.reset`` at the top of a step ``forward``: no state is kept from one step to the next."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(*_layers(init_hidden=True))

    def forward(self, x):
        utils.reset(self.net)
        return self.net(x)[0]


class LazyState(torch.nn.Module):
    """The membranes made at the first call and carried in attributes after it."""

    def __init__(self):
        super().__init__()
        self.fc1, self.lif1, self.fc2, self.lif2 = _layers(init_hidden=False)
        self.mem1 = self.mem2 = None

    def forward(self, x):
        if self.mem1 is None:
            self.mem1, self.mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spk1, self.mem1 = self.lif1(self.fc1(x), self.mem1)
        spk2, self.mem2 = self.lif2(self.fc2(spk1), self.mem2)
        return spk2


class ResetEveryTenCalls(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0
        self.net = torch.nn.Sequential(*_layers(init_hidden=True))

    def forward(self, x):
        if self.calls % 10 == 0:
            utils.reset(self.net)
        self.calls += 1
        return self.net(x)[0]


def _snntorch_spikes(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's output spikes over the steps of ``x``, called once per step from a fresh copy."""
    twin = as_float64(model)
    with torch.no_grad():
        return torch.stack([twin(x[t]) for t in range(x.shape[0])])


@pytest.mark.parametrize("make", [ResetEveryCall, LazyState], ids=lambda m: m.__name__)
def test_state_kept_or_dropped_across_calls_traces_exactly(make):
    x = random_input((N_IN,), 3.0)
    model = make()
    graph = snnir.trace(model, x[0].float())
    want = _snntorch_spikes(model, x).numpy()
    assert 0 < want.mean() < 1
    got = snnir.run(graph, x.numpy())["output"]
    assert (got == want).all(), f"{int((got != want).sum())} spikes differ"


def test_utils_reset_in_a_loop_model_resets_the_traced_copy_not_the_model():
    """A static loop calling ``utils.reset`` every step gives a stateless graph, and the model's
    own neurons keep the state they had (``utils.reset`` walks snnTorch's class-level registry)."""
    class LoopReset(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(*_layers(init_hidden=True))

        def forward(self, x):
            out = []
            for _ in range(8):
                utils.reset(self.net)
                out.append(self.net(x)[0])
            return torch.stack(out)

    model = LoopReset()
    x = random_input((N_IN,), 3.0)[0].float()
    with torch.no_grad():
        model.net(x)  # the model's neurons now hold a state of their own
    held = model.net[3].mem.clone()
    graph = snnir.trace(model, x)
    assert torch.equal(model.net[3].mem, held)
    with torch.no_grad():
        want = as_float64(model)(x.double()).numpy()
    got = snnir.run(graph, x.double().numpy()[None].repeat(8, 0))["output"]
    assert (got == want).all()


def test_a_call_counter_in_forward_is_refused_naming_it():
    with pytest.raises(SnnirError, match=r"node 'model'.*attribute 'calls' \(0 -> 1\)"):
        snnir.trace(ResetEveryTenCalls(), random_input((N_IN,))[0].float())


def test_step_models_still_match_over_many_calls():
    """The usual step model (state passed and returned each call) keeps its state: unchanged."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(N_IN, N_HID), snn.Leaky(beta=0.9, init_hidden=True),
                                torch.nn.Linear(N_HID, N_OUT), snn.Leaky(beta=0.9, init_hidden=True, output=True))
    x = random_input((N_IN,), 2.0)
    graph = snnir.trace(model, x[0].float())
    spikes, states = run_step_model(as_float64(model), x)
    check_same(graph, spikes, states, x.numpy())


def test_an_attribute_set_from_none_is_no_counter():
    """A cache such as the last batch size, None until the first call, does not refuse the trace."""
    class CachesBatch(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.batch = None
            self.net = torch.nn.Sequential(*_layers(init_hidden=True))

        def forward(self, x):
            self.batch = x.shape[0]
            return self.net(x)[0]

    graph = snnir.trace(CachesBatch(), random_input((N_IN,))[0].float())
    assert "net_1" in graph.nodes


class LoopModel(torch.nn.Module):
    """The tutorials' loop: the states made once before the loop over the input's steps."""

    def __init__(self, recurrent: bool):
        super().__init__()
        self.fc, self.recurrent = torch.nn.Linear(N_IN, N_HID), recurrent
        with torch.no_grad():
            self.fc.weight.abs_().mul_(0.7)
        self.lif = snn.RLeaky(beta=0.9, linear_features=N_HID) if recurrent else snn.Leaky(beta=0.9)

    def forward(self, x):
        state = self.lif.init_rleaky() if self.recurrent else (self.lif.init_leaky(),)
        out = []
        for t in range(x.shape[0]):
            spk, *state = self.lif(self.fc(x[t]), *state[-1:] if not self.recurrent else state)
            state = [spk, *state] if self.recurrent else state
            out.append(spk)
        return torch.stack(out)


@pytest.mark.parametrize("recurrent", [False, True], ids=["Leaky", "RLeaky"])
def test_a_loop_traced_on_one_step_keeps_its_state(recurrent):
    """One step of a loop cannot show that the state carries: it traced stateless (Leaky: 14 of 19
    spikes differed over 10 steps) or was refused (RLeaky); it is traced on the step twice."""
    torch.manual_seed(0)
    model = LoopModel(recurrent)
    x = torch.rand(10, 2, N_IN, generator=torch.Generator().manual_seed(1)) * 3
    expected = model(x).detach().numpy()
    graph = snnir.trace(model, torch.zeros(1, 2, N_IN))
    assert (snnir.run(graph, x.numpy())["output"] == expected).all()


class ReturnsHeldMembrane(torch.nn.Module):
    """A step model returning its init_hidden neuron's membrane attribute, ``self.lif.mem``."""

    def __init__(self):
        super().__init__()
        self.fc, self.lif = _layers(init_hidden=True)[:2]

    def forward(self, x):
        return self.lif(self.fc(x)), self.lif.mem


def test_a_held_membrane_returned_traces_as_output_true():
    """``self.lif.mem`` is the tensor ``output=True`` returns; it was refused as coming from no layer."""
    model = ReturnsHeldMembrane()
    x = random_input((N_IN,)).float()
    graph = snnir.trace(model, x[0])
    utils.reset(model)
    spikes, membranes = (torch.stack(v).detach().double().numpy() for v in zip(*(model(step) for step in x)))
    got = snnir.run(graph, x.numpy())
    assert (got[graph.outputs[0]] == spikes).all() and spikes.any()
    np.testing.assert_allclose(got[graph.outputs[1]], membranes, atol=1e-5, rtol=0)
