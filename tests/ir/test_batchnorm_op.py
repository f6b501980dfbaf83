"""``snnir.BatchNorm``: what it refuses, naming the problem, and its shape rule."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from snnir.errors import SnnirError
from snnir.ir import Graph, Input, Output
from snnir.ir.nir_io import read, write
from snnir.ir.ops.norm import BatchNorm

C = 3


def _norm(**changes) -> BatchNorm:
    fields = dict(mean=np.zeros(C), var=np.ones(C), weight=np.ones(C), bias=np.zeros(C))
    return BatchNorm(**{**fields, **changes})


@pytest.mark.parametrize("changes,expect", [
    ({"var": np.array([1.0, -2.0, 1.0])}, r"var \+ eps must be > 0, got -2.0 \+ 1e-05 at channel 1"),
    ({"mean": np.array([0.0, np.nan, 0.0])}, r"BatchNorm.mean holds NaN or inf \(channel 1\)"),
    ({"weight": np.ones(4)}, "one value per channel"),
    ({"bias": np.zeros((C, 1))}, "one value per channel"),
    ({"eps": -1e-5}, "eps must be finite and >= 0"),
    ({"eps": "small"}, "eps must be a number"),
    ({"trainable": ("mean",)}, r"has no parameters \['mean'\] to train"),
])
def test_refused_with_the_reason(changes, expect):
    with pytest.raises(SnnirError, match=expect):
        _norm(**changes)


def test_shape_is_channels_first():
    assert _norm().infer_shape((C, 4, 5), "bn") == (C, 4, 5)
    with pytest.raises(SnnirError, match=r"expects an input \[3, \.\.\.\] \(channels first\), got \[4, 3\]") as info:
        _norm().infer_shape((4, C), "bn")
    assert info.value.node == "bn"


def test_a_file_with_a_bad_batchnorm_is_refused_naming_it(tmp_path):
    """A file whose BatchNorm holds a negative variance reads as a one-line error naming the node."""
    graph = Graph.sequential(("in", Input((C,))), ("bn", _norm()), ("out", Output()))
    with pytest.warns(UserWarning, match="only snnir reads"):
        write(graph, tmp_path / "g.nir")
    with h5py.File(tmp_path / "g.nir", "r+") as f:
        f["node/nodes/bn/var"][...] = -np.ones(C)
    with pytest.raises(SnnirError, match="var \\+ eps must be > 0") as info:
        read(tmp_path / "g.nir")
    assert info.value.node == "bn"
