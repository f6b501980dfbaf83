"""A recurrent component on the Triton kernels (``gpu/recurrent.py``) against the step loop.

In Triton's interpreter on CPU tensors (or on a GPU, see ``tests/targets/triton_device.py``),
in compiled modules, as ``test_recurrent.py`` checks the C++ kernel: outputs, final states and
every gradient (inputs, weights, trained neuron parameters) for every spiking neuron op,
reset, timing, current order and surrogate, float32 and float64, across runs of steps and
with a given initial state; spikes identical to the Python step loop (the specification) and
float64 spikes to ``snnir.run``, gradients to rounding. bf16/fp16 modules: identical to the
step loop on the same kernels (a float32 state), gradients to bf16 rounding. Where the kernels
do not apply (recorded traces, a forward hook) the step loop runs.
"""

from __future__ import annotations

from unittest import mock

from tests.targets.triton_device import DEVICE, kernels_checked  # noqa: F401 (first: sets TRITON_INTERPRET)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import snnir  # noqa: E402
from snnir.ir import IF, LIF, CubaLIF  # noqa: E402
from snnir.targets.torch import compile_torch  # noqa: E402
from snnir.targets.torch.gpu import recurrent as triton_recurrent  # noqa: E402

from test_recurrent import SEMANTICS, _assert_same, _inputs, loop_graph  # noqa: E402

T = 6  # steps: the interpreter's time grows with them


@pytest.fixture
def triton_calls(monkeypatch):
    """How many times the Triton loop ran."""
    calls = []
    original = triton_recurrent.feedback_sequence
    monkeypatch.setattr(triton_recurrent, "feedback_sequence", lambda *a: calls.append(1) or original(*a))
    return calls


def _run(graph, x, triton: bool, dtype, state=None, module_dtype=None, **options):
    """(output, final state, gradients by parameter and input name) of one training pass."""
    options = {"surrogate": "arctan", "trainable": "all"} | options
    module = compile_torch(graph, native=False, triton=triton, dtype=dtype, device=DEVICE, **options)
    if module_dtype is not None:
        module = module.to(module_dtype)
    xs = {k: v.to(DEVICE, module_dtype or dtype).requires_grad_(True) for k, v in
          (x.items() if isinstance(x, dict) else [("x", x)])}
    y, final = module(xs if isinstance(x, dict) else xs["x"], state=state, return_state=True)
    weights = torch.linspace(-1, 1, y.numel(), dtype=dtype, device=DEVICE).view(y.shape)
    (y * weights).sum().add(sum(v.float().square().sum() for v in final.values())).backward()
    grads = {n: p.grad for n, p in module.named_parameters()} | {k: v.grad for k, v in xs.items()}
    return y.detach(), {k: v.detach() for k, v in final.items()}, grads


@pytest.mark.parametrize("sem", SEMANTICS.values(), ids=SEMANTICS.keys())
@pytest.mark.parametrize("cls", [LIF, CubaLIF, IF], ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_triton_loop_equals_step_loop(triton_calls, cls, sem, dtype):
    graph = loop_graph(cls, sem)
    x = _inputs(graph, dtype, steps=T)
    want = _run(graph, x, False, dtype)
    assert not triton_calls
    got = _run(graph, x, True, dtype)
    assert triton_calls
    assert got[0].sum() > 0, "the test network should spike"
    _assert_same(got, want, dtype)


@pytest.mark.parametrize("surrogate", ["fast_sigmoid", "sigmoid", "triangular", "straight_through"])
def test_every_surrogate(triton_calls, surrogate):
    graph = loop_graph(LIF, SEMANTICS["subtract-next"])
    x = _inputs(graph, torch.float64, steps=T)
    options = {"surrogate": surrogate, "detach_reset": False}
    runs = [_run(graph, x, triton, torch.float64, **options) for triton in (False, True)]
    assert triton_calls
    _assert_same(runs[1], runs[0], torch.float64)


@pytest.mark.parametrize("bias", [True, False], ids=["affine", "linear"])
@pytest.mark.parametrize("inputs", [1, 2])
def test_runs_of_steps_and_given_state(triton_calls, bias, inputs):
    """Three runs of steps (the state carried between calls), a non-zero initial state (the
    spikes held by the delayed edge, the membrane), several summed inputs."""
    graph = loop_graph(LIF, SEMANTICS["subtract-next"], bias=bias, inputs=inputs)
    x = _inputs(graph, torch.float64, steps=12)
    start = compile_torch(graph, dtype=torch.float64).initial_state(3)
    g = torch.Generator().manual_seed(3)
    state = {k: (torch.rand(v.shape, generator=g, dtype=v.dtype) < 0.5).to(v.dtype) if k.endswith(("@prev", ".z"))
             else torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in start.items()}
    state = {k: v.to(DEVICE) for k, v in state.items()}
    want = _run(graph, x, False, torch.float64, state=state, time_chunk=5)
    got = _run(graph, x, True, torch.float64, state=state, time_chunk=5)
    assert len(triton_calls) == 3
    _assert_same(got, want, torch.float64)


def test_matches_the_reference_interpreter_without_gradients(triton_calls):
    graph = loop_graph(CubaLIF, SEMANTICS["zero-same-ge"])
    x = _inputs(graph, torch.float64, steps=T)
    with torch.no_grad():
        y = compile_torch(graph, triton=True, native=False, dtype=torch.float64, device=DEVICE)(x.to(DEVICE))
    assert triton_calls
    np.testing.assert_array_equal(y.cpu().numpy(), snnir.run(graph, x.numpy())["out"])


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("cls,sem", [(LIF, "subtract-next"), (CubaLIF, "zero-same-ge")])
def test_half_modules_equal_the_step_loop_on_the_kernels(triton_calls, half, cls, sem):
    """A module cast to bf16/fp16: spikes and (float32) states identical to the step loop,
    whose neuron steps run the same scan kernel; gradients to the half type's rounding."""
    graph = loop_graph(cls, SEMANTICS[sem])
    x = _inputs(graph, torch.float32, steps=T)
    got = _run(graph, x, True, torch.float32, module_dtype=half)
    assert triton_calls and got[0].dtype == half and got[0].sum() > 0
    with mock.patch.object(triton_recurrent, "supports", return_value=False):
        want = _run(graph, x, True, torch.float32, module_dtype=half)
    assert torch.equal(got[0], want[0])
    for key, value in want[1].items():
        assert torch.equal(got[1][key], value), key
    for name, grad in want[2].items():
        if grad is None:  # a parameter the update does not use (v_reset of a subtract reset)
            assert got[2][name] is None, name
            continue
        scale = float(grad.abs().max())
        torch.testing.assert_close(got[2][name].float(), grad.float(), rtol=2e-2, atol=2e-2 * scale, msg=name)


def test_the_step_loop_runs_where_the_kernels_do_not(triton_calls):
    """Recorded traces and a forward hook on the layer: the step loop, with the same spikes."""
    graph = loop_graph(LIF, SEMANTICS["subtract-next"])
    x = _inputs(graph, torch.float64, steps=T).to(DEVICE)
    module = compile_torch(graph, triton=True, native=False, dtype=torch.float64, device=DEVICE)
    y, traces = module(x, record=True)
    assert not triton_calls
    y_fast, final = module(x, return_state=True)
    assert len(triton_calls) == 1
    assert torch.equal(y, y_fast) and torch.equal(traces["cell.v"][-1], final["cell.v"])
    seen = []
    module.node_module("rec").register_forward_hook(lambda *args: seen.append(1))
    assert torch.equal(module(x), y)
    assert len(seen) == T and len(triton_calls) == 1


def test_retain_graph_leaves_the_given_gradients_alone(triton_calls):
    """Two backward passes of one graph give the same gradients, and the gradients handed to
    the backward (here the final membrane's, given as is) are not written to."""
    graph = loop_graph(CubaLIF, SEMANTICS["subtract-next"])
    module = compile_torch(graph, triton=True, native=False, dtype=torch.float64, device=DEVICE, trainable="all")
    x = _inputs(graph, torch.float64, steps=T).to(DEVICE).requires_grad_(True)
    y, final = module(x, return_state=True)
    assert triton_calls
    g_y, g_v = torch.randn_like(y), torch.randn_like(final["cell.v"])
    given = g_v.clone()
    leaves = [x, *module.parameters()]
    first = torch.autograd.grad([y, final["cell.v"]], leaves, [g_y, g_v], retain_graph=True, allow_unused=True)
    assert torch.equal(g_v, given)
    second = torch.autograd.grad([y, final["cell.v"]], leaves, [g_y, g_v], allow_unused=True)
    for a, b in zip(first, second):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.equal(a, b)
