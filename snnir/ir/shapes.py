"""Shape inference for every node, nested graphs included.

Shapes are per sample (no time, no batch). Every edge into a node must carry
the same shape, since edges into one node are summed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from snnir.errors import SnnirError
from snnir.ir.graph import Graph
from snnir.ir.ops.base import Shape
from snnir.ir.ops.io import Input
from snnir.ir.ops.shape_utils import MAX_ELEMENTS
from snnir.ir.ops.subgraph import Subgraph
from snnir.ir.schedule import schedule


@dataclass
class Shapes:
    """Per node path (``"outer.inner"``): the summed input shape (``None`` for
    Inputs without an edge) and the output shape. A nested graph's output is
    recorded per port as ``"node.port"``."""

    inputs: dict[str, Shape | None] = field(default_factory=dict)
    outputs: dict[str, Shape] = field(default_factory=dict)

    def out(self, path: str) -> Shape:
        return self.outputs[path]


def infer_shapes(graph: Graph, input_shapes: dict[str, Shape] | None = None) -> Shapes:
    """Shapes of every node; ``input_shapes`` overrides Input nodes' declarations
    (used for nested graphs fed by their parent)."""
    shapes = Shapes()
    _infer(graph, "", input_shapes or {}, shapes)
    return shapes


def _source_key(graph: Graph, prefix: str, endpoint: str) -> str:
    node, port = graph.resolve(endpoint, as_source=True)
    return f"{prefix}{node}.{port}" if port is not None else f"{prefix}{node}"


def _infer(graph: Graph, prefix: str, given: dict[str, Shape], shapes: Shapes) -> None:
    order = schedule(graph).order
    into: dict[str, list[tuple[str, str | None]]] = {}  # node -> (source endpoint, port), in edge order
    for src, dst in graph.edges:
        dst_node, port = graph.resolve(dst, as_source=False)
        into.setdefault(dst_node, []).append((src, port))
    pending = list(order)
    while pending:
        progressed = False
        for name in list(pending):
            incoming = _incoming(graph, prefix, name, into.get(name, ()), shapes)
            if incoming is None:
                continue
            _infer_node(graph, prefix, name, incoming, given, shapes)
            pending.remove(name)
            progressed = True
        if not progressed:
            raise SnnirError("its input shape cannot be determined (fed only by a loop)", prefix + pending[0])
    for src, dst in graph.edges:  # loop edges: their shapes were not all known when first seen
        dst_node, port = graph.resolve(dst, as_source=False)
        expected = shapes.inputs.get(f"{prefix}{dst_node}.{port}" if port else prefix + dst_node)
        got = shapes.outputs[_source_key(graph, prefix, src)]
        if expected is not None and tuple(got) != tuple(expected):
            raise SnnirError(
                f"edge {src} -> {dst} carries shape {list(got)} but the node receives {list(expected)}",
                prefix + dst_node,
            )


def _incoming(graph: Graph, prefix: str, name: str, edges, shapes: Shapes) -> dict[str | None, list] | None:
    """Known source shapes by destination port, from the ``edges`` into ``name`` (``(source
    endpoint, port)`` pairs); ``None`` while a source is still unknown
    and no source is known for some port. A nested graph's port whose sources are all
    unknown (fed only by a loop) takes the shape its Input node declares; the loop edges
    are checked against it once their sources are known (``_infer``)."""
    by_port: dict[str | None, list] = {}
    for src, port in edges:
        key = _source_key(graph, prefix, src)
        by_port.setdefault(port, []).append((src, shapes.outputs.get(key)))
    op = graph.nodes[name]
    for port, sources in by_port.items():
        known = [s for s in sources if s[1] is not None]
        if not known and isinstance(op, Subgraph):
            inner = port if port is not None else op.graph.inputs[0]
            known = [(f"{name}.{inner} (declared)", op.graph.nodes[inner].shape)]
        if not known:
            return None
        by_port[port] = known
    return by_port


def _summed_shape(name: str, sources: list) -> Shape:
    first_src, first = sources[0]
    for src, shape in sources[1:]:
        if tuple(shape) != tuple(first):
            raise SnnirError(
                f"edges into it carry different shapes: {first_src} {list(first)} and {src} {list(shape)}", name
            )
    return tuple(first)


def _check_size(path: str, shape: Shape) -> None:
    if int(np.prod(shape, dtype=object)) > MAX_ELEMENTS:
        raise SnnirError(f"output shape {list(shape)} has more than {MAX_ELEMENTS} elements", path)


def _infer_node(graph: Graph, prefix: str, name: str, incoming: dict, given: dict, shapes: Shapes) -> None:
    op = graph.nodes[name]
    path = prefix + name
    if isinstance(op, Subgraph):
        port_shapes = {}
        for port, sources in incoming.items():
            port = port if port is not None else op.graph.inputs[0]
            port_shapes[port] = _summed_shape(path, sources)
        _infer(op.graph, path + ".", port_shapes, shapes)  # sets "path.port" for each Output
        if len(op.graph.outputs) == 1:
            shapes.outputs[path] = shapes.outputs[f"{path}.{op.graph.outputs[0]}"]
        return
    if len(incoming) > 1 or (incoming and None not in incoming):
        raise SnnirError("edges address ports, but the node is not a nested graph", path)
    in_shape = _summed_shape(path, incoming[None]) if incoming else given.get(name)
    if isinstance(op, Input) and name in given and incoming:
        raise SnnirError("an Input node cannot also have incoming edges", path)
    shapes.inputs[path] = in_shape
    out = op.infer_shape(in_shape, path)
    if any(int(d) <= 0 for d in out):
        raise SnnirError(f"output shape {list(out)} is empty", path)
    _check_size(path, out)
    shapes.outputs[path] = tuple(out)
