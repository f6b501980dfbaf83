"""Wrong arguments to the public API (``snnir.read``, ``write``, ``run``, ``compile``) are one
SnnirError saying which argument is wrong, never a raw TypeError or AttributeError."""

from __future__ import annotations

import numpy as np
import pytest

import snnir
from snnir.errors import SnnirError, SnnirWarning
from snnir.ir import Graph, Input, Linear, Output
from snnir.limits import Limits


@pytest.fixture
def graph() -> Graph:
    return Graph.sequential(("x", Input((3,))), ("fc", Linear(weight=np.ones((2, 3)))), ("y", Output()))


@pytest.fixture
def path(tmp_path, graph):
    snnir.write(graph, tmp_path / "g.nir")
    return tmp_path / "g.nir"


@pytest.mark.parametrize("source, match", [
    (3, "read needs a file path or a binary file object, got int"),
    (None, "read needs a file path or a binary file object, got NoneType"),
], ids=["int", "None"])
def test_read_of_no_file(source, match):
    with pytest.raises(SnnirError, match=match):
        snnir.read(source)


def test_read_of_a_text_mode_file(path):
    with open(path) as text, pytest.raises(SnnirError, match="must be opened in binary mode"):
        snnir.read(text)


@pytest.mark.parametrize("options, match", [
    ({"semantics": "zero"}, "semantics must be a Semantics or a mapping"),
    ({"limits": "x"}, "limits must be a snnir.limits.Limits, got str"),
], ids=["semantics", "limits"])
def test_read_with_bad_options(path, options, match):
    with pytest.raises(SnnirError, match=match):
        snnir.read(path, **options)


def test_read_takes_a_semantics_value_as_its_mapping(fixtures_dir):
    sem = snnir.Semantics(dt=1e-3, reset="subtract", threshold_compare="ge")
    with pytest.warns(SnnirWarning):
        as_value = snnir.read(fixtures_dir / "lif_norse.nir", semantics=sem)
    with pytest.warns(SnnirWarning):
        as_mapping = snnir.read(fixtures_dir / "lif_norse.nir", semantics=sem.to_dict())
    assert {op.sem for _, op in as_value.walk() if hasattr(op, "sem")} == {sem}
    assert as_value == as_mapping


def test_read_with_an_infinite_limit_is_refused_at_the_limit():
    with pytest.raises(SnnirError, match="limit data_bytes must be a positive finite number"):
        Limits(data_bytes=float("inf"))


def test_run_of_a_path_says_to_read_it_first(path):
    with pytest.raises(SnnirError, match="run needs a Graph, got PosixPath: read the file first") as info:
        snnir.run(path, np.ones((4, 1, 3)))
    with pytest.raises(SnnirError, match="run needs a Graph, got str: read the file first"):
        snnir.run(str(path), np.ones((4, 1, 3)))
    with pytest.raises(SnnirError, match="compile needs a Graph, got str: read the file first"):
        snnir.compile(str(path))
    assert info.value.node is None


@pytest.mark.parametrize("target", ["onnx", "ipu"])
@pytest.mark.parametrize("out_dir", [None, "", 5], ids=["none", "empty", "int"])
def test_compile_to_a_directory_target_without_one(graph, target, out_dir, tmp_path, monkeypatch):
    """An empty out_dir wrote into the current directory."""
    pytest.importorskip("onnx")
    monkeypatch.chdir(tmp_path)
    options = {} if out_dir is None else {"out_dir": out_dir}
    with pytest.raises(SnnirError, match="needs an output directory \\(out_dir=...\\)"):
        snnir.compile(graph, target=target, **options)
    assert list(tmp_path.iterdir()) == []


def test_compile_with_an_unknown_option(graph, tmp_path):
    pytest.importorskip("onnx")
    with pytest.raises(SnnirError, match="bad options for the onnx target: .*'bogus'"):
        snnir.compile(graph, target="onnx", out_dir=tmp_path, bogus=1)
    assert list(tmp_path.iterdir()) == []


def test_write_to_no_path(graph):
    with pytest.raises(SnnirError, match="write needs a file path \\(str or os.PathLike\\), got int"):
        snnir.write(graph, 5)


def test_write_of_names_with_nul(graph, tmp_path):
    """h5py refused a NUL in the edges with a raw ValueError."""
    named = Graph.sequential(("x", Input((3,))), ("f\0c", Linear(weight=np.ones((2, 3)))), ("y", Output()))
    with pytest.raises(SnnirError, match="cannot contain '/' or NUL") as info:
        snnir.write(named, tmp_path / "g.nir")
    assert info.value.node == "f\0c"
    keyed = graph.replace(metadata={"a\0b": 1})
    with pytest.raises(SnnirError, match="without '/' or NUL"):
        snnir.write(keyed, tmp_path / "g.nir")
    assert list(tmp_path.iterdir()) == []
