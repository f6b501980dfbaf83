"""Static (time-invariant) inputs: ``module(x, steps=T)`` and time-stride-0 sequences.

Every result is compared with :func:`snnir.run` on the input repeated over T
(float64: spikes identical, states within 1e-6) and with the module run on a
plain (contiguous) ``[T, B, ...]`` copy (spikes identical, states within 1e-12:
a GEMM on B rows may round unlike one on T*B rows); gradients equal the plain path's.
Hooks on the layer modules check that hoisted work runs once, on B rows.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import snnir
from snnir.errors import SnnirError
from snnir.ir import LIF, Affine, CubaLIF, Delay, Graph, Input, Linear, Output, Scale, Semantics, Threshold
from snnir.passes import hoisted_nodes
from snnir.targets.torch import compile_torch
from snnir.targets.torch.graph_module import time_chunks

from torch_target_graphs import DT, SEMANTICS, graphs_for, neuron, subgraph_graph

T, B = 20, 3


def _static(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """One ``[B, *shape]`` float64 array per Input."""
    rng = np.random.default_rng(seed)
    shapes = snnir.ir.infer_shapes(graph)
    return {name: rng.normal(0.5, 2.0, (B,) + tuple(shapes.outputs[name])) for name in graph.inputs}


def _repeat(xs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.repeat(x[None], T, axis=0) for name, x in xs.items()}


def _torch(xs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {name: torch.as_tensor(x) for name, x in xs.items()}


def _as_dict(graph: Graph, out) -> dict[str, torch.Tensor]:
    return out if isinstance(out, dict) else {graph.outputs[0]: out}


def assert_static_matches(graph: Graph, fast: bool = True, seed: int = 0) -> None:
    xs = _static(graph, seed)
    ref = snnir.run(graph, _repeat(xs), record=True)
    module = compile_torch(graph, dtype=torch.float64, fast=fast)
    with torch.no_grad():
        out, traces = module(_torch(xs), steps=T, record=True)
        plain_out, plain_traces = module(_torch(_repeat(xs)), record=True)
    got = {**_as_dict(graph, out), **traces}
    plain = {**_as_dict(graph, plain_out), **plain_traces}
    assert set(got) == set(ref) == set(plain)
    for key, expected in ref.items():
        assert got[key].shape == expected.shape, key
        if key.endswith(".z") or (key in graph.outputs and np.all(np.mod(expected, 1) == 0)):  # spikes
            np.testing.assert_array_equal(got[key].numpy(), expected, err_msg=key)
            assert torch.equal(got[key], plain[key]), key
        else:
            # a GEMM on B rows may round differently from one on T*B rows
            scale = max(1.0, float(np.abs(expected).max()))
            np.testing.assert_allclose(got[key].numpy(), expected, rtol=1e-6, atol=1e-6 * scale, err_msg=key)
            torch.testing.assert_close(got[key], plain[key], rtol=1e-12, atol=1e-12 * scale, msg=key)


def _neuron_graphs():
    return [(cls.__name__, i, g) for cls in (LIF, CubaLIF) for i, g in enumerate(graphs_for(cls))] + [
        (cls.__name__, i, g)
        for cls in (snnir.ir.I, snnir.ir.IF, snnir.ir.LI, snnir.ir.CubaLI)
        for i, g in enumerate(graphs_for(cls)[:2])
    ]


@pytest.mark.parametrize("fast", [True, False], ids=["scan", "per_step"])
@pytest.mark.parametrize("case", _neuron_graphs(), ids=lambda c: f"{c[0]}-{c[1]}")
def test_neuron_graphs_match_reference(case, fast):
    """in -> fc -> neuron (recurrent or not), every neuron type and semantics variant."""
    assert_static_matches(case[2], fast=fast)


@pytest.mark.parametrize("case", _neuron_graphs()[::3], ids=lambda c: f"{c[0]}-{c[1]}")
def test_optimised_graphs_match_reference(case):
    """-O2 fuses fc into the neuron; the fused node's layer then runs once."""
    graph = snnir.optimize(case[2], static_inputs=["in"])
    assert_static_matches(graph)


@pytest.mark.parametrize(
    "op_class",
    [Affine, Linear, Scale, snnir.ir.Flatten, Threshold, snnir.ir.Conv1d, snnir.ir.Conv2d, snnir.ir.SumPool2d,
     snnir.ir.AvgPool2d, Delay, Output, Input],
    ids=lambda c: c.op_type,
)
def test_every_stateless_op_and_delay(op_class):
    """Stateless ops run once on [B, ...] (their Outputs are static); a Delay gets the input expanded."""
    for graph in graphs_for(op_class):
        assert_static_matches(graph)


def test_nested_graph_in_a_recurrent_loop():
    for sem in SEMANTICS[:2]:
        assert_static_matches(subgraph_graph(np.random.default_rng(3), sem))


def _two_input_graph(rng) -> Graph:
    """x (dynamic) -> fc -> lif; bias_in (static) -> w -> w2 -> lif; bias_in -> d (Delay) -> out2."""
    return Graph(
        {
            "x": Input((3,)), "bias_in": Input((3,)),
            "fc": Affine(weight=rng.normal(0, 0.6, (4, 3)), bias=rng.normal(0, 0.1, 4)),
            "w": Linear(weight=rng.normal(0, 0.6, (4, 3))), "w2": Scale(scale=rng.uniform(0.5, 1.5, 4)),
            "lif": neuron(LIF, 4, rng, SEMANTICS[0]), "d": Delay(delay=np.array([1, 0, 2]) * DT, sem=Semantics(dt=DT)),
            "out": Output(), "out2": Output(), "out3": Output(),
        },
        (("x", "fc"), ("fc", "lif"), ("bias_in", "w"), ("w", "w2"), ("w2", "lif"), ("lif", "out"),
         ("bias_in", "d"), ("d", "out2"), ("w2", "out3")),
    )


def _record_rows(module: torch.nn.Module) -> list[tuple[int, ...]]:
    """Input shapes seen by ``module``'s forward, as it is called."""
    seen: list[tuple[int, ...]] = []
    module.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    return seen


@pytest.mark.parametrize("time_chunk", [0, 4], ids=["whole", "chunked"])
def test_mixed_static_and_dynamic_inputs(time_chunk):
    rng = np.random.default_rng(5)
    graph = snnir.optimize(_two_input_graph(rng), passes=["hoist_time_invariant"], static_inputs=["bias_in"])
    assert hoisted_nodes(graph) == ["w", "w2"]
    x = rng.normal(0.5, 2.0, (T, B, 3))
    bias = rng.normal(0.5, 2.0, (B, 3))
    ref = snnir.run(graph, {"x": x, "bias_in": np.repeat(bias[None], T, axis=0)}, record=True)
    module = compile_torch(graph, dtype=torch.float64, time_chunk=time_chunk)
    rows = {name: _record_rows(module.node_module(name)) for name in ("fc", "w", "w2")}
    with torch.no_grad():
        out, traces = module({"x": torch.as_tensor(x), "bias_in": torch.as_tensor(bias)}, steps=T, record=True)
    # the hoisted nodes (and only they) ran once on B rows; the others on each run of steps
    chunks = [(n, B, 3) for n in time_chunks(T, time_chunk)]
    assert rows == {"fc": chunks, "w": [(B, 3)], "w2": [(B, 4)]}
    got = {**out, **traces}
    assert set(got) == set(ref)
    for key, expected in ref.items():
        np.testing.assert_allclose(got[key].numpy(), expected, rtol=1e-9, atol=1e-9, err_msg=key)
    assert out["out3"].stride(0) == 0  # a static Output comes back as an expanded view


def test_time_stride_zero_sequence_is_static():
    graph = snnir.optimize(graphs_for(LIF)[1], static_inputs=["in"])  # fused fc + lif
    module = compile_torch(graph, dtype=torch.float64, time_chunk=0)
    rows = _record_rows(module.node_module("cell").expansion.node_module("layer"))
    image = torch.as_tensor(_static(graph)["in"])
    with torch.no_grad():
        held = module(image.expand(T, *image.shape))
        given = module(image, steps=T)
        plain = module(image.expand(T, *image.shape).contiguous())
    assert rows == [(B, 5), (B, 5), (T, B, 5)]
    assert torch.equal(held, given) and torch.equal(held, plain)


def test_a_held_input_reaches_the_neuron_scan_with_steps(monkeypatch):
    from snnir.targets.torch import scan

    calls = []
    original = scan.neuron_sequence

    def spy(op, params, x, state, *args, **kwargs):
        calls.append((tuple(x.shape), kwargs.get("steps")))
        return original(op, params, x, state, *args, **kwargs)

    monkeypatch.setattr(scan, "neuron_sequence", spy)
    module = compile_torch(graphs_for(LIF)[1], dtype=torch.float64, time_chunk=0)
    with torch.no_grad():
        module(torch.zeros(B, 5, dtype=torch.float64), steps=T)
    assert calls == [((B, 4), T)]


def test_static_output_delay_and_threshold():
    """Stateless chains to an Output and a Delay fed a static value (expanded for it)."""
    rng = np.random.default_rng(2)
    graph = Graph(
        {"in": Input((4,)), "s": Scale(scale=rng.normal(size=4)), "t": Threshold(threshold=rng.normal(size=4)),
         "d": Delay(delay=np.array([0, 1, 3, 2]) * DT, sem=Semantics(dt=DT)), "y": Output(), "z": Output()},
        (("in", "s"), ("s", "t"), ("t", "y"), ("s", "d"), ("d", "z")),
    )
    assert_static_matches(graph)


def _loss(out) -> torch.Tensor:
    weights = torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)
    return (out * weights).sum() + (out.cumsum(0) ** 2).mean()


@pytest.mark.parametrize("optimised", [False, True], ids=["plain", "O2"])
def test_gradients_equal_the_expanded_path(optimised):
    rng = np.random.default_rng(7)
    graph = Graph.sequential(
        ("in", Input((5,))),
        ("fc", Affine(weight=rng.normal(0, 0.8, (6, 5)), bias=rng.normal(0, 0.1, 6))),
        ("lif", neuron(LIF, 6, rng, SEMANTICS[0])),
        ("fc2", Affine(weight=rng.normal(0, 0.8, (3, 6)), bias=rng.normal(0, 0.1, 3))),
        ("li", neuron(CubaLIF, 3, rng, SEMANTICS[1])),
        ("out", Output()),
    )
    if optimised:
        graph = snnir.optimize(graph, static_inputs=["in"])
    image = torch.as_tensor(rng.normal(0.5, 1.0, (B, 5)))
    grads = []
    for make_input in (lambda x: (x, {"steps": T}), lambda x: (x.expand(T, *x.shape).contiguous(), {})):
        module = compile_torch(graph, dtype=torch.float64, trainable="all", surrogate="arctan")
        x = image.clone().requires_grad_(True)
        given, kwargs = make_input(x)
        loss = _loss(module(given, **kwargs))
        loss.backward()
        assert loss.item() != 0
        grads.append({"input": x.grad, **{n: p.grad for n, p in module.named_parameters()}})
    static, plain = grads
    assert set(static) == set(plain) and len(static) > 4
    for name in static:
        torch.testing.assert_close(static[name], plain[name], rtol=1e-9, atol=1e-12, msg=name)
    assert static["input"].abs().sum() > 0


def test_errors_name_the_input():
    module = compile_torch(graphs_for(LIF)[1], dtype=torch.float64)
    static = torch.zeros(B, 5, dtype=torch.float64)
    with pytest.raises(SnnirError, match=r"node 'in': .*static \[B, 5\] input: give steps=T"):
        module(static)
    with pytest.raises(SnnirError, match=r"node 'in': input has 7 time steps but steps=5"):
        module(torch.zeros(7, B, 5, dtype=torch.float64), steps=5)
    with pytest.raises(SnnirError, match=r"steps must be a positive integer, got 0"):
        module(static, steps=0)
    with pytest.raises(SnnirError, match=r"steps must be a positive integer, got True"):
        module(static, steps=True)
    with pytest.raises(SnnirError, match=r"node 'in': input must have shape \[T, B, 5\], got \[3, 4\] "
                                         r"\(or \[B, 5\] with steps=T"):
        module(torch.zeros(3, 4, dtype=torch.float64), steps=5)
    graph = _two_input_graph(np.random.default_rng(0))
    two = compile_torch(graph, dtype=torch.float64)
    with pytest.raises(SnnirError, match=r"node '(x|bias_in)': inputs disagree on the batch size B: \d vs \d"):
        two({"x": torch.zeros(T, 2, 3, dtype=torch.float64), "bias_in": torch.zeros(3, 3, dtype=torch.float64)},
            steps=T)
    with pytest.raises(SnnirError, match=r"node 'in': input must have shape \[B, 5\], got \[4, 3, 5\]"):
        module.step(torch.zeros(4, 3, 5, dtype=torch.float64))


def test_state_carries_over_between_static_chunks():
    """Two calls of T/2 steps with return_state give the T-step result."""
    module = compile_torch(graphs_for(CubaLIF)[0], dtype=torch.float64)
    image = torch.as_tensor(_static(module.graph)["in"])
    with torch.no_grad():
        whole = module(image, steps=T)
        first, state = module(image, steps=T // 2, return_state=True)
        second = module(image, state, steps=T - T // 2)
    assert torch.equal(torch.cat([first, second]), whole)


def test_snntorch_tutorial_network_static_pipeline():
    """trace -> optimize -> compile of snnTorch's tutorial net: module(x, steps=T) spikes equal snnTorch's."""
    snn = pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.lif1 = torch.nn.Linear(12, 16), snn.Leaky(beta=0.9)
            self.fc2, self.lif2 = torch.nn.Linear(16, 4), snn.Leaky(beta=0.9)

        def forward(self, x):
            mem1, mem2, spikes = self.lif1.init_leaky(), self.lif2.init_leaky(), []
            for _ in range(T):
                spk1, mem1 = self.lif1(self.fc1(x), mem1)
                spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
                spikes.append(spk2)
            return torch.stack(spikes)

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        net.fc1.weight.mul_(4.0)
        net.fc2.weight.mul_(4.0)
    image = torch.rand(B, 12)
    graph = snnir.optimize(snnir.trace(net, image), static_inputs=["input"])
    module = snnir.compile(graph, target="torch", surrogate="arctan")
    with torch.no_grad():
        want = net(image)
        got = module(image, steps=T)
    assert want.sum() > 0
    assert torch.equal(got, want)
