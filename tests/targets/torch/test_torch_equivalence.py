"""The compiled module equals the reference interpreter, op by op and on every fixture.

float64: spikes identical, membranes within 1e-6 relative (of the trace's scale).
float32 (vs the float64 reference): graphs without spikes within 1e-4 relative
(of the trace's scale); with spikes, at least 99% of spikes equal (a float32
membrane within rounding of its threshold may flip a spike, and the flip
then propagates), membranes not compared.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import snnir
from snnir.ir import Graph
from snnir.ir.ops.neuron import Neuron
from snnir.targets.reference import EXTENSIONS
from snnir.targets.torch import LOWERINGS, compile_torch

from torch_target_graphs import all_op_classes, graphs_for, random_input

T, B = 25, 3


def _as_torch(x, dtype):
    if isinstance(x, dict):
        return {k: torch.as_tensor(v, dtype=dtype) for k, v in x.items()}
    return torch.as_tensor(x, dtype=dtype)


def _as_dict(graph: Graph, out):
    return out if isinstance(out, dict) else {graph.outputs[0]: out}


def _spiking_keys(graph: Graph) -> set[str]:
    """Output names and trace keys whose values are spike counts."""
    return {key for key in graph.outputs} | {
        f"{path}.z" for path, op in graph.walk() if isinstance(op, Neuron) and op.spiking
    }


def assert_matches_reference(graph: Graph, x, dtype=torch.float64, fast=True, native=False) -> None:
    """``native``: the C++ kernels, which record no traces: outputs only."""
    ref = snnir.run(graph, x, record=not native)
    module = compile_torch(graph, dtype=dtype, fast=fast, native=native)
    with torch.no_grad():
        if native:
            out, traces = module(_as_torch(x, dtype)), {}
        else:
            out, traces = module(_as_torch(x, dtype), record=True)
    got = {**_as_dict(graph, out), **traces}
    spiking_graph = any(getattr(op, "spiking", False) or op.op_type == "Threshold" for _, op in graph.walk())
    assert set(got) == set(ref), (sorted(got), sorted(ref))
    for key, expected in ref.items():
        value = got[key].double().numpy()
        scale = max(1.0, float(np.abs(expected).max()))
        is_spike = np.all(np.mod(expected, 1) == 0) and key in _spiking_keys(graph)
        if dtype == torch.float64:
            if is_spike:
                np.testing.assert_array_equal(value, expected, err_msg=key)
            else:
                np.testing.assert_allclose(value, expected, rtol=1e-6, atol=1e-6 * scale, err_msg=key)
        elif is_spike:
            assert np.mean(value == expected) >= 0.99, key
        elif not spiking_graph:  # with spikes, one flipped spike resets a membrane: compare spikes only
            np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-4 * scale, err_msg=key)


def test_every_registered_op_has_a_lowering():
    from snnir.ir import Input, Output, Subgraph

    handled = set(LOWERINGS) | set(EXTENSIONS) | {Input, Output, Subgraph}
    assert [cls.op_type for cls in all_op_classes() if cls not in handled] == []


@pytest.mark.parametrize(("fast", "native"), [(True, False), (False, False), (True, True)],
                         ids=["scan", "per_step", "native"])
@pytest.mark.parametrize("op_class", all_op_classes(), ids=lambda c: c.op_type)
def test_op_matches_reference(request, op_class, fast, native):
    graphs = graphs_for(op_class)
    if not graphs:
        pytest.skip(f"no random-graph generator for {op_class.op_type}; its owner tests it")
    if native:
        request.getfixturevalue("native_kernels")
    for index, graph in enumerate(graphs):
        x = random_input(graph, T, B, seed=index)
        assert_matches_reference(graph, x, fast=fast, native=native)


def test_neuron_graphs_spike():
    """The random neuron graphs are not trivially silent (or the checks above prove little)."""
    from snnir.ir import LIF, CubaLIF

    for cls in (LIF, CubaLIF):
        for graph in graphs_for(cls):
            out = snnir.run(graph, random_input(graph, T, B))["out"]
            assert 0 < out.mean() < 2


@pytest.mark.parametrize("op_class", all_op_classes(), ids=lambda c: c.op_type)
def test_op_float32(op_class):
    graphs = graphs_for(op_class)
    if not graphs:
        pytest.skip(f"no random-graph generator for {op_class.op_type}")
    assert_matches_reference(graphs[0], random_input(graphs[0], T, B), dtype=torch.float32)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("native", [False, True], ids=["python", "native"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_fixtures(request, fixtures_dir, dtype, native):
    """Each published file, read as is and (``native``) also optimized, run on the C++ kernels."""
    if native:
        request.getfixturevalue("native_kernels")
    paths = sorted(fixtures_dir.glob("*.nir"))
    assert paths
    for path in paths:
        graph = snnir.read(path, reset="subtract" if "subtract" in path.name else None, repair=True)
        rng = np.random.default_rng(0)
        steps, batch = (6, 1) if "cnn" in path.name else (30, 2)
        shapes = snnir.verify(graph).shapes
        x = {n: (rng.random((steps, batch) + tuple(shapes.outputs[n])) < 0.3) * 1.0 for n in graph.inputs}
        x = x if len(x) > 1 else next(iter(x.values()))
        if "lif_" in path.name or "two_lif" in path.name:
            x = x * 5e3  # single neurons behind a unit weight: drive them to spike
        assert_matches_reference(graph, x, dtype=dtype, native=native)
        if native:
            assert_matches_reference(snnir.optimize(graph), x, dtype=dtype, native=native)


def test_step_mode_equals_sequence_mode():
    graph = graphs_for(snnir.ir.Subgraph)[0]
    x = _as_torch(random_input(graph, T, B), torch.float64)
    module = compile_torch(graph, dtype=torch.float64)
    with torch.no_grad():
        whole = module(x)
        state = module.initial_state(B)
        steps = []
        for t in range(T):
            out, state = module.step(x[t], state)
            steps.append(out)
    for name in graph.outputs:
        torch.testing.assert_close(torch.stack([s[name] for s in steps]), whole[name], rtol=0, atol=0)


def test_sequence_chunks_continue_from_state():
    graph = graphs_for(snnir.ir.CubaLIF)[0]
    x = _as_torch(random_input(graph, T, B), torch.float64)
    module = compile_torch(graph, dtype=torch.float64)
    with torch.no_grad():
        whole = module(x)
        first, state = module(x[:10], return_state=True)
        second = module(x[10:], state=state)
    torch.testing.assert_close(torch.cat([first, second]), whole, rtol=0, atol=0)


def test_any_batch_size_and_multi_io():
    graph = graphs_for(snnir.ir.Output)[0]
    module = compile_torch(graph)
    for batch in (1, 7):
        x = {"a": torch.randn(4, batch, 3), "b": torch.randn(4, batch, 3)}
        out = module(x)
        assert set(out) == {"y", "z"}
        torch.testing.assert_close(out["y"], x["a"] + x["b"])
        torch.testing.assert_close(out["z"], x["b"])


def test_submodules_are_named_as_nodes():
    graph = graphs_for(snnir.ir.LIF)[0]
    module = compile_torch(graph)
    assert set(dict(module.named_children())) == {"fc", "cell", "rec"}
    assert set(dict(module.named_parameters())) == set()  # trainable="metadata", none declared
    assert "fc.weight" in module.state_dict()


def test_to_graph_carries_trained_values():
    graph = graphs_for(snnir.ir.LIF)[0]
    module = compile_torch(graph, trainable="all", dtype=torch.float64)
    with torch.no_grad():
        module.fc.weight.mul_(2.0)
        module.cell.tau.add_(1e-3)
    exported = module.to_graph()
    assert np.allclose(exported.nodes["fc"].weight, 2 * graph.nodes["fc"].weight)
    assert exported.nodes["cell"].tau.dtype == graph.nodes["cell"].tau.dtype
    x = random_input(graph, T, B)
    with torch.no_grad():
        ours = module(torch.as_tensor(x)).numpy()
    np.testing.assert_array_equal(ours, snnir.run(exported, x)["out"])
    unchanged = compile_torch(graph).to_graph()
    assert unchanged == graph


def test_to_graph_carries_trained_values_of_fused_nodes():
    """A fused layer-neuron node (``snnir.optimize`` makes them) runs by its expansion: its
    trained weights go back into the op. Until 2026-12-04 ``to_graph`` gave the untrained
    ones, so a trained model written to a file lost its training without a word."""
    from snnir.ir import LIF, Input, Output
    from snnir.ir.ops.fused import FusedLayerNeuron
    from torch_target_graphs import SEMANTICS, _dense, neuron

    rng = np.random.default_rng(3)
    graph = snnir.optimize(snnir.Graph.sequential(
        ("in", Input((5,))), _dense("fc", 5, 4, rng), ("cell", neuron(LIF, 4, rng, SEMANTICS[0])), ("out", Output())))
    fused = [n for n, op in graph.nodes.items() if isinstance(op, FusedLayerNeuron)]
    assert fused
    module = compile_torch(graph, trainable="all", dtype=torch.float64)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.mul_(1.5)
    exported = module.to_graph()
    for name in fused:
        assert np.allclose(exported.nodes[name].layer.weight, 1.5 * graph.nodes[name].layer.weight)
    x = random_input(graph, T, B)
    with torch.no_grad():
        ours = module(torch.as_tensor(x)).numpy()
    np.testing.assert_array_equal(ours, snnir.run(exported, x)["out"])
    assert compile_torch(graph).to_graph() == graph


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu():
    graph = graphs_for(snnir.ir.CubaLIF)[0]
    x = torch.as_tensor(random_input(graph, T, B))
    module = compile_torch(graph, dtype=torch.float64)
    with torch.no_grad():
        cpu = module(x)
        gpu = module.to("cuda")(x.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu)


def test_two_recurrent_components_continue_from_state():
    from snnir.ir import LIF, Input, Linear, Output
    from torch_target_graphs import SEMANTICS, _dense, neuron

    rng = np.random.default_rng(5)
    nodes = dict([("in", Input((5,))), _dense("fc", 5, 4, rng), ("a", neuron(LIF, 4, rng, SEMANTICS[0])),
                  ("ra", Linear(weight=rng.normal(0, 0.5, (4, 4)))), _dense("fc2", 4, 4, rng),
                  ("b", neuron(LIF, 4, rng, SEMANTICS[1])), ("rb", Linear(weight=rng.normal(0, 0.5, (4, 4)))),
                  ("out", Output())])
    edges = (("in", "fc"), ("fc", "a"), ("a", "ra"), ("ra", "a"), ("a", "fc2"), ("fc2", "b"), ("b", "rb"),
             ("rb", "b"), ("b", "out"))
    graph = Graph(nodes, edges)
    x = random_input(graph, T, B)
    assert_matches_reference(graph, x)
    module = compile_torch(graph, dtype=torch.float64)
    x = torch.as_tensor(x)
    with torch.no_grad():
        whole = module(x)
        first, state = module(x[:7], return_state=True)
        assert {"a@prev", "b@prev"} <= set(state)
        second = module(x[7:], state=state)
    torch.testing.assert_close(torch.cat([first, second]), whole, rtol=0, atol=0)


def test_deepcopy_and_state_dict_round_trip():
    import copy

    graph = graphs_for(snnir.ir.Subgraph)[0]
    module = compile_torch(graph, trainable="all")
    twin = copy.deepcopy(module)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.01)
    assert not torch.equal(twin.fc.weight, module.fc.weight)
    twin.load_state_dict(module.state_dict())
    x = torch.as_tensor(random_input(graph, 8, 2), dtype=torch.float32)
    with torch.no_grad():
        a, b = module(x), twin(x)
    for name in graph.outputs:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    assert twin.to_graph() == module.to_graph()


_SEM_CHOICES = dict(
    discretisation=("euler", "exp"), reset=("zero", "subtract", "none"), reset_timing=("same", "next", "next_after_input"),
    threshold_compare=("gt", "ge"), spike_mode=("single", "multi"), current_order=("current_first", "voltage_first"),
)


def test_random_semantics_match_reference():
    """Every semantics option combination, sampled by hypothesis, on every spiking neuron."""
    from hypothesis import given, settings, strategies as st

    from snnir.ir import IF, LIF, CubaLIF, Semantics
    from torch_target_graphs import DT, neuron_graph

    @settings(max_examples=25, deadline=None, derandomize=True)
    @given(cls=st.sampled_from([IF, LIF, CubaLIF]), seed=st.integers(0, 1000),
           choice=st.fixed_dictionaries({k: st.sampled_from(v) for k, v in _SEM_CHOICES.items()}))
    def check(cls, seed, choice):
        if choice["spike_mode"] == "multi":
            choice = {**choice, "threshold_compare": "ge"}
        graph = neuron_graph(cls, np.random.default_rng(seed), Semantics(dt=DT, **choice), recurrent=seed % 2 == 0)
        assert_matches_reference(graph, random_input(graph, 15, 2, seed=seed))

    check()


def test_nested_port_fed_only_by_a_loop_runs_as_the_reference():
    """A nested graph whose port ``fb`` is fed only by a loop out of its own output: its
    shape comes from the port's Input declaration; torch equals the reference."""
    from snnir.ir import LIF, Affine, Input, Output, Subgraph

    def lif():
        return LIF(tau=np.array(0.01), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))

    inner = Graph(
        {"x": Input((2,)), "fb": Input((2,)), "p": Affine(weight=-np.eye(2), bias=np.zeros(2)), "lif": lif(),
         "out": Output()},
        (("x", "lif"), ("fb", "p"), ("p", "lif"), ("lif", "out")),
    )
    graph = Graph(
        {"x": Input((2,)), "sub": Subgraph(inner), "w": Affine(weight=np.ones((2, 2)), bias=np.zeros(2)),
         "y": Output()},
        (("x", "sub.x"), ("sub.out", "w"), ("w", "sub.fb"), ("sub.out", "y")),
    )
    x = np.random.default_rng(0).uniform(0, 400, (20, 3, 2))
    want = snnir.run(graph, x)["y"]
    got = compile_torch(graph, dtype=torch.float64)(torch.tensor(x)).detach().numpy()
    assert want.sum() > 0 and np.array_equal(got, want)


@pytest.mark.parametrize("discretisation", ["euler", "exp"])
@pytest.mark.parametrize(("native", "fast"), [(False, True), (True, True), (False, False)], ids=["scan", "native", "loop"])
def test_decay_rounds_as_the_reference(discretisation, native, fast):
    """``dt / tau`` is a true division, as the reference's: torch's ``dt / tensor`` multiplies by
    ``1 / tau`` (0.14285714285714288 for 1e-3 / 0.007, against 0.14285714285714285), so a
    threshold exactly at the reference's first membrane fired in float64 where the reference
    does not."""
    from snnir.ir import LIF, Input, Output, Semantics

    dt, tau = 1e-3, 0.007
    first = dt / tau if discretisation == "euler" else 1.0 - np.exp(-dt / tau)  # v after one step of x = 1
    sem = Semantics(dt=dt, discretisation=discretisation, reset="zero", threshold_compare="gt")
    lif = LIF(tau=np.array([tau]), r=np.array([1.0]), v_leak=np.array([0.0]), v_threshold=np.array([first]), sem=sem)
    graph = Graph.sequential(("in", Input((1,))), ("lif", lif), ("out", Output()))
    want = snnir.run(graph, np.ones((1, 1, 1)), record=True)
    module = compile_torch(graph, dtype=torch.float64, native=native, fast=fast)
    got, traces = module(torch.ones(1, 1, 1, dtype=torch.float64), record=True)
    assert float(want["lif.v"][0, 0, 0]) == first
    assert float(traces["lif.v"][0, 0, 0]) == first
    assert float(got[0, 0, 0]) == float(want["out"][0, 0, 0]) == 0.0


def _unfed_port_graphs() -> list[Graph]:
    """Nested graphs with an Input port no edge enters (zero, as in the reference): port b of
    a nested graph fed at a, of one no edge enters at all, and of one on a cycle."""
    from snnir.ir import LIF, Affine, Input, Output, Scale, Subgraph

    def lif():
        return LIF(tau=np.array(0.01), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))

    inner = Graph(
        {"a": Input((2,)), "b": Input((2,)), "lif": lif(), "s": Scale(np.array(3.0)), "l2": lif(),
         "o1": Output(), "o2": Output(), "o3": Output()},
        (("a", "lif"), ("b", "lif"), ("lif", "o1"), ("b", "s"), ("s", "o2"), ("s", "l2"), ("l2", "o3")),
    )
    sub = {"x": Input((2,)), "sub": Subgraph(inner), "y": Output(), "z": Output(), "v": Output()}
    read = (("sub.o2", "z"), ("sub.o3", "v"))
    return [
        Graph(sub, (("x", "sub.a"), ("sub.o1", "y")) + read),
        Graph(sub, (("x", "y"),) + read),
        Graph({**sub, "w": Affine(weight=-np.eye(2), bias=np.zeros(2))},
              (("x", "sub.a"), ("sub.o1", "w"), ("w", "sub.a"), ("sub.o1", "y")) + read),
    ]


@pytest.mark.parametrize("index", range(3))
def test_a_nested_input_port_no_edge_enters_is_zero_as_in_the_reference(index):
    graph = _unfed_port_graphs()[index]
    x = np.random.default_rng(0).uniform(0, 400, (6, 3, 2))
    assert_matches_reference(graph, x)
    assert_matches_reference(graph, x, fast=False)
    module, want = compile_torch(graph, dtype=torch.float64), snnir.run(graph, x)
    state, steps = None, []
    with torch.no_grad():
        for t in range(len(x)):
            out, state = module.step(torch.tensor(x[t]), state)
            steps.append(out)
    for name in graph.outputs:
        assert np.array_equal(torch.stack([s[name] for s in steps]).numpy(), want[name]), name


def test_a_stateful_node_named_like_the_interpreters_bookkeeping_runs_as_the_reference():
    """'__out__' is an ordinary node name for the reference and the compiled module alike."""
    from snnir.ir import IF, Input, Output, Scale, Semantics

    n = IF(r=np.ones(()), v_threshold=np.ones(()), sem=Semantics(dt=1.0, reset="subtract"))
    graph = Graph(
        {"x": Input((2,)), "__out__": n, "s": Scale(scale=np.array(0.7)), "y": Output()},
        (("x", "__out__"), ("__out__", "s"), ("s", "__out__"), ("__out__", "y")),
    )
    assert_matches_reference(graph, np.random.default_rng(0).uniform(0, 2, (6, 2, 2)))
