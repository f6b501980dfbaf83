"""The verifier: every structural and numerical rule a graph must keep,
reported as a :class:`SnnirError` naming the node (or edge) at fault."""

from __future__ import annotations

import reprlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from snnir.errors import SnnirError, shown
from snnir.ir.graph import HOISTED_KEY, PLAN_KEY, STATIC_KEY, Graph
from snnir.ir.ops.base import Op
from snnir.ir.ops.delay import Delay
from snnir.ir.ops.fused import EXTENSION_OPS, FUSED_FROM, FusedLayerNeuron
from snnir.ir.ops.io import Input, Output
from snnir.ir.ops.neuron import Neuron
from snnir.ir.ops.probe import check_probes
from snnir.ir.ops.subgraph import Subgraph
from snnir.ir.registry import OPS
from snnir.ir.schedule import schedule
from snnir.ir.shapes import Shapes, infer_shapes
from snnir.ir.ties import broken_tie


@dataclass
class Report:
    shapes: Shapes
    warnings: list[str] = field(default_factory=list)


def verify(graph: Graph) -> Report:
    """Check ``graph`` and return its shapes and any warnings; raise on the first error."""
    warnings: list[str] = []
    _check_level(graph, "", warnings)
    _check_paths(graph)
    shapes = infer_shapes(graph)
    for path, op in graph.walk():
        if isinstance(op, Output) and op.shape is not None:
            inferred = shapes.inputs.get(path)
            if inferred is not None and tuple(inferred) != tuple(op.shape):
                raise SnnirError(
                    f"Output declares shape {list(op.shape)} but receives {list(inferred)}", path
                )
    return Report(shapes, warnings)


def _check_paths(graph: Graph) -> None:
    """Every node's path (``Graph.walk``, and an extension op's expanded nodes under its own)
    names it alone: shapes, values and recorded states are keyed by path, so a dotted name
    equal to a nested node's path is refused."""
    seen: set[str] = set()
    paths = []
    for path, op in graph.walk():
        paths.append(path)
        if isinstance(op, EXTENSION_OPS):
            paths += [f"{path}.{inner}" for inner, _ in op.expand().walk()]
    for path in paths:
        if path in seen:
            raise SnnirError(f"two nodes have the path '{shown(path)}' (a node name with dots and a node "
                             "of a nested graph or expanded op): rename one", path)
        seen.add(path)


def _check_level(graph: Graph, prefix: str, warnings: list[str]) -> None:
    if not graph.inputs:
        raise SnnirError(f"graph{' ' + prefix[:-1] if prefix else ''} has no Input node")
    if not graph.outputs:
        raise SnnirError(f"graph{' ' + prefix[:-1] if prefix else ''} has no Output node")
    _check_name_lists(graph, prefix)
    for edge, count in Counter(graph.edges).items():
        if count > 1:
            raise SnnirError(f"duplicate edge {shown(edge[0])} -> {shown(edge[1])}", prefix + edge[1])
    for src, dst in graph.edges:
        for endpoint, as_source in ((src, True), (dst, False)):
            try:
                node, _ = graph.resolve(endpoint, as_source)
            except SnnirError as exc:
                raise SnnirError(f"edge {shown(src)} -> {shown(dst)}: {exc.reason}", prefix + endpoint) from None
            op = graph.nodes[node]
            if as_source and isinstance(op, Output):
                raise SnnirError(f"edge {shown(src)} -> {shown(dst)} leaves an Output node", prefix + node)
            if not as_source and isinstance(op, Input):
                raise SnnirError(f"edge {shown(src)} -> {shown(dst)} enters an Input node", prefix + node)
    for name, op in graph.nodes.items():
        _check_op(prefix + name, op, warnings)
        if isinstance(op, Subgraph):
            _check_level(op.graph, f"{prefix}{name}.", warnings)
    try:
        sched = schedule(graph)
    except SnnirError as exc:
        raise SnnirError(exc.reason, prefix + (exc.node or "")) from None
    check_probes(graph, sched.delayed, prefix)
    broken = broken_tie(graph)
    if broken is not None:
        raise SnnirError(broken[0], prefix + broken[1])


def _check_name_lists(graph: Graph, prefix: str) -> None:
    """snnir's metadata that lists node names at this level (the planning passes' records; a
    fused node's ``FUSED_FROM``, two names) is that, as the passes and the writer use it: a number
    or array there (a file's, or a graph built so) is refused, naming the graph or node."""
    where = prefix[:-1] or None
    for key in (STATIC_KEY, HOISTED_KEY, PLAN_KEY):
        value = graph.metadata.get(key)
        lists = list(value.values()) if key == PLAN_KEY and isinstance(value, Mapping) else [value]
        if value is not None and not all(is_name_list(names) for names in lists):
            what = "a mapping of lists of node names" if key == PLAN_KEY else "a list of node names"
            raise SnnirError(f"graph metadata '{key}' must be {what}, got {reprlib.repr(value)}", where)
    for name, op in graph.nodes.items():
        origin = op.metadata.get(FUSED_FROM) if isinstance(op, FusedLayerNeuron) else None
        if origin is not None and not (is_name_list(origin) and len(origin) == 2):
            raise SnnirError(f"metadata '{FUSED_FROM}' must be the two names [layer, neuron] it was fused from, "
                             f"got {reprlib.repr(origin)}", prefix + name)


def is_name_list(value: Any) -> bool:
    """A list of names; an empty one reads from a file as an empty array (a file has no type for it)."""
    if isinstance(value, np.ndarray):
        return value.size == 0
    return isinstance(value, (list, tuple)) and all(isinstance(name, str) for name in value)


def _check_op(path: str, op: Op, warnings: list[str]) -> None:
    registered = OPS.get(op.op_type)
    if registered is None or not isinstance(op, registered):
        raise SnnirError(f"unknown op type '{op.op_type}'", path)
    for pname, value in op.params().items():
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            raise SnnirError(f"parameter {pname} has {bad} non-finite values (NaN or inf)", path)
    if getattr(getattr(op, "sem", None), "detached", False) and not isinstance(op, Delay):
        raise SnnirError("semantics 'detached' is defined for Delay nodes only", path)
    if isinstance(op, Neuron):
        try:
            op.neuron_shape()
        except SnnirError as exc:
            raise SnnirError(exc.reason, path) from None
        params = op.params()
        for tau_name in ("tau", "tau_mem", "tau_syn"):
            if tau_name in params:
                tau = params[tau_name]
                if np.any(tau <= 0):
                    raise SnnirError(f"{tau_name} must be positive", path)
                with np.errstate(over="ignore"):
                    euler_overflows = op.sem.discretisation == "euler" and not np.all(np.isfinite(op.sem.dt / tau))
                if euler_overflows:
                    raise SnnirError(f"dt / {tau_name} overflows float64 ({tau_name} as small as {np.min(tau):.3g}): "
                                     "forward Euler would step NaN", path)
                if op.sem.discretisation == "euler" and np.any(op.sem.dt > tau):
                    warnings.append(
                        f"node '{path}': dt={op.sem.dt:g} exceeds {tau_name}; forward Euler overshoots"
                    )
        if "v_threshold" in params and op.sem.spike_mode == "multi" and np.any(params["v_threshold"] <= 0):
            raise SnnirError("multi-spike neurons need a positive v_threshold", path)
