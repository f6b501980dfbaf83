"""Running a sequence in runs of steps (``time_chunk``) changes nothing but memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import snnir
from snnir.ir import LIF, Affine, Graph, Input, Output, Semantics
from snnir.targets.torch import compile_torch
from snnir.targets.torch.graph_module import time_chunks

from torch_target_graphs import all_op_classes, graphs_for, random_input

T, B = 23, 3
GRAPHS = [(cls.__name__, i, g) for cls in all_op_classes() for i, g in enumerate(graphs_for(cls))]


def test_time_chunks_split_evenly():
    assert time_chunks(25, 8) == [7, 6, 6, 6]
    assert time_chunks(8, 8) == [8] and time_chunks(5, 0) == [5]
    assert sum(time_chunks(401, 8)) == 401 and max(time_chunks(401, 8)) <= 8


@pytest.mark.parametrize(("name", "index", "graph"), GRAPHS, ids=[f"{n}-{i}" for n, i, _ in GRAPHS])
def test_chunked_equals_whole_forward_and_gradients(name, index, graph):
    x = random_input(graph, T, B)
    whole = compile_torch(graph, dtype=torch.float64, trainable="all", time_chunk=0)
    chunked = compile_torch(graph, dtype=torch.float64, trainable="all", time_chunk=4)
    inputs = {k: torch.tensor(v, requires_grad=True) for k, v in x.items()} if isinstance(x, dict) else (
        torch.tensor(x, requires_grad=True))
    results = []
    for module in (whole, chunked):
        out, traces, final = module(inputs, record=True, return_state=True)
        outs = out if isinstance(out, dict) else {"out": out}
        loss = sum((v * torch.linspace(-1, 1, v.numel(), dtype=v.dtype).view(v.shape)).sum() for v in outs.values())
        loss = loss + sum(v.sum() for v in final.values() if v.requires_grad)
        leaves = list(inputs.values()) if isinstance(inputs, dict) else [inputs]
        leaves += [p for p in module.parameters()]
        grads = torch.autograd.grad(loss, leaves, allow_unused=True) if loss.requires_grad else ()
        results.append((outs, traces, final, grads))
    (o1, t1, f1, g1), (o2, t2, f2, g2) = results
    for a, b in ((o1, o2), (t1, t2), (f1, f2)):
        assert set(a) == set(b)
        for key in a:
            assert torch.equal(a[key], b[key]), key
    for a, b in zip(g1, g2):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _tutorial_graph(n_in=20, n_hid=40, n_out=5, seed=0):
    rng = np.random.default_rng(seed)
    dt, beta = 1e-4, 0.9
    tau = dt / (1 - beta)
    trained = ("weight", "bias")  # the layers train, the neurons do not (snnTorch's default)

    def lif(n):
        return LIF(tau=np.full(n, tau), r=np.full(n, tau / dt), v_leak=np.zeros(n), v_threshold=np.ones(n),
                   sem=Semantics(dt=dt, reset="subtract", reset_timing="next"))

    return Graph.sequential(
        ("x", Input((n_in,))),
        ("fc1", Affine(weight=rng.normal(0, 0.5, (n_hid, n_in)), bias=rng.normal(0, 0.1, n_hid), trainable=trained)),
        ("lif1", lif(n_hid)),
        ("fc2", Affine(weight=rng.normal(0, 0.5, (n_out, n_hid)), bias=rng.normal(0, 0.1, n_out), trainable=trained)),
        ("lif2", lif(n_out)),
        ("y", Output()),
    )


def _saved_bytes(module, x, steps=None) -> int:
    """Bytes autograd keeps for the backward of one forward (each storage counted once), the
    input's own storage aside; ``steps``: ``x`` is held over that many steps."""
    storages: dict[int, int] = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(x) if steps is None else module(x, steps=steps)
    out.sum().backward()
    return sum(n for ptr, n in storages.items() if ptr != x.untyped_storage().data_ptr())


@pytest.mark.parametrize("chunk", [0, 8], ids=["whole", "chunked"])
@pytest.mark.parametrize("optimise", [False, True], ids=["plain", "O2"])
def test_held_input_training_keeps_no_float_per_hidden_neuron_and_step(optimise, chunk):
    """Training the layers with a held input keeps, per step, the hidden spikes as bools, the
    small output layer's membranes and (chunked) each run's start state: no float per
    hidden neuron and step, which autograd through the unrolled steps would keep several of."""
    graph = _tutorial_graph()
    if optimise:
        graph = snnir.optimize(graph, static_inputs=["x"])
    module = compile_torch(graph, time_chunk=chunk)
    x = torch.rand(B, 20)
    per_step = (_saved_bytes(module, x, 400) - _saved_bytes(module, x, 100)) / 300
    spikes, output_layer, run_starts = B * 40, B * 5 * 4, (2 * B * 40 * 4 / 8 if chunk else 0)
    assert per_step <= (spikes + output_layer + run_starts) * 1.1
    assert per_step < B * 40 * 4  # less than one float32 per hidden neuron and step


def test_bad_time_chunk_is_refused():
    with pytest.raises(snnir.SnnirError, match="time_chunk"):
        compile_torch(_tutorial_graph(), time_chunk=-1)


@pytest.mark.parametrize(("name", "index", "graph"), GRAPHS, ids=[f"{n}-{i}" for n, i, _ in GRAPHS])
def test_recompute_changes_nothing_but_memory(name, index, graph):
    """``recompute=True`` (the forward of each run of steps rerun in the backward): the same
    outputs, final states and gradients."""
    x = random_input(graph, T, B)
    results = []
    for recompute in (False, True):
        module = compile_torch(graph, dtype=torch.float64, trainable="all", time_chunk=4, recompute=recompute)
        inputs = {k: torch.tensor(v, requires_grad=True) for k, v in x.items()} if isinstance(x, dict) else (
            torch.tensor(x, requires_grad=True))
        out, final = module(inputs, return_state=True)
        outs = out if isinstance(out, dict) else {"out": out}
        loss = sum((v * torch.linspace(-1, 1, v.numel(), dtype=v.dtype).view(v.shape)).sum() for v in outs.values())
        leaves = (list(inputs.values()) if isinstance(inputs, dict) else [inputs]) + list(module.parameters())
        grads = torch.autograd.grad(loss, leaves, allow_unused=True) if loss.requires_grad else ()
        results.append((outs, final, grads))
    (o1, f1, g1), (o2, f2, g2) = results
    for a, b in ((o1, o2), (f1, f2)):
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    for a, b in zip(g1, g2):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_recompute_keeps_less_for_a_per_step_input():
    graph = snnir.optimize(_tutorial_graph())
    x = (torch.rand(400, B, 20) < 0.3).float()
    saved = {recompute: _saved_bytes(compile_torch(graph, time_chunk=8, recompute=recompute), x)
             for recompute in (False, True)}
    assert saved[True] < saved[False] / 4


def test_bad_recompute_is_refused():
    with pytest.raises(snnir.SnnirError, match="recompute"):
        compile_torch(_tutorial_graph(), recompute="yes")


@pytest.mark.parametrize("optimise", [False, True], ids=["plain", "O2"])
def test_recompute_with_a_held_input(optimise):
    """A held input's hoisted work is redone in each rerun (a run's rerun must save what it saved)."""
    graph = _tutorial_graph()
    if optimise:
        graph = snnir.optimize(graph, static_inputs=["x"])
    x = torch.rand(B, 20) * 3
    results = []
    for recompute in (False, True):
        module = compile_torch(graph, dtype=torch.float64, time_chunk=8, recompute=recompute)
        out = module(x.double(), steps=37)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)).sum().backward()
        results.append((out.detach(), [p.grad for p in module.parameters()]))
    assert torch.equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("steps", "rows", "k", "o"), [(2, 128, 784, 1000), (8, 128, 1000, 10), (5, 3, 7, 4)])
def test_linear_steps_written_in_place_equal_a_stack_of_steps(bias, steps, rows, k, o):
    """Under no_grad a Linear that runs step by step writes each step's product into one tensor:
    the same bits as stacking ``F.linear`` of each step, which autograd still gets."""
    from snnir.targets.torch.modules import _steps_into

    gen = torch.Generator().manual_seed(steps * rows)
    x = (torch.rand(steps, rows, k, generator=gen) > 0.7).float() * torch.randn(steps, rows, k, generator=gen)
    w, b = torch.randn(o, k, generator=gen) * 0.1, (torch.randn(o, generator=gen) if bias else None)
    want = torch.stack([torch.nn.functional.linear(step, w, b) for step in x])
    with torch.no_grad():
        assert torch.equal(_steps_into(x, w, b), want)
    assert _steps_into(x, w.requires_grad_(), b) is None  # recorded: made by F.linear itself
