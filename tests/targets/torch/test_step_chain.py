"""Step chains (``step_chain.py``): layers and neurons in a line run for inference one step at a
time in one native call, with the bits of the segments run one after another."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import snnir
from snnir.ir import LIF, Affine, Graph, Input, Linear, Output, Semantics
from snnir.targets.torch import compile_torch

from tests.targets.torch.chain_checks import assert_same_run

T, B = 13, 4
SNNTORCH = Semantics(dt=1e-3, reset="subtract", reset_timing="next")  # snnTorch's Leaky, as traced
SEMANTICS = {
    "next-subtract": SNNTORCH,
    "same-subtract": Semantics(dt=1e-3, reset="subtract", reset_timing="same", threshold_compare="ge"),
    "none": Semantics(dt=1e-3, reset="none", reset_timing="next"),
}


def lif(n: int, sem: Semantics = SNNTORCH, threshold=0.5) -> LIF:
    return LIF(tau=np.full(n, 1e-2), r=np.full(n, 10.0), v_leak=np.zeros(n), v_threshold=np.full(n, threshold),
               sem=sem)


def mlp(sizes=(6, 9, 7, 3), sem: Semantics = SNNTORCH, seed: int = 0, bias: bool = True, readout: bool = False,
        threshold=0.5) -> Graph:
    """in -> (Affine -> LIF) per layer (-> a readout Affine) -> out, every neuron alike."""
    rng = np.random.default_rng(seed)
    nodes: list = [("in", Input((sizes[0],)))]
    for k, (a, b) in enumerate(zip(sizes, sizes[1:])):
        weight = rng.normal(0.3, 1.5 / np.sqrt(a), (b, a))
        layer = Affine(weight=weight, bias=rng.normal(0, 0.1, b)) if bias else Linear(weight=weight)
        nodes += [(f"fc{k}", layer), (f"lif{k}", lif(b, sem, threshold))]
    if readout:
        nodes.append(("readout", Affine(weight=rng.normal(0, 0.5, (2, sizes[-1])), bias=np.zeros(2))))
    return Graph.sequential(*nodes, ("out", Output()))


def _runs(module, x, **kw):
    """(chained: under no_grad, unchained: the same module with gradients on), each (output, final state)."""
    with torch.no_grad():
        chained = module(x, return_state=True, **kw)
        plan = str(module.plan)
    unchained = module(x, return_state=True, **kw)
    return plan, chained, unchained


@pytest.mark.parametrize("sem", SEMANTICS, ids=str)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "nodes"])
@pytest.mark.parametrize("budget", ["auto", None, 1], ids=["auto", "whole", "tiny"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_a_chain_gives_the_segments_bits(native_kernels, sem, fused, budget, dtype):
    """Fused layer-neuron nodes or layers and neurons of their own, under every budget (a first
    layer over whole runs, blocks, single steps), both dtypes: outputs and final states equal the
    segments' bit for bit, and the spikes the reference's."""
    graph = mlp(sem=SEMANTICS[sem])
    graph = snnir.optimize(graph) if fused else graph
    module = compile_torch(graph, dtype=dtype, memory_budget=budget, native=True)
    x = torch.rand(T, B, 6, dtype=dtype) * 2
    plan, chained, unchained = _runs(module, x)
    assert "step chain" in plan
    assert_same_run(chained, unchained)
    assert chained[0].sum() > 0
    if dtype == torch.float64:
        np.testing.assert_array_equal(chained[0].numpy(), snnir.run(graph, x.numpy())["out"])


def test_a_chain_ends_with_the_layer_its_last_neuron_hands_on(native_kernels):
    """A readout layer after the last neuron (no neuron of its own) is applied in the chain."""
    graph = snnir.optimize(mlp(readout=True))
    module = compile_torch(graph, native=True)
    x = torch.rand(T, B, 6) * 2
    plan, chained, unchained = _runs(module, x)
    assert "step chain" in plan
    assert_same_run(chained, unchained)


def test_a_chain_over_a_held_input_and_without_biases(native_kernels):
    """A static input: the first layer runs once; a Linear layer has no bias."""
    graph = snnir.optimize(mlp(bias=False), static_inputs=["in"])
    module = compile_torch(graph, native=True)
    x = torch.rand(B, 6) * 2
    plan, chained, unchained = _runs(module, x, steps=T)
    assert "step chain, its first layer once, on the held input" in plan
    assert_same_run(chained, unchained)


@pytest.mark.parametrize("budget", ["auto", 1], ids=["one run", "runs of one step"])
def test_a_chain_state_carries_over_calls(native_kernels, budget):
    """Two calls, the second from the first's final state, equal one call over both; the state a
    caller passes is left as it was (the chain overwrites only the states the call made)."""
    module = compile_torch(snnir.optimize(mlp()), native=True, memory_budget=budget)
    x = torch.rand(2 * T, B, 6) * 2
    with torch.no_grad():
        whole, _ = module(x, return_state=True)
        first, state = module(x[:T], return_state=True)
        kept = {key: value.clone() for key, value in state.items()}
        second, final = module(x[T:], state, return_state=True)
    assert "step chain" in str(module.plan)
    assert torch.equal(torch.cat([first, second]), whole)
    assert all(torch.equal(state[key], kept[key]) for key in kept)
    assert all(final[key] is not state[key] for key in state)


def test_a_sparse_spike_input_is_summed_at_its_spikes_in_the_chain(native_kernels, kernels_used):
    """Rate-coded 0/1 input to a wide first layer: the chain's first layer sums at the spikes
    (from the second call, as the layer itself would), with the GEMM's bits."""
    graph = snnir.optimize(mlp(sizes=(300, 160, 3)))
    module = compile_torch(graph, native=True)
    x = (torch.rand(T, B, 300) < 0.05).float()
    with torch.no_grad():
        module(x)
        rows = module._chains[0].layers[0].spike_rows(x)
    assert rows is not None
    plan, chained, unchained = _runs(module, x)
    assert "step chain" in plan
    assert_same_run(chained, unchained)


def test_where_a_chain_cannot_run_its_segments_do(native_kernels):
    """Per-neuron thresholds (no single value for the kernel), traces, a forward hook, a zero
    reset: no chain in the plan, the same results."""
    x = torch.rand(T, B, 6) * 2
    uneven = mlp()
    uneven = uneven.replace(nodes={**uneven.nodes, "lif0": lif(9, threshold=np.linspace(0.4, 0.6, 9))})
    zero = mlp(sem=Semantics(dt=1e-3, reset="zero", reset_timing="same"))
    for graph in (uneven, zero):
        plan, chained, unchained = _runs(compile_torch(snnir.optimize(graph), native=True), x)
        assert "step chain" not in plan
        assert_same_run(chained, unchained)
    module = compile_torch(mlp(), native=True)
    with torch.no_grad():
        out, traces = module(x, record=True)
        assert "step chain" not in str(module.plan)
        seen = []
        module.node_module("fc1").register_forward_hook(lambda *a: seen.append(1))
        hooked = module(x)
    assert seen and torch.equal(hooked, out)
    assert torch.equal(out, _runs(compile_torch(mlp(), native=True), x)[1][0])


def test_a_layer_a_neuron_outside_applies_starts_no_chain(native_kernels):
    """in -> LIF -> Affine -> LIF: the first neuron applies the layer in its own scan, so the
    layer's part may not start a chain (it would apply the layer twice)."""
    rng = np.random.default_rng(1)
    graph = Graph.sequential(("in", Input((5,))), ("lif0", lif(5)),
                             ("fc", Affine(weight=rng.normal(0, 1.0, (4, 5)), bias=np.zeros(4))),
                             ("lif1", lif(4)), ("out", Output()))
    module = compile_torch(graph, native=True)
    assert module._chains == {}
    x = torch.rand(T, B, 5) * 2
    _, chained, unchained = _runs(module, x)
    assert_same_run(chained, unchained)
    np.testing.assert_array_equal(chained[0].double().numpy(), snnir.run(graph, x.double().numpy())["out"])


def test_a_branch_ends_a_chain(native_kernels):
    """A neuron whose spikes two nodes read is the end of its line."""
    rng = np.random.default_rng(2)
    nodes = {"in": Input((6,)), "fc0": Affine(weight=rng.normal(0, 1, (5, 6)), bias=np.zeros(5)), "lif0": lif(5),
             "fc1": Affine(weight=rng.normal(0, 1, (3, 5)), bias=np.zeros(3)), "lif1": lif(3),
             "a": Output(), "b": Output()}
    edges = (("in", "fc0"), ("fc0", "lif0"), ("lif0", "fc1"), ("fc1", "lif1"), ("lif1", "a"), ("lif0", "b"))
    module = compile_torch(Graph(nodes, edges), native=True)
    assert [c.nodes for c in module._chains.values()] == [("fc0", "lif0"), ("fc1", "lif1")]
    x = torch.rand(T, B, 6) * 2
    with torch.no_grad():
        chained = module(x)
    unchained = module(x)
    for name in ("a", "b"):
        assert torch.equal(chained[name], unchained[name].detach())


def test_the_native_call_refuses_parts_that_disagree(native_kernels):
    """A state or layer of the wrong shape is an error from the kernel, never a read out of bounds."""
    chain_forward = native_kernels.extension("neuron_linear").chain_forward
    x, e = torch.rand(3, 2, 4), torch.empty(0)
    good = dict(v=[torch.zeros(2, 4)], z=[torch.zeros(2, 4)])
    with pytest.raises(RuntimeError, match="disagree"):
        chain_forward(x, False, 3, e, e, e, 1, good["v"], [e], [1, 1, 0, 0.9, 1, 1], [], [], False)  # no z for a delayed reset
    with pytest.raises(RuntimeError, match="disagree"):
        chain_forward(x, False, 3, e, e, e, 1, [torch.zeros(2, 5)], good["z"], [0, 1, 0, 0.9, 1, 1], [], [], False)
    with pytest.raises(RuntimeError, match="disagree"):
        chain_forward(x, False, 3, torch.zeros(4, 3), e, e, 1, good["v"], good["z"], [0, 1, 0, 0.9, 1, 1], [], [], False)


def test_a_chain_that_stops_applying_after_its_plan_runs_its_segments(native_kernels):
    """A neuron's threshold made uneven after the plan chose the chain: the call runs the
    segments instead, with their results."""
    module = compile_torch(snnir.optimize(mlp()), native=True)
    x = torch.rand(T, B, 6) * 2
    with torch.no_grad():
        module(x)
        assert "step chain" in str(module.plan)
        module._chains[0].neurons[1].v_threshold.copy_(torch.linspace(0.4, 0.6, 7))
    plan, chained, unchained = _runs(module, x)
    assert "step chain" in plan
    assert_same_run(chained, unchained)


def test_a_chain_runs_under_inference_mode_and_step_by_step(native_kernels):
    """``torch.inference_mode`` and ``module.step`` (one step a call) take the chain too, with the
    same results as one call over all steps."""
    module = compile_torch(snnir.optimize(mlp()), native=True)
    x = torch.rand(T, B, 6) * 2
    with torch.no_grad():
        want = module(x)
    with torch.inference_mode():
        assert torch.equal(module(x), want)
        assert "step chain" in str(module.plan)
        state, outs = None, []
        for step in x:
            out, state = module.step(step, state)
            outs.append(out)
        assert "step chain" in str(module.plan)
    assert torch.equal(torch.stack(outs), want)
