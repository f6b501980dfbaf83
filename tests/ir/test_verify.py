"""The verifier: every rule it checks raises SnnirError naming the node at fault."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from snnir.errors import SnnirError
from snnir.ir.ops.fused import FusedLayerNeuron
from snnir.ir import (
    LIF, Affine, Conv1d, Graph, Input, Op, Output, Scale, Semantics, Subgraph, verify,
)

ONE = np.ones(())
ZERO = np.zeros(())


def lif(**changes):
    return LIF(tau=np.array(0.01), r=ONE, v_leak=ZERO, v_threshold=ONE).replace(**changes)


def fc(n_in=2, n_out=2, **params):
    return Affine(weight=params.get("weight", np.ones((n_out, n_in))), bias=params.get("bias", np.zeros(n_out)))


@dataclass(frozen=True, eq=False)
class Mystery(Op):
    """Not registered: the verifier must refuse it."""

    op_type = "Mystery"

    def infer_shape(self, input_shape, node):
        return input_shape


def good() -> Graph:
    return Graph.sequential(("x", Input((2,))), ("fc", fc()), ("lif", lif()), ("y", Output()))


def test_valid_graph_verifies_with_shapes():
    report = verify(good())
    assert report.shapes.out("lif") == (2,) and report.warnings == []


def case(nodes, edges):
    return Graph(nodes, edges)


BAD = {
    "unknown op": (
        case({"x": Input((2,)), "m": Mystery(), "y": Output()}, (("x", "m"), ("m", "y"))),
        "m", "unknown op type 'Mystery'"),
    "dangling edge": (
        case({"x": Input((2,)), "y": Output()}, (("x", "y"), ("x", "ghost"))), "ghost", "names no node"),
    "duplicate edge": (
        case({"x": Input((2,)), "y": Output()}, (("x", "y"), ("x", "y"))), "y", "duplicate edge x -> y"),
    "edge leaves Output": (
        case({"x": Input((2,)), "y": Output(), "z": Output()}, (("x", "y"), ("y", "z"))), "y", "leaves an Output"),
    "edge enters Input": (
        case({"x": Input((2,)), "w": Input((2,)), "y": Output()}, (("x", "w"), ("x", "y"))), "w", "enters an Input"),
    "no Input": (case({"y": Output()}, ()), None, "has no Input node"),
    "no Output": (case({"x": Input((1,))}, ()), None, "has no Output node"),
    "NaN weight": (
        Graph.sequential(("x", Input((2,))), ("fc", fc(weight=np.array([[1.0, np.nan], [0, 1]]))), ("y", Output())),
        "fc", "1 non-finite values"),
    "inf tau": (
        Graph.sequential(("x", Input((2,))), ("lif", lif(tau=np.array(np.inf))), ("y", Output())), "lif", "non-finite"),
    "negative tau": (
        Graph.sequential(("x", Input((2,))), ("lif", lif(tau=np.array(-1.0))), ("y", Output())),
        "lif", "tau must be positive"),
    "wrong param shape": (
        Graph.sequential(("x", Input((2,))), ("lif", lif(tau=np.ones(3))), ("y", Output())),
        "lif", "tau has shape [3]"),
    "incompatible neuron params": (
        Graph.sequential(("x", Input((2,))), ("lif", lif(tau=np.ones(3), r=np.ones(2))), ("y", Output())),
        "lif", "incompatible shapes"),
    "wrong input shape": (
        Graph.sequential(("x", Input((3,))), ("fc", fc()), ("y", Output())), "fc", "expects input [2]"),
    "edges of different shapes": (
        case({"x": Input((2,)), "u": Input((3,)), "y": Output()}, (("x", "y"), ("u", "y"))), "y", "different shapes"),
    "cycle without state": (
        case({"x": Input((2,)), "a": Scale(scale=ONE), "b": Scale(scale=ONE), "y": Output()},
             (("x", "a"), ("a", "b"), ("b", "a"), ("b", "y"))), "a", "cycle with no stateful node"),
    "Output declared shape": (
        Graph.sequential(("x", Input((2,))), ("y", Output(shape=(3,)))), "y", "declares shape [3]"),
    "empty output shape": (
        Graph.sequential(("x", Input((2,))), ("fc", fc(2, 0)), ("y", Output())), "fc", "output shape [0] is empty"),
    "empty conv kernel": (
        Graph.sequential(("x", Input((2, 5))), ("c", Conv1d(weight=np.ones((3, 2, 0)))), ("y", Output())),
        "c", "non-empty"),
    "port on a plain node": (
        case({"x": Input((2,)), "y": Output()}, (("x", "y.p"),)), "y.p", "not a graph"),
    "multi spike negative threshold": (
        Graph.sequential(
            ("x", Input((2,))),
            ("lif", lif(v_threshold=np.array(-1.0), sem=Semantics(spike_mode="multi", threshold_compare="ge"))),
            ("y", Output())),
        "lif", "positive v_threshold"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_graph_raises_naming_the_node(name):
    graph, node, fragment = BAD[name]
    with pytest.raises(SnnirError) as info:
        verify(graph)
    assert fragment in str(info.value)
    if node is not None:
        assert info.value.node == node, str(info.value)
        assert str(info.value).startswith(f"node '{node}'")
    assert "\n" not in str(info.value)


def test_cycle_error_names_one_node_of_the_cycle():
    graph = BAD["cycle without state"][0]
    with pytest.raises(SnnirError) as info:
        verify(graph)
    assert info.value.node in {"a", "b"}
    assert "->" in str(info.value)


def nested_with(inner_lif) -> Graph:
    inner = Graph.sequential(("i", Input((2,))), ("lif", inner_lif), ("o", Output()))
    return Graph.sequential(("x", Input((2,))), ("sub", Subgraph(inner)), ("y", Output()))


def test_errors_inside_nested_graphs_name_the_full_path():
    with pytest.raises(SnnirError) as info:
        verify(nested_with(lif(tau=np.array(np.nan))))
    assert info.value.node == "sub.lif"
    with pytest.raises(SnnirError) as info:
        verify(nested_with(lif(tau=np.ones(5))))
    assert info.value.node == "sub.lif"


def test_nested_cycle_without_state_names_the_nested_node():
    inner = Graph(
        {"i": Input((2,)), "a": Scale(scale=ONE), "b": Scale(scale=ONE), "o": Output()},
        (("i", "a"), ("a", "b"), ("b", "a"), ("b", "o")),
    )
    outer = Graph.sequential(("x", Input((2,))), ("sub", Subgraph(inner)), ("y", Output()))
    with pytest.raises(SnnirError) as info:
        verify(outer)
    assert info.value.node in {"sub.a", "sub.b"}


def test_euler_with_dt_above_tau_warns():
    graph = good().with_nodes(lif=lif(sem=Semantics(dt=0.1)))
    warnings = verify(graph).warnings
    assert len(warnings) == 1 and "node 'lif'" in warnings[0] and "overshoots" in warnings[0]
    assert verify(graph.with_nodes(lif=lif(sem=Semantics(dt=0.1, discretisation="exp")))).warnings == []


def test_euler_with_dt_over_tau_beyond_float64_is_refused():
    """A denormal tau (5e-324) made dt / tau inf: the reference stepped NaN membranes, warning
    only that forward Euler overshoots. With exp discretisation the decay is just 0."""
    graph = good().with_nodes(lif=lif(tau=np.array([5e-324, 0.01])))
    with pytest.raises(SnnirError, match=r"node 'lif': dt / tau overflows float64 \(tau as small as 4.94e-324\)"):
        verify(graph)
    verify(graph.with_nodes(lif=lif(tau=np.array([5e-324, 0.01]), sem=Semantics(discretisation="exp"))))


def test_recurrent_graph_verifies():
    graph = Graph(
        {"x": Input((2,)), "lif": lif(), "w": fc(), "y": Output()},
        (("x", "lif"), ("lif", "w"), ("w", "lif"), ("lif", "y")),
    )
    assert verify(graph).shapes.out("w") == (2,)


def test_loop_fed_only_by_itself_has_no_shape():
    graph = Graph({"x": Input((2,)), "lif": lif(), "y": Output()}, (("lif", "lif"), ("x", "y"), ("lif", "y")))
    with pytest.raises(SnnirError, match="cannot be determined") as info:
        verify(graph)
    assert info.value.node == "lif"


def _nested_with_feedback(declared: int = 2) -> Graph:
    """A nested graph with ports ``x`` (from the input) and ``fb`` (only from a loop out of
    the nested graph's own output, through a Linear), ``fb`` declared ``(declared,)``."""
    inner = Graph(
        {"x": Input((2,)), "fb": Input((declared,)), "p": fc(declared, 2), "lif": lif(), "out": Output()},
        (("x", "lif"), ("fb", "p"), ("p", "lif"), ("lif", "out")),
    )
    return Graph(
        {"x": Input((2,)), "sub": Subgraph(inner), "w": fc(), "y": Output()},
        (("x", "sub.x"), ("sub.out", "w"), ("w", "sub.fb"), ("sub.out", "y")),
    )


def test_nested_port_fed_only_by_a_loop_takes_its_declared_shape():
    assert verify(_nested_with_feedback()).shapes.out("w") == (2,)


def test_nested_port_fed_by_a_loop_of_another_shape_is_refused():
    with pytest.raises(SnnirError, match=r"carries shape \[2\] but the node receives \[3\]") as info:
        verify(_nested_with_feedback(declared=3))
    assert info.value.node == "sub"


def test_a_dotted_name_equal_to_a_nested_path_is_refused():
    """Shapes, values and recorded states are keyed by path: node 'a.b' and node 'b' of
    nested graph 'a' (or of an extension op's expansion) would share one silently."""
    inner = Graph.sequential(("i", Input((2,))), ("b", lif()), ("o", Output()))
    graph = Graph(
        {"x": Input((2,)), "a.b": lif(), "a": Subgraph(inner), "y": Output()},
        (("x", "a.b"), ("a.b", "a"), ("a", "y")),
    )
    with pytest.raises(SnnirError, match="two nodes have the path 'a.b'") as info:
        verify(graph)
    assert info.value.node == "a.b"
    fused = FusedLayerNeuron(fc(), lif())
    graph = Graph.sequential(("x", Input((2,))), ("f.neuron", lif()), ("f", fused), ("y", Output()))
    with pytest.raises(SnnirError, match="two nodes have the path 'f.neuron'"):
        verify(graph)
    dotted = Graph.sequential(("x", Input((2,))), ("a.c", lif()), ("a", Subgraph(inner)), ("y", Output()))
    verify(dotted)  # a dotted name that is no other node's path is fine


@pytest.mark.parametrize(("key", "value"), [("snnir.static_inputs", 1.0), ("snnir.hoisted", "x"), ("snnir.plan", [1])])
def test_planning_metadata_of_a_built_graph_must_name_nodes(key, value):
    """The planning records are checked by the verifier, not only as a file is read: a graph
    built with a number there crashed optimize's hoisting pass (not iterable)."""
    import snnir

    graph = good().replace(metadata={key: value})
    with pytest.raises(SnnirError, match=f"graph metadata '{key}' must be a "):
        verify(graph)
    with pytest.raises(SnnirError, match=f"graph metadata '{key}' must be a "):
        snnir.optimize(graph)
    nested = Graph.sequential(("x", Input((2,))), ("sub", Subgraph(graph)), ("y", Output()))
    with pytest.raises(SnnirError, match=f"node 'sub'.*graph metadata '{key}'"):
        verify(nested)
