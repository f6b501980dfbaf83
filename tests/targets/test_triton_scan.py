"""The Triton neuron-scan kernels against the Python loop and the reference interpreter.

Without a GPU they run in Triton's interpreter (``TRITON_INTERPRET=1``, set here before
Triton is first imported) on CPU tensors; with ``TRITON_INTERPRET=0`` and a GPU the same
tests run on CUDA. Forward: spikes and states identical to the Python loop (float32,
float64) and float64 spikes identical to ``snnir.run``; bf16/fp16 inputs equal the Python
loop on the input widened to float32. Backward: every gradient equal to the Python loop's
to 1e-10 (float64). Skips, saying why, where Triton is not installed.
"""

from __future__ import annotations

import warnings
from unittest import mock

from tests.targets.triton_device import DEVICE, kernels_checked  # noqa: F401 (first: sets TRITON_INTERPRET)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import snnir  # noqa: E402
from snnir.ir import Affine, Graph, Semantics  # noqa: E402
from snnir.ir.ops import LIF, CubaLIF, Input, Output  # noqa: E402
from snnir.targets.torch import gpu  # noqa: E402
from snnir.targets.torch.gpu import neuron_linear as triton_linear  # noqa: E402
from snnir.targets.torch.gpu import scan as triton_scan  # noqa: E402
from snnir.targets.torch.scan import neuron_sequence  # noqa: E402
from snnir.targets.torch.surrogate import Surrogate  # noqa: E402
from tests.targets.neuron_cases import (  # noqa: E402
    B, CASES, IDS, N, check_broadcast_parameters, random_arrays, random_op,
)

T = 8  # steps (the interpreter's time grows with them)


def _run_both(op, params, x, state, **kwargs):
    """(triton, python) results of ``neuron_sequence`` on the same inputs."""
    with mock.patch.object(triton_scan, "neuron_sequence", wraps=triton_scan.neuron_sequence) as spy:
        fast = neuron_sequence(op, params, x, state, triton=True, native=False, **kwargs)
    assert spy.called, "the Triton kernel was not dispatched"
    slow = neuron_sequence(op, params, x, state, triton=False, native=False, **kwargs)
    return fast, slow


def _tensor(a, dtype, grad=False):
    return torch.from_numpy(np.array(a)).to(device=DEVICE, dtype=dtype).requires_grad_(grad)


@pytest.mark.parametrize(("cls", "sem", "surrogate", "per_neuron", "static", "detach"), CASES, ids=IDS)
def test_triton_matches_python_and_reference(cls, sem, surrogate, per_neuron, static, detach):
    """float64, every op and semantics option: exact forward, gradients of everything to 1e-10."""
    rng = np.random.default_rng(CASES.index((cls, sem, surrogate, per_neuron, static, detach)))
    op, x_np, state_np = random_arrays(cls, sem, rng, per_neuron, static, T)
    kwargs = dict(surrogate=Surrogate(surrogate), steps=T if static else None, detach_reset=detach)
    dtype = torch.float64

    x = _tensor(x_np, dtype)
    (out, final, _), (out_py, final_py, _) = _run_both(op, {}, x, None, **kwargs)
    torch.testing.assert_close(out, out_py, rtol=0, atol=0)
    for name in op.state_names:
        torch.testing.assert_close(final[name], final_py[name], rtol=0, atol=0)
    graph = Graph.sequential(("x", Input((N,))), ("n", op), ("y", Output()))
    ref = snnir.run(graph, np.broadcast_to(x_np, (T, B, N)) if static else x_np)["y"]
    if op.spiking:
        np.testing.assert_array_equal(out.cpu().numpy(), ref)
    else:
        np.testing.assert_allclose(out.cpu().numpy(), ref, rtol=1e-9, atol=1e-12)

    params = {k: _tensor(v, dtype, grad=True) for k, v in op.params().items()}
    x = _tensor(x_np, dtype, grad=True)
    state = {s: _tensor(v, dtype, grad=True) for s, v in state_np.items()}
    w_out = _tensor(rng.normal(size=(T, B, N)), dtype)
    w_state = {s: _tensor(rng.normal(size=(B, N)), dtype) for s in op.state_names}
    (out, final, _), (out_py, final_py, _) = _run_both(op, params, x, state, **kwargs)
    torch.testing.assert_close(out, out_py, rtol=0, atol=0)
    leaves, names = [x, *state.values(), *params.values()], ["x", *state, *params]

    def grads(o, f):
        loss = (o * w_out).sum() + sum((f[s] * w_state[s]).sum() for s in op.state_names)
        return torch.autograd.grad(loss, leaves, allow_unused=True)

    for name, g, e in zip(names, grads(out, final), grads(out_py, final_py)):
        assert (g is None) == (e is None), name
        if g is not None:
            torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10, msg=lambda m: f"grad of {name}: {m}")


FLOAT32_CASES = CASES[::7]


@pytest.mark.parametrize(
    ("cls", "sem", "surrogate", "per_neuron", "static", "detach"), FLOAT32_CASES, ids=IDS[::7]
)
def test_triton_float32_and_half_inputs(cls, sem, surrogate, per_neuron, static, detach):
    """float32: bit-identical forward, gradients to float32 rounding. bf16/fp16 inputs with a
    float32 state: the float32 run of the widened input, outputs in the input's dtype."""
    rng = np.random.default_rng(500 + CASES.index((cls, sem, surrogate, per_neuron, static, detach)))
    op, x_np, _ = random_arrays(cls, sem, rng, per_neuron, static, T)
    kwargs = dict(surrogate=Surrogate(surrogate), steps=T if static else None, detach_reset=detach)
    x = _tensor(x_np, torch.float32, grad=True)
    (out, final, _), (out_py, final_py, _) = _run_both(op, {}, x, None, **kwargs)
    torch.testing.assert_close(out, out_py, rtol=0, atol=0)
    for name in op.state_names:
        torch.testing.assert_close(final[name], final_py[name], rtol=0, atol=0)
    w = _tensor(rng.normal(size=(T, B, N)), torch.float32)
    (g,) = torch.autograd.grad((out * w).sum(), x)
    (e,) = torch.autograd.grad((out_py * w).sum(), x)
    torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)

    for half in (torch.bfloat16, torch.float16):
        x_half = _tensor(x_np, half, grad=True)
        out, final, _ = neuron_sequence(op, {}, x_half, None, triton=True, native=False, **kwargs)
        wide = x_half.detach().float().requires_grad_(True)
        out_py, final_py, _ = neuron_sequence(op, {}, wide, None, triton=False, native=False, **kwargs)
        assert out.dtype == half and final["v"].dtype == torch.float32
        # the interpreter rounds float32 -> bf16 towards zero (a GPU to nearest): one bf16 ulp
        ulp = 2.0**-7 if half == torch.bfloat16 and gpu.interpreting() and not op.spiking else 0.0
        torch.testing.assert_close(out, out_py.to(half), rtol=ulp, atol=0)
        torch.testing.assert_close(final["v"], final_py["v"], rtol=0, atol=0)
        (g,) = torch.autograd.grad((out.float() * w).sum(), x_half)
        (e,) = torch.autograd.grad((out_py * w.to(half).float()).sum(), wide)  # dL/dout comes as `half`
        assert g.dtype == half
        torch.testing.assert_close(g, e.to(half), rtol=1e-2, atol=1e-2)


def test_broadcast_parameters_and_multi_dim_neurons():
    """Parameters of shape [3] on neurons of shape [2, 3]: gradients summed back to [3]."""
    check_broadcast_parameters(_run_both, T, DEVICE)


def test_retain_graph_and_no_grad():
    rng = np.random.default_rng(9)
    op = random_op(CubaLIF, Semantics(reset="zero", reset_timing="next"), rng, per_neuron=True)
    params = {k: _tensor(v, torch.float64, grad=True) for k, v in op.params().items()}
    x = _tensor(rng.normal(0.4, 1.0, (T, B, N)), torch.float64, grad=True)
    out, final, _ = neuron_sequence(op, params, x, None, triton=True)
    loss = out.sum() + final["v"].sum()
    first = torch.autograd.grad(loss, [x, *params.values()], retain_graph=True)
    second = torch.autograd.grad(loss, [x, *params.values()])
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with torch.no_grad():
        again, _, _ = neuron_sequence(op, params, x, None, triton=True)
    assert not again.requires_grad
    torch.testing.assert_close(again, out.detach(), rtol=0, atol=0)


def test_choice_record_and_missing_triton(monkeypatch):
    """None: CUDA tensors only (so CPU runs keep the native kernel or the Python loop);
    False or SNNIR_TRITON=0: never; record=True: the Python loop (traces); True without
    Triton installed: one warning, then the Python loop."""
    op = LIF(tau=1e-3, r=1.0, v_leak=0.0, v_threshold=1.0)
    x = torch.randn(T, B, N, device=DEVICE)
    with mock.patch.object(triton_scan, "neuron_sequence", wraps=triton_scan.neuron_sequence) as spy:
        neuron_sequence(op, {}, x, None, triton=False)
        neuron_sequence(op, {}, x, None, triton=True, record=True)
        monkeypatch.setenv("SNNIR_TRITON", "0")
        neuron_sequence(op, {}, x, None)
        monkeypatch.delenv("SNNIR_TRITON")
        neuron_sequence(op, {}, x, None)
        assert spy.call_count == (1 if DEVICE == "cuda" else 0)
        neuron_sequence(op, {}, x, None, triton=True)
        assert spy.call_count == (2 if DEVICE == "cuda" else 1)
    gpu._works.cache_clear()
    with mock.patch.object(triton_scan, "self_test", side_effect=RuntimeError("Failed to find C compiler")):
        with pytest.warns(RuntimeWarning, match="do not run on .*C compiler"):
            fallback, _, _ = neuron_sequence(op, {}, x, None, triton=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no second warning
            neuron_sequence(op, {}, x, None, triton=True)
    gpu._works.cache_clear()
    with torch.inference_mode(), warnings.catch_warnings():  # the first-use check runs all the same
        warnings.simplefilter("error")
        assert gpu.enabled(True, x)
    torch.testing.assert_close(fallback, neuron_sequence(op, {}, x, None, triton=False)[0], rtol=0, atol=0)
    monkeypatch.setattr(gpu, "available", lambda: False)
    gpu._warn_missing.cache_clear()
    with pytest.warns(RuntimeWarning, match="Triton is not installed"):
        first, _, _ = neuron_sequence(op, {}, x, None, triton=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second, _, _ = neuron_sequence(op, {}, x, None, triton=True)
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def _two_layer_graph() -> Graph:
    rng = np.random.default_rng(3)
    lif = lambda n: LIF(tau=np.full(n, 1e-3), r=np.full(n, 10.0), v_leak=np.zeros(n),  # noqa: E731
                        v_threshold=np.ones(n), sem=Semantics(reset="subtract", reset_timing="next"))
    nodes = {
        "x": Input((12,)),
        "fc1": Affine(weight=rng.normal(size=(N, 12)), bias=rng.normal(size=N), trainable=("weight", "bias")),
        "lif1": lif(N),
        "fc2": Affine(weight=rng.normal(size=(3, N)) / 3, bias=rng.normal(size=3), trainable=("weight", "bias")),
        "lif2": lif(3),
        "y": Output((3,)),
    }
    return Graph(nodes=nodes, edges=[("x", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "y")])


@pytest.mark.parametrize("static", [False, True])
def test_compiled_module_runs_every_neuron_on_the_kernels(static):
    """``compile_torch(triton=True)``: both neurons run the kernels (the first with the layer it
    hands its spikes to, :mod:`~snnir.targets.torch.gpu.neuron_linear`); outputs identical to
    ``triton=False``, gradients to rounding."""
    graph = snnir.optimize(_two_layer_graph(), **({"static_inputs": ["x"]} if static else {}))
    x = torch.rand((B, 12) if static else (T, B, 12), device=DEVICE) * 4

    def train_once(module):
        out = module(x, steps=T) if static else module(x)
        out.sum().backward()
        return out.detach(), {n: p.grad.clone() for n, p in module.named_parameters()}

    fused_op = triton_linear.neuron_linear_sequence
    with mock.patch.object(triton_scan, "neuron_sequence", wraps=triton_scan.neuron_sequence) as spy, \
            mock.patch.object(triton_linear, "neuron_linear_sequence", wraps=fused_op) as fused:
        got, got_grads = train_once(snnir.compile(graph, target="torch", device=DEVICE, triton=True, native=False))
    assert spy.call_count == 1 and fused.call_count == 1
    want, want_grads = train_once(snnir.compile(graph, target="torch", device=DEVICE, triton=False, native=False))
    assert torch.equal(got, want) and got.sum() > 0
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-5, atol=1e-5)
    with pytest.raises(snnir.SnnirError, match="triton"):
        snnir.compile(graph, target="torch", triton="yes")


def test_module_cast_to_half_computes_coefficients_in_float32():
    """A compiled neuron cast to bf16: its float32 state runs on coefficients computed in
    float32 from its bf16 parameters, as the Python loop on the widened input and parameters."""
    rng = np.random.default_rng(11)
    op = random_op(LIF, Semantics(reset="subtract"), rng, per_neuron=True)
    graph = Graph.sequential(("x", Input((N,))), ("n", op), ("y", Output()))
    module = snnir.compile(graph, target="torch", device=DEVICE, triton=True).to(torch.bfloat16)
    x = _tensor(rng.normal(0.6, 1.0, (T, B, N)), torch.bfloat16)
    neuron = module.node_module("n")
    params = {name: getattr(neuron, name).float() for name in neuron._param_dtypes}
    want, final, _ = neuron_sequence(op, params, x.float(), None, triton=False, native=False)
    with torch.no_grad():
        got, state = module(x, return_state=True)
    assert got.sum() > 0 and torch.equal(got, want.to(torch.bfloat16))
    assert state["n.v"].dtype == torch.float32 and torch.equal(state["n.v"], final["v"])
