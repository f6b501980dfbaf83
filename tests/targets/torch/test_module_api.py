"""The compiled module as PyTorch users drive it: inference mode, autocast, pickling, hooks on
fused nodes, torch.func. Each case was a traceback or a silent difference found by probing
(2026-12-04); the rule is identical spikes to the step loop (``fast=False``, the specification)
or a clear SnnirError."""

from __future__ import annotations

import copy
import io
import pickle

import numpy as np
import pytest
import torch
from torch import nn

import snnir
from snnir.errors import SnnirError
from snnir.targets.torch import compile_torch

from torch_target_graphs import all_op_classes, graphs_for, random_input

snn = pytest.importorskip("snntorch", reason="the models are written with snnTorch neurons")


class _Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.lif = nn.Linear(12, 20), snn.RLeaky(beta=0.9, linear_features=20)
        self.out, self.lif2 = nn.Linear(20, 5), snn.Leaky(beta=0.8)

    def forward(self, x):
        spk, mem = self.lif.init_rleaky()
        mem2, rec = self.lif2.init_leaky(), []
        for t in range(x.shape[0]):
            spk, mem = self.lif(self.fc(x[t]), spk, mem)
            z, mem2 = self.lif2(self.out(spk), mem2)
            rec.append(z)
        return torch.stack(rec)


class _Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.pool, self.lif = nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), snn.Leaky(beta=0.5)
        self.fc, self.syn = nn.Linear(36, 5), snn.Synaptic(alpha=0.7, beta=0.8)

    def forward(self, x):
        mem = self.lif.init_leaky()
        syn, mem2 = self.syn.init_synaptic()
        rec = []
        for t in range(x.shape[0]):
            z, mem = self.lif(self.pool(self.conv(x[t])), mem)
            out, syn, mem2 = self.syn(self.fc(z.flatten(1)), syn, mem2)
            rec.append(out)
        return torch.stack(rec)


def _mlp():
    return nn.Sequential(nn.Linear(12, 30), snn.Leaky(beta=0.9, init_hidden=True),
                         nn.Linear(30, 5), snn.Leaky(beta=0.9, init_hidden=True))


def _graph(kind: str, optimized: bool):
    torch.manual_seed(0)
    net = {"mlp": _mlp, "recurrent": _Recurrent, "conv": _Conv}[kind]()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3)  # spikes in every layer
    shape = (1, 8, 8) if kind == "conv" else (12,)
    sample = torch.zeros((1,) + shape) if kind == "mlp" else torch.zeros((2, 1) + shape)
    graph = snnir.trace(net, sample)
    return net, (snnir.optimize(graph) if optimized else graph), shape


@pytest.mark.parametrize("optimized", [False, True], ids=["traced", "optimized"])
@pytest.mark.parametrize("kind", ["mlp", "recurrent", "conv"])
def test_autocast_spikes_and_gradients_equal_the_step_loop(kind, optimized):
    """Under ``torch.autocast("cpu", bfloat16)`` a layer's output is bf16 while the state is
    float32: the step loop (and snnTorch) keep the membrane in float32. The scans ran the neuron in
    bf16 (1694 of 16000 spikes differed on one layer) and a neuron handing its spikes to the next
    Linear raised a dtype error."""
    net, graph, shape = _graph(kind, optimized)
    x = torch.rand((30, 4) + shape)
    outs, grads = {}, {}
    for name, options in (("fast", {}), ("python", {"native": False}), ("spec", {"fast": False})):
        module = snnir.compile(graph, target="torch", **options)
        given = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = module(given)
        y = y if isinstance(y, torch.Tensor) else next(iter(y.values()))
        y.float().sum().backward()
        outs[name], grads[name] = y.detach().float(), given.grad
    assert outs["spec"].sum() > 0
    for name in ("fast", "python"):
        torch.testing.assert_close(outs[name], outs["spec"], rtol=0, atol=0)
        torch.testing.assert_close(grads[name], grads["spec"], rtol=1e-5, atol=1e-5)
    if kind == "recurrent":
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            torch.testing.assert_close(net(x).float(), outs["fast"], rtol=0, atol=0)


@pytest.mark.parametrize("options", [{}, {"native": False}], ids=["native", "python"])
def test_grad_mode_after_an_inference_mode_call(options):
    """The coefficients kept between calls were made under ``torch.inference_mode`` and then
    saved for a backward: RuntimeError "Inference tensors cannot be saved for backward"."""
    _, graph, shape = _graph("mlp", optimized=False)
    module = snnir.compile(graph, target="torch", **options)
    x = torch.rand((10, 4) + shape)
    with torch.inference_mode():
        expected = module(x)
    y = module(x)
    y.sum().backward()
    torch.testing.assert_close(y.detach(), expected.clone(), rtol=0, atol=0)
    assert all(p.grad is not None for p in module.parameters() if p.requires_grad)


def test_compiled_module_and_graph_pickle():
    """``torch.save(module)``, ``pickle.dumps(module)`` and ``pickle.dumps(graph)`` raised
    "cannot pickle 'mappingproxy' object" (the graph's read-only mappings)."""
    _, graph, shape = _graph("mlp", optimized=True)
    module = snnir.compile(graph, target="torch")
    x = torch.rand((10, 4) + shape)
    with torch.no_grad():
        expected = module(x)
        buffer = io.BytesIO()
        torch.save(module, buffer)
        for copied in (pickle.loads(pickle.dumps(module)), torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)):
            torch.testing.assert_close(copied(x), expected, rtol=0, atol=0)
    again = pickle.loads(pickle.dumps(graph))
    assert dict(again.nodes) == dict(graph.nodes) and again.edges == graph.edges and again.ties == graph.ties
    assert dict(again.metadata) == dict(graph.metadata)


def test_hook_on_a_fused_node_is_refused_and_hooks_on_its_parts_run():
    """A fused layer-neuron node runs as its parts, so a hook on it never ran, without a word."""
    _, graph, shape = _graph("mlp", optimized=True)
    module = snnir.compile(graph, target="torch")
    fused = [name for name, child in module.named_children() if hasattr(child, "expansion")]
    assert fused
    x = torch.rand((10, 4) + shape)
    seen = []
    part = module.get_submodule(f"{fused[0]}.expansion.neuron")
    part.register_forward_hook(lambda m, args, out: seen.append(out[0].shape))
    module(x)
    assert seen == [torch.Size((10, 4, 30))]
    hooked = copy.deepcopy(module)
    hooked.get_submodule(fused[0]).register_forward_hook(lambda m, args, out: None)
    with pytest.raises(SnnirError, match=rf"node '{fused[0]}'.*would never run.*expansion.neuron"):
        hooked(x)


@pytest.mark.parametrize("options", [{}, {"fast": False}], ids=["fast", "step-loop"])
def test_torch_func_transforms_are_refused(options):
    _, graph, shape = _graph("mlp", optimized=False)
    module = snnir.compile(graph, target="torch", **options)
    x = torch.rand((10, 4) + shape)
    with pytest.raises(SnnirError, match="torch.func transforms"):
        torch.func.vmap(lambda xb: module(xb[:, None])[:, 0], in_dims=1, out_dims=1)(x)
    params = {n: p.detach() for n, p in module.named_parameters()}
    with pytest.raises(SnnirError, match="torch.func transforms"):
        torch.func.grad(lambda p: torch.func.functional_call(module, p, (x,)).sum())(params)


@pytest.mark.parametrize("op_class", all_op_classes(), ids=lambda c: c.__name__)
def test_half_precision_module_equals_its_step_loop(op_class):
    """A module cast to bf16/fp16 (CPU): the scans computed the neuron's coefficients in float64
    from the half parameters and rounded them once, where the step loop computes them in the
    half dtype: 56 of 180 registry outputs differed, by whole spikes."""
    for graph in graphs_for(op_class):
        x = random_input(graph, 40, 3)
        for dtype in (torch.float16, torch.bfloat16):
            given = {k: torch.as_tensor(v).to(dtype) for k, v in x.items()} if isinstance(x, dict) else (
                torch.as_tensor(x).to(dtype))
            with torch.no_grad():
                want = compile_torch(graph, fast=False).to(dtype)(given)
                for options in ({}, {"native": False}):
                    got = compile_torch(graph, **options).to(dtype)(given)
                    want_d, got_d = (want, got) if isinstance(want, dict) else ({"y": want}, {"y": got})
                    for key in want_d:
                        torch.testing.assert_close(got_d[key], want_d[key], rtol=0, atol=0, equal_nan=True,
                                                   msg=f"{key} {dtype} {options}")


def test_a_state_that_is_not_a_tensor_is_named_as_such():
    """A float or list given as a state value was reported as "has shape float"."""
    _, graph, shape = _graph("mlp", optimized=False)
    module = snnir.compile(graph, target="torch")
    state = module.initial_state(4)
    key = next(iter(state))
    state[key] = 0.5
    with pytest.raises(SnnirError, match=rf"state '{key}' must be a tensor of shape \[4, 30\], got float"):
        module(torch.rand((10, 4) + shape), state=state)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(4, 24, 3), (128, 1000, 10), (16, 64, 64)], ids=str)
def test_a_linear_layer_rounds_each_step_as_a_step_by_step_network(shape, threads):
    """Every step's rows are the bits of that step's own product (snnTorch's per-step shape),
    whatever the BLAS does with more rows: MKL on a 2-vCPU AVX-512 VM rounded [128, 1000] x
    [1000, 10] over 8 steps unlike per step, so a time-batched layer moved membranes by an ulp."""
    from snnir.ir import Affine, Graph, Input, Output

    batch, n_in, n_out = shape
    gen = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(n_out, n_in, generator=gen), torch.randn(n_out, generator=gen)
    graph = Graph.sequential(("x", Input((n_in,))), ("fc", Affine(weight.double().numpy(), bias.double().numpy())),
                             ("y", Output()))
    x = (torch.rand(8, batch, n_in, generator=gen) < 0.3).float()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        module = compile_torch(graph)
        with torch.no_grad():
            got = module(x)
            want = torch.stack([torch.nn.functional.linear(x[t], module.fc.weight, module.fc.bias) for t in range(8)])
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_a_call_too_large_to_probe_runs_step_by_step(monkeypatch):
    """The probe allocates a call's input and output once more: above PROBE_BYTES the layer runs
    per-step GEMMs unprobed (the same bits)."""
    from snnir.ir import Affine, Graph, Input, Output
    from snnir.targets.torch import modules

    monkeypatch.setattr(modules, "PROBE_BYTES", 0)
    monkeypatch.setattr(modules, "_ROWS_ALIKE", {})
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    graph = Graph.sequential(("x", Input((7,))), ("fc", Affine(weight.numpy(), np.zeros(5))), ("y", Output()))
    module = compile_torch(graph)
    x = torch.rand(6, 3, 7, generator=gen)
    with torch.no_grad():
        got = module(x)
        want = torch.stack([torch.nn.functional.linear(x[t], module.fc.weight, module.fc.bias) for t in range(6)])
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert list(modules._ROWS_ALIKE.values()) == [False]
