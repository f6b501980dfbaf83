"""Graph -> HDF5 in the layout nir 1.0.x reads (``nir.read`` loads what we write).

Standard fields are written as NIR names them; whatever NIR cannot say goes in
the ``snnir`` metadata record (see :mod:`snnir.ir.nir_io.encoding`).
"""

from __future__ import annotations

from typing import Any, Mapping

import h5py
import numpy as np

from snnir.errors import SnnirError
from snnir.ir.graph import Graph
from snnir.ir.memory import check_limit, parameter_bytes
from snnir.ir.ops import Conv1d, Conv2d, Delay, Flatten, Neuron, Output, Scale, Subgraph, Threshold
from snnir.ir.ops.base import Op
from snnir.ir.registry import is_extension
from snnir.ir.semantics import Semantics
from snnir.ir.shapes import Shapes
from snnir.limits import Limits
from snnir.ir.nir_io.encoding import SNNIR_KEY, dumps

#: The NIR format version our files follow.
NIR_VERSION = "1.0.4"
_STR = h5py.string_dtype()
#: Parameters an older NIR reader does not know; left out when all zero.
_OMIT_WHEN_ZERO = ("v_reset",)
_ELEMENTWISE = (Neuron, Scale, Threshold, Delay)
#: nir 1.0.4 gives these types no ``metadata`` field: their record goes in the enclosing graph's.
_NO_METADATA_IN_NIR_104 = frozenset({"Input", "Output", "Linear", "Scale", "Conv2d", "AvgPool2d"})


def write_file(file: h5py.File, graph: Graph, shapes: Shapes | None) -> None:
    """Write ``graph`` into ``file``, stating the ``shapes`` inferred for it (None: none known)."""
    file.create_dataset("version", data=NIR_VERSION, dtype=_STR)
    _write_graph(file.create_group("node"), graph, "", shapes, {"writer": "snnir"})


def _write_graph(group: h5py.Group, graph: Graph, prefix: str, shapes: Shapes | None, record: dict) -> None:
    group.create_dataset("type", data="NIRGraph", dtype=_STR)
    nodes = group.create_group("nodes", track_order=True)  # peers' importers run nodes in file order
    for name, op in graph.nodes.items():
        if "/" in name or "\0" in name or name == ".":
            raise SnnirError("node names written to NIR files cannot contain '/' or NUL or be '.'", prefix + name)
        try:
            homeless = _write_node(nodes.create_group(name), op, prefix + name, shapes)
        except (ValueError, TypeError) as exc:  # h5py refuses the value (e.g. a NUL in a string)
            raise SnnirError(f"cannot be written: {exc}", prefix + name) from None
        if homeless:
            record.setdefault("nodes", {})[name] = homeless
    edges = np.array([[s, d] for s, d in graph.edges], dtype=object).reshape(len(graph.edges), 2)
    group.create_dataset("edges", data=edges, dtype=_STR)
    if graph.ties:
        record["ties"] = [list(names) for names in graph.ties]
    _write_metadata(group, graph.metadata, record, prefix[:-1] or "<graph>")


def _write_node(group: h5py.Group, op: Op, path: str, shapes: Shapes | None, nested: bool = False) -> dict:
    """Write one node; return its record when nir 1.0.4 gives the type no metadata to hold it
    (``nested`` ops inside extension ops always keep their record)."""
    record: dict[str, Any] = {}
    if op.trainable:
        record["trainable"] = list(op.trainable)
    if isinstance(op, Subgraph):
        if op.metadata:
            record["op_metadata"] = dict(op.metadata)
        _write_graph(group, op.graph, path + ".", shapes, record)
        return {}
    group.create_dataset("type", data=op.op_type, dtype=_STR)
    _write_params(group, op, record, path, shapes)
    for name in op.attribute_names():
        _write_attribute(group, op, name, getattr(op, name), path, shapes, record)
    if isinstance(op, Flatten) and shapes is not None and shapes.inputs.get(path):
        group.create_dataset("input_type", data=np.asarray(shapes.inputs[path], dtype=np.int64))
    if op.op_type in _NO_METADATA_IN_NIR_104 and not nested:
        _write_metadata(group, op.metadata, {}, path)
        return record
    _write_metadata(group, op.metadata, record, path)
    return {}


def _write_params(group: h5py.Group, op: Op, record: dict, path: str, shapes: Shapes | None) -> None:
    """Elementwise ops' parameters are broadcast to the node's shape: NIR types neurons by them."""
    common = _written_shape(op, path, shapes)
    for name, value in op.params().items():
        if name in _OMIT_WHEN_ZERO and not np.any(value):
            record.setdefault("absent", {})[name] = {"dtype": value.dtype.str, "shape": list(value.shape)}
            continue
        if common is not None and value.shape != tuple(common):
            record.setdefault("shapes", {})[name] = list(value.shape)
            value = np.broadcast_to(value, common)
        group.create_dataset(name, data=value, dtype=value.dtype)


def _written_shape(op: Op, path: str, shapes: Shapes | None) -> tuple[int, ...] | None:
    """The shape an elementwise op's parameters are written in (None: as they are)."""
    if not isinstance(op, _ELEMENTWISE):
        return None
    common = shapes.inputs.get(path) if shapes is not None else None
    if common is None and isinstance(op, Neuron):
        common = op.neuron_shape()
    return None if common is None else tuple(common)


def check_written_size(graph: Graph, shapes: Shapes | None, limits: Limits) -> None:
    """Refuse a file whose parameters, as written (elementwise ones broadcast), are over
    ``limits.data_bytes``: writing would allocate them, and reading would refuse the file."""
    total = 0
    for path, op in graph.walk():
        common = _written_shape(op, path, shapes)
        total += parameter_bytes(op) if common is None else sum(
            int(np.prod(common, dtype=object)) * value.itemsize for name, value in op.params().items()
            if name not in _OMIT_WHEN_ZERO or np.any(value))
        check_limit(total, limits, "data_bytes", "writing the parameters up to this node (broadcast to its shape)",
                    path)


def _write_attribute(
    group: h5py.Group, op: Op, name: str, value: Any, path: str, shapes: Shapes | None, record: dict
) -> None:
    if isinstance(value, Semantics):
        if name != "sem":
            raise SnnirError(f"cannot store a second Semantics field '{name}'", path)
        record["sem"] = value.to_dict()
    elif isinstance(value, Op):
        _write_node(group.create_group(name), value, f"{path}.{name}", shapes, nested=True)
    elif isinstance(value, Graph):
        record.setdefault("graphs", []).append(name)
        _write_graph(group.create_group(name), value, f"{path}.{name}.", None, {})
    elif value is None:
        record.setdefault("none", []).append(name)
        inferred = _inferred(op, name, path, shapes)
        if inferred is not None:
            inferred = np.asarray(inferred, dtype=np.int64)
            group.create_dataset(name, data=inferred[0] if isinstance(op, Conv1d) else inferred)
    elif isinstance(value, str):
        group.create_dataset(name, data=value, dtype=_STR)
    elif isinstance(value, (bool, int, float, np.generic)):
        group.create_dataset(name, data=value)
    elif isinstance(op, Conv1d) and name == "input_shape":
        group.create_dataset(name, data=np.int64(value[0]))  # nir 1.0.4 reads a Conv1d input_shape as an int
    elif isinstance(value, (tuple, list)):
        if is_extension(op.op_type):
            record.setdefault("tuples", []).append(name)
        try:
            group.create_dataset(name, data=np.asarray(value))
        except (TypeError, ValueError) as exc:
            raise SnnirError(f"cannot store attribute {name}={value!r}: {exc}", path) from None
    else:
        raise SnnirError(f"cannot store attribute {name} of type {type(value).__name__}", path)


def _inferred(op: Op, name: str, path: str, shapes: Shapes | None) -> Any:
    """The value nir needs where our op says ``None`` (to be inferred)."""
    if shapes is None:
        return None
    if isinstance(op, Output) and name == "shape":
        return shapes.inputs.get(path)
    if isinstance(op, (Conv1d, Conv2d)) and name == "input_shape":
        shape = shapes.inputs.get(path)
        return None if shape is None else shape[1:]
    return None


def _write_metadata(group: h5py.Group, metadata: Mapping[str, Any], record: dict, path: str) -> None:
    if SNNIR_KEY in metadata:
        raise SnnirError(f"metadata key '{SNNIR_KEY}' is reserved for snnir's own record", path)
    if not metadata and not record:
        return
    meta = group.create_group("metadata")
    try:
        _write_mapping(meta, metadata, path)
    except (ValueError, TypeError) as exc:  # h5py refuses the value (e.g. a NUL in a string)
        raise SnnirError(f"metadata cannot be written: {exc}", path) from None
    if record:
        meta.create_dataset(SNNIR_KEY, data=dumps(record), dtype=_STR)


def _write_mapping(group: h5py.Group, mapping: Mapping[str, Any], path: str) -> None:
    for key, value in mapping.items():
        if not isinstance(key, str) or not key or "/" in key or "\0" in key or key == ".":
            raise SnnirError(f"metadata key {key!r} must be a non-empty string without '/' or NUL", path)
        if isinstance(value, Mapping):
            _write_mapping(group.create_group(key), value, path)
        elif isinstance(value, str):
            group.create_dataset(key, data=value, dtype=_STR)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            group.create_dataset(key, data=np.array(value, dtype=object), dtype=_STR)
        else:
            array = np.asarray(value) if not isinstance(value, np.ndarray) else value
            if array.dtype.kind not in "biuf":
                raise SnnirError(f"metadata {key!r} of type {type(value).__name__} cannot be stored", path)
            group.create_dataset(key, data=value if isinstance(value, np.generic) else array)
