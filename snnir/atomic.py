"""Writing a file so that a failure leaves the old one (or none) in place.

:func:`replace_atomically` writes a temporary file beside the target and moves it onto the
target only once it is complete; the temporary file never outlives the call. The result keeps
the replaced file's permissions, or gets what a new file would. Every ``OSError`` becomes one
``SnnirError`` naming the target.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from snnir.errors import SnnirError


def replace_atomically(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(temporary_path)``, then move that file onto ``path``."""
    target = Path(path)
    if target.is_dir():
        raise SnnirError(f"cannot write {path}: it is a directory")
    directory = target.parent.resolve()
    if not directory.is_dir():
        raise SnnirError(f"cannot write {path}: no such directory {directory}")
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
        os.close(fd)
    except OSError as exc:
        raise SnnirError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        write(temp)
        os.chmod(temp, _file_mode(target))
        os.replace(temp, target)
    except OSError as exc:
        os.unlink(temp)
        raise SnnirError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        os.unlink(temp)
        raise
    return target


def _file_mode(target: Path) -> int:
    """The replaced file's permissions, or what a newly created file would get."""
    if target.exists():
        return target.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
