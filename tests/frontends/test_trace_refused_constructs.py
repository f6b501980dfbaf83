"""Constructs of tutorial-style snnTorch models that no graph computes, refused by name at trace
time, also where the sample input could not show the difference (a zero sample, which
``snnir export`` uses). Found by probing (2026-12-04): before, the first two traced without a word
on a zero sample, and the others were refused only as "values differ" at the output; x[0] read at
every step traced as x[t] even on a random sample, whose few spikes hid it from the guard."""

from __future__ import annotations

import pytest
import torch

import snnir
from snnir.errors import SnnirError

snn = pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")

T, B, N_IN, N_HID = 10, 3, 6, 8


class _GreaterOrEqual(torch.autograd.Function):
    """A user's spike function that fires at the threshold too."""

    @staticmethod
    def forward(ctx, x):
        return (x >= 0).float()

    @staticmethod
    def backward(ctx, g):
        return g


class Loop(torch.nn.Module):
    """The tutorials' loop over the steps, with options for the constructs under test."""

    def __init__(self, spike_grad=None, backwards=False, start=None, read=None):
        super().__init__()
        self.fc = torch.nn.Linear(N_IN, N_HID)
        self.lif = snn.Leaky(beta=0.9, **({"spike_grad": spike_grad} if spike_grad else {}))
        self.backwards, self.start, self.read = backwards, start, read or (lambda t: t)

    def forward(self, x):
        mem = self.lif.init_leaky() if self.start is None else torch.full((x.shape[1], N_HID), self.start)
        out = []
        for t in reversed(range(x.shape[0])) if self.backwards else range(x.shape[0]):
            spk, mem = self.lif(self.fc(x[self.read(t)]), mem)
            out.append(spk)
        return torch.stack(out)


@pytest.mark.parametrize("model,needle", [
    (Loop(spike_grad=_GreaterOrEqual.apply), r"node 'lif'.*spike_grad's forward gives .*0 -> 1"),
    (Loop(spike_grad=lambda v: torch.sigmoid(4 * v)), r"node 'lif'.*spike_grad's forward gives .*0 -> 0\.5"),
    (Loop(backwards=True), r"node 'fc'.*x\[9\] read first"),
    (Loop(start=0.5), r"node 'lif'.*first called with a state that is not zero"),
    (Loop(read=lambda t: 0), r"node 'lif'.*ran 10 steps but read only x\[0\]"),
    (Loop(read=lambda t: t // 2), r"node 'lif'.*ran 10 steps but read x\[0\] to x\[4\]"),
], ids=["fires-at-threshold", "graded", "backwards", "nonzero-start", "first-step-only", "each-step-twice"])
@pytest.mark.parametrize("sample", ["zeros", "random"])
def test_refused_naming_the_layer(model, needle, sample):
    x = torch.zeros(T, B, N_IN) if sample == "zeros" else torch.rand(T, B, N_IN, generator=torch.Generator().manual_seed(0))
    with pytest.raises(SnnirError, match=needle):
        snnir.trace(model, x)


def test_steps_read_more_than_once_in_order_still_trace():
    """x[t] read twice in one step (two branches) is in order."""
    class TwoReads(Loop):
        def forward(self, x):
            mem, out = self.lif.init_leaky(), []
            for t in range(x.shape[0]):
                spk, mem = self.lif(self.fc(x[t]) + self.fc(x[t]), mem)
                out.append(spk)
            return torch.stack(out)

    graph = snnir.trace(TwoReads(), torch.rand(T, B, N_IN))
    assert "lif" in graph.nodes


@pytest.mark.parametrize("mode", ["fresh-every-step", "non-zero-start", "every-other-step"])
def test_snnir_nn_layers_are_checked_by_the_guard(mode):
    """A model holding an ``snnir.nn`` layer is run against its graph like any other (until
    2026-12-04 any ``to_op()`` module turned the guard off, so these traced to a stateful graph
    that gave other spikes without a word)."""
    import snnir.nn as layers

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(1)
            self.fc, self.lif = torch.nn.Linear(N_IN, N_HID), layers.LIF(tau=2e-3, r=20.0, v_threshold=1.0)

        def forward(self, x):
            state = {"v": torch.full((x.shape[1], N_HID), 0.7)} if mode == "non-zero-start" else None
            out = []
            for t in range(x.shape[0]):
                y, new = self.lif(self.fc(x[t]), None if mode == "fresh-every-step" else state)
                state = new if mode != "every-other-step" or t % 2 == 0 else state
                out.append(y)
            return torch.stack(out)

    x = (torch.rand(T, B, N_IN, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    with pytest.raises(SnnirError, match="node 'output': the traced graph does not compute what the model returns"):
        snnir.trace(Net(), x)


def test_an_snnir_nn_layer_run_by_sequence_is_named():
    """``layer.sequence(...)`` is no call trace sees: the refusal names the layer and the fix."""
    import snnir.nn as layers

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.lif = torch.nn.Linear(N_IN, N_HID), layers.LIF(tau=2e-3, r=20.0, v_threshold=1.0)

        def forward(self, x):
            return self.lif.sequence(self.fc(x))[0]

    with pytest.raises(SnnirError, match=r"'lif' was never called as a layer.*not layer\.sequence"):
        snnir.trace(Net(), torch.rand(T, B, N_IN))


@pytest.mark.parametrize("beta", [1.0, 1.2, -0.3])
def test_lapicque_without_a_time_constant_names_beta(beta):
    """snnTorch derives Lapicque's C from beta; these gave internal messages ("tau must be positive")."""
    model = torch.nn.Sequential(torch.nn.Linear(N_IN, N_HID), snn.Lapicque(beta=beta, init_hidden=True))
    with pytest.raises(SnnirError, match=r"node '1'.*Lapicque's time constant R\*C .*use 0 < beta < 1"):
        snnir.trace(model, torch.rand(B, N_IN))


class TwoInputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(N_IN, N_HID)
        self.lif = snn.Leaky(beta=0.9, init_hidden=True)

    def forward(self, a, b, scale=1.0):
        return self.lif(self.fc(a + b) * scale)


@pytest.mark.parametrize("sample", [torch.zeros(B, N_IN), (torch.zeros(B, N_IN), torch.zeros(B, N_IN))],
                         ids=["one tensor", "a tuple"])
def test_a_forward_of_two_inputs_is_refused_by_its_arity(sample):
    """It gave Python's "forward() missing 1 required positional argument: 'b'" (or, for a tuple,
    "sample_input is not a tensor: only one element tensors can be converted")."""
    with pytest.raises(SnnirError, match=r"^TwoInputs.forward takes 2 inputs \(a, b\) and trace gives it one, "
                                         r"sample_input: it traces models of one input tensor$"):
        snnir.trace(TwoInputs(), sample)


def test_a_loop_model_traced_on_one_step_says_it_wants_a_sequence():
    """A model looping over x.shape[0] traced on [B, N] saw steps of [N] and failed naming a shape
    [] the user never gave."""
    import snntorch as snn

    class Loop(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.lif = torch.nn.Linear(8, 6), snn.Leaky(beta=0.9)

        def forward(self, x):
            mem, out = self.lif.init_leaky(), []
            for t in range(x.shape[0]):
                spk, mem = self.lif(self.fc(x[t]), mem)
                out.append(spk)
            return torch.stack(out)

    with pytest.raises(SnnirError, match=r"node 'fc': .*one step is \[8\], with no batch: trace it on a sequence"):
        snnir.trace(Loop(), torch.rand(1, 8))


class Iterated(Loop):
    """``for x_t in x`` (torch's ``x.unbind(0)``), the steps used in ``order``; ``dim``: unbound
    along another dimension (batch-first data)."""

    def __init__(self, order=lambda steps: range(steps), dim=0):
        super().__init__()
        self.order, self.dim = order, dim

    def forward(self, x):
        steps = list(x) if self.dim == 0 else x.unbind(self.dim)
        mem, out = self.lif.init_leaky(), []
        for t in self.order(len(steps)):
            spk, mem = self.lif(self.fc(steps[t] * 2), mem)
            out.append(spk)
        return torch.stack(out)


def test_iterating_over_the_input_traces_as_indexing_it():
    """``for x_t in x`` unbinds all steps at once: each is read as ``x[t]`` where it is used
    (before, any use was refused as "went through 'unbind'")."""
    model, x = Iterated(), torch.rand(T, B, N_IN, generator=torch.Generator().manual_seed(0))
    graph = snnir.trace(model, x)
    with torch.no_grad():
        want = model(x)
        assert want.sum() > 0
        assert torch.equal(snnir.compile(snnir.optimize(graph), target="torch")(x), want)


@pytest.mark.parametrize("model,needle", [
    (Iterated(order=lambda steps: reversed(range(steps))), r"node 'fc'.*x\[9\] read first"),
    (Iterated(order=lambda steps: [0] * steps), r"node 'lif'.*ran 10 steps but read only x\[0\]"),
    (Iterated(dim=1), r"node 'fc'.*x\.unbind\(1\).*time\s+first"),
], ids=["backwards", "first-step-only", "batch-first"])
def test_iterated_steps_out_of_order_are_refused_naming_the_layer(model, needle):
    with pytest.raises(SnnirError, match=needle):
        snnir.trace(model, torch.rand(T, B, N_IN, generator=torch.Generator().manual_seed(0)))
