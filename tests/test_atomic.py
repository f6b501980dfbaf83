"""Where an atomic write lands: a symlink keeps pointing where it points, and a device or FIFO
that already exists is written into, never replaced by a regular file."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time

import numpy as np
import pytest

import snnir
from snnir.atomic import destination, replace_atomically
from snnir.errors import SnnirError
from snnir.ir import Graph, Input, Linear, Output

pytestmark = pytest.mark.skipif(os.name != "posix", reason="FIFOs, devices and symlinks as POSIX has them")


def write_text(text: bytes):
    def write(temp: str) -> None:
        with open(temp, "wb") as stream:
            stream.write(text)

    return write


def read_fifo_in_background(path) -> tuple[threading.Thread, list[bytes]]:
    """A reader of the FIFO ``path``, open before this returns, that reads until a writer has
    written and closed it (within 20 s); what it read is in the list once joined."""
    got: list[bytes] = []
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)

    def read() -> None:
        chunks, deadline = [], time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:  # a writer is connected, nothing written yet
                chunk = None
            if chunk:
                chunks.append(chunk)
            elif chunk == b"" and chunks:  # the writer wrote and closed
                break
            else:
                time.sleep(0.01)
        os.close(fd)
        got.append(b"".join(chunks))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader, got


def test_symlink_is_kept_and_its_target_replaced(tmp_path):
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "out.bin"
    real.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(real)
    replace_atomically(link, write_text(b"new"))
    assert link.is_symlink() and os.readlink(link) == os.fspath(real)
    assert real.read_bytes() == b"new"
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["out.bin"]


def test_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.bin"
    link.symlink_to(tmp_path / "new.bin")
    replace_atomically(link, write_text(b"new"))
    assert link.is_symlink() and (tmp_path / "new.bin").read_bytes() == b"new"


@pytest.mark.parametrize("name", ["x.nir/", "x.nir/.", "missing/../x.nir"])
def test_a_path_the_system_cannot_open_never_lands_on_an_existing_file(tmp_path, monkeypatch, name):
    """``os.path.realpath`` collapses these onto ``x.nir``; the system opens no such file."""
    monkeypatch.chdir(tmp_path)
    graph = Graph.sequential(("x", Input((2,))), ("fc", Linear(weight=np.eye(2))), ("y", Output()))
    snnir.write(graph, "x.nir")
    before = (tmp_path / "x.nir").read_bytes()
    with pytest.raises(SnnirError, match="names a directory|no such directory"):
        snnir.write(graph, name)
    assert (tmp_path / "x.nir").read_bytes() == before and sorted(os.listdir(tmp_path)) == ["x.nir"]


def test_fifo_is_written_into_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader, got = read_fifo_in_background(fifo)
    replace_atomically(fifo, write_text(b"through the pipe"))
    reader.join(10)
    assert got == [b"through the pipe"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]


def test_fifo_nobody_reads_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(SnnirError, match="it is a FIFO that no process is reading"):
        replace_atomically(fifo, write_text(b"lost"))
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_private_null_device_is_written_into(tmp_path):
    """A char device of our own (the null device's numbers), never the system's /dev/null."""
    device = tmp_path / "null"
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.close(os.open(device, os.O_WRONLY))
    except OSError:
        pytest.skip("cannot make or open a device node here (not root, or nodev)")
    graph = Graph.sequential(("x", Input((2,))), ("fc", Linear(weight=np.eye(2))), ("y", Output()))
    snnir.write(graph, device)
    assert stat.S_ISCHR(os.lstat(device).st_mode) and os.lstat(device).st_rdev == os.makedev(1, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["null"]


def test_socket_and_directory_are_refused(tmp_path):
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(os.fspath(tmp_path / "sock"))
        with pytest.raises(SnnirError, match="it is a socket"):
            replace_atomically(tmp_path / "sock", write_text(b"x"))
    with pytest.raises(SnnirError, match="it is a directory"):
        replace_atomically(tmp_path, write_text(b"x"))
    with pytest.raises(SnnirError, match="empty path"):
        destination("")


def test_symlink_loop_is_refused(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(SnnirError, match="cannot write .*symbolic links"):
        replace_atomically(tmp_path / "a", write_text(b"x"))
    assert (tmp_path / "a").is_symlink()
