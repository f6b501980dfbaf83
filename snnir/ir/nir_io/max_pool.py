"""How max pools (``snnir.MaxPool1d`` / ``snnir.MaxPool2d``; NIR has no max pool) go into files.

- A pool fed only 0/1 spikes (:mod:`snnir.ir.spikes`: a single-spike neuron's output, a
  Threshold's, a graph Input the caller declares binary, or a Flatten, Delay or such a pool
  of one) whose windows have an exact standard form (:meth:`MaxPool2d.binary_form`: window
  sum then ``Threshold`` 0.5) is written as a nested NIRGraph of that form: every NIR reader
  loads it. Its metadata names the op (:data:`RESTORE_KEY`), and :func:`restore_max_pools`
  turns it back into the op on read when the nested graph is still exactly that form, so
  ``read(write(g)) == g``.
- Any other pool is written as itself (type ``snnir.MaxPool2d``, lossless; only snnir reads
  it), and the caller warns once; a library dialect refuses it naming the node.

This is the writer's job, not a pass: the standard form only serves the file's other
readers, and in memory the one max-pool node is simpler to run and to read.
"""

from __future__ import annotations

from typing import Any, Mapping

from snnir.errors import SnnirError
from snnir.ir.graph import Graph
from snnir.ir.ops import Input, Subgraph
from snnir.ir.ops.base import Op
from snnir.ir.ops.pool import MAX_POOLS
from snnir.ir.registry import op_class
from snnir.ir.schedule import schedule
from snnir.ir.shapes import Shapes, infer_shapes
from snnir.ir.spikes import binary_values, edge_sources, fed_binary

#: Metadata key of a nested graph that stands for a max pool: ``{"op_type", field: value}``.
RESTORE_KEY = "snnir.max_pool"


def spell_max_pools(graph: Graph, binary_inputs: frozenset[str]) -> tuple[Graph, list[str]]:
    """``graph`` with each pool of spikes in its standard form, and the paths of the pools
    kept as extension ops. ``binary_inputs`` names top-level Inputs that carry 0/1 values."""
    unknown = sorted(set(binary_inputs) - set(graph.inputs))
    if unknown:
        raise SnnirError(f"binary_inputs names {unknown}, which are not Input nodes (inputs: {list(graph.inputs)})")
    try:
        shapes = infer_shapes(graph)
    except SnnirError:
        shapes = None  # shapes unknown: no pool's form can be checked, all are kept
    kept: list[str] = []
    return _spell_level(graph, "", shapes, frozenset(binary_inputs), kept), kept


def _spell_level(graph: Graph, prefix: str, shapes: Shapes | None, binary_inputs: frozenset[str],
                 kept: list[str]) -> Graph:
    sources = edge_sources(graph, schedule(graph))

    def form_of(name: str, op: Op) -> Graph | None:
        shape = None if shapes is None else shapes.inputs.get(prefix + name)
        return None if shape is None else op.binary_form(shape)

    binary = binary_values(graph, schedule(graph).order, sources, binary_inputs,
                           lambda name, op: isinstance(op, MAX_POOLS) and form_of(name, op) is not None)
    nodes = {}
    for name, op in graph.nodes.items():
        if isinstance(op, Subgraph):  # a nested graph's inputs are not known to be binary
            op = op.replace(graph=_spell_level(op.graph, f"{prefix}{name}.", shapes, frozenset(), kept))
        elif isinstance(op, MAX_POOLS):
            form = form_of(name, op) if fed_binary(sources, name, binary) else None
            if form is None:
                kept.append(prefix + name)
            else:
                record = {"op_type": op.op_type, **{a: _plain(getattr(op, a)) for a in op.attribute_names()}}
                op = Subgraph(graph=form, metadata={**op.metadata, RESTORE_KEY: record}, trainable=())
        nodes[name] = op
    return graph.replace(nodes=nodes)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def restore_max_pools(graph: Graph, warnings: list[str], prefix: str = "") -> Graph:
    """``graph`` with each nested graph that :func:`spell_max_pools` wrote turned back into its
    max pool; one whose contents no longer match is kept as read, with a warning."""
    nodes = {}
    for name, op in graph.nodes.items():
        if isinstance(op, Subgraph):
            op = op.replace(graph=restore_max_pools(op.graph, warnings, f"{prefix}{name}."))
            if RESTORE_KEY in op.metadata:
                op = _restored(op, prefix + name, warnings)
        nodes[name] = op
    return graph.replace(nodes=nodes)


def _restored(op: Subgraph, path: str, warnings: list[str]) -> Op:
    metadata = dict(op.metadata)
    record = metadata.pop(RESTORE_KEY)
    pool = None
    if isinstance(record, Mapping) and record.get("op_type") in [cls.op_type for cls in MAX_POOLS]:
        fields = {k: v for k, v in record.items() if k != "op_type"}
        try:
            pool = op_class(record["op_type"])(**fields, metadata=metadata)
        except (SnnirError, TypeError):
            pool = None
    inputs = [node for node in op.graph.nodes.values() if isinstance(node, Input)]
    if pool is not None and len(inputs) == 1 and inputs[0].shape is not None:
        try:
            if pool.binary_form(inputs[0].shape) == op.graph:
                return pool
        except SnnirError:
            pass
    warnings.append(f"node '{path}': its metadata says it is a max pool of spikes, but its nested graph is not "
                    f"that pool's standard form; read as the nested graph")
    return op
