"""A layer fed 0/1 values (rate-coded spikes given to the network) as a sum at them: each step's
``F.linear`` bits, or the GEMM where that cannot be had (``modules.AffineModule._spike_product``,
``csrc/neuron_linear.cpp`` ``spike_product``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from snnir.ir.graph import Graph
from snnir.ir.ops import Affine, Input, Linear, Output
from snnir.targets.torch import compile_torch
from snnir.targets.torch import modules


def _layer_graph(n_in: int, n_out: int, bias: bool = True, seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    weight = rng.normal(0, 1, (n_out, n_in)).astype(np.float32)
    layer = Affine(weight=weight, bias=rng.normal(0, 1, n_out).astype(np.float32)) if bias else Linear(weight=weight)
    return Graph({"x": Input((n_in,)), "fc": layer, "y": Output()}, (("x", "fc"), ("fc", "y")))


def _spikes(steps: int, batch: int, n: int, density: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, n, generator=g) < density).float()


def _per_step(module, x: torch.Tensor) -> torch.Tensor:
    fc = module.node_module("fc")
    bias = getattr(fc, "bias", None)
    return torch.stack([F.linear(step, fc.weight, bias) for step in x])


@pytest.mark.parametrize("shape", [(128, 784, 1000, 3), (32, 784, 1000, 5), (16, 100, 256, 4), (8, 20, 130, 6),
                                   (64, 1100, 200, 2)])
@pytest.mark.parametrize("bias", [True, False], ids=["affine", "linear"])
def test_each_step_gets_its_gemm_bits(kernels_used, shape, bias):
    """Every value equals ``F.linear`` of its own step (the BLAS's order of summation, probed
    per shape), at a few densities under the gate; the sum ran."""
    batch, n_in, n_out, steps = shape
    module = compile_torch(_layer_graph(n_in, n_out, bias), native=True)
    with torch.no_grad():
        module(_spikes(steps, batch, n_in, 0.0))  # a weight's first call runs the GEMM
    for density in (0.0, 0.05, 0.15):
        x = _spikes(steps, batch, n_in, density)
        with torch.no_grad():
            got = module(x)
        assert torch.equal(got, _per_step(module, x)), density
    assert "neuron_linear" in kernels_used


def test_the_sum_runs_and_the_gemm_where_it_does_not_apply(native_kernels, monkeypatch):
    """The sum runs for 0/1 values under the gate; the GEMM for other values, denser spikes,
    float64, a narrow layer, a recorded (training) call, or a weight that is not finite; values
    equal either way."""
    calls = []
    real = modules.AffineModule._spike_product

    def counted(self, x, bias):
        y = real(self, x, bias)
        calls.append(y is not None)
        return y

    monkeypatch.setattr(modules.AffineModule, "_spike_product", counted)
    graph = _layer_graph(200, 300)
    module = compile_torch(graph, native=True)
    sparse = _spikes(4, 16, 200, 0.1)
    cases = {
        "spikes": (module, sparse, True),
        "a value of 0.5": (module, torch.where(sparse.bool(), 1.0, 0.0).index_put_((torch.tensor(3),), torch.tensor(0.5)), False),
        "dense": (module, _spikes(4, 16, 200, 0.6), False),
        "float64": (compile_torch(graph, dtype=torch.float64, native=True), sparse.double(), False),
        "narrow": (compile_torch(_layer_graph(200, 100), native=True), sparse, False),
    }
    for label, (m, x, used) in cases.items():
        with torch.no_grad():
            m(x)  # a weight's first call runs the GEMM
            calls.clear()
            got = m(x)
        assert torch.equal(got, _per_step(m, x)), label
        assert calls and calls[-1] is used, label
    calls.clear()
    trained = compile_torch(graph, trainable="all", native=True)
    got = trained(sparse)
    assert calls == [False] and torch.equal(got.detach(), _per_step(trained, sparse).detach())
    with torch.no_grad():
        module.node_module("fc").weight[5, 7] = float("nan")
        module(sparse)
        calls.clear()
        got = module(sparse)
    assert calls == [False] and torch.equal(got.isnan(), _per_step(module, sparse).isnan())


def test_a_changed_weight_is_read_again(native_kernels):
    """The padded copy of W^T the sum reads follows the weight (its pointer and version), and is
    made at the second call with a weight: one that changes between calls never pays for it."""
    module = compile_torch(_layer_graph(50, 130), native=True)
    fc = module.node_module("fc")
    x = _spikes(3, 8, 50, 0.1)
    with torch.no_grad():
        for _ in range(3):
            fc.weight.add_(0.01)
            assert torch.equal(module(x), _per_step(module, x))
            assert fc._spike_rows[1] is None
        for _ in range(2):
            assert torch.equal(module(x), _per_step(module, x))
        assert fc._spike_rows[1] is not None
        fc.weight.mul_(2)
        for _ in range(2):
            assert torch.equal(module(x), _per_step(module, x))


def test_a_dense_or_analog_input_makes_no_copy_of_the_weight(native_kernels):
    """The padded copy of W^T is made only once a call's first rows pass the cheap look."""
    module = compile_torch(_layer_graph(60, 140), native=True)
    with torch.no_grad():
        module(_spikes(3, 8, 60, 0.7))
        module(torch.rand(3, 8, 60))
        assert module.node_module("fc")._spike_rows is None
        for _ in range(2):
            module(_spikes(3, 8, 60, 0.05))
        assert module.node_module("fc")._spike_rows[1] is not None
