"""A readable text form of a graph, for humans and golden-file tests.

One line per node: name, op type, ``in -> out`` shapes (per sample), a
parameter summary, and the op's semantics in short form; then the edges.
Nested graphs are printed under their node, indented. The output is
deterministic (node and edge order as stored in the graph). Names are printed
:func:`~snnir.errors.shown` (escaped, long ones cut), so a name cannot break a line or a terminal.
"""

from __future__ import annotations

from snnir.errors import SnnirError, shown
from snnir.ir.graph import Graph
from snnir.ir.ops.base import Op
from snnir.ir.ops.neuron import Neuron
from snnir.ir.ops.subgraph import Subgraph
from snnir.ir.semantics import Semantics
from snnir.ir.shapes import Shapes, infer_shapes

#: Each op's equation in short form (``x`` input, ``y`` output).
EQUATIONS = {
    "Input": "y = x",
    "Output": "y = x",
    "Affine": "y = W x + b",
    "Linear": "y = W x",
    "Scale": "y = s * x",
    "Flatten": "y = flatten(x)",
    "Conv1d": "y = conv1d(x, W) + b",
    "Conv2d": "y = conv2d(x, W) + b",
    "SumPool2d": "y = window sum",
    "AvgPool2d": "y = window mean",
    "Delay": "y[t] = x[t - delay/dt]",
    "Threshold": "y = x > thr",
    "I": "dv/dt = r x; y = v",
    "IF": "dv/dt = r x; spike+reset",
    "LI": "tau dv/dt = v_leak - v + r x; y = v",
    "LIF": "tau dv/dt = v_leak - v + r x; spike+reset",
    "CubaLI": "tau_syn di/dt = -i + w_in x; tau_mem dv/dt = v_leak - v + r i; y = v",
    "CubaLIF": "tau_syn di/dt = -i + w_in x; tau_mem dv/dt = v_leak - v + r i; spike+reset",
    "NIRGraph": "nested graph",
}


def format_semantics(sem: Semantics, spiking: bool = True, has_current: bool = False) -> str:
    """``dt=1e-04 euler reset=zero@same v>thr single`` (only the fields that matter)."""
    parts = [f"dt={sem.dt:g}", sem.discretisation]
    if spiking:
        compare = ">" if sem.threshold_compare == "gt" else ">="
        parts += [f"reset={sem.reset}@{sem.reset_timing}", f"v{compare}thr", sem.spike_mode]
    if has_current:
        parts.append(sem.current_order)
    if sem.gain_held:
        parts.append("gain-held")
    return " ".join(parts)


def _time_semantics(op: Op) -> str:
    """How a stateful op is stepped, in short (an extension op's inner neuron's);
    empty for ops without ``sem``."""
    sem = getattr(op, "sem", None)
    if isinstance(op, Neuron):
        return format_semantics(op.sem, op.spiking, op.has_current)
    if isinstance(sem, Semantics):
        return f"dt={sem.dt:g}" + (" detached" if sem.detached else "")
    inner = [getattr(op, a) for a in op.attribute_names() if isinstance(getattr(op, a), Neuron)]
    return _time_semantics(inner[0]) if inner else ""


def _docstring_line(op: Op) -> str:
    """An op outside :data:`EQUATIONS` (an extension) states its equation in its docstring's first line."""
    lines = (type(op).__doc__ or "").strip().splitlines()
    return lines[0].split(";")[0].strip().replace("``", "") if lines else op.op_type


def _shape_text(shape) -> str:
    return "-" if shape is None else "[" + ",".join(str(d) for d in shape) + "]"


def _summary(op: Op) -> str:
    """Scalar parameters by value, arrays by shape, then attributes that are set."""
    parts = []
    for pname, value in op.params().items():
        parts.append(f"{pname}={value.reshape(-1)[0]:.4g}" if value.size == 1 else f"{pname}:{list(value.shape)}")
    for attr in op.attribute_names():
        value = getattr(op, attr)
        if isinstance(value, Op):  # an extension op's inner op (e.g. FusedLayerNeuron.layer)
            parts.append(f"{attr}={value.op_type}[{_summary(value)}]")
        elif attr not in ("sem", "graph") and value is not None:
            parts.append(f"{attr}={value!r}")
    return " ".join(parts)


def _io_text(path: str, op: Op, shapes: Shapes | None) -> tuple[str, str]:
    """Input and output shapes; a nested graph's by port (``port:[shape]``)."""
    if isinstance(op, Subgraph):
        known = shapes.outputs if shapes is not None else {}
        in_text, out_text = (
            ",".join(f"{shown(port)}:{_shape_text(known[f'{path}.{port}']) if f'{path}.{port}' in known else '?'}"
                     for port in ports)
            for ports in (op.graph.inputs, op.graph.outputs)
        )
        return in_text, out_text
    if shapes is None or path not in shapes.outputs:
        return "?", "?"
    return _shape_text(shapes.inputs.get(path)), _shape_text(shapes.outputs[path])


def _node_row(path: str, name: str, op: Op, shapes: Shapes | None) -> list[str]:
    io = " -> ".join(_io_text(path, op, shapes))
    fields = [shown(name), op.op_type, io, _summary(op)]
    semantics = EQUATIONS.get(op.op_type) or _docstring_line(op)
    timing = _time_semantics(op)
    if timing:
        semantics += " | " + timing
    if op.state_names:
        semantics += " | state " + ",".join(op.state_names)
    fields.append("{" + semantics + "}")
    return fields


def _format_level(graph: Graph, prefix: str, shapes: Shapes | None, indent: str, lines: list[str]) -> None:
    rows = [_node_row(prefix + name, name, op, shapes) for name, op in graph.nodes.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for (name, op), row in zip(graph.nodes.items(), rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[4]]
        lines.append(indent + "  ".join(cells))
        if isinstance(op, Subgraph):
            _format_level(op.graph, f"{prefix}{name}.", shapes, indent + "    ", lines)
    edges = ", ".join(f"{shown(src)} -> {shown(dst)}" for src, dst in graph.edges)
    lines.append(f"{indent}edges: {edges or '(none)'}")


def format_graph(graph: Graph) -> str:
    """The whole graph as text; shapes show ``?`` when they cannot be inferred."""
    try:
        shapes: Shapes | None = infer_shapes(graph)
        header = f"graph: {len(graph.nodes)} nodes, {len(graph.edges)} edges"
    except SnnirError as exc:
        shapes = None
        header = f"graph: {len(graph.nodes)} nodes, {len(graph.edges)} edges (shapes unknown: {exc})"
    lines = [header]
    _format_level(graph, "", shapes, "  ", lines)
    return "\n".join(lines) + "\n"


def format_table(graph: Graph) -> str:
    """A node table (every node, nested ones by path): op, input and output
    shapes, stateful or not, parameters; then the edges of every level."""
    try:
        shapes: Shapes | None = infer_shapes(graph)
    except SnnirError:
        shapes = None
    header = ["node", "op", "input", "output", "stateful", "semantics", "parameters"]
    rows = []
    for path, op in graph.walk():
        in_text, out_text = _io_text(path, op, shapes)
        rows.append([shown(path), op.op_type, in_text, out_text, "yes" if op.stateful else "no",
                     _time_semantics(op) or "-", _summary(op)])
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header) - 1)]
    lines = []
    for row in [header] + rows:
        lines.append("  ".join([cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]).rstrip())
    lines.append("edges:")
    for prefix, level in _levels(graph, ""):
        lines.extend(f"  {shown(prefix + src)} -> {shown(prefix + dst)}" for src, dst in level.edges)
    return "\n".join(lines) + "\n"


def _levels(graph: Graph, prefix: str):
    yield prefix, graph
    for name, op in graph.nodes.items():
        if isinstance(op, Subgraph):
            yield from _levels(op.graph, f"{prefix}{name}.")
