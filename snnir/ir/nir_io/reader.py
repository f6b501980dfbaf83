"""HDF5 -> Graph, for every NIR layout in the wild (0.1.x to 1.0.x), with limits.

Sizes, dtypes and depths are checked from HDF5 metadata before any data is
read, so a hostile file gives a one-line :class:`SnnirError` naming the node.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

import h5py
import numpy as np

from snnir.errors import SnnirError
from snnir.ir.graph import Graph
from snnir.ir.ops import Subgraph
from snnir.ir.ops.base import Op
from snnir.ir.registry import op_class
from snnir.ir.semantics import Semantics
from snnir.ir.nir_io.encoding import (
    MAX_DATASET_ELEMENTS, MAX_DEPTH, MAX_EDGES, MAX_NODES, MAX_STRING_BYTES, MAX_TOTAL_BYTES, SNNIR_KEY, loads,
)

#: Datasets NIR writers add that carry nothing our ops need.
_IGNORED_FIELDS = {"type", "metadata", "input_type", "output_type", "nodes", "edges"}


class Reader:
    """Reads one file; collects what it assumed into ``defaults``, ``warnings`` and ``repairs``.

    ``sem`` is given to every node whose file states no semantics; ``caller`` holds the
    semantics the caller asked for, noted where a file's own record differs.
    """

    def __init__(self, sem: Semantics, sem_sources: str, caller: dict[str, Any], repair: bool):
        self.sem = sem
        self.sem_sources = sem_sources
        self.caller = caller
        self.repair = repair
        self.defaults: list[str] = []
        self.warnings: list[str] = []
        self.repairs: list[str] = []
        self.current: str | None = None  # the node being read, for error messages
        self.found_record = False  # whether any node or graph holds an snnir record (a file we wrote)
        self._bytes = 0

    # --- structure -----------------------------------------------------------
    def read_root(self, file: h5py.File) -> Graph:
        root = file.get("node")
        if not isinstance(root, h5py.Group):
            raise SnnirError("not a NIR file: it has no 'node' group")
        kind = self._string(root, "type", "<graph>")
        if kind != "NIRGraph":
            raise SnnirError(f"the top node must be a NIRGraph, got '{kind}'")
        metadata = self._mapping(root.get("metadata"), "<graph>", 0)
        text = metadata.pop(SNNIR_KEY, None)
        return self._graph(root, "", 0, metadata, self._record(text, "<graph>", {}))

    def _graph(self, group: h5py.Group, prefix: str, depth: int, metadata: dict, record: dict) -> Graph:
        where = prefix[:-1] or None
        if depth > MAX_DEPTH:
            raise SnnirError(f"graphs are nested deeper than the limit {MAX_DEPTH}", where)
        nodes_group = group.get("nodes")
        if not isinstance(nodes_group, h5py.Group):
            raise SnnirError("graph has no 'nodes' group", where)
        if len(nodes_group) > MAX_NODES:
            raise SnnirError(f"graph has {len(nodes_group)} nodes, more than the limit {MAX_NODES}", where)
        nodes: dict[str, Op] = {}
        for name in nodes_group:
            child = self._member(nodes_group, name, prefix + name)
            if not isinstance(child, h5py.Group):
                raise SnnirError("is not a node group", prefix + name)
            nodes[name] = self._node(child, prefix + name, depth + 1, record.get("nodes", {}).get(name, {}))
        self.current = where
        graph = Graph(nodes, self._edges(group, where), metadata)
        return self._check_edges(graph, where)

    def _node(self, group: h5py.Group, path: str, depth: int, held: dict) -> Op:
        """``held``: the record the enclosing graph keeps for this node, if any."""
        self.current = path
        if depth > MAX_DEPTH:
            raise SnnirError(f"nodes are nested deeper than the limit {MAX_DEPTH}", path)
        kind = self._string(group, "type", path)
        metadata = self._mapping(group.get("metadata"), path, 0)
        text = metadata.pop(SNNIR_KEY, None)
        record = self._record(text, path, held)
        trainable = tuple(record.get("trainable", ()))
        if kind == "NIRGraph":
            graph = self._graph(group, path + ".", depth, metadata, record)
            return self._build(Subgraph, path, dict(graph=graph, metadata=record.get("op_metadata", {}),
                                                    trainable=trainable))
        cls = op_class(kind, node=path)
        kwargs: dict[str, Any] = {"metadata": metadata, "trainable": trainable}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name in cls.param_names():
            value = self._param(group, name, path, record, fields[name])
            if value is not None:
                kwargs[name] = value
        for name in cls.attribute_names():
            value = self._attribute(group, name, path, record, fields[name], depth)
            if value is not _MISSING:
                kwargs[name] = value
        unknown = sorted(set(group) - set(fields) - _IGNORED_FIELDS)
        if unknown:
            self.warnings.append(f"node '{path}': ignored fields {unknown} that {kind} does not have")
        return self._build(cls, path, kwargs)

    def _record(self, text: Any, path: str, held: dict) -> dict:
        """The node's own snnir record, else ``held`` (kept for it by its graph)."""
        record = loads(text, path) if isinstance(text, str) else held
        self.found_record = self.found_record or bool(record)
        return record

    def _build(self, cls: type[Op], path: str, kwargs: dict) -> Op:
        try:
            return cls(**kwargs)
        except SnnirError as exc:
            raise SnnirError(exc.reason, path) from None
        except (TypeError, ValueError) as exc:
            raise SnnirError(f"cannot build {cls.op_type}: {exc}", path) from None

    def _param(self, group: h5py.Group, name: str, path: str, record: dict, field: Any) -> np.ndarray | None:
        if name in group:
            array = self._array(group, name, path)
            shape = record.get("shapes", {}).get(name)
            return array if shape is None else _unbroadcast(array, tuple(shape), name, path)
        absent = record.get("absent", {}).get(name)
        if absent is not None:
            return np.zeros(tuple(absent["shape"]), dtype=np.dtype(absent["dtype"]))
        if field.default_factory is dataclasses.MISSING and field.default is dataclasses.MISSING:
            raise SnnirError(f"missing required parameter '{name}'", path)
        if name == "v_reset":
            self.defaults.append(f"{path}: v_reset=0 (not in file; NIR < 1.0)")
        return None

    def _attribute(self, group: h5py.Group, name: str, path: str, record: dict, field: Any, depth: int) -> Any:
        if name == "sem":
            if "sem" in record:
                try:
                    sem = Semantics.from_dict(record["sem"])
                except (SnnirError, TypeError) as exc:
                    raise SnnirError(f"bad semantics record: {exc}", path) from None
                ignored = {k: v for k, v in self.caller.items() if getattr(sem, k) != v}
                if ignored:
                    self.warnings.append(f"node '{path}': the file states its semantics; kept them, not {ignored}")
                return sem
            self.defaults.append(f"{path}: {self.sem_sources}")
            return self.sem
        if name in record.get("none", ()):
            return None
        if name not in group:
            if field.default_factory is dataclasses.MISSING and field.default is dataclasses.MISSING:
                raise SnnirError(f"missing required attribute '{name}'", path)
            return _MISSING
        member = self._member(group, name, path)
        if isinstance(member, h5py.Group):
            if name in record.get("graphs", ()):
                meta = self._mapping(member.get("metadata"), path, 0)
                text = meta.pop(SNNIR_KEY, None)
                return self._graph(member, f"{path}.{name}.", depth + 1, meta, self._record(text, path, {}))
            return self._node(member, f"{path}.{name}", depth + 1, {})
        value = self._dataset(member, f"{path}.{name}", path, allow_strings=True)
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        if name in record.get("tuples", ()):
            value = tuple(np.asarray(value).tolist())
        return value

    def _edges(self, group: h5py.Group, where: str | None) -> list[tuple[str, str]]:
        if "edges" not in group:
            raise SnnirError("graph has no 'edges' dataset", where)
        ds = self._member(group, "edges", where)
        if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "OSU" or ds.ndim not in (1, 2):
            raise SnnirError("graph 'edges' must be an [N, 2] array of node names", where)
        if ds.size == 0:
            return []
        if ds.ndim != 2 or ds.shape[1] != 2:
            raise SnnirError(f"graph 'edges' must have shape [N, 2], got {list(ds.shape)}", where)
        if ds.shape[0] > MAX_EDGES:
            raise SnnirError(f"graph has {ds.shape[0]} edges, more than the limit {MAX_EDGES}", where)
        self._account(ds, where)
        return [(_text(a, where), _text(b, where)) for a, b in ds[()]]

    def _check_edges(self, graph: Graph, where: str | None) -> Graph:
        """Every endpoint must name a node; with ``repair`` a unique close match replaces it."""
        edges = []
        for src, dst in graph.edges:
            fixed = []
            for endpoint, as_source in ((src, True), (dst, False)):
                try:
                    graph.resolve(endpoint, as_source)
                    fixed.append(endpoint)
                    continue
                except SnnirError as exc:
                    reason = exc.reason
                match = _close_match(endpoint, list(graph.nodes))
                if match is not None and self.repair:
                    self.repairs.append(f"{where or '<graph>'}: edge {src} -> {dst}: '{endpoint}' -> '{match}'")
                    fixed.append(match)
                    continue
                if match is not None:
                    raise SnnirError(f"edge {src} -> {dst} names no node '{endpoint}'; did you mean '{match}'?",
                                     where, flag="repair")
                raise SnnirError(f"edge {src} -> {dst}: {reason}", where)
            edges.append((fixed[0], fixed[1]))
        return graph.replace(edges=edges)

    # --- datasets ------------------------------------------------------------
    def _member(self, group: h5py.Group, name: str, path: str | None) -> Any:
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            raise SnnirError(f"'{name}' links to another file, which is not allowed", path)
        member = group.get(name)
        if member is None:
            raise SnnirError(f"'{name}' cannot be opened (dangling link)", path)
        return member

    def _account(self, ds: h5py.Dataset, path: str | None) -> None:
        size = int(np.prod(ds.shape, dtype=object)) if ds.shape is not None else 0
        if size > MAX_DATASET_ELEMENTS:
            raise SnnirError(
                f"dataset '{ds.name.rsplit('/', 1)[-1]}' declares {size} elements, more than the limit "
                f"{MAX_DATASET_ELEMENTS}", path)
        if ds.chunks is None and ds.id.get_offset() is not None:
            end = ds.id.get_offset() + ds.id.get_storage_size()
            if end > ds.file.id.get_filesize():
                raise SnnirError(f"dataset '{ds.name.rsplit('/', 1)[-1]}' lies past the end of the file "
                                 "(truncated?)", path)
        self._bytes += size * max(ds.dtype.itemsize, 1)
        if self._bytes > MAX_TOTAL_BYTES:
            raise SnnirError(f"the file's data exceeds the limit of {MAX_TOTAL_BYTES} bytes", path)

    def _dataset(self, ds: Any, what: str, path: str | None, allow_strings: bool) -> Any:
        if not isinstance(ds, h5py.Dataset):
            raise SnnirError(f"'{what}' must be a dataset", path)
        kind = ds.dtype.kind
        if kind not in "biuf" and not (allow_strings and kind in "OSU"):
            raise SnnirError(f"'{what}' must be numeric, got dtype {ds.dtype}", path)
        if ds.shape is None:
            raise SnnirError(f"'{what}' is an empty dataset", path)
        self._account(ds, path)
        value = ds[()]
        if kind in "OSU":
            array = np.asarray(value, dtype=object)
            texts = [_text(v, path) for v in array.reshape(-1)]
            return texts[0] if array.ndim == 0 else texts
        array = np.asarray(value)
        return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))

    def _array(self, group: h5py.Group, name: str, path: str) -> np.ndarray:
        return self._dataset(self._member(group, name, path), name, path, allow_strings=False)

    def _string(self, group: h5py.Group, name: str, path: str) -> str:
        if name not in group:
            raise SnnirError(f"has no '{name}' dataset", path)
        value = self._dataset(self._member(group, name, path), name, path, allow_strings=True)
        if not isinstance(value, str):
            raise SnnirError(f"'{name}' must be a string", path)
        return value

    def _mapping(self, group: Any, path: str, depth: int) -> dict[str, Any]:
        """A metadata group as a dict; nested groups become nested dicts."""
        if group is None:
            return {}
        if not isinstance(group, h5py.Group):
            raise SnnirError("'metadata' must be a group", path)
        if depth > MAX_DEPTH:
            raise SnnirError(f"metadata is nested deeper than the limit {MAX_DEPTH}", path)
        out: dict[str, Any] = {}
        for key in group:
            member = self._member(group, key, path)
            if isinstance(member, h5py.Group):
                out[key] = self._mapping(member, path, depth + 1)
                continue
            try:
                value = self._dataset(member, f"metadata/{key}", path, allow_strings=True)
            except SnnirError as exc:
                self.warnings.append(f"node '{path}': skipped metadata '{key}': {exc.reason}")
                continue
            if isinstance(value, np.ndarray) and value.ndim == 0:
                value = value[()]
            out[key] = value
        return out


_MISSING = object()


def _text(value: Any, path: str | None) -> str:
    if isinstance(value, bytes):
        if len(value) > MAX_STRING_BYTES:
            raise SnnirError("a string in the file is too long", path)
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise SnnirError(f"string {value[:40]!r} is not UTF-8", path) from None
    if isinstance(value, str):
        return value
    raise SnnirError(f"expected a string, got {type(value).__name__}", path)


def _unbroadcast(array: np.ndarray, shape: tuple[int, ...], name: str, path: str) -> np.ndarray:
    """Undo a write-time broadcast to ``array.shape``: keep the first slice of stretched dims."""
    lead = array.ndim - len(shape)
    if lead < 0 or any(s not in (1, n) for s, n in zip(shape, array.shape[lead:])):
        raise SnnirError(f"parameter '{name}' of shape {list(array.shape)} cannot be restored to {list(shape)}", path)
    index = (0,) * lead + tuple(slice(0, s) for s in shape)
    return np.array(array[index])


def _close_match(name: str, candidates: list[str]) -> str | None:
    """The one candidate clearly close to ``name``, or ``None``."""
    matches = difflib.get_close_matches(name, candidates, n=2, cutoff=0.75)
    return matches[0] if len(matches) == 1 else None
