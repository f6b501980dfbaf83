"""Hostile and broken files: each gives a one-line SnnirError naming the node and
the problem, without a crash, a deep stack trace or a memory blow-up."""

from __future__ import annotations

import os
import tracemalloc

import h5py
import numpy as np
import pytest

from snnir.errors import SnnirError
from snnir.ir import Graph
from snnir.ir.ops import LIF, Affine, Input, Output
from snnir.ir.nir_io import read, write
from snnir.ir.nir_io.encoding import MAX_DATASET_ELEMENTS
from snnir.ir.ops.base import MAX_PARAM_ELEMENTS
from snnir.limits import DEFAULTS


def good_file(path) -> str:
    """``in -> fc (Affine 3x2) -> lif -> out``, written by us."""
    graph = Graph.sequential(
        ("in", Input((2,))),
        ("fc", Affine(weight=np.ones((3, 2), dtype=np.float32), bias=np.zeros(3, dtype=np.float32))),
        ("lif", LIF(tau=np.full(3, 0.01), r=1.0, v_leak=0.0, v_threshold=1.0)),
        ("out", Output()),
    )
    write(graph, path)
    return os.fspath(path)


STR = h5py.string_dtype()


def with_dataset(tmp_path, key: str, **dataset) -> str:
    """A good file whose dataset ``key`` is removed, or replaced by ``create_dataset(key, **dataset)``."""
    path = good_file(tmp_path / "g.nir")
    with h5py.File(path, "a") as f:
        del f[key]
        if dataset:
            f.create_dataset(key, **dataset)
    return path


def fails(path, match: str, node: str | None = None, **options) -> SnnirError:
    with pytest.raises(SnnirError, match=match) as info:
        read(path, **options)
    assert "\n" not in str(info.value)
    if node is not None:
        assert info.value.node == node, str(info.value)
    return info.value


def test_missing_file(tmp_path):
    fails(tmp_path / "nope.nir", "no such file")


def test_empty_file(tmp_path):
    (tmp_path / "e.nir").write_bytes(b"")
    fails(tmp_path / "e.nir", "is empty")


def test_not_hdf5(tmp_path):
    (tmp_path / "t.nir").write_text("this is not a NIR file\n" * 10)
    fails(tmp_path / "t.nir", "cannot read .* as a NIR \\(HDF5\\) file")


def test_truncated(tmp_path):
    path = good_file(tmp_path / "g.nir")
    data = open(path, "rb").read()
    for size in (len(data) // 2, 200, 9):
        with open(path, "wb") as f:
            f.write(data[:size])
        fails(path, "cannot read|not a NIR")


def test_corrupt_bytes(tmp_path):
    path = good_file(tmp_path / "g.nir")
    data = bytearray(open(path, "rb").read())
    # Known limit: garbage in a variable-length string reference can make libhdf5 allocate a large
    # transient buffer (~1.6 GB seen) before it fails cleanly; these seeds avoid that slow case.
    rng = np.random.default_rng(1)
    for trial in range(12):
        corrupt = bytearray(data)
        start = int(rng.integers(0, len(data) - 64))
        corrupt[start : start + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
        with open(path, "wb") as f:
            f.write(corrupt)
        try:
            read(path)
        except SnnirError as exc:
            assert "\n" not in str(exc)


def test_no_node_group(tmp_path):
    with h5py.File(tmp_path / "x.nir", "w") as f:
        f.create_dataset("version", data="1.0")
    fails(tmp_path / "x.nir", "no 'node' group")


def test_missing_required_param(tmp_path):
    fails(with_dataset(tmp_path, "node/nodes/lif/tau"), "missing required parameter 'tau'", node="lif")


def test_nan_weights_caught_by_verifier(tmp_path):
    path = good_file(tmp_path / "g.nir")
    with h5py.File(path, "a") as f:
        f["node/nodes/fc/weight"][0, 0] = np.nan
    fails(path, "non-finite", node="fc")


def test_mismatched_shapes(tmp_path):
    fails(with_dataset(tmp_path, "node/nodes/fc/weight", data=np.ones((3, 5), dtype=np.float32)), "expects input \\[5\\]", node="fc")


def test_huge_declared_weight_refused_before_reading(tmp_path):
    path = with_dataset(
        tmp_path, "node/nodes/fc/weight", shape=(10**6, 10**6), dtype=np.float32, chunks=(256, 256), compression="gzip"
    )
    assert os.path.getsize(path) < 1 << 20
    tracemalloc.start()
    try:
        error = fails(path, f"declares 1000000000000 elements, more than the limit {MAX_DATASET_ELEMENTS}", node="fc")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "weight" in str(error) and peak < 50 << 20


def test_absurd_nesting(tmp_path):
    with h5py.File(tmp_path / "deep.nir", "w") as f:
        group = f.create_group("node")
        for depth in range(DEFAULTS.depth // 2 + 5):
            group.create_dataset("type", data="NIRGraph", dtype=STR)
            group.create_dataset("edges", data=np.zeros((0, 2), dtype=object), dtype=STR)
            group = group.create_group("nodes").create_group("g")
        group.create_dataset("type", data="NIRGraph", dtype=STR)
    fails(tmp_path / "deep.nir", f"nested deeper than the limit {DEFAULTS.depth}")


def test_dataset_limit_is_the_largest_parameter():
    assert MAX_DATASET_ELEMENTS == MAX_PARAM_ELEMENTS


def test_strings_for_numbers(tmp_path):
    fails(with_dataset(tmp_path, "node/nodes/lif/v_threshold", data="one", dtype=STR), "'v_threshold' must be numeric", node="lif")


def test_missing_type(tmp_path):
    fails(with_dataset(tmp_path, "node/nodes/fc/type"), "has no 'type' dataset", node="fc")


def test_unknown_type(tmp_path):
    fails(with_dataset(tmp_path, "node/nodes/fc/type", data="Teleporter", dtype=STR), "unknown op type 'Teleporter'", node="fc")


def test_bad_edges(tmp_path):
    fails(with_dataset(tmp_path, "node/edges", data=np.array([["in", "fc", "lif"]], dtype=object), dtype=STR), "shape \\[N, 2\\]")


def test_edge_to_missing_node_without_close_match(tmp_path):
    edges = np.array([["in", "fc"], ["fc", "lif"], ["lif", "zzz"]], dtype=object)
    fails(with_dataset(tmp_path, "node/edges", data=edges, dtype=STR), "edge lif -> zzz", repair=True)


def test_bad_snnir_record(tmp_path):
    fails(with_dataset(tmp_path, "node/nodes/lif/metadata/snnir", data="{not json", dtype=STR), "snnir metadata record is not valid", node="lif")


@pytest.mark.parametrize("record", [
    '[1, 2]',
    '{"absent": {"v_reset": {"dtype": "<f8", "shape": [1000000, 1000000]}}}',
    '{"nodes": []}',
    '{"trainable": "tau"}',
])
def test_hostile_snnir_record(tmp_path, record):
    fails(with_dataset(tmp_path, "node/nodes/lif/metadata/snnir", data=record, dtype=STR), "snnir metadata record is not valid", node="lif")


def test_a_dt_past_the_float_range_is_refused_naming_the_node(tmp_path):
    """A JSON integer of 401 digits was a raw OverflowError from math.isfinite."""
    record = '{"sem": {"dt": 1' + "0" * 400 + "}}"
    fails(with_dataset(tmp_path, "node/nodes/lif/metadata/snnir", data=record, dtype=STR),
          "dt must be a finite positive number, got 1000", node="lif")


@pytest.mark.skipif(np.dtype(np.longdouble).itemsize <= 8, reason="long double is float64 here")
def test_a_long_double_weight_is_float64_where_exact_else_refused_naming_it(tmp_path):
    """HDF5 long double (numpy float128) was accepted as it was, then broke compile --target torch."""
    exact = with_dataset(tmp_path, "node/nodes/fc/weight", data=np.ones((3, 2), np.longdouble))
    assert read(exact).nodes["fc"].weight.dtype == np.float64
    inexact = np.full((3, 2), np.longdouble(1) + np.finfo(np.longdouble).eps)
    fails(with_dataset(tmp_path, "node/nodes/fc/weight", data=inexact),
          r"Affine.weight is stored as float\d+ with values float64 cannot hold exactly", node="fc")


@pytest.mark.parametrize("key, value", [("snnir.static_inputs", 1.0), ("snnir.static_inputs", np.array([1, 2])),
                                        ("snnir.hoisted", 3), ("snnir.plan", 1.0)])
def test_planning_metadata_that_names_no_nodes_is_refused(tmp_path, key, value):
    """A number where the planning passes read node names crashed optimize (not iterable)."""
    path = good_file(tmp_path / "g.nir")
    with h5py.File(path, "a") as f:
        f["node"].require_group("metadata")[key] = value
    fails(path, f"graph metadata '{key}' must be a ")


def test_a_fused_nodes_origin_that_is_not_two_names_is_refused_naming_it(tmp_path):
    """A scalar 'snnir.fused_from' read and ran, then writing the graph crashed (no len())."""
    path = tmp_path / "f.nir"
    with h5py.File(path, "w") as f:
        f["version"] = np.bytes_(b"1.0.4")
        graph = f.create_group("node")
        graph["type"] = np.bytes_(b"NIRGraph")
        nodes = graph.create_group("nodes")
        for name, kind, fields in [("in", "Input", {"shape": np.array([2])}), ("out", "Output", {"shape": np.array([2])}),
                                   ("fl", "snnir.FusedLayerNeuron", {}), ("fl/layer", "Linear", {"weight": np.eye(2)}),
                                   ("fl/neuron", "IF", {"r": np.ones(2), "v_threshold": np.ones(2)})]:
            group = nodes.create_group(name)
            group["type"] = np.bytes_(kind.encode())
            for field, data in fields.items():
                group[field] = data
        nodes["fl"].create_group("metadata")["snnir.fused_from"] = 1.0
        graph["edges"] = np.array([["in", "fl"], ["fl", "out"]], dtype=STR)
    fails(path, "metadata 'snnir.fused_from' must be the two names", node="fl")


def test_external_link_refused(tmp_path):
    path = good_file(tmp_path / "g.nir")
    good_file(tmp_path / "other.nir")
    with h5py.File(path, "a") as f:
        del f["node/nodes/fc"]
        f["node/nodes/fc"] = h5py.ExternalLink(os.fspath(tmp_path / "other.nir"), "/node/nodes/fc")
    fails(path, "links to another file", node="fc")


def test_a_directory_or_fifo_is_named_for_what_it_is(tmp_path):
    """Both were reported as 'no such file'."""
    fails(tmp_path, "is a directory, not a NIR")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe")
        fails(tmp_path / "pipe", "is not a regular file \\(a device, FIFO or socket\\)")


def test_node_name_not_utf8_refused(tmp_path):
    """h5py gives such a name as bytes; it raised 'TypeError: can only concatenate str'."""
    path = good_file(tmp_path / "g.nir")
    with h5py.File(path, "a") as f:
        f["node/nodes"].move("fc", b"f\xffc")
    fails(path, "the name b'f\\\\xffc' in '/node/nodes' is not UTF-8")


def test_external_storage_refused(tmp_path):
    """A dataset whose raw data lies in another file (here one with secrets) is refused, not read."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"root:x:0:0")
    path = good_file(tmp_path / "g.nir")
    with h5py.File(path, "a") as f:
        del f["node/nodes/fc/weight"]
        f.create_dataset("node/nodes/fc/weight", shape=(3, 2), dtype="u1", external=[(os.fspath(secret), 0, 6)])
    fails(path, "keeps its data in another file", node="fc")


def test_virtual_dataset_refused(tmp_path):
    """A virtual dataset maps other files; one whose source is missing would read as its fill value."""
    path = good_file(tmp_path / "g.nir")
    with h5py.File(path, "a") as f:
        del f["node/nodes/fc/weight"]
        layout = h5py.VirtualLayout(shape=(3, 2), dtype="f4")
        layout[:] = h5py.VirtualSource(os.fspath(tmp_path / "missing.h5"), "/w", shape=(3, 2))
        f["node/nodes/fc"].create_virtual_dataset("weight", layout, fillvalue=7.0)
    fails(path, "is a virtual dataset", node="fc")


def test_duplicate_edges_are_refused_as_they_are_read(tmp_path):
    """900k copies of one edge took 35 s and 456 MB (a graph built, shaped and normalised on
    them) before the verifier's "duplicate edge"; the reader now refuses them at once."""
    import time

    edges = np.array([["in", "fc"], ["fc", "lif"], ["lif", "out"]] + [["fc", "lif"]] * 200_000, dtype=object)
    path = with_dataset(tmp_path, "node/edges", data=edges, dtype=STR)
    start = time.perf_counter()
    fails(path, "duplicate edge fc -> lif", node="lif")
    assert time.perf_counter() - start < 4
