"""The reference interpreter: steps any verified graph through time, in numpy float64.

It defines snnir's semantics. Per step, nodes run in schedule order; a node's
input is the sum of its incoming edges, where a delayed edge (see
:mod:`snnir.ir.schedule`) reads its source's output from the previous step; a neuron's
fed-back edges (``Schedule.fed_back``) are summed apart and handed to its kernel as ``fed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from snnir.errors import SnnirError, shown
from snnir.ir.graph import Graph, require_graph
from snnir.ir.memory import Footprint
from snnir.ir.ops import Input, Output, Subgraph
from snnir.ir.ops.fused import EXTENSION_OPS
from snnir.ir.ops.probe import StateProbe, probe_sources
from snnir.ir.schedule import schedule
from snnir.ir.shapes import Shapes, infer_shapes
from snnir.ir.verify import verify
from snnir.limits import Limits
from snnir.progress import steps as progress_steps
from snnir.targets.reference.kernels import STATEFUL, STATELESS, delay_state

F = np.float64


def check_lowerings() -> list[str]:
    """Registered ops this interpreter cannot execute (should be none)."""
    from snnir.ir.registry import OPS

    handled = set(STATELESS) | set(STATEFUL) | {Input, Output, Subgraph, StateProbe} | set(EXTENSIONS)
    return sorted(name for name, cls in OPS.items() if cls not in handled)


#: extension op class -> callable(op) -> the Graph of standard ops that defines it (``op.expand()``)
EXTENSIONS: dict[type, Any] = {cls: cls.expand for cls in EXTENSION_OPS}


@dataclass(frozen=True)
class _State:
    """One level's state: per node its state variables (a nested level's: its ``_State``), and
    apart from them the previous step's outputs by source key, which delayed edges read (so
    that no node name collides with this bookkeeping)."""

    nodes: dict[str, Any]
    previous: dict[str, np.ndarray]


class _Level:
    """One graph level with its schedule; nested graphs become child levels."""

    def __init__(self, graph: Graph, prefix: str, shapes: Shapes):
        self.graph = graph
        self.prefix = prefix
        self.shapes = shapes
        self.sched = schedule(graph)
        self.children: dict[str, _Level] = {}
        self.expanded: dict[str, _Level] = {}
        #: per node, each incoming edge: (source key, port, delayed, fed back)
        self.sources: dict[str, list[tuple[str, str | None, bool, bool]]] = {}
        self.probes = probe_sources(graph, prefix)
        for src, dst in graph.edges:
            node, port = graph.resolve(dst, as_source=False)
            s_node, s_port = graph.resolve(src, as_source=True)
            key = f"{s_node}.{s_port}" if s_port is not None else s_node
            edge = (src, dst)
            delayed, fed_back = edge in self.sched.delayed, edge in self.sched.fed_back
            self.sources.setdefault(node, []).append((key, port, delayed, fed_back))
        for name, op in graph.nodes.items():
            if isinstance(op, Subgraph):
                self.children[name] = _Level(op.graph, f"{prefix}{name}.", shapes)
            elif type(op) in EXTENSIONS:
                expansion = EXTENSIONS[type(op)](op)
                inner = infer_shapes(expansion)  # the expansion's Inputs declare their shapes
                for table, inner_table in ((shapes.inputs, inner.inputs), (shapes.outputs, inner.outputs)):
                    table.update({f"{prefix}{name}.{key}": value for key, value in inner_table.items()})
                self.expanded[name] = _Level(expansion, f"{prefix}{name}.", shapes)

    def init_state(self, batch: int) -> _State:
        state: dict[str, Any] = {}
        for name, op in self.graph.nodes.items():
            path = self.prefix + name
            if name in self.children:
                state[name] = self.children[name].init_state(batch)
            elif name in self.expanded:
                state[name] = self.expanded[name].init_state(batch)
            elif op.stateful:
                shape = self.shapes.outputs[path]
                state[name] = (
                    delay_state(op, shape, batch)
                    if op.op_type == "Delay"
                    else {s: np.zeros((batch,) + tuple(shape), dtype=F) for s in op.state_names}
                )
        return _State(state, {})

    def step(self, inputs: Mapping[str, np.ndarray], level_state: _State, batch: int) -> tuple[dict, _State]:
        state, previous = level_state.nodes, level_state.previous
        values: dict[str, np.ndarray] = {}
        new_state: dict[str, Any] = {}
        for name in self.sched.order:
            op = self.graph.nodes[name]
            if isinstance(op, Input):  # a nested port with no edge into it sums nothing: zero
                values[name] = inputs[name] if name in inputs else np.zeros((batch,) + self._shape_of(name), dtype=F)
                continue
            if name in self.probes:  # the state its neuron (scheduled before it) has just reached
                values[name] = new_state[self.probes[name]][op.state]
                continue
            summed: dict[str | None, np.ndarray] = {}
            fed = None  # the fed-back drive of a neuron
            for key, port, delayed, fed_back in self.sources.get(name, []):
                value = previous.get(key) if delayed else values[key]
                if value is None:  # first step of a loop: last output is zero
                    value = np.zeros((batch,) + self._shape_of(key), dtype=F)
                if fed_back:
                    fed = value if fed is None else fed + value
                else:
                    summed[port] = summed[port] + value if port in summed else value
            if name in self.children or name in self.expanded:
                child = self.children.get(name) or self.expanded[name]
                ports = {
                    (port if port is not None else child.graph.inputs[0]): v for port, v in summed.items()
                }
                outs, new_state[name] = child.step(ports, state[name], batch)
                for port, value in outs.items():
                    values[f"{name}.{port}"] = value
                if len(outs) == 1:
                    values[name] = next(iter(outs.values()))
                continue
            x = summed[None]
            if isinstance(op, Output):
                values[name] = x
            elif fed is not None:
                values[name], new_state[name] = STATEFUL[type(op)](op, x, state[name], fed)
            elif op.stateful:
                values[name], new_state[name] = STATEFUL[type(op)](op, x, state[name])
            else:
                values[name] = STATELESS[type(op)](op, x)
        return {name: values[name] for name in self.graph.outputs}, _State(new_state, values)

    def _shape_of(self, key: str) -> tuple[int, ...]:
        return tuple(self.shapes.outputs[self.prefix + key])

    def traces(self, state: _State) -> list[tuple[str, np.ndarray]]:
        """Flat ``("<path>.<state>", value)`` view of a state tree, in node order."""
        out = []
        for name, sub in state.nodes.items():
            if name in self.children or name in self.expanded:
                child = self.children.get(name) or self.expanded[name]
                out += child.traces(sub)
            else:
                out += [(f"{self.prefix}{name}.{sname}", value) for sname, value in sub.items()]
        return out


def _check_trace_keys(graph: Graph, traces: list[tuple[str, np.ndarray]]) -> None:
    """Recorded states share the results with the Outputs (paths, hence state keys, are
    unique: the verifier), so no Output may be named like a state key."""
    for key, _ in traces:
        if key in graph.outputs:
            node, _, state = key.rpartition(".")
            raise SnnirError(f"its name is also the key of state {state} of node '{shown(node)}' "
                             "in the recorded results: rename one to record", key)


def _as_inputs(graph: Graph, shapes: Shapes, x: Any) -> tuple[dict[str, np.ndarray], int, int]:
    """The inputs by Input name as given (not yet converted or scanned: that may allocate,
    so the caller checks the limits first), and T, B."""
    given = graph.bind_inputs(x)
    arrays: dict[str, np.ndarray] = {}
    time_batch = None
    for name, value in given.items():
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise SnnirError(f"input is not numeric: {exc}", name) from None
        if array.dtype.kind not in "biuf":  # complex, text, objects, records
            raise SnnirError(f"input is not numeric: dtype {array.dtype} (real numbers only: bool, int, float)", name)
        shape = tuple(shapes.outputs[name])
        if array.ndim != len(shape) + 2 or tuple(array.shape[2:]) != shape:
            raise SnnirError(f"input must have shape [T, B, {', '.join(map(str, shape))}], got {list(array.shape)}", name)
        if time_batch is not None and array.shape[:2] != time_batch:
            raise SnnirError(f"inputs disagree on [T, B]: {list(time_batch)} vs {list(array.shape[:2])}", name)
        time_batch = array.shape[:2]
        arrays[name] = array
    assert time_batch is not None
    return arrays, int(time_batch[0]), int(time_batch[1])


def _exact_finite(array: np.ndarray, name: str) -> np.ndarray:
    """``array`` as float64, or a SnnirError naming the Input where that would change a value
    or a value is NaN or inf."""
    kind = array.dtype.kind
    if kind == "f" and array.dtype.itemsize > F().itemsize:
        raise SnnirError(f"input dtype {array.dtype} is more precise than the float64 simulation", name)
    if kind in "iu" and array.size and max(-int(array.min()), int(array.max())) > 2**53:
        raise SnnirError(f"input integers beyond 2**53 are not exact in float64 (dtype {array.dtype})", name)
    array = array.astype(F, copy=False)
    if not np.all(np.isfinite(array)):
        raise SnnirError("input contains NaN or inf", name)
    return array


def run(graph: Graph, x: Any, record: bool = False, limits: Limits | None = None) -> dict[str, np.ndarray]:
    """Simulate ``graph`` on ``x`` (``[T, B, *shape]`` or a dict by Input name).

    Returns ``[T, B, ...]`` float64 arrays keyed by Output node name and, with
    ``record=True``, every state variable keyed ``"<node>.<state>"``. A run over
    ``limits`` (``state_bytes``, ``memory_bytes``; default :func:`snnir.limits.current`)
    is refused before its state is allocated.
    """
    require_graph(graph, "run")
    shapes = verify(graph).shapes
    arrays, steps, batch = _as_inputs(graph, shapes, x)
    Footprint.of(graph, shapes).check(batch, itemsize=F().itemsize, steps=steps, record=record, limits=limits)
    arrays = {name: _exact_finite(array, name) for name, array in arrays.items()}
    level = _Level(graph, "", shapes)
    state = level.init_state(batch)
    if record:
        _check_trace_keys(graph, level.traces(state))
    results: dict[str, list[np.ndarray]] = {name: [] for name in graph.outputs}
    traces: dict[str, list[np.ndarray]] = {}
    for t in progress_steps(steps, "simulating"):
        outs, state = level.step({n: a[t] for n, a in arrays.items()}, state, batch)
        for name, value in outs.items():
            results[name].append(value)
        if record:
            for key, value in level.traces(state):
                traces.setdefault(key, []).append(value)
    out = {name: _stack(values, steps, batch, shapes.inputs[name]) for name, values in results.items()}
    if record:
        out.update({key: np.stack(values) for key, values in traces.items()})
    return out


def _stack(values: list[np.ndarray], steps: int, batch: int, shape) -> np.ndarray:
    if values:
        return np.stack(values)
    return np.zeros((steps, batch) + tuple(shape or ()), dtype=F)
