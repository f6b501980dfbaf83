"""NIR file I/O of extension ops (types registered outside NIR): kept in the file on request,
lowered to standard NIR by default, and an unknown type named with its node."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest

from snnir.errors import SnnirError
from snnir.ir import OPS, Graph
from snnir.ir.nir_io import LOWER_EXTENSION, read, write
from snnir.ir.ops import Input, Linear, Output, Subgraph
from snnir.ir.ops.base import Op, param
from snnir.ir.registry import register_op
from snnir.targets.reference import run

from tests.ir.test_nir_io import wrap


@dataclasses.dataclass(frozen=True, eq=False)
class _Gain(Op):
    """Test extension: y = gain * inner(x), inner a nested op; a tuple and a graph attribute."""

    op_type = "snnir.TestGain"
    gain: np.ndarray = param()
    inner: Op = None
    tags: tuple = ()
    note: str = ""
    body: Graph | None = None

    def infer_shape(self, input_shape, node):
        return tuple(input_shape)


def _lower_gain(op: _Gain) -> Graph:
    from snnir.ir.ops import Scale

    return Graph.sequential(("in", Input((3,))), ("scale", Scale(scale=op.gain)), ("out", Output()))


@pytest.fixture
def gain_op():
    from snnir.targets.reference.interpreter import EXTENSIONS

    register_op(_Gain)
    EXTENSIONS[_Gain] = _lower_gain
    yield _Gain
    OPS.pop(_Gain.op_type, None)
    EXTENSIONS.pop(_Gain, None)
    LOWER_EXTENSION.pop(_Gain, None)


def _gain_graph() -> Graph:
    body = Graph.sequential(("i", Input((3,))), ("o", Output((3,))))
    op = _Gain(gain=np.full(3, 2.0, dtype=np.float32), inner=Linear(weight=np.eye(3)), tags=(1, 2),
               note="hi", body=body, trainable=("gain",))
    return wrap(op, (3,))


def test_extension_kept_round_trips(gain_op, tmp_path):
    graph = _gain_graph()
    write(graph, tmp_path / "g.nir", keep_extensions=True)
    with h5py.File(tmp_path / "g.nir") as f:
        assert f["node/nodes/node/type"][()] == b"snnir.TestGain"
        assert f["node/nodes/node/inner/type"][()] == b"Linear"
    assert read(tmp_path / "g.nir") == graph


def test_extension_lowered_by_default(gain_op, tmp_path):
    graph = _gain_graph()
    LOWER_EXTENSION[gain_op] = _lower_gain
    write(graph, tmp_path / "g.nir")
    back = read(tmp_path / "g.nir")
    assert isinstance(back.nodes["node"], Subgraph)
    x = np.random.default_rng(3).standard_normal((4, 2, 3))
    np.testing.assert_allclose(run(back, x)["out"], run(graph, x)["out"])
    nir = pytest.importorskip("nir", reason="the nir package is not installed")
    assert "node" in nir.read(tmp_path / "g.nir").nodes


def test_extension_unknown_type_names_node(gain_op, tmp_path):
    write(_gain_graph(), tmp_path / "g.nir", keep_extensions=True)
    OPS.pop(gain_op.op_type)
    with pytest.raises(SnnirError, match=r"node 'node': unknown op type 'snnir.TestGain'"):
        read(tmp_path / "g.nir")
