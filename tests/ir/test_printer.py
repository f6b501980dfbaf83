"""The printed IR against a golden file (regenerate with SNNIR_UPDATE_GOLDEN=1)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snnir.ir import (
    LIF, Affine, Conv2d, CubaLIF, Delay, Flatten, Graph, Input, Op, Output, Semantics, SumPool2d, Subgraph,
)
from snnir.ir.printer import format_graph, format_table

GOLDEN = Path(__file__).parent / "golden"


def example_graph() -> Graph:
    """Every kind of line: stateless, neurons with semantics, delay, a nested graph, a loop."""
    sem = Semantics(dt=1e-3, discretisation="exp", reset="subtract", reset_timing="next")
    inner = Graph.sequential(
        ("in", Input((8,))),
        ("lif", LIF(tau=np.full(8, 0.01), r=np.ones(()), v_leak=np.zeros(()), v_threshold=np.ones(()), sem=sem)),
        ("out", Output()),
    )
    nodes = {
        "x": Input((2, 6, 6)),
        "conv": Conv2d(weight=np.ones((4, 2, 3, 3)), bias=np.zeros(4), padding=1, stride=2),
        "pool": SumPool2d(kernel_size=3),
        "flat": Flatten(start_dim=0),
        "fc": Affine(weight=np.ones((8, 4)), bias=np.zeros(8)),
        "sub": Subgraph(inner),
        "rec": CubaLIF(
            tau_syn=np.array(5e-3), tau_mem=np.array(1e-2), r=np.array(1.0), v_leak=np.array(0.0),
            v_threshold=np.array(0.5), sem=Semantics(current_order="voltage_first"),
        ),
        "wrec": Affine(weight=np.eye(8), bias=np.zeros(8)),
        "delay": Delay(delay=np.array(2e-3), sem=Semantics(dt=1e-3)),
        "y": Output(),
    }
    edges = (
        ("x", "conv"), ("conv", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "sub.in"),
        ("sub.out", "rec"), ("rec", "wrec"), ("wrec", "rec"), ("rec", "delay"), ("delay", "y"),
    )
    return Graph(nodes, edges)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("SNNIR_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"printed IR differs from {path}; rerun with SNNIR_UPDATE_GOLDEN=1 if intended"


def test_format_graph_matches_golden():
    check_golden("example.txt", format_graph(example_graph()))


def test_format_graph_is_deterministic_and_one_line_per_node():
    graph = example_graph()
    text = format_graph(graph)
    assert text == format_graph(example_graph())
    node_lines = [line for line in text.splitlines()[1:] if "edges:" not in line]
    assert len(node_lines) == sum(1 for _ in graph.walk())
    assert "reset=subtract@next" in text and "voltage_first" in text


def test_format_graph_of_a_broken_graph_still_prints():
    wrong_fc = Affine(weight=np.ones((3, 3)), bias=np.zeros(3))
    broken = Graph.sequential(("x", Input((2,))), ("fc", wrong_fc), ("y", Output()))
    text = format_graph(broken)
    assert "shapes unknown" in text and "node 'fc'" in text
    assert "fc  Affine  ? -> ?" in text


def test_format_table_lists_every_level_by_path():
    text = format_table(example_graph())
    lines = text.splitlines()
    assert lines[0].split() == ["node", "op", "input", "output", "stateful", "semantics", "parameters"]
    rows = {line.split()[0]: line for line in lines[1:] if not line.startswith(" ") and line != "edges:"}
    assert set(rows) == {path for path, _ in example_graph().walk()}
    assert "in:[8]" in rows["sub"] and "out:[8]" in rows["sub"] and " yes " in rows["sub"]
    assert "[8]" in rows["sub.lif"] and "reset=subtract@next" in rows["sub.lif"]
    assert " no " in rows["conv"] and "[2,6,6]" in rows["conv"] and "[4,3,3]" in rows["conv"]
    assert "  sub.in -> sub.lif" in lines and "  wrec -> rec" in lines


@dataclass(frozen=True, eq=False)
class Wrapped(Op):
    """``y = inner(x)``; an extension-style op holding a neuron."""

    op_type = "snnir.Wrapped"
    inner: Op

    def infer_shape(self, input_shape, node):
        return self.inner.infer_shape(input_shape, node)


def test_extension_ops_print_their_docstring_equation_and_inner_semantics():
    lif = LIF(tau=np.array(0.01), r=np.array(1.0), v_leak=np.array(0.0), v_threshold=np.array(1.0))
    graph = Graph.sequential(("x", Input((2,))), ("w", Wrapped(lif)), ("y", Output()))
    line = next(line for line in format_graph(graph).splitlines() if line.strip().startswith("w "))
    assert "{y = inner(x) | dt=0.0001 euler reset=zero@same" in line
    assert "inner=LIF[tau=0.01 r=1" in line
