"""Writing a file so that a failure leaves the old one (or none) in place.

:func:`replace_atomically` writes a temporary file beside the target and moves it onto the
target only once it is complete; the temporary file never outlives the call. The result keeps
the replaced file's permissions, or gets what a new file would. Every ``OSError`` becomes one
``SnnirError`` naming the target.

Invariants (see :func:`destination`): a symlink is kept and the file it points to is replaced;
an existing target that is not a regular file (a device such as ``/dev/null``, a FIFO) is never
replaced: the complete output is written into it; a socket or a directory is refused.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable

from snnir.errors import SnnirError


def destination(path: str | os.PathLike) -> tuple[Path, bool]:
    """Where writing ``path`` lands, and whether it is written into rather than replaced.

    A symlink gives the file it points to (so the link survives); an existing device, FIFO or
    other non-regular file is written into as it is (``path`` itself, which the system resolves).
    A new file's directory is resolved as the system opens it: ``missing/../x`` and ``x/`` never
    land on an existing ``x``.
    """
    path = os.fsdecode(path)
    if not path:
        raise SnnirError("cannot write to an empty path")
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # to be created (or refused for its directory)
        mode = None
    except OSError as exc:  # a symlink loop, a name too long, no permission to look
        raise SnnirError(f"cannot write {path}: {exc.strerror or exc}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise SnnirError(f"cannot write {path}: it is a directory")
    if mode is not None and stat.S_ISSOCK(mode):
        raise SnnirError(f"cannot write {path}: it is a socket")
    if mode is not None and not stat.S_ISREG(mode):
        return Path(path), True
    directory, name = os.path.split(path)
    if mode is None and name in ("", ".", ".."):  # 'x.nir/', 'x.nir/.': never the file x.nir
        raise SnnirError(f"cannot write {path}: it names a directory, and there is none")
    if mode is None and not os.path.lexists(path):  # the directory as the system resolves it, never
        if not os.path.isdir(directory or "."):  # 'missing/..' collapsed onto an existing one
            return Path(path), False  # refused by the caller for its directory
        return Path(os.path.realpath(directory or ".")) / name, False
    return Path(os.path.realpath(path)), False


def replace_atomically(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(temporary_path)``, then move that file onto ``path`` (or, where ``path`` is a
    device or FIFO, copy it into ``path``; see :func:`destination`)."""
    target, into = destination(path)
    directory = Path(tempfile.gettempdir()) if into else target.parent
    if not directory.is_dir():
        raise SnnirError(f"cannot write {path}: no such directory {directory}")
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
        os.close(fd)
    except OSError as exc:
        raise SnnirError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        write(temp)
        if into:
            _copy_into(temp, target)
        else:
            os.chmod(temp, _file_mode(target))
            os.replace(temp, target)
    except OSError as exc:
        raise SnnirError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)
    return Path(path)


def _copy_into(source: str, target: Path) -> None:
    """Write the bytes of ``source`` into the device or FIFO ``target``. A FIFO that no process
    reads is an error, not a wait without end."""
    fifo = stat.S_ISFIFO(os.stat(target).st_mode)
    try:
        fd = os.open(target, os.O_WRONLY | (os.O_NONBLOCK if fifo else 0))
    except OSError as exc:
        if fifo and exc.errno == errno.ENXIO:
            raise SnnirError(f"cannot write {target}: it is a FIFO that no process is reading") from None
        raise
    with open(fd, "wb") as stream, open(source, "rb") as data:
        if fifo:  # opened without waiting for a reader; now writes wait for the reader as usual
            import fcntl

            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        shutil.copyfileobj(data, stream)


def _file_mode(target: Path) -> int:
    """The replaced file's permissions, or what a newly created file would get."""
    if target.exists():
        return target.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
