"""Execution plans (``plan.py``): every plan gives the same results; pins, budgets and the
visible plan."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import snnir
from snnir.ir import LIF, Affine, Conv2d, Flatten, Graph, Input, Output, Semantics
from snnir.ir.ops.pool import MaxPool2d
from snnir.targets.torch import compile_torch, plan as plan_module

from torch_target_graphs import all_op_classes, graphs_for, random_input

T, B = 11, 3
GRAPHS = [(cls.__name__, i, g) for cls in all_op_classes() for i, g in enumerate(graphs_for(cls))]


def conv_net(seed: int = 0) -> Graph:
    """The tutorial-6 shape, small: conv -> max pool -> LIF -> conv -> LIF -> flatten -> fc -> LIF."""
    rng = np.random.default_rng(seed)
    sem = Semantics(dt=1e-3, reset="subtract", reset_timing="next")

    def lif(shape):
        return LIF(tau=np.full(shape, 2e-3), r=np.full(shape, 2.0), v_leak=np.zeros(shape),
                   v_threshold=np.full(shape, 0.5), sem=sem)

    return Graph.sequential(
        ("x", Input((1, 12, 12))),
        ("conv1", Conv2d(weight=rng.normal(0, 0.5, (4, 1, 3, 3)), bias=rng.normal(0, 0.1, 4))),
        ("pool1", MaxPool2d(kernel_size=2)),
        ("lif1", lif((4, 5, 5))),
        ("conv2", Conv2d(weight=rng.normal(0, 0.5, (4, 4, 3, 3)), bias=rng.normal(0, 0.1, 4))),
        ("lif2", lif((4, 3, 3))),
        ("flat", Flatten(start_dim=0)),
        ("fc", Affine(weight=rng.normal(0, 0.5, (5, 36)), bias=rng.normal(0, 0.1, 5))),
        ("lif3", lif((5,))),
        ("y", Output()),
    )


def _variants(graph: Graph) -> dict[str, dict]:
    """Compile options of plans that differ: step by step, two steps per call in every other
    segment, runs of 4, a measured plan, runs of one step under a tiny budget."""
    top = [n for n, op in graph.nodes.items() if not isinstance(op, (Input, Output))]
    return {
        "stepwise": {"layer_chunks": dict.fromkeys(top, 1)},
        "mixed": {"layer_chunks": {n: 2 for n in top[::2]}, "time_chunk": 4},
        "measured": {},
        "budget": {"memory_budget": 1},
    }


def _results(module, inputs, grad: bool):
    with torch.set_grad_enabled(grad):
        out, traces, final = module(inputs, record=True, return_state=True)
    outs = out if isinstance(out, dict) else {"out": out}
    grads = ()
    if grad:
        loss = sum((v * torch.linspace(-1, 1, v.numel(), dtype=v.dtype).view(v.shape)).sum() for v in outs.values())
        if loss.requires_grad:
            leaves = (list(inputs.values()) if isinstance(inputs, dict) else [inputs]) + list(module.parameters())
            grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return outs, traces, final, grads


def _assert_same(a, b):
    for x, y in zip(a[:3], b[:3]):
        assert set(x) == set(y)
        for key in x:
            assert torch.equal(x[key], y[key]), key
    for x, y in zip(a[3], b[3]):
        if x is None or y is None:
            assert x is None and y is None
        else:
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


@pytest.fixture
def always_measure(monkeypatch):
    """Measure every segment, however fast (the default skips those under 2 ms)."""
    monkeypatch.setattr(plan_module, "MEASURE_FROM_S", 0.0)


GRAPH_CASES = GRAPHS + [("conv_net", 0, conv_net())]


@pytest.mark.parametrize(("name", "index", "graph"), GRAPH_CASES, ids=[f"{n}-{i}" for n, i, _ in GRAPH_CASES])
def test_every_plan_gives_the_same_results(name, index, graph, always_measure):
    """Outputs, traces, final states (and gradients, training) of every plan equal one run."""
    x = random_input(graph, T, B)
    as_tensor = (lambda v: torch.tensor(v, requires_grad=True))
    inputs = {k: as_tensor(v) for k, v in x.items()} if isinstance(x, dict) else as_tensor(x)
    whole = compile_torch(graph, dtype=torch.float64, trainable="all", time_chunk=0)
    for grad in (False, True):
        want = _results(whole, inputs, grad)
        for variant, options in _variants(graph).items():
            module = compile_torch(graph, dtype=torch.float64, trainable="all", **options)
            _assert_same(_results(module, inputs, grad), want)
            assert module.plan is not None, variant


def test_plan_is_visible_and_pinned_where_asked():
    module = compile_torch(conv_net(), layer_chunks={"pool1": 1, "fc": 3}, time_chunk=8)
    assert module.plan is None
    module(torch.rand(20, 2, 1, 12, 12))
    plan = module.plan
    assert plan.run == 8
    assert plan.segments[:3] == (("x", "conv1", "pool1", "lif1"), ("conv2", "lif2"), ("flat", "fc", "lif3"))
    assert plan.chunks[:3] == (1, 8, 3) and plan.chosen[:3] == ("pinned", "whole run", "pinned")
    text = str(plan)
    assert "runs of 8 steps" in text and "[x, conv1, pool1, lif1]: 1 step per call (pinned)" in text
    assert list(module.plans) == [(True, False, 20, 2, (), torch.float32, "cpu")]


def test_measured_plan_is_chosen_once_per_shape(always_measure, monkeypatch):
    module = compile_torch(conv_net())
    calls = []
    original = plan_module.choose_chunk
    monkeypatch.setattr("snnir.targets.torch.planner.choose_chunk", lambda *a: calls.append(1) or original(*a))
    x = torch.rand(9, 2, 1, 12, 12)
    with torch.no_grad():
        module(x)
        measured = len(calls)
        module(x)
    assert measured == 2 and len(calls) == measured  # not measured again
    assert module.plan.chosen == ("measured", "measured", "whole run", "whole run")  # the conv segments
    assert all(1 <= c <= 9 for c in module.plan.chunks)


def test_training_trials_run_a_backward_and_touch_no_grad(always_measure, monkeypatch):
    """A training call times its segments forward and backward (``torch.autograd.grad`` on
    detached copies of their inputs), so no ``.grad`` is set by planning and the call's own
    graph is whole: its gradients equal a step-by-step plan's. Under no_grad: no backward."""
    backwards = []
    grad = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: backwards.append(1) or grad(*a, **k))
    graph = conv_net()
    x = torch.rand(9, 2, 1, 12, 12, dtype=torch.float64, requires_grad=True)
    module = compile_torch(graph, dtype=torch.float64, trainable="all")
    with torch.no_grad():
        module(x)
    assert module.plan.chosen[:2] == ("measured", "measured") and not backwards
    out = module(x)
    assert module.plan.chosen[:2] == ("measured", "measured") and backwards
    assert x.grad is None and all(p.grad is None for p in module.parameters())
    stepwise = compile_torch(graph, dtype=torch.float64, trainable="all", time_chunk=1)
    want = stepwise(x)
    assert torch.equal(out, want)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)
    grads = [torch.autograd.grad((y * weights).sum(), [x, *m.parameters()], allow_unused=True)
             for y, m in ((out, module), (want, stepwise))]
    _assert_same(({}, {}, {}, grads[0]), ({}, {}, {}, grads[1]))
    assert len(module.plans) == 2  # one plan per grad mode


@pytest.mark.parametrize("grad", [False, True])
def test_no_measurement_while_a_hook_watches(grad):
    module = compile_torch(conv_net(), memory_budget=None)
    seen = []
    module.node_module("conv1").register_forward_hook(lambda *a: seen.append(1))
    with torch.set_grad_enabled(grad):
        module(torch.rand(40, 2, 1, 12, 12))
    assert set(module.plan.chosen) == {"whole run"} and len(seen) == 2  # runs of 32 + 8 steps: two calls


class _LargestTensor(TorchDispatchMode):
    """The bytes of the largest tensor any op creates."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        given = {a.untyped_storage().data_ptr() for a in torch.utils._pytree.tree_leaves((args, kwargs))
                 if isinstance(a, torch.Tensor)}
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in given:  # not a view
                self.largest = max(self.largest, t.untyped_storage().nbytes())
        return out


@pytest.mark.parametrize("budget", ["auto", 40_000])
def test_memory_budget_bounds_the_largest_intermediate(budget, monkeypatch):
    """Under no_grad a run's exported values fit half the budget (twice over) and one call's
    values of a segment a quarter: no intermediate is larger than a call's. (The "auto"
    budget's 4 MiB floor is lifted here so that this small net is bounded at all.)"""
    monkeypatch.setattr("snnir.targets.torch.planner.AUTO_FLOOR", 0)
    graph = conv_net()
    scale = B * 4  # bytes per number of a batch (float32)
    conv1, segment1, exported = 400 * scale, (400 + 100 + 100) * scale, (100 + 36 + 5) * scale
    module = compile_torch(graph, memory_budget=budget)
    x = torch.rand(60, B, 1, 12, 12)
    with torch.no_grad(), _LargestTensor() as mode:
        module(x)
    plan = module.plan
    if budget == "auto":
        every_value = 144 + 400 + 100 + 100 + 36 + 36 + 36 + 5 + 5 + 5  # Footprint.values, Inputs/Outputs too
        assert plan.budget == every_value * scale  # one step-by-step step's values
    cap = max(1, plan.budget // 4 // segment1)
    assert plan.run == max(1, plan.budget // 4 // exported) and plan.chunks[0] <= cap
    assert set(plan.chosen[2:]) <= {"whole run", "budget"}
    # the returned [T, B, 5] outputs and their joining are not intermediates of the layers; the
    # conv segment's chunk is measured, its trials reaching the budget's cap (the chosen chunk
    # may be shorter: timing under load made this flaky when bounded by the chosen one)
    assert mode.largest <= max(cap * conv1, 2 * 60 * B * 5 * 4)
    unbounded = compile_torch(graph, memory_budget=None, layer_chunks={"conv1": 60})
    with torch.no_grad(), _LargestTensor() as mode:
        unbounded(x)
    assert unbounded.plan.run == 32 and mode.largest >= 30 * conv1  # two runs of 30 steps
    with torch.enable_grad():
        module(x)
    assert module.plan.run == 32 and module.plan.budget is None  # training: no budget


@pytest.mark.parametrize(
    ("options", "message"),
    [({"layer_chunks": {"nope": 2}}, "nope"), ({"layer_chunks": {"fc": 0}}, "positive"),
     ({"layer_chunks": [1]}, "dict"), ({"memory_budget": -1}, "memory_budget"), ({"memory_budget": "big"}, "auto"),
     ({"time_chunk": 1.5}, "time_chunk")],
)
def test_bad_plan_options_are_refused(options, message):
    with pytest.raises(snnir.SnnirError, match=message):
        compile_torch(conv_net(), **options)


def test_recompute_measures_no_plan():
    """With ``recompute=True`` the backward reruns each run of steps, which must make the calls the
    forward made: a first call does not time chunk lengths there (found by probing, 2026-12-04:
    torch's checkpoint refused the rerun of a conv net)."""
    x = torch.rand(12, B, 1, 12, 12, requires_grad=True)
    module = compile_torch(conv_net(), recompute=True)
    module(x).sum().backward()
    assert "measured" not in module.plan.chosen
    want = compile_torch(conv_net())
    x_want = x.detach().requires_grad_()
    want(x_want).sum().backward()
    torch.testing.assert_close(x.grad, x_want.grad)


def test_an_auto_budget_is_at_least_its_floor():
    """Calls of a few steps cost more time than they save below 4 MiB (the per-step tutorial
    MLP: 10% slower at 4 MiB than at 8, the conv net 7% at 8 MiB than at 10, 2026-12-03):
    "auto" never plans below it. Its runs are balanced: 60 steps of at most 32 go as 30 + 30."""
    module = compile_torch(conv_net(), memory_budget="auto")
    with torch.no_grad():
        module(torch.rand(60, B, 1, 12, 12))
    assert module.plan.budget == plan_module.AUTO_FLOOR and module.plan.run == 30


def test_a_budget_never_cuts_a_recurrent_component():
    """A segment holding a recurrent component runs whole runs under any budget (its calls walk
    the steps anyway; shorter ones only add calls), and its values read later, made in one
    piece, count once against half the budget: runs of 1500 // (8 spikes * 3 samples * 4 bytes)
    = 15 steps at most, balanced: 40 steps as 14 + 13 + 13. The quarter for one call's values (24
    per sample and step) would have given 2."""
    graph = _recurrent_net()
    x = torch.randn(40, B, 4)
    module = compile_torch(graph, memory_budget=3000)
    with torch.no_grad():
        got = module(x)
    plan = module.plan
    recurrent = next(k for k, nodes in enumerate(plan.segments) if "cell" in nodes)
    assert plan.run == 14 and plan.chunks[recurrent] == plan.run and plan.chosen[recurrent] == "whole run"
    with torch.no_grad():
        assert torch.equal(got, compile_torch(graph, memory_budget=None)(x))


def _recurrent_net(n: int = 8) -> Graph:
    """x -> fc -> LIF ``cell`` <-> ``rec`` (its recurrent layer) -> out."""
    rng = np.random.default_rng(0)
    sem = Semantics(dt=1e-3, reset="subtract", reset_timing="next")
    lif = LIF(tau=np.full(n, 2e-3), r=np.full(n, 2.0), v_leak=np.zeros(n), v_threshold=np.full(n, 0.5), sem=sem)
    return Graph(
        {"x": Input((4,)), "fc": Affine(weight=rng.normal(0, 1, (n, 4)), bias=np.zeros(n)), "cell": lif,
         "rec": Affine(weight=rng.normal(0, 0.4, (n, n)), bias=np.zeros(n)),
         "out": Affine(weight=rng.normal(0, 1, (3, n)), bias=np.zeros(3)), "y": Output()},
        (("x", "fc"), ("fc", "cell"), ("cell", "rec"), ("rec", "cell"), ("cell", "out"), ("out", "y")),
    )


@pytest.mark.parametrize("grad", [True, False])
def test_a_recurrent_component_gets_longer_runs(grad):
    """Each run costs a recurrent component a fixed time: its runs are up to ``RECURRENT_RUN``
    steps (training, and inference without a budget; under a budget balanced: 200 steps as 100 +
    100) and an ``"auto"`` budget is at least ``AUTO_FLOOR_RECURRENT``; results are those of runs
    of ``DEFAULT_RUN``."""
    graph, x = _recurrent_net(), torch.randn(plan_module.RECURRENT_RUN + 40, B, 4, requires_grad=grad)
    for budget in (None, "auto"):
        module = compile_torch(graph, memory_budget=budget)
        with torch.set_grad_enabled(grad):
            got = module(x)
        budgeted = budget == "auto" and not grad
        assert module.plan.run == (plan_module.balanced(len(x), plan_module.RECURRENT_RUN) if budgeted
                                   else plan_module.RECURRENT_RUN)
        if budgeted:
            assert module.plan.budget == plan_module.AUTO_FLOOR_RECURRENT
        with torch.set_grad_enabled(grad):
            want = compile_torch(graph, time_chunk=plan_module.DEFAULT_RUN)(x)
        assert torch.equal(got, want)
        if grad:
            g_got, = torch.autograd.grad(got.sum(), x)
            g_want, = torch.autograd.grad(want.sum(), x)
            assert torch.allclose(g_got, g_want, rtol=1e-5, atol=1e-6)


def _mlp(hidden: int = 100) -> Graph:
    """784 -> hidden -> 10, LIF after each layer, fused by ``snnir.optimize`` into layer-neuron nodes."""
    rng = np.random.default_rng(1)
    sem = Semantics(dt=1e-3, reset="subtract", reset_timing="next")

    def lif(n):
        return LIF(tau=np.full(n, 2e-3), r=np.full(n, 2.0), v_leak=np.zeros(n), v_threshold=np.full(n, 0.5), sem=sem)

    graph = Graph.sequential(
        ("x", Input((784,))), ("fc1", Affine(weight=rng.normal(0, 0.1, (hidden, 784)), bias=np.zeros(hidden))),
        ("lif1", lif(hidden)), ("fc2", Affine(weight=rng.normal(0, 0.3, (10, hidden)), bias=np.zeros(10))),
        ("lif2", lif(10)), ("y", Output()),
    )
    return snnir.optimize(graph, static_inputs=["x"])


def test_a_budget_counts_what_a_fused_neuron_hands_on():
    """A fused node's neuron applying the next fused node's layer hands on that layer's output
    (10 numbers per step), not its spikes (100): the static tutorial MLP's runs are as long as
    that allows (runs of 1-2 steps before, each paying the module's Python)."""
    graph = _mlp()
    assert all(type(op).__name__ == "FusedLayerNeuron" for n, op in graph.nodes.items() if n not in ("x", "y"))
    steps, scale = 25, B * 4
    module = compile_torch(graph, memory_budget=4 * (10 + 10) * scale * steps)
    x = torch.rand(B, 784)
    with torch.no_grad():
        got = module(x, steps=steps)
    assert module.plan.run == steps
    with torch.no_grad():
        assert torch.equal(got, compile_torch(graph, memory_budget=None, time_chunk=1)(x, steps=steps))


class _Counting(TorchDispatchMode):
    """Counts the calls of aten ops whose name holds ``word``."""

    def __init__(self, word: str):
        super().__init__()
        self.word, self.calls = word, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += self.word in func.__name__
        return func(*args, **(kwargs or {}))


def test_a_max_pool_of_a_static_value_runs_once():
    """A max pool fed only static values pools once per call, not once per run of steps (a
    neuron pooling its held input would redo it every run); the spikes are those of the
    unbounded plan."""
    graph = conv_net()
    x = torch.rand(B, 1, 12, 12)
    module = compile_torch(graph, memory_budget=1)  # runs of one step
    with torch.no_grad():
        module(x, steps=T)  # the plan's first call may time its segments
        with _Counting("max_pool2d") as mode:
            got = module(x, steps=T)
    assert module.plan.run == 1 and mode.calls == 1
    with torch.no_grad():
        assert torch.equal(got, compile_torch(graph, memory_budget=None)(x, steps=T))


def test_calls_of_few_steps_make_no_whole_run_gradient_per_call():
    """Each call reads its steps of the earlier segments' values as views from one split, so the
    backward joins the calls' gradients once: a slice per call made a zero-filled gradient the
    size of the whole run for every call (T of them stepwise), then added them up."""
    module = compile_torch(conv_net(), layer_chunks={"conv1": 1, "conv2": 1, "fc": 1}, time_chunk=T,
                           trainable="all")
    x = torch.rand(T, B, 1, 12, 12)
    module(x).sum().backward()  # planned
    out = module(x)
    assert module.plan.chunks[:3] == (1, 1, 1)
    with _Counting("slice_backward") as slices:
        out.sum().backward()
    assert slices.calls == 0


def test_an_auto_budget_on_a_gpu_allows_a_share_of_its_free_memory(monkeypatch):
    """On CUDA a call of a few steps costs kernel launches (an H200 ran inference 7-17x slower in
    one-step calls, 2026-12-04): "auto" allows an eighth of the device's free memory (faked here)."""
    free = 8 * 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 2 * free))
    module = compile_torch(conv_net(), memory_budget="auto")
    with torch.no_grad():
        run, caps, budget = module._planner._run_length(set(), 60, B, 4, torch.device("cuda"))
        on_cpu = module._planner._run_length(set(), 60, B, 4, torch.device("cpu"))
    assert budget == free // plan_module.AUTO_DEVICE_SHARE and run == 30 and set(caps) == {30}  # 60 as 30 + 30
    assert on_cpu[2] == plan_module.AUTO_FLOOR


def test_training_keeps_each_value_under_the_mmap_ceiling(always_measure, monkeypatch):
    """On a CPU a training call keeps each value under ``MMAP_CEILING`` bytes (larger ones are
    page-faulted in afresh at every allocation): a convolution segment's calls are measured up to
    that many steps, and a segment without one bounds the run; inference is not held to it."""
    from snnir.targets.torch import planner

    step_bytes = 3 * 4 * 4 * 10 * 10  # conv1's output, [B=3, 4, 10, 10] float32, is the largest value
    monkeypatch.setattr(planner, "MMAP_CEILING", 2 * step_bytes + 1)
    module = compile_torch(conv_net())
    x = torch.rand(T, 3, 1, 12, 12)
    module(x)  # grad enabled: a training call's plan
    assert module.plan.run == T and module.plan.chunks[0] <= 2  # conv2's values are far smaller
    monkeypatch.setattr(plan_module, "MEASURE_FROM_S", float("inf"))  # the largest chunk, unmeasured (not timing noise)
    with torch.no_grad():
        module(x)
    assert module.plan.chunks[0] == T

    graph = Graph.sequential(("x", Input((6,))), ("fc", Affine(weight=np.ones((8, 6)), bias=np.zeros(8))),
                             ("lif", LIF(tau=np.full(8, 2e-3), r=np.ones(8), v_leak=np.zeros(8),
                                         v_threshold=np.ones(8), sem=Semantics(dt=1e-3))), ("y", Output()))
    monkeypatch.setattr(planner, "MMAP_CEILING", 3 * (3 * 8 * 4) + 1)  # three steps of [B=3, 8] float32
    mlp = compile_torch(graph)
    mlp(torch.rand(T, 3, 6))
    assert mlp.plan.run == 3
