"""Run :func:`extract` in a child process held to the caller's :class:`Limits`.

The child (a fresh ``python -I`` that imports only numpy, h5py and
``extract.py``) sets ``RLIMIT_AS`` to its start-up size plus
``limits.memory_bytes`` (or to the hard limit it inherits, where that is lower:
it cannot be raised), parses the file and sends the tree back as one
``.npz``: numeric arrays, plus the tree's shape and its strings as JSON. The
parent loads it with ``allow_pickle=False`` and accepts only numeric arrays,
so nothing the child sends can run code or allocate more than ``data_bytes``.

Invariants: a child that crashes (a signal), runs past its time, runs out of
memory or answers anything malformed becomes one :class:`SnnirError`; the
caller's process never touches the untrusted file with libhdf5.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np

from snnir.errors import SnnirError
from snnir.ir.nir_io.extract import Unreadable
from snnir.limits import DEFAULTS, Limits

#: Extra seconds granted per byte of file, so large legitimate files get time in proportion.
SECONDS_PER_BYTE = 1 / 100e6
#: The module the child runs, loaded by path so that the child imports nothing else of snnir.
_EXTRACT_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "extract.py")
#: Refusal exit status of the child (its stdout holds ``{"message", "node"}``).
_REFUSED = 3

_CHILD = r"""
import importlib.util, json, os, sys
spec = importlib.util.spec_from_file_location("snnir_extract", sys.argv[1])
extract = sys.modules["snnir_extract"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(extract)
source, out, data_bytes, depth, memory = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
try:
    import resource
except ImportError:  # Windows: only the time limit holds
    resource = None
if resource is not None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
if resource is not None and os.path.exists("/proc/self/statm"):  # elsewhere RLIMIT_AS is not enforced
    with open("/proc/self/statm") as f:
        start = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY and hard < start + memory:  # a limit we cannot raise: keep it
        memory = max(hard - start, 0)
    resource.setrlimit(resource.RLIMIT_AS, (start + memory, start + memory))
try:
    extract.save(extract.extract(source, data_bytes, depth), out)
except extract.Refusal as exc:
    print(json.dumps({"message": exc.message, "node": exc.node}))
    sys.exit(3)
except MemoryError:
    print(json.dumps({"message": f"reading it needs more memory than the limit of {memory} bytes", "node": None}))
    sys.exit(3)
except Exception as exc:
    detail = " ".join(str(exc).split())[:200]
    print(json.dumps({"message": f"{type(exc).__name__}: {detail}", "node": None, "hdf5": True}))
    sys.exit(3)
"""


def extract_isolated(file: str, limits: Limits, path: str) -> dict[str, Any]:
    """The tree of ``file``, parsed by a child process within ``limits``; messages call it ``path``."""
    timeout = limits.time_s + os.path.getsize(file) * SECONDS_PER_BYTE
    with tempfile.TemporaryDirectory(prefix="snnir-read-") as scratch:
        out, said, complained = (os.path.join(scratch, name) for name in ("tree.npz", "stdout", "stderr"))
        command = [sys.executable, "-I", "-c", _CHILD, _EXTRACT_PY, os.path.abspath(file), out,
                   str(int(limits.data_bytes)), str(int(limits.depth)), str(int(limits.memory_bytes))]
        try:  # the child's output goes to files: a child printing without end cannot fill our memory
            with open(said, "wb") as stdout, open(complained, "wb") as stderr:
                child = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                       timeout=timeout, cwd=scratch)
        except subprocess.TimeoutExpired:
            raise SnnirError(f"reading {path} took longer than the limit of {timeout:.3g} s (the HDF5 library "
                             "hangs on it, or it is very large: raise limits.time_s / SNNIR_TIME_LIMIT_S)") from None
        if child.returncode < 0:
            cause = "the file is corrupt"
            if limits.memory_bytes < DEFAULTS.memory_bytes:  # libhdf5 may crash where an allocation fails
                cause += (f", or the memory limit of {int(limits.memory_bytes)} bytes is too small to read it "
                          "(raise limits.memory_bytes / SNNIR_MEMORY_LIMIT_BYTES)")
            raise SnnirError(f"cannot read {path}: the HDF5 library crashed on it "
                             f"({_signal_name(-child.returncode)}); {cause}")
        if child.returncode == _REFUSED:
            answer = _answer(_head(said), path)
            if answer.get("hdf5"):
                raise SnnirError(f"cannot read {path} as a NIR (HDF5) file: {answer['message']}")
            raise SnnirError(str(answer["message"]), answer.get("node"))
        if child.returncode != 0 or not os.path.isfile(out):
            last = (_tail(complained).decode("utf-8", "replace").strip().splitlines() or [""])[-1][:200]
            raise SnnirError(f"cannot read {path}: the reading process failed (exit status {child.returncode}) "
                             f"{last}".rstrip())
        if os.path.getsize(out) > limits.data_bytes + (64 << 20):
            raise SnnirError(f"cannot read {path}: the reading process answered more than the data limit")
        return load(out)


def _head(path: str, size: int = 1 << 16) -> bytes:
    with open(path, "rb") as file:
        return file.read(size)


def _tail(path: str, size: int = 4096) -> bytes:
    with open(path, "rb") as file:
        file.seek(max(0, os.path.getsize(path) - size))
        return file.read()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _answer(stdout: bytes, path: str) -> dict[str, Any]:
    try:
        answer = json.loads(stdout.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        answer = None
    if not (isinstance(answer, dict) and isinstance(answer.get("message"), str)
            and isinstance(answer.get("node"), (str, type(None)))):
        raise SnnirError(f"cannot read {path}: the reading process answered nonsense")
    return answer


def load(npz_path: str) -> dict[str, Any]:
    """A tree saved by :func:`snnir.ir.nir_io.extract.save`; only numeric arrays are accepted."""
    try:
        with np.load(npz_path, allow_pickle=False) as archive:
            shape = json.loads(archive["tree"].tobytes().decode("utf-8"))
            arrays = {name: archive[name] for name in archive.files if name != "tree"}
    except (OSError, ValueError, KeyError, UnicodeDecodeError) as exc:
        raise SnnirError(f"the reading process answered an unreadable tree: {exc}") from None
    if any(array.dtype.kind not in "biuf" for array in arrays.values()):
        raise SnnirError("the reading process answered a non-numeric array")
    return _rebuild(shape, arrays)


def _rebuild(node: Any, arrays: dict[str, np.ndarray]) -> Any:
    if not isinstance(node, dict) or len(node) != 1:
        raise SnnirError("the reading process answered a malformed tree")
    (kind, value), = node.items()
    if kind == "group" and isinstance(value, dict):
        return {str(name): _rebuild(child, arrays) for name, child in value.items()}
    if kind == "array" and isinstance(value, str) and value in arrays:
        return arrays[value]
    if kind == "strings" and isinstance(value, dict):
        texts, shape = value.get("texts"), value.get("shape")
        if (isinstance(texts, list) and all(isinstance(t, str) for t in texts) and isinstance(shape, list)
                and all(isinstance(d, int) and d >= 0 for d in shape) and int(np.prod(shape, dtype=object)) == len(texts)):
            strings = np.empty(len(texts), dtype=object)
            strings[:] = texts
            return strings.reshape(shape)
    if kind == "unreadable" and isinstance(value, str):
        return Unreadable(value)
    raise SnnirError("the reading process answered a malformed tree")
