"""Second derivatives through a compiled module (``create_graph=True``: double backward, gradient
penalties, ``gradgradcheck``): every fast path whose autograd Function gives first derivatives
only (the neuron scans, a Linear fed spikes) refuses with a SnnirError naming the node and the
way out, ``fast=False``, which autograd differentiates again. (The native max pool
differentiates twice: ``test_pool_neuron.py``.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from snnir.errors import SnnirError
from snnir.ir import LI, LIF, Graph, Input, Linear, Output, Semantics
from snnir.ir.ops.probe import StateProbe
from snnir.targets.torch import compile_torch, native, neuron_linear, recurrent, scan, spike_linear
from tests.targets.torch.test_recurrent import loop_graph
from torch_target_graphs import neuron

T, B, N = 9, 2, 6
SEM = Semantics(dt=1e-3, reset="subtract")


def _layer_neuron(rng, then: bool) -> Graph:
    """in -> Linear -> cell (-> Linear, which the neuron applies in its scan: scalar parameters) -> out."""
    cell = LIF(tau=5e-3, r=1.0, v_leak=0.0, v_threshold=0.1, sem=SEM) if then else neuron(LIF, N, rng, SEM)
    nodes = [("in", Input((4,))), ("fc", Linear(weight=rng.normal(0, 1, (N, 4)))), ("cell", cell)]
    nodes += [("fc2", Linear(weight=rng.normal(0, 1, (3, N))))] if then else []
    return Graph.sequential(*nodes, ("out", Output()))


def _probed_then_linear(rng) -> Graph:
    """A probed neuron (stepped in autograd) whose spikes a trained Linear takes (``spike_linear``)."""
    nodes = {"in": Input((4,)), "fc": Linear(weight=rng.normal(0, 1, (N, 4))), "cell": neuron(LIF, N, rng, SEM),
             "fc2": Linear(weight=rng.normal(0, 1, (3, N))), "v": StateProbe(state="v"), "out": Output(),
             "out_v": Output()}
    edges = (("in", "fc"), ("fc", "cell"), ("cell", "fc2"), ("fc2", "out"), ("cell", "v"), ("v", "out_v"))
    return Graph(nodes, edges)


#: (graph, native, the autograd Function of the fast path it takes, the node refusing)
PATHS = {
    "scan": (lambda rng: _layer_neuron(rng, False), False, scan._NeuronSequence, "cell"),
    "native-scan": (lambda rng: _layer_neuron(rng, False), True, native._NativeSequence, "cell"),
    "neuron-linear": (lambda rng: _layer_neuron(rng, True), False, neuron_linear._NeuronLinear, "cell"),
    "native-neuron-linear": (lambda rng: _layer_neuron(rng, True), True, neuron_linear._NativeNeuronLinear, "cell"),
    "native-loop": (lambda rng: loop_graph(LIF, SEM), True, recurrent._Recurrent, "cell"),
    "spike-linear": (_probed_then_linear, False, spike_linear._SpikeLinear, "fc2"),
}


@pytest.mark.parametrize("path", PATHS, ids=PATHS)
def test_fast_paths_refuse_a_second_derivative_naming_the_node(native_kernels, monkeypatch, path):
    make, use_native, function, node = PATHS[path]
    graph = make(np.random.default_rng(0))
    trainable = ["fc2.weight"] if node == "fc2" else "metadata"
    calls, real = [], function.apply
    monkeypatch.setattr(function, "apply", lambda *a: calls.append(1) or real(*a))
    x = (torch.randn(T, B, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2).requires_grad_()
    module = compile_torch(graph, dtype=torch.float64, native=use_native, trainable=trainable)
    def total(out):
        return sum(o.sum() for o in out.values()) if isinstance(out, dict) else out.sum()

    (first,) = torch.autograd.grad(total(module(x)), x)  # a plain backward passes
    assert calls, f"the {function.__name__} path ran"
    with pytest.raises(SnnirError, match=rf"node '{node}'.*fast=False"):
        torch.autograd.grad(total(module(x)), x, create_graph=True)
    slow = compile_torch(graph, dtype=torch.float64, native=use_native, fast=False, trainable=trainable)
    (again,) = torch.autograd.grad(total(slow(x)), x, create_graph=True)
    torch.testing.assert_close(again.detach(), first, rtol=1e-12, atol=1e-12)
    again.square().sum().backward()  # the step loop differentiates twice
    assert x.grad is not None and bool(x.grad.isfinite().all())


def test_the_step_loop_passes_gradgradcheck():
    """``fast=False``: exact second derivatives (a leaky integrator, smooth in its input)."""
    rng = np.random.default_rng(2)
    li = LI(tau=rng.uniform(3e-3, 2e-2, N), r=rng.uniform(0.5, 2, N), v_leak=rng.normal(0, 0.05, N), sem=SEM)
    graph = Graph.sequential(("in", Input((4,))), ("fc", Linear(weight=rng.normal(0, 1, (N, 4)))), ("cell", li),
                             ("out", Output()))
    module = compile_torch(graph, dtype=torch.float64, fast=False)
    x = torch.randn(4, B, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: module(t).square(), (x,))
