"""Graphs: immutability, building new graphs, nested graphs with ports, recurrent schedules."""

from __future__ import annotations

import numpy as np
import pytest

from snnir.errors import SnnirError
from snnir.ir import LIF, Affine, Graph, Input, Output, Scale, Semantics, Subgraph, infer_shapes, schedule, verify

ONE = np.ones(())
ZERO = np.zeros(())


def lif(n=None):
    tau = np.full(n, 0.01) if n else np.array(0.01)
    return LIF(tau=tau, r=ONE, v_leak=ZERO, v_threshold=ONE)


def chain() -> Graph:
    return Graph.sequential(
        ("x", Input((2,))), ("fc", Affine(weight=np.ones((3, 2)), bias=np.zeros(3))), ("lif", lif()), ("y", Output()),
        metadata={"source": "test"},
    )


def test_sequential_builds_a_chain():
    graph = chain()
    assert graph.edges == (("x", "fc"), ("fc", "lif"), ("lif", "y"))
    assert graph.inputs == ("x",) and graph.outputs == ("y",)
    assert graph.in_edges("lif") == [("fc", "lif")] and graph.out_edges("lif") == [("lif", "y")]


def test_graph_is_immutable():
    graph = chain()
    with pytest.raises(TypeError):
        graph.nodes["z"] = Output()  # type: ignore[index]
    with pytest.raises(TypeError):
        graph.metadata["k"] = 1  # type: ignore[index]
    with pytest.raises(AttributeError):
        graph.edges = ()  # type: ignore[misc]
    assert isinstance(graph.edges, tuple)
    with pytest.raises(ValueError):
        graph.nodes["fc"].weight[0, 0] = 5


def test_graph_does_not_alias_callers_dict():
    nodes = {"x": Input((1,)), "y": Output()}
    graph = Graph(nodes, [["x", "y"]])
    nodes["z"] = Output()
    assert set(graph.nodes) == {"x", "y"} and graph.edges == (("x", "y"),)


def test_replace_with_and_without_nodes_return_new_graphs():
    graph = chain()
    bigger = graph.with_nodes(s=Scale(scale=2 * ONE))
    assert "s" in bigger.nodes and "s" not in graph.nodes
    smaller = graph.without_nodes(["lif"])
    assert smaller.edges == (("x", "fc"),) and graph.edges == (("x", "fc"), ("fc", "lif"), ("lif", "y"))
    renamed = graph.replace(metadata={"source": "other"})
    assert renamed.metadata["source"] == "other" and graph.metadata["source"] == "test"
    assert renamed.nodes == graph.nodes
    assert graph.replace() == graph and graph.replace() is not graph


def test_with_nodes_takes_any_name_in_a_mapping():
    graph = chain()
    bigger = graph.with_nodes({"self": Scale(scale=ONE), "ops": Scale(scale=ONE)}, s=Scale(scale=2 * ONE))
    assert {"self", "ops", "s"} <= set(bigger.nodes) and "self" not in graph.nodes


def test_equality_ignores_edge_order_but_not_content():
    a = chain()
    b = a.replace(edges=tuple(reversed(a.edges)))
    assert a == b
    assert a != a.with_nodes(lif=lif(3))
    assert a != a.replace(metadata={})


@pytest.mark.parametrize(
    "nodes, edges, fragment",
    [
        ({"": Output()}, (), "non-empty strings"),
        ({"a": "not an op"}, (), "is not an op"),
        ({"a": Output()}, (("a",),), "pair of node names"),
        ({"a": Output()}, (("a", 3),), "pair of node names"),
        ({"a": Output()}, (5,), "pair of node names"),
    ],
)
def test_constructor_rejects_non_graphs(nodes, edges, fragment):
    with pytest.raises(SnnirError, match=fragment):
        Graph(nodes, edges)


@pytest.mark.parametrize(
    "nodes, edges, metadata, fragment",
    [
        ([1, 2], (), {}, "nodes must be a mapping"),
        ({}, 5, {}, "edges must be a sequence"),
        ({}, "ab", {}, "edges must be a sequence"),
        ({}, (), 5, "metadata must be a mapping"),
    ],
)
def test_constructor_rejects_wrong_containers(nodes, edges, metadata, fragment):
    with pytest.raises(SnnirError, match=fragment):
        Graph(nodes, edges, metadata)


def nested() -> Graph:
    """Outer graph feeding one nested graph with two input and two output ports."""
    inner = Graph(
        {"a": Input((3,)), "b": Input((3,)), "lif": lif(3), "sa": Output(), "sb": Output()},
        (("a", "lif"), ("b", "lif"), ("lif", "sa"), ("b", "sb")),
    )
    outer = Graph(
        {"x": Input((3,)), "sub": Subgraph(inner), "y": Output(), "z": Output()},
        (("x", "sub.a"), ("x", "sub.b"), ("sub.sa", "y"), ("sub.sb", "z")),
    )
    return outer


def test_nested_ports_resolve_and_shapes_are_keyed_by_path():
    graph = nested()
    assert graph.resolve("sub.a", as_source=False) == ("sub", "a")
    assert graph.resolve("sub.sb", as_source=True) == ("sub", "sb")
    shapes = infer_shapes(graph)
    assert shapes.out("sub.lif") == (3,) and shapes.out("sub.sa") == (3,)
    assert shapes.inputs["y"] == (3,)
    assert [path for path, _ in graph.walk()] == ["x", "sub", "sub.a", "sub.b", "sub.lif", "sub.sa", "sub.sb", "y", "z"]
    assert graph.nodes["sub"].stateful


@pytest.mark.parametrize(
    "endpoint, as_source, fragment",
    [
        ("sub", False, "must name one of the nested graph's Input nodes"),
        ("sub.zz", True, "has no port 'zz'"),
        ("sub.a", True, "has no port 'a'"),
        ("nothing", True, "names no node"),
        ("x.port", True, "not a graph"),
    ],
)
def test_bad_endpoints(endpoint, as_source, fragment):
    with pytest.raises(SnnirError, match=fragment):
        nested().resolve(endpoint, as_source)


def test_dotted_node_names_are_matched_first():
    graph = Graph({"a.b": Input((1,)), "y": Output()}, (("a.b", "y"),))
    assert graph.resolve("a.b", as_source=True) == ("a.b", None)
    assert infer_shapes(graph).out("y") == (1,)


def layer_and_dotted_sub() -> Graph:
    """Nodes 'layer' and 'layer.sub' (a nested graph): 'layer.sub.a' is port 'a' of 'layer.sub'."""
    inner = Graph({"a": Input((2,)), "s": Scale(np.array(2.0)), "y": Output()}, (("a", "s"), ("s", "y")))
    return Graph(
        {"x": Input((2,)), "layer": Scale(np.array(1.0)), "layer.sub": Subgraph(inner), "y": Output(), "z": Output()},
        (("x", "layer"), ("layer", "z"), ("x", "layer.sub.a"), ("layer.sub.y", "y")),
    )


def test_the_longest_dotted_node_name_is_matched_first():
    graph = layer_and_dotted_sub()
    assert graph.resolve("layer.sub.a", as_source=False) == ("layer.sub", "a")
    assert graph.resolve("layer.sub.y", as_source=True) == ("layer.sub", "y")
    assert graph.resolve("layer", as_source=True) == ("layer", None)
    verify(graph)
    assert graph.without_nodes(["layer"]).edges == (("x", "layer.sub.a"), ("layer.sub.y", "y"))
    with pytest.raises(SnnirError, match="names no node"):
        graph.resolve("layer.sub.", as_source=False)


def test_without_nodes_drops_port_edges_of_a_nested_node():
    graph = nested().without_nodes(["sub"])
    assert graph.edges == ()


def recurrent() -> Graph:
    """x -> lif -> y, with lif -> w -> lif closing a loop through the stateful lif."""
    return Graph(
        {"x": Input((2,)), "lif": lif(), "w": Affine(weight=np.eye(2), bias=np.zeros(2)), "y": Output()},
        (("x", "lif"), ("lif", "w"), ("w", "lif"), ("lif", "y")),
    )


def test_recurrent_edge_from_stateful_node_is_delayed():
    sched = schedule(recurrent())
    assert sched.delayed == frozenset({("lif", "w")})
    assert sched.order.index("w") < sched.order.index("lif")  # w reads last step's lif
    assert set(sched.order) == {"x", "lif", "w", "y"}


def test_self_loop_on_a_stateful_node_is_delayed():
    graph = Graph({"x": Input((2,)), "lif": lif(), "y": Output()}, (("x", "lif"), ("lif", "lif"), ("lif", "y")))
    assert schedule(graph).delayed == frozenset({("lif", "lif")})
    assert infer_shapes(graph).out("lif") == (2,)


def test_cycle_without_stateful_node_is_an_error_naming_a_node():
    graph = Graph(
        {"x": Input((2,)), "a": Scale(scale=ONE), "b": Scale(scale=ONE), "y": Output()},
        (("x", "a"), ("a", "b"), ("b", "a"), ("b", "y")),
    )
    with pytest.raises(SnnirError, match="cycle with no stateful node") as info:
        schedule(graph)
    assert info.value.node in {"a", "b"}


def test_recurrent_schedule_ignores_edges_leaving_the_loop():
    sem = Semantics(dt=1e-3)
    graph = recurrent().with_nodes(lif=lif().replace(sem=sem))
    assert schedule(graph).delayed == frozenset({("lif", "w")})


def test_deep_nesting_is_linear_in_depth(tmp_path):
    """``Subgraph.stateful`` is computed once per level: 30 nested levels (about the most
    the default depth limit reads) verify, write and read back in well under a second,
    where walking every level again took time exponential in depth."""
    import time

    from snnir.ir import verify
    from snnir.ir.nir_io import read, write

    graph = Graph.sequential(("input", Input((3,))), ("s", Scale(np.ones(3))), ("output", Output()))
    for _ in range(30):
        graph = Graph.sequential(("input", Input((3,))), ("s", Subgraph(graph)), ("output", Output()))
    start = time.perf_counter()
    verify(graph)
    write(graph, tmp_path / "deep.nir")
    assert read(tmp_path / "deep.nir") == graph
    assert not graph.nodes["s"].stateful
    assert time.perf_counter() - start < 3
    stateful = Subgraph(Graph.sequential(("input", Input((3,))), ("lif", lif(3)), ("output", Output())))
    for _ in range(31):
        stateful = Subgraph(Graph.sequential(("input", Input((3,))), ("s", stateful), ("output", Output())))
    assert stateful.stateful
