"""A neuron that applies the next Linear layer in its own scan (``neuron_linear``).

The fused op against the two ops it replaces (``neuron_sequence`` then ``F.linear``):
the layer's output and the final state identical, every gradient equal to rounding; the
native kernel against the Python loop the same way. In a compiled module: the same
outputs and gradients with and without the hand-over, and no hand-over while a forward
hook watches the layer (the tracer's hooks expect every module to be called).
"""

from __future__ import annotations

import itertools
import sys

import pytest
import torch
import torch.nn.functional as F

import snnir
from snnir.ir import Affine, Graph, Input, Linear, Output, Semantics
from snnir.ir.ops import LIF
from snnir.targets.torch import native, neuron_linear
from snnir.targets.torch.neuron_update import _config
from snnir.targets.torch.scan import coefficients, neuron_sequence
from snnir.targets.torch.surrogate import Surrogate

T, B, N, O = 9, 4, 24, 5
DT = 1e-4
CASES = list(itertools.product(("next", "same"), ("subtract", "none"), (True, False), (torch.float32, torch.float64)))


def _lif(timing: str, reset: str, n: int = N) -> LIF:
    tau = DT / (1 - 0.9)
    return LIF(tau=[tau] * n, r=[tau / DT] * n, v_leak=[0.0] * n, v_threshold=[1.0] * n,
               sem=Semantics(dt=DT, reset=reset, reset_timing=timing))


def _inputs(op: LIF, static: bool, dtype, n: int = N, o: int = O, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((B, n) if static else (T, B, n), generator=g, dtype=dtype) * 1.5
    init = {"v": torch.randn(B, n, generator=g, dtype=dtype)}
    if "z" in op.state_names:
        init["z"] = (torch.rand(B, n, generator=g) < 0.3).to(dtype)
    weight = torch.randn(o, n, generator=g, dtype=dtype)
    bias = torch.randn(o, generator=g, dtype=dtype)
    grad = torch.randn(T, B, o, generator=g, dtype=dtype)
    return x, init, weight, bias, grad


def _run(fused: bool, op: LIF, static: bool, x, init, weight, bias, grad):
    """(y, final v, dL/dx, dL/dv0, dL/dW, dL/db) of the fused op or of the two ops in turn."""
    x, weight, bias = (t.clone().requires_grad_(True) for t in (x, weight, bias))
    init = dict(init, v=init["v"].clone().requires_grad_(True))
    surrogate = Surrogate("arctan", 2.0)
    if fused:
        cfg = _config(op, surrogate, detach_reset=True)
        c = coefficients(op, {}, x)
        assert neuron_linear.applies(cfg, c, init["v"], weight)
        y, final = neuron_linear.neuron_linear_sequence(cfg, c, x, T, static, init, weight, bias)
    else:
        z, final, _ = neuron_sequence(op, {}, x, init, surrogate, steps=T if static else None, detach_reset=True)
        y = F.linear(z, weight, bias)
    (y * grad).sum().add(final["v"].square().sum()).backward()
    return y.detach(), final["v"].detach(), x.grad, init["v"].grad, weight.grad, bias.grad


def _assert_same(got, want, dtype):
    y, v, *grads = got
    assert torch.equal(y, want[0]) and torch.equal(v, want[1])
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for g, w in zip(grads, want[2:]):
        torch.testing.assert_close(g, w, rtol=tol, atol=tol)


@pytest.mark.parametrize("timing,reset,static,dtype", CASES)
def test_fused_equals_neuron_then_linear(monkeypatch, timing, reset, static, dtype):
    monkeypatch.setenv("SNNIR_NATIVE", "0")
    op = _lif(timing, reset)
    args = _inputs(op, static, dtype)
    _assert_same(_run(True, op, static, *args), _run(False, op, static, *args), dtype)


@pytest.mark.parametrize("timing,reset,static,dtype", CASES)
@pytest.mark.parametrize("n,o", [(N, O), (N, neuron_linear.NARROW + 1), (8007, 17)], ids=["narrow", "wide", "chunks"])
def test_native_equals_python(native_kernels, monkeypatch, timing, reset, static, dtype, n, o):
    """Narrow and wide layers (two backward strategies); a row of neurons in several chunks of
    the narrow backward, the last one not a whole number of vectors."""
    monkeypatch.setenv("SNNIR_NATIVE", "1")
    op = _lif(timing, reset, n)
    args = _inputs(op, static, dtype, n, o)
    got = _run(True, op, static, *args)
    monkeypatch.setenv("SNNIR_NATIVE", "0")
    _assert_same(got, _run(True, op, static, *args), dtype)


@pytest.mark.parametrize("static", [True, False])
@pytest.mark.parametrize("threads,batch", [(1, 5), (2, 11)])
def test_native_narrow_backward_in_groups_of_rows(native_kernels, monkeypatch, static, threads, batch):
    """The narrow backward takes several batch rows a chunk where the batch allows it (here two
    rows, the last group one); its gradients equal the Python op's."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        monkeypatch.setattr(sys.modules[__name__], "B", batch)
        op = _lif("next", "subtract", 700)
        args = _inputs(op, static, torch.float32, 700, 10)
        monkeypatch.setenv("SNNIR_NATIVE", "1")
        got = _run(True, op, static, *args)
        monkeypatch.setenv("SNNIR_NATIVE", "0")
        _assert_same(got, _run(True, op, static, *args), torch.float32)
    finally:
        torch.set_num_threads(before)


def _spikes_then_steps(op: LIF, x, init, weight, bias, steps: int, static: bool):
    """The layer's output as a step-by-step network makes it: F.linear of each step's spikes."""
    z, _, _ = neuron_sequence(op, {}, x, init, Surrogate("arctan", 2.0), steps=steps if static else None,
                              detach_reset=True)
    return torch.stack([F.linear(z_t, weight, bias) for z_t in z])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch,n,o,scale", [
    (128, 1000, 10, 0.3), (128, 1000, 10, 3.0), (32, 784, 10, 0.3), (64, 500, 3, 0.3), (128, 2048, 10, 0.3),
    (16, 1003, 64, 0.3), (7, 61, 1, 1.0), (9, 300, 2, 0.0),
], ids=["tutorial-few", "tutorial-many", "784", "500", "2048", "tail", "tiny", "silent"])
def test_native_forward_gives_each_steps_gemm_bits(native_kernels, monkeypatch, threads, batch, n, o, scale):
    """The native forward sums each step's spikes times the layer (the sum at the spikes in the
    BLAS's own order where its probe found that order for the shape and thread count, else the
    GEMM): every value equals F.linear of that step's spikes bit for bit, at few, many and no
    spikes, with blocks of spikes and a row whose length is no multiple of eight."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        monkeypatch.setattr(sys.modules[__name__], "B", batch)
        monkeypatch.setenv("SNNIR_NATIVE", "1")
        op = _lif("next", "subtract", n)
        x, init, weight, bias, _ = _inputs(op, False, torch.float32, n, o)
        x = x.abs() * scale
        cfg = _config(op, Surrogate("arctan", 2.0), detach_reset=True)
        with torch.no_grad():
            y, _ = neuron_linear.neuron_linear_sequence(cfg, coefficients(op, {}, x), x, T, False, init, weight, bias)
        want = _spikes_then_steps(op, x, init, weight, bias, T, False)
        differ = int((y != want).sum())
        plan = native_kernels.extension("neuron_linear").split_plan(batch, weight, bias)
        assert not differ, f"{differ} values differ (the sum's plan: {plan})"
    finally:
        torch.set_num_threads(before)


def test_native_forward_with_an_inf_weight_runs_the_gemm(native_kernels, monkeypatch):
    """A product by 0 of an inf weight is NaN in the GEMM and nothing in a sum at the spikes: a
    layer with an inf or NaN weight runs the GEMM, NaN where the GEMM has it."""
    monkeypatch.setattr(sys.modules[__name__], "B", 128)
    monkeypatch.setenv("SNNIR_NATIVE", "1")
    op = _lif("next", "subtract", 1000)
    x, init, weight, bias, _ = _inputs(op, False, torch.float32, 1000, 10)
    weight[3, 17] = float("inf")
    cfg = _config(op, Surrogate("arctan", 2.0), detach_reset=True)
    with torch.no_grad():
        y, _ = neuron_linear.neuron_linear_sequence(cfg, coefficients(op, {}, x), x.abs() * 0.3, T, False, init,
                                                    weight, bias)
    want = _spikes_then_steps(op, x.abs() * 0.3, init, weight, bias, T, False)
    assert torch.equal(y.isnan(), want.isnan()) and bool(want.isnan().any())
    assert torch.equal(y.nan_to_num(), want.nan_to_num())


@pytest.mark.parametrize("timing", ["next", "same"])
def test_native_leaves_the_initial_state_as_given(native_kernels, monkeypatch, timing):
    """The kernel reads the initial state, never writes it (also a non-contiguous one), and its
    final state equals the Python op's."""
    op = _lif(timing, "subtract")
    x, init, weight, bias, _ = _inputs(op, False, torch.float32)
    init = {name: value.t().contiguous().t() for name, value in init.items()}  # column-major views
    given = {name: value.clone() for name, value in init.items()}
    cfg = _config(op, Surrogate("arctan", 2.0), detach_reset=True)
    c = coefficients(op, {}, x)
    finals = []
    for choice in ("1", "0"):
        monkeypatch.setenv("SNNIR_NATIVE", choice)
        with torch.no_grad():
            y, final = neuron_linear.neuron_linear_sequence(cfg, c, x, T, False, init, weight, bias)
        finals.append((y, final))
        for name, value in init.items():
            assert torch.equal(value, given[name]), f"{name} was written"
    (y_native, native_final), (y_python, python_final) = finals
    assert torch.equal(y_native, y_python) and torch.equal(native_final["v"], python_final["v"])
    if timing == "next":  # the spikes a delayed reset carries over
        assert torch.equal(native_final["z"], python_final["z"])


def test_does_not_apply_to_trained_or_current_neurons():
    op = _lif("next", "subtract")
    cfg = _config(op, Surrogate(), detach_reset=True)
    v0, weight = torch.zeros(B, N), torch.zeros(O, N)
    tau = torch.tensor(op.tau, requires_grad=True)
    assert not neuron_linear.applies(cfg, coefficients(op, {"tau": tau}, v0), v0, weight)
    assert not neuron_linear.applies(_config(op, Surrogate(), detach_reset=False), coefficients(op, {}, v0), v0, weight)
    assert not neuron_linear.applies(cfg, coefficients(op, {}, v0), v0, torch.zeros(O, N + 1))


def _two_layer_graph(layer=Affine) -> Graph:
    g = torch.Generator().manual_seed(3)
    w1, w2 = torch.randn(N, 12, generator=g).numpy(), torch.randn(O, N, generator=g).numpy() / 3
    if layer is Affine:
        extra = lambda n: {"bias": torch.randn(n, generator=g).numpy(), "trainable": ("weight", "bias")}  # noqa: E731
    else:
        extra = lambda n: {"trainable": ("weight",)}  # noqa: E731
    nodes = {
        "x": Input((12,)), "fc1": layer(weight=w1, **extra(N)), "lif1": _lif("next", "subtract"),
        "fc2": layer(weight=w2, **extra(O)), "lif2": _lif("next", "subtract", O), "y": Output((O,)),
    }
    return Graph(nodes=nodes, edges=[("x", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "y")])


def _train_once(module, x, static):
    out = module(x, steps=T) if static else module(x)
    out.sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("level,static,layer", [(0, False, Affine), (2, False, Linear), (2, True, Affine)])
def test_compiled_module_hands_spikes_to_the_layer(monkeypatch, level, static, layer):
    monkeypatch.setenv("SNNIR_NATIVE", "0")
    graph = _two_layer_graph(layer)
    graph = snnir.optimize(graph, level=level, **({"static_inputs": ["x"]} if static else {}))
    x = torch.rand((B, 12) if static else (T, B, 12)) * 4
    fused = snnir.compile(graph, target="torch", detach_reset=True)
    plain = snnir.compile(graph, target="torch", detach_reset=True)
    calls = []
    for _, module in plain.named_modules():  # a hook on every layer turns the hand-over off
        if type(module).__name__ in ("AffineModule", "LinearModule"):
            module.register_forward_hook(lambda *a: calls.append(1))
    got, got_grads = _train_once(fused, x, static)
    want, want_grads = _train_once(plain, x, static)
    assert calls, "the hooked layers were not called"
    assert torch.equal(got, want)
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-5, atol=1e-5)
    assert any(level._then for level in fused.modules() if hasattr(level, "_then")), "no neuron took its layer"


def test_compile_option_native_overrides_the_environment(native_kernels, monkeypatch):
    """``compile_torch(native=False)`` never touches the kernels, whatever ``SNNIR_NATIVE`` says;
    ``native=True`` uses them with the variable unset, with the same spikes and gradients."""
    graph = snnir.optimize(_two_layer_graph(), static_inputs=["x"])
    x = torch.rand(B, 12) * 4
    monkeypatch.setenv("SNNIR_NATIVE", "1")
    built = native.extension
    monkeypatch.setattr(native, "extension", lambda *a: pytest.fail("a kernel was asked for"))
    want, want_grads = _train_once(snnir.compile(graph, target="torch", native=False), x, True)
    monkeypatch.setattr(native, "extension", built)
    monkeypatch.delenv("SNNIR_NATIVE")
    used = []
    monkeypatch.setattr(native, "extension", lambda *a: used.append(a) or built(*a))
    got, got_grads = _train_once(snnir.compile(graph, target="torch", native=True), x, True)
    assert ("neuron_linear",) in used
    assert torch.equal(got, want)
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-5, atol=1e-6)


def test_bad_native_option_is_refused():
    with pytest.raises(snnir.SnnirError, match="native"):
        snnir.compile(_two_layer_graph(), target="torch", native="yes")


class _Asked:
    """The neuron_linear extension, noting what each forward was asked to keep."""

    def __init__(self, built, asked: list):
        self._built, self._asked = built, asked

    def forward(self, *args):
        self._asked.append(args[-2:])  # (want_bits, keep_u)
        return self._built.forward(*args)

    def __getattr__(self, name):
        return getattr(self._built, name)


@pytest.mark.parametrize("o", [O, 100])
def test_inference_keeps_nothing_for_a_backward(native_kernels, monkeypatch, o):
    """Under ``no_grad`` a trainable layer's forward keeps neither the spikes nor the membranes
    (``autograd.Function.apply`` still says the weight needs its gradient there), and gives the
    tracked call's outputs bit for bit; with gradients on, a wide layer's forward keeps both."""
    monkeypatch.setenv("SNNIR_NATIVE", "1")
    op = _lif("next", "subtract")
    x, init, weight, bias, _ = _inputs(op, False, torch.float32, o=o)
    weight, bias = torch.nn.Parameter(weight), torch.nn.Parameter(bias)
    cfg = _config(op, Surrogate("arctan", 2.0), detach_reset=True)
    c = coefficients(op, {}, x)
    built, asked = native_kernels.extension("neuron_linear"), []
    monkeypatch.setattr(neuron_linear, "_kernel", lambda choice=None: _Asked(built, asked))
    with torch.no_grad():
        got, got_state = neuron_linear.neuron_linear_sequence(cfg, c, x, T, False, init, weight, bias)
    assert asked == [(False, False)]
    want, want_state = neuron_linear.neuron_linear_sequence(cfg, c, x.requires_grad_(), T, False, init, weight, bias)
    assert asked[1] == ((True, True) if o > neuron_linear.NARROW else (False, False))
    assert torch.equal(got, want.detach()) and not got.requires_grad
    assert all(torch.equal(got_state[k], want_state[k].detach()) for k in want_state)
