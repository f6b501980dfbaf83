"""The user's files as the CLI reads and writes them: every problem is a one-line SnnirError.

- :func:`load_arrays` reads a ``.npy`` array or a ``.npz`` of arrays, checking each
  header (real numbers only, all of them within ``Limits.data_bytes`` as float64) before
  any data is read, and never unpickling.
- :func:`output_file` and :func:`output_dir` check where a command will write before it
  computes anything (:func:`not_an_input`: never over one of its inputs); :func:`write_atomically` writes a file so that a failure leaves the
  old one (or none) in place; :func:`save_arrays` writes a ``.npz`` that way.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable

import numpy as np

from snnir.atomic import destination, replace_atomically
from snnir.errors import SnnirError, escape
from snnir.ir.memory import check_limit
from snnir.limits import current

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK"  # a member (PK\x03\x04) or, in an empty archive, the directory end (PK\x05\x06)
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _read_npy(stream: BinaryIO, where: str, budget: list[int]) -> np.ndarray:
    """One ``.npy`` array from ``stream``; its header is checked before its data is read."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version not in _HEADER_READERS:
            raise SnnirError(f"{where}: .npy format version {version} is not supported (1.0 and 2.0 are)")
        shape, fortran_order, dtype = _HEADER_READERS[version](stream)
    except SnnirError:
        raise
    except (ValueError, EOFError, OSError) as exc:  # numpy's answers to a corrupt header
        raise SnnirError(f"{where} is not a valid .npy array: {escape(' '.join(str(exc).split()))[:200]}") from None
    if dtype.hasobject:
        raise SnnirError(f"{where} holds pickled Python objects: pickled objects are refused (never unpickled)")
    if dtype.kind not in "biuf":
        raise SnnirError(f"{where} holds {_kind_name(dtype)} (dtype {escape(str(dtype))}); inputs must be "
                         f"real numbers: bool, int or float")
    if any(d < 0 for d in shape):
        raise SnnirError(f"{where} declares the impossible shape {list(shape)}")
    elements = int(np.prod(shape, dtype=object))
    budget[0] += elements * 8  # the simulation computes in float64
    check_limit(budget[0], current(), "data_bytes", f"{where} of shape {list(shape)}")
    array = np.empty(elements, dtype=dtype)
    buffer, filled = memoryview(array.view(np.uint8)), 0
    while filled < array.nbytes:
        count = stream.readinto(buffer[filled:])
        if not count:
            raise SnnirError(f"{where} is truncated: its header declares shape {list(shape)} of {dtype}, "
                             f"but only {filled} of {array.nbytes} bytes follow")
        filled += count
    return array.reshape(shape, order="F" if fortran_order else "C")


def _kind_name(dtype: np.dtype) -> str:
    if dtype.fields is not None:
        return "records with named fields"
    return {"c": "complex numbers", "U": "text", "S": "bytes", "M": "dates",
            "m": "time spans", "V": "raw bytes"}.get(dtype.kind, "non-numeric data")


def load_arrays(path: str) -> np.ndarray | dict[str, np.ndarray]:
    """The array of a ``.npy`` file or the arrays of a ``.npz`` file, by name."""
    shown_path = escape(path)
    try:
        with open(path, "rb") as stream:
            magic = stream.read(6)
            stream.seek(0)
            if magic.startswith(_NPY_MAGIC):
                return _read_npy(stream, f"input {shown_path}", [0])
            if magic.startswith(_ZIP_MAGIC):
                return _read_npz(stream, shown_path)
    except FileNotFoundError:
        raise SnnirError(f"no such input file: {shown_path}") from None
    except IsADirectoryError:
        raise SnnirError(f"input {shown_path} is a directory, not a .npy or .npz file") from None
    except OSError as exc:
        raise SnnirError(f"cannot read input {shown_path}: {exc.strerror or exc}") from None
    what = "is empty" if not magic else "is neither a .npy nor a .npz file (saved with numpy.save/savez)"
    raise SnnirError(f"input {shown_path} {what}")


def _read_npz(stream: BinaryIO, path: str) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    budget = [0]
    try:
        with zipfile.ZipFile(stream) as archive:
            for member in archive.namelist():
                name = member[:-4] if member.endswith(".npy") else member
                with archive.open(member) as entry:
                    arrays[name] = _read_npy(entry, f"input {path}['{escape(name)}']", budget)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError,
            ValueError) as exc:  # zipfile's answers to a corrupt, encrypted or exotic archive
        raise SnnirError(f"input {path} is not a valid .npz archive: {escape(str(exc))[:200]}") from None
    if not arrays:
        raise SnnirError(f"input {path} holds no arrays")
    return arrays


def with_steps_and_samples(x: np.ndarray | dict[str, np.ndarray], command: str) -> np.ndarray | dict[str, np.ndarray]:
    """``x`` (``[T, B, ...]`` arrays), refused where it has no time step or no sample: ``command``
    has then nothing to show."""
    for array in x.values() if isinstance(x, dict) else [x]:
        if array.ndim >= 2 and 0 in array.shape[:2]:
            what = "no time steps (T=0)" if array.shape[0] == 0 else "no samples (B=0)"
            raise SnnirError(f"the input has {what}: {command} has nothing to show")
    return x


#: What a command writes: (what it is, its suffix, the first bytes of such a file).
NIR_FILE = ("a NIR file", ".nir", b"\x89HDF\r\n\x1a\n")
NPZ_FILE = ("an .npz archive of arrays", ".npz", b"PK\x03\x04")


def output_file(path: str, inputs: Iterable[str | None] = (), writes: tuple[str, str, bytes] | None = None,
                command: str = "") -> Path:
    """``path`` as a file to write: no directory, and either an existing device or FIFO that is
    writable (written into, see :func:`snnir.atomic.destination`) or a file, a symlink's target
    included, in a writable directory, that is none of the command's ``inputs``. With ``writes``
    (what ``command`` writes, :data:`NIR_FILE`), a name with another suffix is refused, and so is an
    existing file of no suffix that is not already such a file (it would be lost)."""
    target, into = destination(path)
    if into:
        if not os.access(target, os.W_OK):
            raise SnnirError(f"cannot write {path}: permission denied")
        return Path(path)
    directory = target.parent
    if not directory.is_dir():
        what = "is a file" if directory.exists() else "does not exist"
        raise SnnirError(f"cannot write {path}: the directory {directory} {what}")
    if not os.access(directory, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise SnnirError(f"cannot write {path}: permission denied")
    not_an_input([path], inputs)
    if writes is not None:
        what, suffix, magic = writes
        given = Path(path).suffix
        if given.lower() not in ("", suffix):
            raise SnnirError(f"cannot write {escape(path)}: {command} writes {what}, not a {escape(given)} file "
                             f"(name it {suffix})")
        if not given and target.is_file() and not _starts_with(target, magic):
            raise SnnirError(f"cannot write {escape(path)}: it exists and is not {what}, so it would be lost "
                             f"(name the output {suffix})")
    return Path(path)


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as stream:
            return stream.read(len(magic)) == magic
    except OSError:
        return False


def not_an_input(outputs: Iterable[str | Path], inputs: Iterable[str | None]) -> None:
    """None of ``outputs`` is the same file as one of ``inputs`` (under another name or through a
    link included): a command never overwrites what it reads."""
    sources = [source for source in inputs if source is not None]
    for output in outputs:
        for source in sources:
            if _same_file(output, source):
                raise SnnirError(f"cannot write {escape(os.fspath(output))}: it is the input "
                                 f"{escape(os.fspath(source))}, which would be lost (choose another output)")


def _same_file(output: str | Path, source: str) -> bool:
    """Whether ``output`` is ``source``: the same file, or (where either is missing or cannot be
    looked at, as ``in.nir/`` or ``missing/../in.nir``) the same path once resolved."""
    try:
        if os.path.samefile(output, source):
            return True
    except (OSError, ValueError):  # either is missing (or no path)
        pass
    try:
        return os.path.realpath(output) == os.path.realpath(source)
    except (OSError, ValueError):  # no path (a NUL in it)
        return False


def output_dir(path: str) -> Path:
    """``path`` as a directory to write into: a directory, or missing below a writable one
    (the writer creates it), never a file; an empty path is refused (it is no directory's name)."""
    if not path:
        raise SnnirError("cannot write into '': give the output directory's name")
    target = Path(path).absolute()
    existing = next(p for p in (target, *target.parents) if p.exists())
    if not existing.is_dir():
        where = "it is a file" if existing == target else f"{existing} is a file"
        raise SnnirError(f"cannot write into {path}: {where}, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SnnirError(f"cannot write into {path}: permission denied")
    return Path(path)


def write_atomically(path: str, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(stream)`` on a temporary file beside ``path``, then move it to ``path``."""

    def to_file(temp: str) -> None:
        with open(temp, "wb") as stream:
            write(stream)

    return replace_atomically(output_file(path), to_file)


def save_arrays(path: str, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` as an uncompressed ``.npz`` at exactly ``path`` (any key, even ``file``)."""

    def write(stream: BinaryIO) -> None:
        with zipfile.ZipFile(stream, "w", allowZip64=True) as archive:
            for key, value in arrays.items():
                with archive.open(f"{key}.npy", "w", force_zip64=True) as entry:
                    np.lib.format.write_array(entry, np.asanyarray(value), allow_pickle=False)

    return write_atomically(path, write)
