"""File tree -> Graph, for every NIR layout in the wild (0.1.x to 1.0.x), with limits.

Works on the plain tree :mod:`snnir.ir.nir_io.extract` made of the file
(dicts, numeric arrays, string arrays): no HDF5 here; the extraction bounded
its nesting. Every allocation the file asks for beyond the tree (parameters
its record says are absent zeros) is counted against ``limits.data_bytes``
before it is made, so a hostile file gives a one-line :class:`SnnirError`
naming the node.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

import numpy as np

from snnir.errors import SnnirError, shown
from snnir.ir.graph import Graph
from snnir.ir.ops import Subgraph
from snnir.ir.ops.base import Op
from snnir.ir.registry import op_class
from snnir.ir.semantics import Semantics
from snnir.ir.nir_io.encoding import MAX_EDGES, MAX_NODES, SNNIR_KEY, loads
from snnir.ir.nir_io.extract import Unreadable
from snnir.limits import Limits

#: Datasets NIR writers add that carry nothing our ops need.
_IGNORED_FIELDS = {"type", "metadata", "input_type", "output_type", "nodes", "edges"}


class Reader:
    """Reads one file; collects what it assumed into ``defaults``, ``warnings`` and ``repairs``.

    ``sem`` is given to every node whose file states no semantics; ``caller`` holds the
    semantics the caller asked for, noted where a file's own record differs.
    """

    def __init__(self, sem: Semantics, sem_sources: str, caller: dict[str, Any], repair: bool, limits: Limits):
        self.sem = sem
        self.sem_sources = sem_sources
        self.caller = caller
        self.repair = repair
        self.defaults: list[str] = []
        self.warnings: list[str] = []
        self.repairs: list[str] = []
        self.current: str | None = None  # the node being read, for error messages
        self.found_record = False  # whether any node or graph holds an snnir record (a file we wrote)
        self.version: str | None = None  # the root 'version' string (its first 40 characters), if any
        self.limits = limits
        self._bytes = 0

    # --- structure -----------------------------------------------------------
    def read_root(self, tree: dict[str, Any]) -> Graph:
        self._bytes = _tree_bytes(tree)
        version = tree.get("version")
        if isinstance(version, np.ndarray) and version.shape == () and isinstance(version[()], str):
            self.version = version[()][:40]
        root = tree.get("node")
        if not isinstance(root, dict):
            raise SnnirError("not a NIR file: it has no 'node' group")
        kind = self._string(root, "type", "<graph>")
        if kind != "NIRGraph":
            raise SnnirError(f"the top node must be a NIRGraph, got '{kind}'")
        metadata = self._mapping(root.get("metadata"), "<graph>")
        text = metadata.pop(SNNIR_KEY, None)
        return self._graph(root, "", metadata, self._record(text, "<graph>", {}))

    def _graph(self, group: dict, prefix: str, metadata: dict, record: dict) -> Graph:
        where = prefix[:-1] or None
        nodes_group = group.get("nodes")
        if not isinstance(nodes_group, dict):
            raise SnnirError("graph has no 'nodes' group", where)
        if len(nodes_group) > MAX_NODES:
            raise SnnirError(f"graph has {len(nodes_group)} nodes, more than the limit {MAX_NODES}", where)
        nodes: dict[str, Op] = {}
        for name in nodes_group:
            child = nodes_group[name]
            if not isinstance(child, dict):
                raise SnnirError("is not a node group", prefix + name)
            nodes[name] = self._node(child, prefix + name, record.get("nodes", {}).get(name, {}))
        self.current = where
        graph = Graph(nodes, self._edges(group, where), metadata, self._ties(record, where))
        return self._check_edges(graph, where)

    def _node(self, group: dict, path: str, held: dict) -> Op:
        """``held``: the record the enclosing graph keeps for this node, if any."""
        self.current = path
        kind = self._string(group, "type", path)
        metadata = self._mapping(group.get("metadata"), path)
        text = metadata.pop(SNNIR_KEY, None)
        record = self._record(text, path, held)
        trainable = tuple(record.get("trainable", ()))
        if kind == "NIRGraph":
            graph = self._graph(group, path + ".", metadata, record)
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
            value = self._attribute(group, name, path, record, fields[name])
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

    def _param(self, group: dict, name: str, path: str, record: dict, field: Any) -> np.ndarray | None:
        if name in group:
            array = self._array(group, name, path)
            shape = record.get("shapes", {}).get(name)
            return array if shape is None else self._unbroadcast(array, tuple(shape), name, path)
        absent = record.get("absent", {}).get(name)
        if absent is not None:
            dtype, shape = np.dtype(absent["dtype"]), tuple(absent["shape"])
            self._count(int(np.prod(shape, dtype=object)) * dtype.itemsize, f"absent '{name}'", path)
            return np.zeros(shape, dtype=dtype)
        if field.default_factory is dataclasses.MISSING and field.default is dataclasses.MISSING:
            raise SnnirError(f"missing required parameter '{name}'", path)
        if name == "v_reset":
            self.defaults.append(f"{path}: v_reset=0 (not in file; NIR < 1.0)")
        return None

    def _unbroadcast(self, array: np.ndarray, shape: tuple[int, ...], name: str, path: str) -> np.ndarray:
        """Undo a write-time broadcast to ``array.shape`` (keep the first slice of stretched dims) when the
        data is that slice broadcast; where it varies (another tool wrote new values), the data wins."""
        lead = array.ndim - len(shape)
        if lead < 0 or any(s not in (1, n) for s, n in zip(shape, array.shape[lead:])):
            raise SnnirError(f"parameter '{name}' of shape {list(array.shape)} cannot be restored to {list(shape)}",
                             path)
        if array.size == 0:
            if int(np.prod(shape, dtype=object)) != 0:
                raise SnnirError(f"parameter '{name}' is empty, but its snnir record says shape {list(shape)}", path)
            return array.reshape(shape)
        restored = np.array(array[(0,) * lead + tuple(slice(0, s) for s in shape)])
        if not np.array_equal(np.broadcast_to(restored, array.shape), array, equal_nan=array.dtype.kind == "f"):
            self.warnings.append(f"node '{path}': parameter '{name}' varies over shape {list(array.shape)} but its "
                                 f"snnir record says {list(shape)}; kept the data")
            return array
        return restored

    def _attribute(self, group: dict, name: str, path: str, record: dict, field: Any) -> Any:
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
        member = group[name]
        if isinstance(member, dict):
            if name in record.get("graphs", ()):
                meta = self._mapping(member.get("metadata"), path)
                text = meta.pop(SNNIR_KEY, None)
                return self._graph(member, f"{path}.{name}.", meta, self._record(text, path, {}))
            return self._node(member, f"{path}.{name}", {})
        value = self._dataset(member, f"{path}.{name}", path, allow_strings=True)
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        if name in record.get("tuples", ()):
            value = tuple(np.asarray(value).tolist())
        return value

    def _edges(self, group: dict, where: str | None) -> list[tuple[str, str]]:
        if "edges" not in group:
            raise SnnirError("graph has no 'edges' dataset", where)
        ds = group["edges"]
        if not isinstance(ds, np.ndarray) or ds.dtype.kind != "O" or ds.ndim not in (1, 2):
            raise SnnirError("graph 'edges' must be an [N, 2] array of node names", where)
        if ds.size == 0:
            return []
        if ds.ndim != 2 or ds.shape[1] != 2:
            raise SnnirError(f"graph 'edges' must have shape [N, 2], got {list(ds.shape)}", where)
        if ds.shape[0] > MAX_EDGES:
            raise SnnirError(f"graph has {ds.shape[0]} edges, more than the limit {MAX_EDGES}", where)
        edges = [(str(a), str(b)) for a, b in ds]
        if len(set(edges)) != len(edges):  # the verifier's rule, before building anything on them
            seen: set[tuple[str, str]] = set()
            src, dst = next(edge for edge in edges if edge in seen or seen.add(edge))
            raise SnnirError(f"duplicate edge {shown(src)} -> {shown(dst)}", f"{where}.{dst}" if where else dst)
        return edges

    def _ties(self, record: dict, where: str | None) -> tuple[tuple[str, ...], ...]:
        """The graph's parameter ties, from its snnir record (checked by the verifier)."""
        ties = record.get("ties", [])
        if not isinstance(ties, list) or not all(
            isinstance(group, list) and all(isinstance(name, str) for name in group) for group in ties
        ):
            raise SnnirError("the snnir record's 'ties' must be a list of lists of node names", where)
        return tuple(tuple(group) for group in ties)

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
    def _count(self, nbytes: int, what: str, path: str | None) -> None:
        """Count an allocation the file asks for against ``limits.data_bytes`` before it is made."""
        self._bytes += nbytes
        if self._bytes > self.limits.data_bytes:
            raise SnnirError(f"the file's data exceeds the limit of {self.limits.data_bytes} bytes (at {what}; "
                             "raise limits.data_bytes / SNNIR_DATA_LIMIT_BYTES)", path)

    def _dataset(self, value: Any, what: str, path: str | None, allow_strings: bool) -> Any:
        if isinstance(value, Unreadable):
            raise SnnirError(f"'{what}' is {value.reason}, not numbers or text", path)
        if not isinstance(value, np.ndarray):
            raise SnnirError(f"'{what}' must be a dataset", path)
        if value.dtype.kind == "O":
            if not allow_strings:
                raise SnnirError(f"'{what}' must be numeric, got strings", path)
            return value.item() if value.ndim == 0 else [str(t) for t in value.reshape(-1)]
        return value

    def _array(self, group: dict, name: str, path: str) -> np.ndarray:
        return self._dataset(group[name], name, path, allow_strings=False)

    def _string(self, group: dict, name: str, path: str) -> str:
        if name not in group:
            raise SnnirError(f"has no '{name}' dataset", path)
        value = self._dataset(group[name], name, path, allow_strings=True)
        if not isinstance(value, str):
            raise SnnirError(f"'{name}' must be a string", path)
        return value

    def _mapping(self, group: Any, path: str) -> dict[str, Any]:
        """A metadata group as a dict; nested groups become nested dicts."""
        if group is None:
            return {}
        if not isinstance(group, dict):
            raise SnnirError("'metadata' must be a group", path)
        out: dict[str, Any] = {}
        for key in group:
            member = group[key]
            if isinstance(member, dict):
                out[key] = self._mapping(member, path)
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


def _tree_bytes(tree: Any) -> int:
    """Bytes of the arrays in a tree (strings count as their characters)."""
    if isinstance(tree, dict):
        return sum(_tree_bytes(child) for child in tree.values())
    if isinstance(tree, np.ndarray):
        return sum(len(t) for t in tree.reshape(-1)) if tree.dtype.kind == "O" else tree.nbytes
    return 0


def _close_match(name: str, candidates: list[str]) -> str | None:
    """The one candidate clearly close to ``name``, or ``None``."""
    matches = difflib.get_close_matches(name, candidates, n=2, cutoff=0.75)
    return matches[0] if len(matches) == 1 else None
