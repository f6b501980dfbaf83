"""Every pass and level keeps snnir.run's results on random graphs and the fixture files."""

from __future__ import annotations

import numpy as np
import pytest
from passes_support import (
    DT, assert_equivalent, random_dag, random_graph, random_input, random_neuron, verified_or_skip,
)

import snnir
from snnir.ir import IF, Delay, Graph, Input, Linear, Output, Subgraph
from snnir.ir.semantics import Semantics
from snnir.passes import PASSES
from snnir.passes.planning import execution_plan, hoisted_nodes

SEEDS = range(10)
PLAIN_PASSES = sorted(set(PASSES) - {"change_dt"})


@pytest.mark.parametrize("name", PLAIN_PASSES)
@pytest.mark.parametrize("seed", SEEDS)
def test_each_pass_keeps_results(name, seed):
    graph = random_graph(seed)
    assert_equivalent(graph, snnir.optimize(graph, passes=[name]), random_input(graph, seed))


@pytest.mark.parametrize("level", [0, 1, 2])
@pytest.mark.parametrize("seed", SEEDS)
def test_levels_keep_results(level, seed):
    graph = random_graph(seed)
    optimised = snnir.optimize(graph, level=level)
    assert_equivalent(graph, optimised, random_input(graph, seed))
    if level == 0:
        assert optimised == graph


@pytest.mark.parametrize("seed", SEEDS)
def test_o2_shrinks_the_graph(seed):
    graph = random_graph(seed)
    optimised = snnir.optimize(graph, level=2)
    assert len(optimised.nodes) < len(graph.nodes)
    assert "dead" not in optimised.nodes and "dead_neuron" not in optimised.nodes
    assert any(op.op_type == "snnir.FusedLayerNeuron" for op in optimised.nodes.values())


def nested(seed: int) -> Graph:
    """The random graph as a nested graph, itself nested once more."""
    inner = random_graph(seed)
    middle = Graph({"i": Input(inner.nodes["in"].shape), "net": Subgraph(inner), "o": Output()},
                   (("i", "net"), ("net", "o")))
    return Graph({"x": Input(inner.nodes["in"].shape), "sub": Subgraph(middle), "y": Output()},
                 (("x", "sub.i"), ("sub.o", "y")))


@pytest.mark.parametrize("seed", range(4))
def test_flatten_subgraphs_inlines_every_level(seed):
    graph = nested(seed)
    flat = snnir.optimize(graph, passes=["flatten_subgraphs"])
    assert not any(isinstance(op, Subgraph) for op in flat.nodes.values())
    assert "sub.net.neuron0" in flat.nodes
    assert_equivalent(graph, flat, random_input(graph, seed))
    assert_equivalent(graph, snnir.optimize(graph, level=2), random_input(graph, seed))


def test_flatten_keeps_ports_apart():
    inner = Graph(
        {"a": Input((2,)), "b": Input((2,)), "lin": Linear(np.array([[1.0, 2.0], [3.0, 4.0]])),
         "pa": Output(), "pl": Output()},
        (("a", "lin"), ("b", "pa"), ("lin", "pl")),
    )
    graph = Graph(
        {"x": Input((2,)), "y": Input((2,)), "s": Subgraph(inner), "ox": Output(), "oy": Output()},
        (("x", "s.a"), ("y", "s.b"), ("s.pa", "ox"), ("s.pl", "oy")),
    )
    flat = snnir.optimize(graph, passes=["flatten_subgraphs"])
    assert set(flat.edges) == {("x", "s.lin"), ("y", "ox"), ("s.lin", "oy")}
    rng = np.random.default_rng(0)
    assert_equivalent(graph, flat, {"x": rng.normal(size=(5, 2, 2)), "y": rng.normal(size=(5, 2, 2))})


def test_flatten_drops_a_port_no_edge_enters_unless_a_node_would_starve():
    """Port b is zero: its edge into lin goes (lin still sums a); a nested graph whose Output
    it alone feeds stays nested, as one that no edge enters does (was: invalid after the pass)."""
    inner = Graph(
        {"a": Input((2,)), "b": Input((2,)), "lin": Linear(np.array([[1.0, 2.0], [3.0, 4.0]])), "o": Output()},
        (("a", "lin"), ("b", "lin"), ("lin", "o")),
    )
    starving = Graph(
        {"a": Input((2,)), "b": Input((2,)), "o": Output(), "ob": Output()}, (("a", "o"), ("b", "ob")))
    graph = Graph(
        {"x": Input((2,)), "s": Subgraph(inner), "t": Subgraph(starving), "u": Subgraph(inner),
         "os": Output(), "ot": Output(), "ou": Output()},
        (("x", "s.a"), ("s", "os"), ("x", "t.a"), ("t.ob", "ot"), ("u", "ou")),
    )
    flat = snnir.optimize(graph, passes=["flatten_subgraphs"])
    assert ("x", "s.lin") in flat.edges and "s.b" not in str(flat.edges)
    assert isinstance(flat.nodes["t"], Subgraph) and isinstance(flat.nodes["u"], Subgraph)
    assert_equivalent(graph, flat, np.random.default_rng(0).normal(size=(5, 2, 2)))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("new_dt", [1e-4, 5e-3])
def test_change_dt_keeps_each_step(seed, new_dt):
    graph = random_graph(seed)
    changed = snnir.optimize(graph, passes=["change_dt"], dt=new_dt)
    assert {op.sem.dt for _, op in changed.walk() if hasattr(op, "sem")} == {new_dt}
    assert_equivalent(graph, changed, random_input(graph, seed), atol=1e-8)


def test_change_dt_rescales_delays_and_refuses_inexact_integers():
    delay = Graph.sequential(("in", Input((2,))), ("d", Delay(np.array([2e-3, 3e-3]), sem=Semantics(dt=DT))),
                             ("out", Output()))
    changed = snnir.optimize(delay, passes=["change_dt"], dt=2 * DT)
    np.testing.assert_allclose(changed.nodes["d"].delay, [4e-3, 6e-3])
    assert_equivalent(delay, changed, random_input(delay, 0))
    integer = Graph.sequential(("in", Input((1,))),
                               ("n", IF(r=np.array(3), v_threshold=np.array(1.0), sem=Semantics(dt=DT))),
                               ("out", Output()))
    with pytest.raises(snnir.SnnirError, match="node 'n'.*integer parameter r"):
        snnir.optimize(integer, passes=["change_dt"], dt=2 * DT)
    with pytest.raises(snnir.SnnirError, match="change_dt needs the new step"):
        snnir.optimize(integer, passes=["change_dt"])


def test_time_batch_plan_covers_nodes_in_a_valid_order():
    for seed in SEEDS:
        graph = snnir.optimize(random_graph(seed), level=2)
        plan = execution_plan(graph)
        names = [n for _, segment in plan for n in segment]
        assert sorted(names) == sorted(graph.nodes)
        position = {n: i for i, n in enumerate(names)}
        segment_of = {n: k for k, (_, segment) in enumerate(plan) for n in segment}
        for src, dst in graph.edges:
            same_stepwise = segment_of[src] == segment_of[dst] and plan[segment_of[src]][0] == "stepwise"
            assert same_stepwise or position[src] < position[dst], (seed, src, dst, plan)
        assert execution_plan(graph.without_nodes(["out"])) is None  # stale plans are not used
        if seed % 2:  # the recurrent layer stays stepwise
            assert any(kind == "stepwise" and "rec" in segment for kind, segment in plan)
        else:
            assert [kind for kind, _ in plan] == ["batched"]


def test_hoist_marks_only_nodes_fed_by_static_inputs():
    rng = np.random.default_rng(3)
    graph = Graph(
        {"x": Input((3,)), "bias_in": Input((3,)), "w": Linear(rng.normal(size=(3, 3))),
         "w2": Linear(rng.normal(size=(3, 3))), "lif": random_neuron(rng, 3, "LIF"), "out": Output()},
        (("bias_in", "w"), ("w", "w2"), ("w2", "lif"), ("x", "lif"), ("lif", "out")),
    )
    hoisted = snnir.optimize(graph, passes=["hoist_time_invariant"], static_inputs=["bias_in"])
    assert hoisted_nodes(hoisted) == ["w", "w2"]
    assert hoisted.metadata["snnir.static_inputs"] == ["bias_in"]
    static = rng.uniform(0, 2, size=(1, 2, 3)).repeat(20, axis=0)
    assert_equivalent(graph, hoisted, {"x": rng.uniform(0, 2, size=(20, 2, 3)), "bias_in": static})
    assert hoisted_nodes(snnir.optimize(graph, passes=["hoist_time_invariant"])) == []
    with pytest.raises(snnir.SnnirError, match="'lif' static: it is not an Input"):
        snnir.optimize(graph, passes=["hoist_time_invariant"], static_inputs=["lif"])


def _fixture_graphs(fixtures_dir):
    try:
        from snnir.ir import nir_io  # noqa: F401
    except ImportError:
        pytest.skip("snnir.ir.nir_io (NIR file reading) is not available yet")
    graphs = {}
    for path in sorted(fixtures_dir.glob("*.nir")):
        try:
            graphs[path.name] = snnir.read(path, repair=True)
        except snnir.SnnirError:
            continue  # files broken as published are the NIR-I/O tests' business
    return graphs


@pytest.mark.filterwarnings("ignore::snnir.errors.SnnirWarning")
@pytest.mark.parametrize("level", [1, 2])
def test_fixture_files_keep_results(fixtures_dir, level):
    graphs = _fixture_graphs(fixtures_dir)
    assert "braille_noDelay_bias_zero_subgraph.nir" in graphs and "cnn_sinabs.nir" in graphs
    for name, graph in graphs.items():
        optimised = snnir.optimize(graph, level=level)
        steps = 5 if "cnn" in name else 30
        x = random_input(graph, 7, steps=steps, batch=2)
        assert_equivalent(graph, optimised, x, atol=1e-9)
        if level == 2:
            assert_equivalent(graph, snnir.optimize(graph, passes=["change_dt"], dt=1e-3), x, atol=1e-9)


@pytest.mark.parametrize("seed", range(40))
def test_random_dags_keep_results_at_every_level(seed):
    graph = verified_or_skip(random_dag(seed), "this random wiring closed a loop through stateless nodes only")
    x = random_input(graph, seed, steps=15)
    for level in (1, 2):
        assert_equivalent(graph, snnir.optimize(graph, level=level), x)


@pytest.mark.parametrize("seed", range(0, 40, 4))
def test_nested_random_dags_flatten_exactly(seed):
    inner = random_dag(seed)
    try:
        snnir.verify(inner)
    except snnir.SnnirError:
        pytest.skip("this random wiring closed a loop through stateless nodes only")
    shape = inner.nodes["in"].shape
    graph = Graph({"x": Input(shape), "sub": Subgraph(inner), "y0": Output(), "y1": Output()},
                  (("x", "sub"), ("sub.out0", "y0"), ("sub.out1", "y1")))
    x = random_input(graph, seed, steps=15)
    flat = snnir.optimize(graph, passes=["flatten_subgraphs"])
    assert not any(isinstance(op, Subgraph) for op in flat.nodes.values())
    assert_equivalent(graph, flat, x)
    assert_equivalent(graph, snnir.optimize(graph, level=2), x)
