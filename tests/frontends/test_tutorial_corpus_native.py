"""snnTorch's published models (``tutorial_models.py``) on the users' default path: float32, the
C++ kernels on (built, ``SNNIR_NATIVE`` unset), ``snnir.compile(snnir.optimize(graph))`` with its
defaults (the measured plan, the fused pool-neuron, neuron-Linear and recurrent kernels).

Over ``T`` steps and a batch of ``BATCH``, for every case the corpus exports exactly: the returned
spikes are identical to snnTorch's float32 forward and membranes agree to float32 rounding, called
as a sequence and step by step (a static input also held with ``steps=T`` and ``expand``); one
``backward`` gives the parameters snnTorch's gradients to rounding (its traced surrogate); runs of
1, 3 and all steps, the first layer pinned to 1 or 3 steps per call, and a one-byte or no memory
budget change neither. Refused cases still refuse.
"""

from __future__ import annotations

import pytest
import torch

import snnir
from snnir.errors import SnnirError

snn = pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")

from tests.frontends.tutorial_models import CASES, Case, Tutorial5, seeded  # noqa: E402

T, BATCH = 50, 3
# the convolutional cases take most of the time: run with the slow tests
SLOW = {"readme_quickstart", "readme_quickstart_avgpool", "tutorial_6_net", "tutorial_6_net_avgpool",
        "tutorial_6_sequential", "tutorial_6_sequential_avgpool", "tutorial_7", "tutorial_7_avgpool", "stmnist",
        "stmnist_avgpool", "sae_encoder"}
EXACT = [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.name in SLOW else [])
         for c in CASES if c.expect == "exact"]
TRAINED = [p for p in EXACT if list(p.values[0].build().parameters())]  # Lapicque's tutorial has no parameters


@pytest.fixture
def default_path(kernels_used, monkeypatch):
    """The users' setting: kernels built, ``SNNIR_NATIVE`` unset; gives the set of kernels used."""
    monkeypatch.delenv("SNNIR_NATIVE", raising=False)
    return kernels_used


def build(case: Case, steps: int = T) -> torch.nn.Module:
    """The case's model, its own step count (a static model loops ``num_steps``) set to ``steps``."""
    model = case.build()
    for name in ("num_steps", "timesteps"):
        if hasattr(model, name):
            setattr(model, name, steps)
    return model


def case_input(case: Case, steps: int = T) -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    return torch.rand((steps, BATCH) + case.shape, generator=generator) * case.scale


def their_outputs(model: torch.nn.Module, case: Case, x: torch.Tensor) -> list[torch.Tensor]:
    """snnTorch's float32 run from zero state: what forward returns, stacked over the calls of a step model."""
    for module in model.modules():
        if isinstance(module, snn.SpikingNeuron) and callable(getattr(module, "reset_mem", None)):
            module.reset_mem()
    if case.style != "step":
        out = model(x if case.style == "loop" else x[0])
        return list(out) if isinstance(out, tuple) else [out]
    per_step = [model(x_t) for x_t in x]
    per_step = [s if isinstance(s, tuple) else (s,) for s in per_step]
    return [torch.stack([s[k] for s in per_step]) for k in range(len(per_step[0]))]


def our_outputs(module, graph: snnir.Graph, case: Case, x: torch.Tensor, call: str) -> list[torch.Tensor]:
    """The compiled module's outputs in the graph's order: ``call`` "sequence", "step", or for a
    static model "expand" (the held input as a stride-0 sequence)."""
    if call == "step":
        state, steps = None, []
        for x_t in x if case.style != "static" else [x[0]] * len(x):
            out, state = module.step(x_t, state)
            steps.append(out)
        outs = {name: torch.stack([s[name] if isinstance(s, dict) else s for s in steps]) for name in graph.outputs}
    elif case.style == "static":
        out = module(x[0], steps=len(x)) if call == "sequence" else module(x[0].expand(x.shape))
        outs = out if isinstance(out, dict) else {graph.outputs[0]: out}
    else:
        out = module(x)
        outs = out if isinstance(out, dict) else {graph.outputs[0]: out}
    return [outs[name] for name in graph.outputs]


def assert_same(ours: list, theirs: list, what: str) -> None:
    """Spikes identical; other values to float32 rounding."""
    assert len(ours) == len(theirs), what
    for k, (mine, want) in enumerate(zip(ours, theirs)):
        mine = mine if mine.shape == want.shape else mine[-1]
        if torch.isin(want, torch.tensor([0.0, 1.0])).all():
            differ = (mine != want).nonzero()
            assert not len(differ), f"{what}: output {k}: {len(differ)} spikes differ, first at {differ[0].tolist()}"
        else:
            scale = max(1.0, float(want.abs().max()))
            torch.testing.assert_close(mine, want, rtol=0, atol=2e-5 * scale, msg=lambda m: f"{what}: output {k}: {m}")


def traced(case: Case, model: torch.nn.Module, x: torch.Tensor) -> snnir.Graph:
    return snnir.optimize(snnir.trace(model, x if case.style == "loop" else x[0]))


@pytest.mark.parametrize("case", EXACT)
def test_inference_on_the_default_path(case: Case, default_path):
    model, x = build(case), case_input(case)
    graph = traced(case, model, x)
    with torch.no_grad():
        theirs = their_outputs(model, case, x)
        module = snnir.compile(graph, target="torch")
        calls = ["sequence", "step"] + (["expand"] if case.style == "static" else [])
        for call in calls:
            assert_same(our_outputs(module, graph, case, x, call), theirs, call)
    assert default_path or not module.initial_state(1), "no C++ kernel ran"  # a stateless graph needs none


def weighted_loss(outputs: list[torch.Tensor]) -> torch.Tensor:
    """A fixed random weighting of every returned value (each one's gradient reaches the parameters)."""
    generator = torch.Generator().manual_seed(3)
    return sum((out * torch.rand(out.shape, generator=generator)).sum() for out in outputs)


def their_gradients(model: torch.nn.Module, case: Case, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(value, gradient) of each snnTorch parameter that the loss reaches."""
    model.zero_grad()
    weighted_loss(their_outputs(model, case, x)).backward()
    return [(p.detach(), p.grad) for p in model.parameters() if p.grad is not None and p.grad.abs().max() > 0]


def our_gradients(graph: snnir.Graph, case: Case, x: torch.Tensor, **options) -> tuple[list, list]:
    """The outputs (sequence call) and (value, gradient) of each compiled parameter."""
    module = snnir.compile(graph, target="torch", **options)
    outputs = our_outputs(module, graph, case, x, "sequence")
    weighted_loss(outputs).backward()
    return [o.detach() for o in outputs], [(p.detach(), p.grad) for p in module.parameters() if p.grad is not None]


def assert_gradients_match(ours: list, theirs: list, case: Case, what: str) -> None:
    """Each snnTorch parameter has a compiled copy (found by its value) with the same gradient to
    float32 rounding."""
    found = 0
    for value, grad in theirs:
        twins = [g for v, g in ours if v.numel() == value.numel() and torch.equal(v.flatten(), value.flatten())]
        if not twins:
            continue
        found += 1
        scale = float(grad.abs().max())
        torch.testing.assert_close(twins[0].flatten(), grad.flatten(), rtol=1e-4, atol=1e-4 * scale,
                                   msg=lambda m, shape=tuple(value.shape): f"{what}: parameter {shape}: {m}")
    assert found == len(theirs), f"{what}: {len(theirs) - found} snnTorch parameters have no compiled copy"


@pytest.mark.parametrize("case", TRAINED)
def test_training_on_the_default_path(case: Case, default_path):
    model, x = build(case), case_input(case)
    graph = traced(case, model, x)
    theirs = their_gradients(model, case, x)
    with torch.no_grad():
        their_values = their_outputs(model, case, x)
    outputs, ours = our_gradients(graph, case, x)
    assert_same(outputs, their_values, "training forward")
    assert_gradients_match(ours, theirs, case, "default plan")


# runs of steps and steps per call (training and inference), and memory budgets (they bound inference only)
TIME_CHUNKS = {f"time_chunk={n}": {"time_chunk": n} for n in (1, 3, 0)}  # 0: all steps in one run
BUDGETS = {"one-byte memory budget": {"memory_budget": 1}, "no memory budget": {"memory_budget": None}}
PLAN_STEPS = 20  # not a multiple of 3: a short last run


@pytest.mark.parametrize("case", TRAINED)
def test_every_plan_gives_the_same_spikes_and_gradients(case: Case, default_path):
    model, x = build(case, PLAN_STEPS), case_input(case, PLAN_STEPS)
    graph = traced(case, model, x)
    theirs = their_gradients(model, case, x)
    with torch.no_grad():
        their_values = their_outputs(model, case, x)
    first = next(name for name in graph.nodes if name not in graph.inputs)
    pinned = {f"layer_chunks={{{first!r}: {n}}}": {"layer_chunks": {first: n}} for n in (1, 3)}  # mixed steps per call
    for name, options in (TIME_CHUNKS | pinned | BUDGETS).items():
        with torch.no_grad():
            module = snnir.compile(graph, target="torch", **options)
            assert_same(our_outputs(module, graph, case, x, "sequence"), their_values, f"{name}, inference")
        if name not in BUDGETS:
            outputs, ours = our_gradients(graph, case, x, **options)
            assert_same(outputs, their_values, f"{name}, training forward")
            assert_gradients_match(ours, theirs, case, name)


REFUSED = [pytest.param(c, id=c.name) for c in CASES if c.expect != "exact"]


@pytest.mark.parametrize("case", REFUSED)
def test_refusals_on_the_default_path(case: Case, default_path):
    x = case_input(case)[:5]
    with pytest.raises(SnnirError, match=case.expect):
        snnir.compile(snnir.optimize(snnir.trace(case.build(), x if case.style == "loop" else x[0])), target="torch")


class _StepMLP(torch.nn.Module):
    """The IPU tutorial's 784-1000-10 MLP fed a spike train, one Linear and Leaky per layer per step."""

    def __init__(self):
        super().__init__()
        self.fc1, self.lif1 = torch.nn.Linear(784, 1000), snn.Leaky(beta=0.9)
        self.fc2, self.lif2 = torch.nn.Linear(1000, 10), snn.Leaky(beta=0.9)

    def forward(self, x):
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spikes, membranes = [], []
        for step in range(x.shape[0]):
            spk1, mem1 = self.lif1(self.fc1(x[step]), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spikes.append(spk2)
            membranes.append(mem2)
        return torch.stack(spikes), torch.stack(membranes)


#: the tutorial MLP at its own sizes and batch (held image, spike train): there MKL, with two
#: threads, splits the per-step ``[128, 1000] x [1000, 10]`` product over its inner dimension,
#: while over more rows, or with one thread, it splits by rows (other bits, docs/performance.md)
FULL_SIZE = [
    Case("ipu_tutorial_full_size", seeded(lambda: Tutorial5(784, 1000, beta=0.9), gain=4.0), (784,), "static"),
    Case("step_mlp_full_size", seeded(_StepMLP, gain=4.0), (784,), "loop"),
]


@pytest.mark.parametrize("budget", ["auto", None], ids=["default_budget", "no_budget"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", FULL_SIZE, ids=lambda c: c.name)
def test_full_size_tutorial_mlp_at_one_and_two_threads(case: Case, threads: int, budget, default_path):
    """At B=128, one thread or two, the spikes are snnTorch's and so is the output neuron's
    membrane, bit for bit (its state trace; the traced graph's membrane output is only to
    rounding, see ``assert_same``): the BLAS picks its kernels by shape and thread count, and every
    product the module batches over steps must round as snnTorch's per-step one does, which a
    spike shows only now and then, the membrane every time. With the default memory budget the
    calls hold one step or two here, without one all ten. The output layer fires."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model, steps = build(case, 10), 10
        x = torch.rand((steps, 128) + case.shape, generator=torch.Generator().manual_seed(7))
        x = x if case.style == "static" else (x < 0.3).float()
        graph = traced(case, model, x)
        with torch.no_grad():
            their_spikes, their_membrane = their_outputs(model, case, x)
            module = snnir.compile(graph, target="torch", memory_budget=budget)
            outputs, traces = module(x[0], steps=steps, record=True) if case.style == "static" else module(x, record=True)
        assert their_spikes.sum() > 0, "the output layer never fired: the check has no teeth"
        assert torch.equal(outputs[graph.outputs[0]], their_spikes), f"{threads} threads: spikes differ"
        differ = int((traces["lif2.v"] != their_membrane).sum())
        assert not differ, f"{threads} threads: {differ} of the output neuron's membranes differ"
    finally:
        torch.set_num_threads(before)
