"""A NIR file's bytes as a plain tree, held to :class:`~snnir.limits.Limits`.

Invariant: libhdf5 first parses any bytes in a child process (:mod:`snnir.ir.nir_io.isolate`),
so its crash or hang is an error here; bytes this process wrote (:func:`trust_written`) or a
child already parsed without harm (same SHA-256; libhdf5 is deterministic) are parsed
in-process, from the very bytes that were hashed; a child's refusal of the same bytes is
given again without a child.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from typing import Any

from snnir.errors import SnnirError
from snnir.ir.nir_io.extract import Refusal, extract
from snnir.ir.nir_io.isolate import extract_isolated
from snnir.limits import Limits

#: SHA-256 digests of files this process wrote or a child parsed without harm (the newest
#: :data:`_TRUSTED_KEPT`): parsed in-process.
_TRUSTED: dict[bytes, None] = {}
#: (digest, name, limits) -> the error a child gave for it: the same bytes give it again without a child.
_REFUSED: dict[tuple[bytes, str, Limits], SnnirError] = {}
_TRUSTED_KEPT = 4096


def is_path(path: Any) -> bool:
    return isinstance(path, (str, bytes, os.PathLike))


def file_tree(path: Any, limits: Limits) -> dict[str, Any]:
    """The file as a plain tree. Unless ``limits.isolate`` is off, libhdf5 parses it in a child process
    the first time; bytes this process wrote, or a child already parsed without harm (same SHA-256;
    libhdf5 is deterministic), are parsed in-process, from the very bytes that were hashed."""
    name, data = _file_bytes(path, limits)
    digest = hashlib.sha256(data).digest()
    if limits.isolate and digest not in _TRUSTED:
        known = _REFUSED.get((digest, name, limits))
        if known is not None:
            raise SnnirError(known.reason, known.node)
        try:
            with tempfile.TemporaryDirectory(prefix="snnir-read-") as scratch:
                copy = os.path.join(scratch, "file.nir")
                with open(copy, "wb") as file:
                    file.write(data)
                tree = extract_isolated(copy, limits, name)
        except SnnirError as exc:
            _remember(_REFUSED, (digest, name, limits), exc)
            raise
        _remember(_TRUSTED, digest, None)
        return tree
    try:
        return extract(io.BytesIO(data), limits.data_bytes, limits.depth)
    except Refusal as exc:
        raise SnnirError(exc.message, exc.node) from None
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, RecursionError, MemoryError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise SnnirError(f"cannot read {name} as a NIR (HDF5) file: {type(exc).__name__}: {detail}") from None


def _file_bytes(path: Any, limits: Limits) -> tuple[str, bytes]:
    """``(name for messages, the file's bytes)``; a file larger than the data limit allows is refused."""
    most = limits.data_bytes + (64 << 20)
    if is_path(path):
        name = os.fspath(path)
        if not os.path.isfile(name):
            if os.path.isdir(name):
                raise SnnirError(f"{name} is a directory, not a NIR (HDF5) file")
            if os.path.exists(name):
                raise SnnirError(f"{name} is not a regular file (a device, FIFO or socket), not a NIR (HDF5) file")
            raise SnnirError(f"no such file: {name}")
        size = os.path.getsize(name)
        if size == 0:
            raise SnnirError(f"{name} is empty, not a NIR (HDF5) file")
        if size > most:
            raise SnnirError(f"{name} is {size} bytes, more than the data limit allows "
                             "(raise limits.data_bytes / SNNIR_DATA_LIMIT_BYTES)")
        with open(name, "rb") as file:
            return name, file.read(size)
    if not callable(getattr(path, "read", None)):
        raise SnnirError(f"read needs a file path or a binary file object, got {type(path).__name__}")
    name = str(getattr(path, "name", "file"))
    if isinstance(path, io.TextIOBase):
        raise SnnirError(f"cannot read {name}: a file object must be opened in binary mode")
    pieces, total = [], 0
    while total <= most:
        try:
            piece = path.read(1 << 20)
        except (OSError, ValueError) as exc:  # closed, not readable, a failing device
            raise SnnirError(f"cannot read {name}: {exc}") from None
        if not isinstance(piece, bytes):
            raise SnnirError(f"cannot read {name}: a file object must be opened in binary mode")
        if not piece:
            break
        pieces.append(piece)
        total += len(piece)
    if total > most:
        raise SnnirError(f"{name} is larger than the data limit allows (raise limits.data_bytes)")
    data = b"".join(pieces)
    if not data:
        raise SnnirError(f"{name} is empty, not a NIR (HDF5) file")
    return name, data


def _digest(path: str) -> bytes:
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).digest()


def _remember(table: dict, key: Any, value: Any) -> None:
    """``table[key] = value``, forgetting the oldest entries beyond :data:`_TRUSTED_KEPT`."""
    table[key] = value
    while len(table) > _TRUSTED_KEPT:
        del table[next(iter(table))]


def trust_written(path: str) -> None:
    """Parse the bytes of ``path``, a file this process wrote, in-process from now on."""
    _remember(_TRUSTED, _digest(path), None)
