"""``torch.compile`` of a compiled module: it is never needed, but where a user wraps a
module in it, the spikes and gradients stay those of the eager module (dynamo breaks the
graph at the fused neuron ops and the C++ kernels, and runs them as they are)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import snnir
from snnir.ir import Affine, Graph, Input, Output, Semantics
from snnir.ir.ops import LIF


def _graph() -> Graph:
    rng = np.random.default_rng(5)
    sem = Semantics(dt=1e-4, reset="subtract", reset_timing="next")
    lif = lambda n: LIF(tau=np.full(n, 1e-3), r=np.full(n, 10.0), v_leak=np.zeros(n),  # noqa: E731
                        v_threshold=np.ones(n), sem=sem)
    fc = lambda shape: Affine(weight=rng.normal(0.3, 0.5, shape), bias=np.zeros(shape[0]),  # noqa: E731
                              trainable=("weight", "bias"))
    nodes = {"x": Input((8,)), "fc1": fc((16, 8)), "lif1": lif(16), "fc2": fc((4, 16)),
             "lif2": lif(4), "y": Output()}
    edges = [("x", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "y")]
    return Graph(nodes=nodes, edges=edges)


@pytest.mark.parametrize("native", [False, True], ids=["python", "native"])
def test_torch_compile_keeps_spikes_and_gradients(request, native):
    if native:
        request.getfixturevalue("native_kernels")
    torch._dynamo.reset()
    module = snnir.compile(snnir.optimize(_graph()), target="torch", native=native)
    x = (torch.rand(6, 3, 8, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    want = module(x)
    want.sum().backward()
    want_grads = {n: p.grad.clone() for n, p in module.named_parameters()}
    assert want.sum() > 0 and len(want_grads) == 4
    module.zero_grad()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dynamo says where it breaks the graph
        got = torch.compile(module)(x)
        got.sum().backward()
    assert torch.equal(got, want)
    for name, p in module.named_parameters():
        torch.testing.assert_close(p.grad, want_grads[name], rtol=1e-6, atol=1e-7)
