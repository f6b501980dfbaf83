"""Conv chains (``conv_chain.py``): convolutions, max pools and spatial neurons in a line run for
inference one step at a time in one native call, with the bits of the segments run one after
another (the same module with gradients on) and, in float64, the reference's spikes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import snnir
from snnir.ir import Graph, Semantics
from snnir.ir.ops import LIF, AvgPool2d, Conv2d, Input, Output, SumPool2d
from snnir.ir.ops.pool import MaxPool2d
from snnir.ir.spikes import emits_spikes
from snnir.targets.torch import compile_torch, conv_chain

from tests.targets.neuron_cases import CASES, IDS, random_op
from tests.targets.torch.chain_checks import assert_same_run, random_state

T, B = 9, 3
SNNTORCH = Semantics(dt=1e-3, reset="subtract", reset_timing="next")
#: the single-spike cases of neuron_cases (the others make no chain)
SPIKING = [(case, name) for case, name in zip(CASES, IDS)
           if emits_spikes(random_op(case[0], case[1], np.random.default_rng(0), case[3]))]


def lif(sem: Semantics = SNNTORCH, threshold: float = 0.5) -> LIF:
    return LIF(tau=1e-2, r=10.0, v_leak=0.0, v_threshold=threshold, sem=sem)


def conv_net(first, second, seed: int = 0, pool=MaxPool2d(kernel_size=2, stride=2), second_pool=None,
             conv_args=None, between=None) -> Graph:
    """in [2, 10, 10] -> conv 3x3 (pad 1) -> pool -> first [3, 5, 5] -> (pool ``between``) -> conv ->
    (pool) -> second -> out: every neuron shape ends in neuron_cases.N = 5 (per-neuron parameters)."""
    rng = np.random.default_rng(seed)
    nodes: list = [("in", Input((2, 10, 10))),
                   ("conv1", Conv2d(weight=rng.normal(0.2, 0.6, (3, 2, 3, 3)), bias=rng.normal(0, 0.1, 3), padding=1))]
    if pool is not None:
        nodes.append(("pool1", pool))
    nodes.append(("lif1", first))
    if between is not None:
        nodes.append(("between", between))
    kw = conv_args or {"weight": rng.normal(0.2, 0.5, (4, 3, 3, 3)), "bias": rng.normal(0, 0.1, 4), "padding": 1}
    nodes.append(("conv2", Conv2d(**kw)))
    if second_pool is not None:
        nodes.append(("pool2", second_pool))
    nodes += [("lif2", second), ("out", Output())]
    return Graph.sequential(*nodes)


def _input(shape, dtype, seed: int, static: bool, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lead = (B,) if static else (T, B)
    return ((torch.randn(lead + tuple(shape), generator=g, dtype=torch.float64) * scale + 0.3)).to(dtype)


@pytest.fixture(autouse=True)
def chain_calls(monkeypatch) -> list:
    """What each ``ConvChain._native`` call returned (None: it could not run)."""
    calls: list = []
    real = conv_chain.ConvChain._native
    monkeypatch.setattr(conv_chain.ConvChain, "_native", lambda *a: calls.append(real(*a)) or calls[-1])
    return calls


def _runs(module, x, static: bool, state=None, calls=None):
    """(plan, chained: under no_grad, unchained: the same module with gradients on), each (output,
    final state); with ``calls`` (:func:`chain_calls`), the chain ran natively at every call."""
    kw = {"steps": T} if static else {}
    with torch.no_grad():
        chained = module(x, state, return_state=True, **kw)
        plan = str(module.plan)
    if calls is not None:
        assert calls and all(found is not None for found in calls)
    unchained = module(x, state, return_state=True, **kw)
    return plan, chained, unchained


CHAIN = "step chain: convolutions, pools and neurons"


@pytest.mark.parametrize(("case", "name"), SPIKING, ids=[n for _, n in SPIKING])
def test_every_spiking_neuron_case(native_kernels, chain_calls, case, name):
    """Every single-spike neuron op and semantics option (float64; float32 too for every third
    case), static and per-step input rotated, from a random state: the segments' bits, and in
    float64 from rest the reference's spikes."""
    cls, sem, _, per_neuron, static, _ = case
    index = CASES.index(case)
    rng = np.random.default_rng(index)
    graph = conv_net(random_op(cls, sem, rng, per_neuron), random_op(cls, sem, rng, per_neuron), seed=index)
    graph = snnir.optimize(graph, static_inputs=["in"] if static else ())
    scale = 3.0 if sem.spike_mode == "multi" else 1.5
    for dtype in (torch.float64, torch.float32) if index % 3 == 0 else (torch.float64,):
        module = compile_torch(graph, dtype=dtype, native=True)
        x = _input((2, 10, 10), dtype, index, static, scale)
        plan, chained, unchained = _runs(module, x, static, random_state(module, B, dtype, index), chain_calls)
        assert CHAIN in plan
        assert_same_run(chained, unchained)
        if dtype == torch.float64:
            with torch.no_grad():
                out = module(x, steps=T) if static else module(x)
            want = snnir.run(graph, (x.expand((T,) + tuple(x.shape)) if static else x).numpy())["out"]
            np.testing.assert_array_equal(out.numpy(), want)


@pytest.mark.parametrize("static", [False, True], ids=["per-step", "held"])
@pytest.mark.parametrize("budget", ["auto", None, 1], ids=["auto", "whole", "tiny"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_a_chain_gives_the_segments_bits(native_kernels, chain_calls, static, budget, dtype):
    """Runs of every length the budgets give, both dtypes (a per-channel bias inside the float32
    convolution, after it in float64), a held image (its first convolution and pool run once)."""
    graph = snnir.optimize(conv_net(lif(), lif()), static_inputs=["in"] if static else ())
    module = compile_torch(graph, dtype=dtype, memory_budget=budget, native=True)
    x = _input((2, 10, 10), dtype, 1, static, 2.0)
    plan, chained, unchained = _runs(module, x, static, calls=chain_calls)
    assert CHAIN in plan
    assert_same_run(chained, unchained)
    assert chained[0].sum() > 0


GEOMETRIES = ["strided", "dilated-grouped", "second-pool", "no-pool", "no-pool-held", "scalar-bias", "mean-pools",
              "sum-pool", "sum-pool-before-conv", "max-pool-before-conv"]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_convolution_and_pool_geometries(native_kernels, chain_calls, geometry):
    """Strides, padding, dilation, groups, a scalar bias; max, mean and sum pools of every stage,
    before a convolution too (as Sinabs puts them: after the neuron); fused convolution-neuron
    nodes (no pool), also on a held image."""
    rng = np.random.default_rng(3)
    pool, second_pool, kw, between = MaxPool2d(kernel_size=2, stride=2), None, None, None
    if geometry == "strided":  # [3, 10, 10] -> stride 2, pad 1 -> [4, 5, 5] (no first pool)
        pool, kw = None, {"weight": rng.normal(0.2, 0.5, (4, 3, 3, 3)), "bias": rng.normal(0, 0.1, 4), "padding": 1,
                          "stride": 2}
    elif geometry == "dilated-grouped":  # [3, 5, 5] -> groups 3, dilation 2, pad 2 -> [6, 5, 5]
        kw = {"weight": rng.normal(0.2, 0.5, (6, 1, 3, 3)), "bias": rng.normal(0, 0.1, 6), "padding": 2,
              "dilation": 2, "groups": 3}
    elif geometry == "second-pool":  # [3, 5, 5] -> pad 3 -> [4, 9, 9] -> pool 3, stride 2, ceil, pad 1 -> [4, 5, 5]
        kw = {"weight": rng.normal(0.2, 0.5, (4, 3, 3, 3)), "bias": rng.normal(0, 0.1, 4), "padding": 3}
        second_pool = MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    elif geometry.startswith("no-pool"):
        pool = None
        kw = {"weight": rng.normal(0.2, 0.5, (4, 3, 3, 3)), "bias": rng.normal(0, 0.1, 4), "padding": 0,
              "stride": 2}
    elif geometry == "mean-pools":  # [3, 10, 10] -> mean 2x2 -> [3, 5, 5]; -> pad 2 -> [4, 7, 7] -> mean 3, stride 2, pad 1 -> [4, 4, 4]
        pool, second_pool = AvgPool2d(kernel_size=2), AvgPool2d(kernel_size=3, stride=2, padding=1)
        kw = {"weight": rng.normal(0.2, 0.5, (4, 3, 3, 3)), "bias": rng.normal(0, 0.1, 4), "padding": 2}
    elif geometry.endswith("before-conv"):  # [3, 10, 10] -> lif1 -> pool 2 -> [3, 5, 5] -> conv pad 1 -> [4, 5, 5]
        pool = None
        between = (SumPool2d(kernel_size=2) if geometry.startswith("sum")
                   else MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=True))
        kw = {"weight": rng.normal(0.1, 0.3, (4, 3, 3, 3)), "bias": rng.normal(0, 0.1, 4), "padding": 1}
    elif geometry == "sum-pool":
        pool = SumPool2d(kernel_size=2)
        kw = {"weight": rng.normal(0.1, 0.2, (4, 3, 3, 3)), "bias": rng.normal(0, 0.1, 4), "padding": 1}
    else:
        kw = {"weight": rng.normal(0.2, 0.5, (4, 3, 3, 3)), "bias": np.array(0.05), "padding": 1}
    # no pool: conv1 keeps [3, 10, 10]; conv2 stride 2, no padding: [4, 4, 4]
    graph = conv_net(lif(), lif(), pool=pool, second_pool=second_pool, conv_args=kw, between=between)
    static = geometry.endswith("held")
    for dtype in (torch.float32, torch.float64):
        module = compile_torch(snnir.optimize(graph, static_inputs=["in"] if static else ()), dtype=dtype, native=True)
        x = _input((2, 10, 10), dtype, 2, static, 2.0)
        plan, chained, unchained = _runs(module, x, static, calls=chain_calls)
        assert CHAIN in plan
        assert_same_run(chained, unchained)
        assert chained[0].sum() > 0
        if dtype == torch.float64:
            want = snnir.run(graph, (x.expand((T,) + tuple(x.shape)) if static else x).numpy())["out"]
            np.testing.assert_array_equal(chained[0].numpy(), want)


@pytest.mark.parametrize("budget", ["auto", 1], ids=["one run", "runs of one step"])
def test_a_chain_state_carries_over_calls(native_kernels, budget):
    """Two calls, the second from the first's final state, equal one call over both; the state
    the caller passes is left as it was."""
    module = compile_torch(snnir.optimize(conv_net(lif(), lif())), native=True, memory_budget=budget)
    x = torch.rand(2 * T, B, 2, 10, 10) * 2
    with torch.no_grad():
        whole, _ = module(x, return_state=True)
        first, state = module(x[:T], return_state=True)
        kept = {key: value.clone() for key, value in state.items()}
        second, _ = module(x[T:], state, return_state=True)
    assert CHAIN in str(module.plan)
    assert torch.equal(torch.cat([first, second]), whole)
    assert all(torch.equal(state[key], kept[key]) for key in kept)


def test_no_chain_where_it_cannot_run(native_kernels, chain_calls):
    """A branch (a convolution's output also a graph output) or a single stage makes no chain; a
    hook added after planning: the segments run as usual, with the same results."""
    rng = np.random.default_rng(0)
    graph = conv_net(lif(), lif())
    branched = graph.with_nodes(tap=Output()).replace(edges=graph.edges + (("conv2", "tap"),))
    single = Graph.sequential(("in", Input((2, 10, 10))),
                              ("conv1", Conv2d(weight=rng.normal(0.2, 0.6, (3, 2, 3, 3)), bias=np.zeros(3))),
                              ("lif1", lif()), ("out", Output()))
    for candidate in (branched, single):
        module = compile_torch(candidate, native=True)
        assert not any(isinstance(c, conv_chain.ConvChain) for c in module._chains.values())
    module = compile_torch(snnir.optimize(conv_net(lif(), lif())), native=True)
    x = _input((2, 10, 10), torch.float32, 4, False, 2.0)
    with torch.no_grad():
        want = module(x)
    chain_calls.clear()
    hooked = []
    handle = module.conv1.register_forward_hook(lambda *args: hooked.append(1))
    with torch.no_grad():
        out = module(x)  # planned with the chain: it finds the hook at the call
    handle.remove()
    assert torch.equal(out, want)
    assert chain_calls == [None] and hooked


def test_the_kernel_refuses_bad_arguments(native_kernels):
    """Shapes that do not fit are refused by the C++ entry (no read out of bounds)."""
    chain = native_kernels.extension("pool_scan").chain_forward
    x = torch.zeros(2, 1, 3, 4, 4)
    empty = torch.zeros(0)
    coeffs = [torch.ones(1), empty, torch.ones(1), torch.ones(1), empty, empty, empty]
    flags = [1, 0, 1, 0, 0, 0, 1, 2, 0, 0]
    good = dict(weights=[empty], biases=[empty], conv=[1, 1, 0, 0, 1, 1, 1], inside=[0], pools=[0] * 20,
                windows=[1, 1, 1, 1, 0, 0, 1, 1], pooled=[3, 4, 4], states=[torch.zeros(48), empty, torch.zeros(48)],
                coeffs=coeffs, flags=flags, slopes=[25.0])

    def call(**changed):
        a = {**good, **changed}
        return chain(x, False, 2, a["weights"], a["biases"], a["conv"], a["inside"], a["pools"], a["windows"],
                     a["pooled"], a["states"], a["coeffs"], a["flags"], a["slopes"])

    assert call()[0].shape == (2, 48)
    for changed in ({"states": [torch.zeros(47), empty, torch.zeros(48)]},
                    {"states": [torch.zeros(48), empty, torch.zeros(5)]},
                    {"pooled": [2, 4, 4]}, {"windows": [1, 1]}, {"slopes": []}, {"pools": [0]},
                    {"pools": [4] + [1] * 9 + [0] * 10},
                    {"coeffs": coeffs[:6] + [torch.ones(5)]}):
        with pytest.raises(RuntimeError):
            call(**changed)


@pytest.mark.filterwarnings("ignore:reading .*cnn_sinabs.nir. default applied")  # the file predates NIR 1.0
def test_sinabs_cnn_of_the_nir_paper(native_kernels, chain_calls, fixtures_dir):
    """The NIR paper's ``cnn_sinabs.nir`` (fused convolution-IF nodes, a sum pool after a neuron
    and before a convolution): its first three stages make one chain, whose outputs and final
    states are the segments' bits, and in float64 the reference's."""
    graph = snnir.optimize(snnir.read(fixtures_dir / "cnn_sinabs.nir"))
    module = compile_torch(graph, dtype=torch.float64, native=True)
    chains = [c for c in module._chains.values() if isinstance(c, conv_chain.ConvChain)]
    assert [c.nodes for c in chains] == [("1", "3", "4", "6")]
    x = torch.rand((T, B) + tuple(graph.nodes["input"].shape), generator=torch.Generator().manual_seed(0),
                   dtype=torch.float64) * 3
    plan, chained, unchained = _runs(module, x, False, calls=chain_calls)
    assert_same_run(chained, unchained)
    assert any(v.abs().sum() > 0 for v in chained[1].values())
    np.testing.assert_array_equal(chained[0].numpy(), snnir.run(graph, x.numpy())["output"])
