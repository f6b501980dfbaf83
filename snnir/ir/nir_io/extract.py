"""HDF5 file -> a plain tree: dicts (groups), numpy arrays (datasets), nothing else.

This is the only code that hands an untrusted file to libhdf5. It imports
nothing from snnir, so that :mod:`snnir.ir.nir_io.isolate` can run it alone in
a child process held to the caller's limits.

Invariants of :func:`extract`:
- every HDF5 object is visited once: a second link to an object already read
  (hard links forming a DAG or a cycle, or a soft link back) is refused, so the
  work is linear in the file; external and dangling links are refused;
- a dataset's data lies in the file itself: external storage and virtual datasets
  (data in, or mapped from, other files) are refused before any data is read;
- groups nest at most ``depth`` levels and hold at most :data:`MAX_MEMBERS` links;
- every dataset's bytes (declared shape x item size, which covers fill values of
  never-written chunks) are counted against ``data_bytes`` before it is read;
- link names are UTF-8;
- leaves are numeric arrays (native byte order, kinds ``biuf``), object arrays of
  ``str`` (string datasets, UTF-8 checked), or :class:`Unreadable` (other dtypes,
  empty dataspaces) for the interpreter to refuse or skip.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

#: More links than this in one group are refused.
MAX_MEMBERS = 1_000_000
#: Datasets with more elements than this are refused before their data is read
#: (``snnir.ir.ops.base.MAX_PARAM_ELEMENTS``: no op holds a larger parameter).
MAX_DATASET_ELEMENTS = 1 << 28
#: Strings longer than this are refused.
MAX_STRING_BYTES = 1 << 24


class Refusal(Exception):
    """The file breaks a rule; ``node`` is the NIR node path it happened in (``None``: the graph)."""

    def __init__(self, message: str, node: str | None):
        super().__init__(message)
        self.message = message
        self.node = node


@dataclass(frozen=True)
class Unreadable:
    """A dataset that is not plain numbers or strings; ``reason`` says what it is."""

    reason: str


def node_of(h5path: str) -> str | None:
    """The NIR node path of an HDF5 path: ``/node/nodes/a/nodes/b/tau`` -> ``a.b``."""
    parts = [p for p in h5path.split("/") if p]
    names = [part for before, part in zip(parts, parts[1:]) if before == "nodes"]
    return ".".join(names) or None


def extract(source: Any, data_bytes: int, depth: int) -> dict[str, Any]:
    """The whole file under ``/`` as a tree; raises :class:`Refusal` or what h5py raises."""
    with h5py.File(source, "r") as file:
        walker = _Walker(file, data_bytes, depth)
        return walker.group(file, "/", 0)


class _Walker:
    def __init__(self, file: h5py.File, data_bytes: int, depth: int):
        self.file_size = file.id.get_filesize()
        self.data_bytes = data_bytes
        self.depth = depth
        self.counted = 0
        self.seen: set[tuple[int, int]] = {_address(file)}

    def group(self, group: h5py.Group, h5path: str, level: int) -> dict[str, Any]:
        if level > self.depth:
            raise Refusal(f"groups are nested deeper than the limit {self.depth}", node_of(h5path))
        if len(group) > MAX_MEMBERS:
            raise Refusal(f"a group holds {len(group)} links, more than the limit {MAX_MEMBERS}", node_of(h5path))
        tree: dict[str, Any] = {}
        for name in group:
            if isinstance(name, bytes):  # h5py's answer for a link name that is not UTF-8
                raise Refusal(f"the name {name[:40]!r} in '{h5path}' is not UTF-8", node_of(h5path))
            path = h5path.rstrip("/") + "/" + name
            member = self._open(group, name, path)
            if isinstance(member, h5py.Group):
                tree[name] = self.group(member, path, level + 1)
            elif isinstance(member, h5py.Dataset):
                tree[name] = self.dataset(member, path)
            else:
                tree[name] = Unreadable(f"a {type(member).__name__}")
        return tree

    def _open(self, group: h5py.Group, name: str, path: str) -> Any:
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            raise Refusal(f"'{name}' links to another file, which is not allowed", node_of(path))
        member = group.get(name)
        if member is None:
            raise Refusal(f"'{name}' cannot be opened (dangling link)", node_of(path))
        key = _address(member)
        if key in self.seen:
            raise Refusal(f"'{name}' links to an object already read (links form a DAG or a cycle)",
                          node_of(path))
        self.seen.add(key)
        return member

    def count(self, nbytes: int, what: str, path: str) -> None:
        self.counted += nbytes
        if self.counted > self.data_bytes:
            raise Refusal(f"the file's data exceeds the limit of {self.data_bytes} bytes (at '{what}')",
                          node_of(path))

    def dataset(self, ds: h5py.Dataset, path: str) -> Any:
        name = path.rsplit("/", 1)[-1]
        if ds.external:
            raise Refusal(f"dataset '{name}' keeps its data in another file, which is not allowed", node_of(path))
        if ds.is_virtual:
            raise Refusal(f"dataset '{name}' is a virtual dataset mapping other files, which is not allowed",
                          node_of(path))
        dtype = ds.dtype
        is_string = h5py.check_string_dtype(dtype) is not None or dtype.kind == "S"
        if dtype.kind not in "biuf" and not is_string:
            return Unreadable(f"dtype {dtype}")
        if ds.shape is None:
            return Unreadable("an empty dataset")
        size = int(np.prod(ds.shape, dtype=object))
        if size > MAX_DATASET_ELEMENTS:
            raise Refusal(f"dataset '{name}' declares {size} elements, more than the limit {MAX_DATASET_ELEMENTS}",
                          node_of(path))
        if ds.chunks is None and ds.id.get_offset() is not None:
            if ds.id.get_offset() + ds.id.get_storage_size() > self.file_size:
                raise Refusal(f"dataset '{name}' lies past the end of the file (truncated?)", node_of(path))
        self.count(size * max(dtype.itemsize, 1), name, path)
        value = np.asarray(ds[()])
        if not is_string:
            return value if value.dtype.isnative else value.astype(value.dtype.newbyteorder("="))
        texts = np.empty(value.shape, dtype=object)
        for index, item in np.ndenumerate(value):
            texts[index] = self.text(item, name, path)
        return texts

    def text(self, item: Any, name: str, path: str) -> str:
        if isinstance(item, str):
            item = item.encode("utf-8", "surrogatepass")
        if not isinstance(item, bytes):
            raise Refusal(f"'{name}' holds a {type(item).__name__} where a string belongs", node_of(path))
        if len(item) > MAX_STRING_BYTES:
            raise Refusal(f"a string in '{name}' is longer than the limit {MAX_STRING_BYTES}", node_of(path))
        self.count(len(item), name, path)
        try:
            return item.decode("utf-8")
        except UnicodeDecodeError:
            raise Refusal(f"string {item[:40]!r} in '{name}' is not UTF-8", node_of(path)) from None


def _address(obj: Any) -> tuple[int, int]:
    """Where an object lives: two links to one object give the same address."""
    info = h5py.h5o.get_info(obj.id)
    return info.fileno, info.addr


def save(tree: dict[str, Any], out: str) -> None:
    """Write ``tree`` as one ``.npz``: numeric arrays ``a0, a1, ...`` and ``tree``, the JSON of its shape
    and strings (so the reader needs no pickle)."""
    arrays: dict[str, np.ndarray] = {}

    def shape(node: Any) -> dict[str, Any]:
        if isinstance(node, dict):
            return {"group": {name: shape(child) for name, child in node.items()}}
        if isinstance(node, Unreadable):
            return {"unreadable": node.reason}
        if node.dtype.kind == "O":
            return {"strings": {"texts": [str(t) for t in node.reshape(-1)], "shape": list(node.shape)}}
        key = f"a{len(arrays)}"
        arrays[key] = node
        return {"array": key}

    text = json.dumps(shape(tree)).encode("utf-8")
    np.savez(out, tree=np.frombuffer(text, dtype=np.uint8), **arrays)
