"""The Triton neuron-then-Linear op (``gpu/neuron_linear.py``) against its specification.

In Triton's interpreter on CPU tensors (or on a GPU, see ``tests/targets/triton_device.py``):
for every case the C++ kernel covers (``neuron_linear.applies``: delayed or same-step reset,
subtract or none, ``>`` or ``>=``, per-step or held input, every surrogate), the layer's output
and the final state equal the Python op's bit for bit in float32 and float64, and every
gradient agrees to rounding. bf16/fp16 inputs and layers: the neuron on a float32 state,
equal to the Python loop on the widened input followed by the layer in the input's dtype.
The compiled module's hand-over to this op is tested in ``tests/targets/test_triton_scan.py``.
"""

from __future__ import annotations

import itertools

from tests.targets.triton_device import DEVICE, kernels_checked  # noqa: F401 (first: sets TRITON_INTERPRET)

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from snnir.ir import Semantics  # noqa: E402
from snnir.targets.torch import neuron_linear  # noqa: E402
from snnir.targets.torch.gpu import neuron_linear as triton_linear  # noqa: E402
from snnir.targets.torch.neuron_update import _config  # noqa: E402
from snnir.targets.torch.scan import coefficients, neuron_sequence  # noqa: E402
from snnir.targets.torch.surrogate import DEFAULT_SLOPES, Surrogate  # noqa: E402

from test_neuron_linear import DT, T, _inputs, _lif  # noqa: E402

CASES = [
    (timing, reset, static, dtype, ("gt", "ge")[k % 2], tuple(DEFAULT_SLOPES)[k % len(DEFAULT_SLOPES)])
    for k, (timing, reset, static, dtype) in enumerate(
        itertools.product(("next", "same"), ("subtract", "none"), (False, True), (torch.float32, torch.float64))
    )
]


def _op(timing: str, reset: str, compare: str):
    sem = Semantics(dt=DT, reset=reset, reset_timing=timing, threshold_compare=compare)
    return _lif(timing, reset).replace(sem=sem)


def _run(triton: bool, op, surrogate: str, static: bool, x, init, weight, bias, grad):
    """(y, final v, dL/dx, dL/dv0, dL/dW, dL/db) of the Triton op or of the Python one."""
    x, weight, bias = (t.detach().to(DEVICE).clone().requires_grad_(True) for t in (x, weight, bias))
    init = {k: v.to(DEVICE).clone() for k, v in init.items()}
    init["v"].requires_grad_(True)
    cfg = _config(op, Surrogate(surrogate), detach_reset=True)
    c = coefficients(op, {}, init["v"])
    assert neuron_linear.applies(cfg, c, init["v"], weight)
    args = (cfg, c, x, T, static, init, weight, bias)
    if triton:
        assert triton_linear.supports(cfg, x, weight, bias)
        y, final = triton_linear.neuron_linear_sequence(*args)
    else:
        y, final = neuron_linear.neuron_linear_sequence(*args, native=False)
    (y * grad.to(DEVICE)).sum().add(final["v"].square().sum()).backward()
    return y.detach(), final["v"].detach(), x.grad, init["v"].grad, weight.grad, bias.grad


@pytest.mark.parametrize("timing,reset,static,dtype,compare,surrogate", CASES)
def test_triton_equals_python(timing, reset, static, dtype, compare, surrogate):
    op = _op(timing, reset, compare)
    args = _inputs(op, static, dtype)
    (y, v, *grads), (y_want, v_want, *grads_want) = (_run(t, op, surrogate, static, *args) for t in (True, False))
    assert y.sum() != 0
    assert torch.equal(y, y_want) and torch.equal(v, v_want)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for g, w in zip(grads, grads_want):
        torch.testing.assert_close(g, w, rtol=tol, atol=tol)


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("timing,static", [("next", False), ("same", True)])
def test_half_inputs_with_a_float32_state(half, timing, static):
    """The Python loop on the widened input, its spikes through the layer in ``half``."""
    op = _op(timing, "subtract", "gt")
    x, init, weight, bias, grad = _inputs(op, static, torch.float32)
    x_half, weight, bias, grad = (t.to(DEVICE, half) for t in (x, weight, bias, grad))
    y, v, g_x, g_v0, g_w, g_b = _run(True, op, "arctan", static, x_half, init, weight, bias, grad)
    assert y.dtype == half and v.dtype == torch.float32 and g_x.dtype == half

    wide = x_half.float().requires_grad_(True)
    v0 = init["v"].to(DEVICE).requires_grad_(True)
    weight, bias = weight.clone().requires_grad_(True), bias.clone().requires_grad_(True)
    state = {k: v.to(DEVICE) for k, v in init.items()} | {"v": v0}
    z, final, _ = neuron_sequence(op, {}, wide, state, Surrogate("arctan"), steps=T if static else None,
                                  detach_reset=True, triton=False, native=False)
    y_want = F.linear(z.to(half), weight, bias)
    (y_want * grad).float().sum().add(final["v"].square().sum()).backward()
    assert y.sum() != 0
    assert torch.equal(y, y_want.detach()) and torch.equal(v, final["v"].detach())
    for got, want in ((g_x, wide.grad), (g_v0, v0.grad), (g_w, weight.grad), (g_b, bias.grad)):
        torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=2e-2)


def test_inference_runs_the_forward_alone():
    """Under ``no_grad`` with a trainable weight the forward runs without autograd (it keeps no
    spike bytes for a backward that never runs), with the tracked call's outputs bit for bit."""
    op = _op("next", "subtract", "gt")
    x, init, weight, bias, _ = _inputs(op, False, torch.float32)
    x, weight, bias = x.to(DEVICE), torch.nn.Parameter(weight.to(DEVICE)), torch.nn.Parameter(bias.to(DEVICE))
    init = {k: v.to(DEVICE) for k, v in init.items()}
    cfg = _config(op, Surrogate("arctan"), detach_reset=True)
    c = coefficients(op, {}, init["v"])
    with torch.no_grad():
        got, got_final = triton_linear.neuron_linear_sequence(cfg, c, x, T, False, init, weight, bias)
    want, want_final = triton_linear.neuron_linear_sequence(cfg, c, x, T, False, init, weight, bias)
    assert got.grad_fn is None and want.grad_fn is not None
    assert torch.equal(got, want.detach()) and torch.equal(got_final["v"], want_final["v"].detach())
