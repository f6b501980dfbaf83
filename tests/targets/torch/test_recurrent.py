"""A recurrent component (a neuron and the layer feeding its spikes back) as one native call.

The kernel (``recurrent.py``, ``csrc/recurrent.cpp``) against the step-by-step loop, its
specification, in compiled modules: outputs, traces of the final state and every gradient
(inputs, weights, trained neuron parameters) for every spiking neuron op, reset, timing,
current order and surrogate, float32 and float64, across runs of steps and with a given
initial state; spikes identical, gradients to rounding. Where it does not apply (multi
spikes, recorded traces, a forward hook, another shape of component) the step loop runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import snnir
from snnir.ir import IF, LIF, Affine, CubaLIF, Graph, Input, Linear, Output, Semantics
from snnir.targets.torch import compile_torch, recurrent

from torch_target_graphs import graphs_for, neuron

T, B, N, DT = 23, 3, 6, 1e-3
SEMANTICS = {
    "subtract-next": Semantics(dt=DT, reset="subtract", reset_timing="next"),
    "zero-same-ge": Semantics(dt=DT, reset="zero", reset_timing="same", threshold_compare="ge"),
    "subtract-same-exp": Semantics(dt=DT, discretisation="exp", reset="subtract", reset_timing="same"),
    "zero-next-voltage-first": Semantics(dt=DT, reset="zero", reset_timing="next", current_order="voltage_first"),
    "none-next": Semantics(dt=DT, reset="none", reset_timing="next"),
    "subtract-after-input": Semantics(dt=DT, reset="subtract", reset_timing="next_after_input"),
}


def loop_graph(cls, sem: Semantics, seed: int = 0, bias: bool = True, inputs: int = 1, width: int = N) -> Graph:
    """``inputs`` Inputs -> their own Affine -> cell(width), with cell -> rec -> cell."""
    rng = np.random.default_rng(seed)
    nodes, edges = {}, []
    for k in range(inputs):
        nodes[f"in{k}"] = Input((4,))
        nodes[f"fc{k}"] = Affine(weight=rng.normal(0, 1, (width, 4)), bias=rng.normal(0, 0.2, width))
        edges += [(f"in{k}", f"fc{k}"), (f"fc{k}", "cell")]
    nodes["cell"] = neuron(cls, width, rng, sem)
    weight = rng.normal(0, 0.4 * (N / width) ** 0.5, (width, width))
    nodes["rec"] = Affine(weight=weight, bias=rng.normal(0, 0.1, width)) if bias else Linear(weight=weight)
    nodes["out"] = Output()
    edges += [("cell", "rec"), ("rec", "cell"), ("cell", "out")]
    return Graph(nodes, tuple(edges))


def _inputs(graph: Graph, dtype, steps: int = T, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    xs = {name: (torch.randn(steps, B, 4, generator=g) * 1.5).to(dtype) for name in graph.inputs}
    return xs if len(xs) > 1 else next(iter(xs.values()))


def _run(graph, x, native: bool, dtype, state=None, **options):
    """(output, final state, gradients by parameter and input name) of one training pass."""
    return _train(compile_torch(graph, native=native, dtype=dtype, surrogate="arctan", **options), x, dtype, state)


def _train(module, x, dtype, state=None):
    module.zero_grad(set_to_none=True)
    xs = {k: v.clone().requires_grad_(True) for k, v in (x.items() if isinstance(x, dict) else [("x", x)])}
    arg = xs if isinstance(x, dict) else xs["x"]
    y, final = module(arg, state=state, return_state=True)
    weights = torch.linspace(-1, 1, y.numel(), dtype=dtype).view(y.shape)
    (y * weights).sum().add(sum(v.square().sum() for v in final.values())).backward()
    grads = {n: p.grad for n, p in module.named_parameters()} | {k: v.grad for k, v in xs.items()}
    return y.detach(), {k: v.detach() for k, v in final.items()}, grads


def _assert_same(got, want, dtype):
    (y, state, grads), (y_want, state_want, grads_want) = got, want
    assert torch.equal(y, y_want)
    assert state.keys() == state_want.keys()
    for key in state:
        assert torch.equal(state[key], state_want[key]), key
    tol = 1e-5 if dtype == torch.float32 else 1e-12  # relative to the gradient's largest value
    assert grads.keys() == grads_want.keys()
    for name in grads:
        if grads_want[name] is None:  # a parameter the update does not use (v_reset of a subtract reset)
            assert grads[name] is None, name
            continue
        scale = float(grads_want[name].abs().max())
        torch.testing.assert_close(grads[name], grads_want[name], rtol=tol, atol=tol * scale, msg=name)


@pytest.fixture
def fused_calls(monkeypatch):
    """How many times the native loop ran."""
    calls = []
    original = recurrent.feedback_sequence

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(recurrent, "feedback_sequence", counted)
    return calls


@pytest.mark.parametrize("sem", SEMANTICS.values(), ids=SEMANTICS.keys())
@pytest.mark.parametrize("cls", [LIF, CubaLIF, IF], ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_native_loop_equals_step_loop(native_kernels, fused_calls, cls, sem, dtype):
    graph = loop_graph(cls, sem)
    x = _inputs(graph, dtype)
    want = _run(graph, x, False, dtype, trainable="all")
    assert not fused_calls
    got = _run(graph, x, True, dtype, trainable="all")
    assert fused_calls
    assert got[0].sum() > 0, "the test network should spike"
    _assert_same(got, want, dtype)


FUSED = {  # the semantics the fused loops (neuron_step.h's fast_path) run, and detach_reset
    "subtract-next": (SEMANTICS["subtract-next"], True),
    "subtract-next-reset-grad": (SEMANTICS["subtract-next"], False),
    "zero-same-ge": (SEMANTICS["zero-same-ge"], True),
}


@pytest.fixture
def fused_backwards(monkeypatch, native_kernels):
    """How many times the fused loops' backward ran."""
    from snnir.targets.torch import native

    calls = []
    extension = native.extension("recurrent")
    original = extension.backward_fused

    def counted(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(extension, "backward_fused", counted)
    return calls


@pytest.mark.parametrize("case", FUSED.values(), ids=FUSED.keys())
@pytest.mark.parametrize("cls", [LIF, CubaLIF, IF], ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("scalar", [False, True], ids=["per-neuron", "scalar"])
def test_fused_loops_equal_step_loop(fused_backwards, fused_calls, case, cls, dtype, scalar):
    """Frozen neuron parameters: the fused loops (keeping only u_t), forward and backward,
    across runs of steps, with per-neuron or single-valued coefficients."""
    sem, detach_reset = case
    graph = loop_graph(cls, sem)
    if scalar:
        op = graph.nodes["cell"]
        single = op.replace(**{k: np.asarray(v).reshape(-1)[:1].copy() for k, v in op.params().items()})
        graph = graph.replace(nodes=dict(graph.nodes, cell=single))
    x = _inputs(graph, dtype, steps=30)
    options = {"trainable": ["fc0.weight", "fc0.bias", "rec.weight", "rec.bias"], "time_chunk": 16,
               "detach_reset": detach_reset}
    want = _run(graph, x, False, dtype, **options)
    got = _run(graph, x, True, dtype, **options)
    assert len(fused_calls) == 2 and len(fused_backwards) == 2
    assert got[0].sum() > 0, "the test network should spike"
    _assert_same(got, want, dtype)
    with torch.no_grad():  # inference: the fused loops writing spikes only
        module = compile_torch(graph, native=True, dtype=dtype, surrogate="arctan", **options)
        assert torch.equal(module(x), want[0])
    assert len(fused_calls) == 4


@pytest.fixture
def two_threads():
    """torch's intra-op threads set to 2 for the test (the fused loops split the batch's rows)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("batch", "width", "steps"), [(16, N, 30), (40, N, 30), (64, N, 30), (64, 1000, 6)],
                         ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_fused_loops_at_two_threads(two_threads, fused_backwards, fused_calls, batch, width, steps, dtype):
    """At two threads (the backward gives each thread its own block of rows from 16 rows on;
    40: blocks of 16 and 24) spikes and states equal the step loop's (whole-batch GEMMs, as
    ``F.linear``) bit for bit, training and inference; gradients to rounding. A 1000-wide layer
    at B=64: MKL rounds a single-threaded block of 32 rows of that product otherwise than its
    threaded whole-batch GEMM (AVX-512, MKL 2024.2), which once changed the forward's states."""
    graph = loop_graph(LIF, SEMANTICS["subtract-next"], width=width)
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(steps, batch, 4, generator=g) * 1.5).to(dtype)
    options = {"trainable": ["fc0.weight", "fc0.bias", "rec.weight", "rec.bias"], "detach_reset": True}
    want = _run(graph, x, False, dtype, **options)
    got = _run(graph, x, True, dtype, **options)
    assert fused_calls and fused_backwards
    assert got[0].sum() > 0, "the test network should spike"
    _assert_same(got, want, dtype)
    with torch.no_grad():
        module = compile_torch(graph, native=True, dtype=dtype, surrogate="arctan", **options)
        assert torch.equal(module(x), want[0])


@pytest.mark.parametrize(("width", "drive"), [(256, 0.0), (256, 3.0), (200, 0.0), (70, 0.0), (N, 0.0)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("trainable", ["layers", "all"])
def test_forward_sum_at_the_spikes(two_threads, fused_calls, width, drive, dtype, trainable):
    """The forward's ``r_t = z_t W^T + b`` as a sum of rows of ``W^T`` at the spikes, where the
    kernel found that it gives the GEMM's bits for the shape: a step at a time in a first call
    and, once the last call fired few, each thread its own rows through every step. Spikes
    and states equal the step loop's (``F.linear``) bit for bit in training and inference, at
    low and high firing rates (``drive``), widths off the kernel's tiles (float32: 128 with
    AVX-512, else 64; float64: 32) and vectors (200: a tile, four vectors, eight alone);
    gradients to rounding. With MKL, B=64 and 256 neurons in float32 (the bench's recurrent
    net) must take the sum. Training the neuron's parameters too (``all``) runs the general loop,
    a step at a time, the sum where the step fired few."""
    from snnir.targets.torch import native

    graph = loop_graph(LIF, SEMANTICS["subtract-next"], width=width)
    g = torch.Generator().manual_seed(4)
    x = (torch.randn(30, 64, 4, generator=g) * 1.5 + drive).to(dtype)
    layers = ["fc0.weight", "fc0.bias", "rec.weight", "rec.bias"]
    options = {"trainable": layers if trainable == "layers" else "all", "detach_reset": True}
    want = _run(graph, x, False, dtype, **options)
    module = compile_torch(graph, native=True, dtype=dtype, surrogate="arctan", **options)
    extension, rec = native.extension("recurrent"), module.node_module("rec")
    agrees = extension.sparse_agrees(64, rec.weight.detach(), rec.bias.detach())
    if width == 256 and dtype == torch.float32 and torch.backends.mkl.is_available():
        assert agrees
    for _ in range(3):  # the first call a step at a time, the next ones by rows where few fired
        _assert_same(_train(module, x, dtype), want, dtype)
        with torch.no_grad():
            assert torch.equal(module(x), want[0])
    fired = extension.fired_fraction(rec.weight, 64)
    assert fired == (pytest.approx(float(want[0].double().mean())) if agrees else -1.0)
    assert (fired > 0.3) == (drive > 0) or not agrees


@pytest.mark.parametrize(("where", "value"), [("weight", "inf"), ("weight", "nan"), ("bias", "-inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_forward_gemm_where_a_weight_is_not_finite(native_kernels, fused_calls, where, value, dtype):
    """A product by 0 of an inf or NaN weight (one a diverging training made: a graph refuses it)
    is NaN in the GEMM and nothing in a sum at the spikes: the GEMM runs, so states and spikes
    equal the step loop's (an inf bias likewise)."""
    from snnir.targets.torch import native

    graph = loop_graph(LIF, SEMANTICS["subtract-next"], width=32)
    x = (torch.randn(T, 64, 4, generator=torch.Generator().manual_seed(2)) * 1.5).to(dtype)
    got, want = (compile_torch(graph, native=native, dtype=dtype) for native in (True, False))
    rec = got.node_module("rec")
    if dtype == torch.float32:
        assert native.extension("recurrent").sparse_agrees(64, rec.weight.detach(), rec.bias.detach()) or not (
            torch.backends.mkl.is_available()), "the sum at the spikes would run but for the inf"
    with torch.no_grad():
        for module in (got, want):
            parameter = getattr(module.node_module("rec"), where)
            parameter.view(-1)[parameter.numel() - 3] = float(value)
        (y, state), (y_want, state_want) = (m(x, return_state=True) for m in (got, want))
    assert fused_calls
    assert torch.equal(y, y_want)
    for key in state_want:
        torch.testing.assert_close(state[key], state_want[key], rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("sparse_below", [0.0, 1.01], ids=["gemm", "sparse"])
@pytest.mark.parametrize("trainable", ["all", ["fc0.weight", "rec.weight", "rec.bias"]], ids=["general", "fused"])
def test_weight_gradient_by_gemm_and_by_sparse_sum(native_kernels, fused_calls, monkeypatch, sparse_below, trainable):
    """``dL/dW`` of the fed-back layer by the GEMM and by the sum of gradient rows at the
    spikes (forced each way), in float32, across runs of steps."""
    monkeypatch.setattr(recurrent, "SPARSE_BELOW", sparse_below)
    graph = loop_graph(LIF, SEMANTICS["subtract-next"])
    x = _inputs(graph, torch.float32, steps=30)
    runs = [_run(graph, x, native, torch.float32, trainable=trainable, time_chunk=16) for native in (False, True)]
    assert len(fused_calls) == 2
    _assert_same(runs[1], runs[0], torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_weight_gradient_over_vector_tiles(native_kernels, fused_calls, monkeypatch, dtype):
    """The sum of gradient rows at the spikes for a layer wider than its vector tiles (80
    neurons: whole tiles and a remainder) and several blocks of rows per thread (99 x 3 rows;
    ``sparse_grad_rows``, 64 a block): ``dL/dW`` and ``dL/db`` agree with the step loop's to rounding."""
    monkeypatch.setattr(recurrent, "SPARSE_BELOW", 1.01)
    graph = loop_graph(LIF, SEMANTICS["subtract-next"], width=80)
    x = _inputs(graph, dtype, steps=100)
    runs = [_run(graph, x, native, dtype, trainable=["rec.weight", "rec.bias"]) for native in (False, True)]
    assert len(fused_calls) == 1
    _assert_same(runs[1], runs[0], dtype)


@pytest.mark.parametrize("surrogate", ["fast_sigmoid", "sigmoid", "triangular", "straight_through"])
def test_every_surrogate(native_kernels, fused_calls, surrogate):
    graph = loop_graph(LIF, SEMANTICS["subtract-next"])
    x = _inputs(graph, torch.float64)
    module_options = {"surrogate": surrogate, "detach_reset": False}
    runs = [_run_with(graph, x, native, module_options) for native in (False, True)]
    assert fused_calls
    _assert_same(runs[1], runs[0], torch.float64)


def _run_with(graph, x, native, options):
    module = compile_torch(graph, native=native, dtype=torch.float64, **options)
    x = x.clone().requires_grad_(True)
    y = module(x)
    (y * torch.linspace(0, 1, y.numel(), dtype=y.dtype).view(y.shape)).sum().backward()
    return y.detach(), {}, {n: p.grad for n, p in module.named_parameters()} | {"x": x.grad}


@pytest.mark.parametrize("bias", [True, False], ids=["affine", "linear"])
@pytest.mark.parametrize("inputs", [1, 2])
def test_runs_of_steps_and_given_state(native_kernels, fused_calls, bias, inputs):
    """Three runs of steps (the state carried between native calls), a non-zero initial
    state (the spikes held by the delayed edge, the membrane), several summed inputs."""
    graph = loop_graph(LIF, SEMANTICS["subtract-next"], bias=bias, inputs=inputs)
    x = _inputs(graph, torch.float64, steps=40)
    start = compile_torch(graph, dtype=torch.float64).initial_state(B)
    g = torch.Generator().manual_seed(3)
    state = {k: (torch.rand(v.shape, generator=g, dtype=v.dtype) < 0.5).to(v.dtype) if k.endswith(("@prev", ".z"))
             else torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in start.items()}
    want = _run(graph, x, False, torch.float64, state=state, time_chunk=16)
    got = _run(graph, x, True, torch.float64, state=state, time_chunk=16)
    assert len(fused_calls) == 3
    _assert_same(got, want, torch.float64)


@pytest.mark.parametrize("trainable", ["all", ["fc0.weight", "rec.weight", "rec.bias"]], ids=["general", "fused"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_the_layer_value_carries_over_runs(native_kernels, two_threads, fused_calls, monkeypatch, trainable, dtype):
    """A run of steps after the first starts from the native call's last ``r`` (the layer's value
    of the last spikes), so the fed-back layer runs once per call, for the first run's ``r_{-1}``;
    outputs and states equal the step loop's bit for bit, training (``dL/dW``, ``dL/db`` through
    the carried ``r``) and inference, across row blocks (batch 40); gradients to rounding."""
    from snnir.targets.torch.modules import AffineModule

    graph = loop_graph(LIF, SEMANTICS["subtract-next"])
    g = torch.Generator().manual_seed(5)
    x = (torch.randn(50, 40, 4, generator=g) * 1.5).to(dtype)
    options = {"trainable": trainable, "time_chunk": 16}  # runs of 13, 13, 12 and 12 steps
    want = _run(graph, x, False, dtype, **options)
    fed_back = []
    forward = AffineModule.forward

    def counted(module, v):
        if module.weight.shape == (N, N):
            fed_back.append(1)
        return forward(module, v)

    monkeypatch.setattr(AffineModule, "forward", counted)
    got = _run(graph, x, True, dtype, **options)
    assert len(fused_calls) == 4 and len(fed_back) == 1
    assert got[0].sum() > 0, "the test network should spike"
    _assert_same(got, want, dtype)
    with torch.no_grad():
        module = compile_torch(graph, native=True, dtype=dtype, surrogate="arctan", **options)
        assert torch.equal(module(x), want[0])
    assert len(fused_calls) == 8 and len(fed_back) == 2


def test_matches_the_reference_interpreter(native_kernels, fused_calls):
    graph = loop_graph(CubaLIF, SEMANTICS["zero-same-ge"])
    x = _inputs(graph, torch.float64)
    with torch.no_grad():
        y = compile_torch(graph, native=True, dtype=torch.float64)(x)
    assert fused_calls
    np.testing.assert_array_equal(y.numpy(), snnir.run(graph, x.numpy())["out"])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_a_readout_layer_keeps_the_kernels_spikes(native_kernels, fused_calls, monkeypatch, dtype):
    """A Linear fed the loop's spikes over all steps at once saves the kernel's own output for its
    weight gradient (no bool copy of it, none back to floats); outputs and gradients equal the
    step loop's."""
    from snnir.targets.torch import modules

    monkeypatch.setattr(modules, "rows_alike", lambda *args: True)  # the readout over all steps, any BLAS
    graph = loop_graph(LIF, SEMANTICS["subtract-next"])
    rng = np.random.default_rng(3)
    nodes = dict(graph.nodes, readout=Affine(weight=rng.normal(0, 1, (2, N)), bias=rng.normal(0, 0.1, 2)))
    edges = tuple(e for e in graph.edges if e != ("cell", "out")) + (("cell", "readout"), ("readout", "out"))
    graph = Graph(nodes, edges)
    x = _inputs(graph, dtype)
    layers = [f"{node}.{name}" for node in ("fc0", "rec", "readout") for name in ("weight", "bias")]
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        got = _run(graph, x, True, dtype, trainable=layers)
    assert fused_calls
    assert not [t for t in saved if t.dtype == torch.bool and t.shape[0] == T]  # (the initial state's are)
    spikes = [t for t in saved if t.shape[:1] == (T,) and t.dtype == dtype and ((t == 0) | (t == 1)).all()]
    assert len(spikes) == 2 and len({t.data_ptr() for t in spikes}) == 1  # one tensor, saved by both
    _assert_same(got, _run(graph, x, False, dtype, trainable=layers), dtype)


def test_the_step_loop_runs_where_the_kernel_does_not(native_kernels, fused_calls):
    multi = Semantics(dt=DT, reset="subtract", reset_timing="next", spike_mode="multi", threshold_compare="ge")
    graph = loop_graph(LIF, multi)
    x = _inputs(graph, torch.float64)
    _assert_same(_run(graph, x, True, torch.float64), _run(graph, x, False, torch.float64), torch.float64)
    graph = loop_graph(LIF, SEMANTICS["subtract-next"])
    module = compile_torch(graph, native=True, dtype=torch.float64)
    y, traces = module(x, record=True)
    assert torch.equal(traces["cell.v"][-1], module(x, return_state=True)[1]["cell.v"])
    seen = []
    module.node_module("rec").register_forward_hook(lambda *args: seen.append(1))
    assert torch.equal(module(x), y)
    assert len(seen) == T
    assert len(fused_calls) == 1  # only the call without traces and hooks


def test_other_components_step():
    """Two neurons in one loop, or a layer whose output is also used elsewhere: not a FeedbackLoop."""
    rng = np.random.default_rng(0)
    graph = loop_graph(LIF, SEMANTICS["subtract-next"])
    nodes = dict(graph.nodes, out2=Output())
    shared = Graph(nodes, graph.edges + (("rec", "out2"),))
    assert not _loops(compile_torch(shared))
    two = Graph(
        dict(graph.nodes, cell2=neuron(LIF, N, rng, SEMANTICS["subtract-next"])),
        tuple(e for e in graph.edges if e != ("rec", "cell")) + (("rec", "cell2"), ("cell2", "cell")),
    )
    assert not _loops(compile_torch(two))
    assert _loops(compile_torch(graph))


def test_the_registry_loop_runs_it():
    """The registry loop's recurrent neuron graphs with single spikes (checked there against the
    reference interpreter with ``native=True``) are FeedbackLoops."""
    found = [
        graph for cls in (IF, LIF, CubaLIF) for graph in graphs_for(cls)
        if "rec" in graph.nodes and graph.nodes["cell"].sem.spike_mode == "single"
    ]
    assert len(found) == 6
    assert all(_loops(compile_torch(graph)) for graph in found)


def _loops(module) -> dict:
    from snnir.targets.torch.graph_module import GraphModule

    return {k: v for m in module.modules() if isinstance(m, GraphModule) for k, v in m._loops.items()}
