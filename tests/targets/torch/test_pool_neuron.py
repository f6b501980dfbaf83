"""A max pool feeding a neuron, run in one pass for inference (``pool_neuron``, ``csrc/pool_scan.cpp``).

In a compiled module (native kernels on, no gradient wanted): outputs and final states
bit-identical to the pool then the neuron's scan (the handover switched off by a forward hook,
as the tracer's hooks switch it off), for every neuron op and semantics option
(``neuron_cases``), float32 and float64, MaxPool1d/2d with padding, stride, dilation, ceil_mode
windows, ties and signed zeros; float64 outputs equal to ``snnir.run``'s. Where a gradient is
wanted, or states are recorded, the neuron pools first and runs its usual scan: the same
results, and gradients flow. Skips where the kernels cannot be built.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import snnir
from snnir.ir import Graph, Semantics
from snnir.ir.ops import LIF, Input, Output
from snnir.ir.ops.pool import MaxPool1d, MaxPool2d
from snnir.targets.torch import pool_neuron, spatial

from tests.targets.neuron_cases import CASES, IDS, random_op
from tests.targets.torch.chain_checks import random_state

T, B = 7, 3
#: (pool, per-sample input shape); every pooled shape ends in neuron_cases.N = 5 (per-neuron parameters)
POOLS = [
    (MaxPool2d(kernel_size=2, stride=2), (2, 6, 10)),
    (MaxPool2d(kernel_size=(2, 3), stride=(2, 1), padding=(1, 1), ceil_mode=True), (3, 5, 5)),
    (MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=(2, 1), ceil_mode=True), (2, 7, 9)),
    (MaxPool1d(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True), (4, 10)),
]


def _graph(pool, shape, neuron) -> Graph:
    return Graph.sequential(("in", Input(shape)), ("pool", pool), ("cell", neuron), ("out", Output()))


def _input(shape, dtype, seed: int, scale: float = 1.0) -> torch.Tensor:
    """``[T, B, *shape]``, rounded to tenths (ties in windows) with negative zeros."""
    g = torch.Generator().manual_seed(seed)
    x = ((torch.randn((T, B) + tuple(shape), generator=g, dtype=torch.float64) * scale + 0.3) * 10).round() / 10
    x[x == 0] = -0.0
    return x.to(dtype)


def _run(graph, x, dtype, monkeypatch, hooked: bool, seed: int | None = 5):
    """(outputs, final state, whether the fused kernel ran) of one no_grad call from a random
    initial state (from zero with ``seed=None``)."""
    module = snnir.compile(graph, target="torch", dtype=dtype, native=True)
    if hooked:
        module.pool.register_forward_hook(lambda *args: None)
    ran = []
    real = pool_neuron.pooled_sequence
    monkeypatch.setattr(pool_neuron, "pooled_sequence", lambda *a: ran.append(real(*a)) or ran[-1])
    with torch.no_grad():
        out, final = module(x, state=None if seed is None else random_state(module, B, dtype, seed), return_state=True)
    return out, final, any(r is not None for r in ran)


def _check(graph, x, dtype, monkeypatch):
    fused, final, ran = _run(graph, x, dtype, monkeypatch, hooked=False)
    assert ran, "the fused kernel did not run"
    unfused, final_unfused, ran_unfused = _run(graph, x, dtype, monkeypatch, hooked=True)
    assert not ran_unfused
    assert torch.equal(fused, unfused)
    assert final.keys() == final_unfused.keys()
    for key in final:
        assert torch.equal(final[key], final_unfused[key]), key
    return fused


@pytest.mark.parametrize(("cls", "sem", "surrogate", "per_neuron", "static", "detach"), CASES, ids=IDS)
def test_fused_equals_pool_then_neuron(native_kernels, monkeypatch, cls, sem, surrogate, per_neuron, static, detach):
    """float64 for every case, float32 too for every third (``static`` is rotated the same way)."""
    index = CASES.index((cls, sem, surrogate, per_neuron, static, detach))
    for dtype in (torch.float64, torch.float32) if static else (torch.float64,):
        _check_case(index, cls, sem, per_neuron, dtype, monkeypatch)


def _check_case(index, cls, sem, per_neuron, dtype, monkeypatch):
    pool, shape = POOLS[index % len(POOLS)]
    neuron = random_op(cls, sem, np.random.default_rng(index), per_neuron)
    graph = _graph(pool, shape, neuron)
    x = _input(shape, dtype, index, scale=3.0 if sem.spike_mode == "multi" else 1.0)
    _check(graph, x, dtype, monkeypatch)
    if dtype == torch.float64:
        out, _, ran = _run(graph, x, dtype, monkeypatch, hooked=False, seed=None)
        want = snnir.run(graph, x.numpy())["out"]
        assert ran
        if neuron.spiking:
            assert np.array_equal(out.numpy(), want), "spikes differ from the reference interpreter"
        else:
            np.testing.assert_allclose(out.numpy(), want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("pool", "shape"), POOLS, ids=["2x2", "ceil-pad", "dilated", "1d"])
def test_every_pool_geometry(native_kernels, monkeypatch, pool, shape):
    neuron = LIF(tau=2e-3, r=5.0, v_leak=0.0, v_threshold=0.4, sem=Semantics(reset="subtract"))
    graph = _graph(pool, shape, neuron)
    out = _check(graph, _input(shape, torch.float32, 1), torch.float32, monkeypatch)
    assert out.sum() > 0


def test_training_and_record_pool_first(native_kernels, monkeypatch):
    """With a gradient wanted, or states recorded, the fused kernel does not run; the results
    are the unfused ones and the gradient reaches the input."""
    pool, shape = POOLS[0]
    neuron = LIF(tau=2e-3, r=5.0, v_leak=0.0, v_threshold=0.4, sem=Semantics(reset="subtract"))
    graph = _graph(pool, shape, neuron)
    x = _input(shape, torch.float64, 2)
    want, _, _ = _run(graph, x, torch.float64, monkeypatch, hooked=True, seed=None)
    module = snnir.compile(graph, target="torch", dtype=torch.float64, native=True)
    calls = []
    real = pool_neuron.pooled_sequence
    monkeypatch.setattr(pool_neuron, "pooled_sequence", lambda *a: calls.append(real(*a)) or calls[-1])
    x_grad = x.clone().requires_grad_(True)
    out = module(x_grad)
    out.sum().backward()
    assert torch.equal(out.detach(), want) and x_grad.grad is not None and not any(calls)
    with torch.no_grad():
        recorded, traces = module(x, record=True)
    assert torch.equal(recorded, want) and "cell.v" in traces


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("pool", "shape"), POOLS + [(MaxPool2d(kernel_size=3, stride=1), (2, 6, 7))],
                         ids=["2x2", "ceil-pad", "dilated", "1d", "overlapping"])
def test_native_max_pool_equals_torch(native_kernels, monkeypatch, pool, shape, dtype):
    """The max pool alone (training, or no neuron after it) by the native kernel: maxima (signs
    of zero, NaN, windows of -inf included) and input gradients identical to torch's pool. A
    module refuses such an input (as the reference does), but a layer before a pool can make
    them, so the module's input check is lifted here to reach the pool with them."""
    import snnir.targets.torch as torch_target

    monkeypatch.setattr(torch_target, "_finite", lambda x: True)
    graph = Graph.sequential(("in", Input(shape)), ("pool", pool), ("out", Output()))
    x = _input(shape, dtype, 3)
    x[0, 0, 0] = float("nan")
    x[1, 0, ..., :3] = float("-inf")
    calls, real = [], spatial._NativeMaxPool.apply
    monkeypatch.setattr(spatial._NativeMaxPool, "apply", lambda *a: calls.append(1) or real(*a))
    results = []
    for native in (True, False):
        module = snnir.compile(graph, target="torch", dtype=dtype, native=native)
        x_grad = x.clone().requires_grad_(True)
        out = module(x_grad)
        out.backward(torch.arange(out.numel(), dtype=dtype).reshape(out.shape) % 7)
        results.append((out.detach(), x_grad.grad))
    (out, grad), (want, want_grad) = results
    assert len(calls) == 1, "the native pool ran once (native=True only)"
    assert torch.equal(out.isnan(), want.isnan()) and torch.equal(out.signbit(), want.signbit())
    assert torch.equal(out.nan_to_num(), want.nan_to_num())
    assert torch.equal(grad, want_grad)


@pytest.mark.parametrize(("pool", "shape"), POOLS + [(MaxPool2d(kernel_size=3, stride=1), (2, 6, 7))],
                         ids=["2x2", "ceil-pad", "dilated", "1d", "overlapping"])
def test_native_max_pool_differentiates_twice_as_torch(native_kernels, pool, shape):
    """The native pool's backward is differentiable again (gradient penalties, double backward):
    gradcheck and gradgradcheck pass in float64, and the second derivatives equal torch's pool's."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn((B,) + shape, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: spatial._NativeMaxPool.apply(t, pool), (x,))
    assert torch.autograd.gradgradcheck(lambda t: spatial._NativeMaxPool.apply(t, pool), (x,))
    torch_pool = torch.nn.functional.max_pool1d if pool.spatial_rank == 1 else torch.nn.functional.max_pool2d
    results = []
    for run in (lambda t: spatial._NativeMaxPool.apply(t, pool),
                lambda t: torch_pool(t, pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode)):
        out = run(x)
        v = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64,
                        requires_grad=True)
        (dx,) = torch.autograd.grad(out, x, v, create_graph=True)
        w = torch.randn(dx.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
        results.append((dx.detach(), *torch.autograd.grad((dx * w).sum(), v)))
    (dx, dv), (want_dx, want_dv) = results
    assert torch.equal(dx, want_dx) and torch.equal(dv, want_dv)


def test_gradient_penalty_through_a_compiled_native_max_pool(native_kernels):
    """A model with the native max pool trains with a gradient penalty (``create_graph=True``):
    the parameters' gradients are those of torch's pool (``native=False``)."""
    from snnir.ir.ops import Conv2d

    g = np.random.default_rng(7)
    conv = Conv2d(weight=g.normal(size=(3, 2, 3, 3)), bias=g.normal(size=(3,)), padding=1)
    graph = Graph.sequential(("in", Input((2, 6, 6))), ("conv", conv), ("pool", MaxPool2d(kernel_size=2)),
                             ("out", Output()))
    x = torch.from_numpy(g.normal(size=(T, B, 2, 6, 6)))
    grads = []
    for native in (True, False):
        module = snnir.compile(graph, target="torch", dtype=torch.float64, native=native, trainable="all")
        x_grad = x.clone().requires_grad_(True)
        out = module(x_grad)
        (dx,) = torch.autograd.grad(out.square().sum(), x_grad, create_graph=True)
        (out.sum() + dx.square().sum()).backward()
        grads.append([p.grad for p in module.parameters()])
    assert len(grads[0]) == 2
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
