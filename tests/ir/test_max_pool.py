"""snnir.MaxPool1d / MaxPool2d: shapes, reference, targets and the forms they take in files,
each against torch.nn.functional.max_pool* over every parameter combination torch accepts."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import snnir
from snnir.errors import SnnirError, SnnirWarning
from snnir.ir import Flatten, Graph, Input, Output, Semantics, Subgraph, verify
from snnir.ir.ops import IF, Threshold
from snnir.ir.ops.pool import MaxPool1d, MaxPool2d
from snnir.targets.reference.kernels import max_pool

TORCH_POOL = {MaxPool1d: F.max_pool1d, MaxPool2d: F.max_pool2d}


def _torch_pool(cls, x: np.ndarray, k, s, p, d, ceil) -> np.ndarray | None:
    try:
        return TORCH_POOL[cls](torch.from_numpy(x), k, s, p, d, ceil_mode=ceil).numpy()
    except RuntimeError:
        return None  # torch refuses: the op must refuse too


def _combos(sizes, kernels=range(1, 5), strides=range(1, 4), dilations=range(1, 4)):
    for n, k, s, d, ceil in itertools.product(sizes, kernels, strides, dilations, (False, True)):
        for p in range(k // 2 + 1):
            yield n, k, s, p, d, ceil


def test_1d_shape_and_values_equal_torch_for_every_combination():
    rng = np.random.default_rng(0)
    checked = refused = minus_inf = 0
    for n, k, s, p, d, ceil in _combos(range(1, 9)):
        x = rng.normal(size=(2, 3, n))
        want = _torch_pool(MaxPool1d, x, k, s, p, d, ceil)
        op = MaxPool1d(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
        if want is None:
            with pytest.raises(SnnirError, match="output would be empty") as err:
                op.infer_shape((3, n), "pool")
            assert err.value.node == "pool"
            refused += 1
            continue
        assert op.infer_shape((3, n), "pool") == want.shape[1:], (n, k, s, p, d, ceil)
        np.testing.assert_array_equal(max_pool(op, x), want, err_msg=str((n, k, s, p, d, ceil)))
        assert op.every_window_samples_input((n,)) == bool(np.isfinite(want).all())
        minus_inf += int(not np.isfinite(want).all())
        checked += 1
    assert checked > 500 and refused > 100 and minus_inf > 0  # the sweep reaches every case


def test_2d_shape_and_values_equal_torch_with_mixed_parameters():
    rng = np.random.default_rng(1)
    for _ in range(300):
        h, w = rng.integers(1, 9, 2)
        k = tuple(int(v) for v in rng.integers(1, 4, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
        d = tuple(int(v) for v in rng.integers(1, 3, 2))
        ceil = bool(rng.integers(0, 2))
        x = rng.normal(size=(2, 2, h, w))
        want = _torch_pool(MaxPool2d, x, k, s, p, d, ceil)
        op = MaxPool2d(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
        if want is None:
            with pytest.raises(SnnirError):
                op.infer_shape((2, h, w), "pool")
            continue
        assert op.infer_shape((2, h, w), "pool") == want.shape[1:]
        np.testing.assert_array_equal(max_pool(op, x), want)


@pytest.mark.parametrize(
    "fields,needle",
    [
        (dict(kernel_size=0), "kernel_size must be 2 integers >= 1"),
        (dict(kernel_size=2, stride=0), "stride must be 2 integers >= 1"),
        (dict(kernel_size=2, dilation=0), "dilation must be 2 integers >= 1"),
        (dict(kernel_size=3, padding=2), "at most half the kernel"),
        (dict(kernel_size=2, padding=-1), "padding must be 2 integers >= 0"),
        (dict(kernel_size=(2, 2, 2)), "kernel_size must be 2 integers"),
        (dict(kernel_size=2, ceil_mode="yes"), "ceil_mode must be true or false"),
        (dict(kernel_size=2**20, dilation=2**12), "spans 4294963201 cells, more than the limit"),
    ],
)
def test_bad_parameters_are_refused(fields, needle):
    with pytest.raises(SnnirError, match=needle):
        MaxPool2d(**fields)


def test_verifier_names_the_pool_whose_input_does_not_fit():
    graph = Graph.sequential(("in", Input((3, 2, 2))), ("pool", MaxPool2d(kernel_size=3)), ("out", Output()))
    with pytest.raises(SnnirError, match="output would be empty") as err:
        verify(graph)
    assert err.value.node == "pool"
    graph = Graph.sequential(("in", Input((3, 4))), ("pool", MaxPool2d(kernel_size=2)), ("out", Output()))
    with pytest.raises(SnnirError, match=r"expects input \[C, H, W\]") as err:
        verify(graph)
    assert err.value.node == "pool"


# --- the standard form on spikes ---------------------------------------------------------
@pytest.mark.parametrize("cls", [MaxPool1d, MaxPool2d])
def test_binary_form_equals_the_pool_on_spikes_exactly_where_it_exists(cls):
    """Every combination: the form (window sum, Threshold 0.5) gives the pool's values on
    0/1 inputs (ceil_mode's extra windows included); where there is none, a window is padding alone."""
    rng = np.random.default_rng(2)
    sizes = range(1, 8) if cls is MaxPool1d else [(3, 5), (6, 4), (2, 2)]
    found = missing = 0
    for n, k, s, p, d, ceil in _combos(sizes, strides=range(1, 3)):
        spatial = (n,) if cls is MaxPool1d else n
        op = cls(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
        try:
            op.infer_shape((2,) + spatial, "pool")
        except SnnirError:
            continue
        form = op.binary_form((2,) + spatial)
        if form is None:
            assert not op.every_window_samples_input(spatial)
            missing += 1
            continue
        x = (rng.random((4, 3, 2) + spatial) < 0.4).astype(float)
        want = np.stack([max_pool(op, x[t]) for t in range(4)])
        np.testing.assert_array_equal(snnir.run(form, x)["output"], want)
        found += 1
    assert found > 50 and missing > 2


def test_window_checks_are_immediate_on_huge_declared_shapes():
    """A file may declare any shape: deciding the form reads no windows and allocates nothing big."""
    assert MaxPool1d(kernel_size=2, padding=1).every_window_samples_input((2**31 - 1,))
    assert MaxPool2d(kernel_size=4, padding=2).binary_form((1, 2**15, 2**15)) is not None
    assert MaxPool1d(kernel_size=3).binary_form((2**15, 9)) is None  # a [C, C, 3] kernel over the limit


def test_a_huge_kernel_allocates_nothing_for_its_form():
    """The kernel of ones was allocated before its size was checked (a MemoryError from read and
    write), and every window starting in the padding was visited (minutes for 2**27 of them)."""
    assert MaxPool2d(kernel_size=2**20, padding=2**19, dilation=2).binary_form((1, 1, 1)) is None
    assert MaxPool1d(kernel_size=2**28, padding=2**27, stride=1).binary_form((2, 1)) is None
    form = MaxPool2d(kernel_size=2**20, padding=2**19).binary_form((1, 1, 1))
    assert form.nodes["sum"].kernel_size == (2**20, 2**20)


def test_a_pool_of_spikes_with_a_huge_kernel_is_written_and_read_back(tmp_path):
    graph = _spiking_pool_graph(MaxPool2d(kernel_size=2**20, padding=2**19), (1, 1, 1))
    snnir.write(graph, tmp_path / "g.nir")
    assert snnir.read(tmp_path / "g.nir") == graph


def _spiking_pool_graph(pool, shape=(2, 6, 6)) -> Graph:
    sem = Semantics(dt=1e-3, reset="subtract")
    neuron = IF(r=np.full(shape, 900.0), v_threshold=np.ones(shape), v_reset=np.zeros(shape), sem=sem)
    return Graph.sequential(("in", Input(shape)), ("if", neuron), ("pool", pool), ("out", Output()))


def test_a_pool_of_spikes_is_written_as_standard_nir_and_read_back_exactly(tmp_path):
    nir = pytest.importorskip("nir", reason="the nir package is not installed")
    graph = _spiking_pool_graph(MaxPool2d(kernel_size=3, stride=2, padding=1, metadata={"note": "mine"}))
    path = tmp_path / "g.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("error", SnnirWarning)  # no warning: peers read this file
        snnir.write(graph, path)
        assert snnir.read(path) == graph
    peer = nir.read(str(path))
    inner = peer.nodes["pool"]
    assert isinstance(inner, nir.NIRGraph)
    assert {type(n).__name__ for n in inner.nodes.values()} == {"Input", "SumPool2d", "Threshold", "Output"}
    lowered = snnir.read(path, dialect="nir")
    assert isinstance(lowered.nodes["pool"], MaxPool2d)
    x = np.random.default_rng(0).random((12, 2, 2, 6, 6))
    expected = snnir.run(graph, x)["out"]
    assert expected.any()
    as_nested = graph.with_nodes(pool=Subgraph(graph=graph.nodes["pool"].binary_form((2, 6, 6))))
    np.testing.assert_array_equal(snnir.run(as_nested, x)["out"], expected)


def test_dilated_and_1d_pools_of_spikes_become_channelwise_convolutions(tmp_path):
    nir = pytest.importorskip("nir", reason="the nir package is not installed")
    for pool, shape in ((MaxPool2d(kernel_size=2, dilation=2), (2, 6, 6)), (MaxPool1d(kernel_size=3, stride=2), (2, 7))):
        graph = _spiking_pool_graph(pool, shape)
        snnir.write(graph, tmp_path / "g.nir")
        kinds = {type(n).__name__ for n in nir.read(str(tmp_path / "g.nir")).nodes["pool"].nodes.values()}
        assert kinds == {"Input", f"Conv{pool.spatial_rank}d", "Threshold", "Output"}
        assert snnir.read(tmp_path / "g.nir") == graph


def test_a_declared_binary_input_is_pooled_in_standard_nir(tmp_path):
    graph = Graph.sequential(("in", Input((2, 4, 4))), ("pool", MaxPool2d(2)), ("out", Output()))
    with pytest.warns(SnnirWarning, match="only snnir reads: 'pool'"):
        snnir.write(graph, tmp_path / "a.nir")
    snnir.write(graph, tmp_path / "b.nir", binary_inputs={"in"})
    assert snnir.read(tmp_path / "a.nir") == graph == snnir.read(tmp_path / "b.nir")
    with pytest.raises(SnnirError, match="not Input nodes"):
        snnir.write(graph, tmp_path / "c.nir", binary_inputs={"pool"})


@pytest.mark.parametrize("pool, shape", [
    (MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True), (2, 6, 6)),
    (MaxPool2d(kernel_size=2, ceil_mode=True), (2, 5, 7)),
    (MaxPool2d(kernel_size=(2, 3), stride=(3, 2), dilation=2, ceil_mode=True), (2, 8, 9)),
    (MaxPool1d(kernel_size=3, stride=2, padding=1, ceil_mode=True), (2, 8)),
], ids=["2d padded", "2d", "2d dilated", "1d"])
def test_ceil_mode_windows_of_spikes_are_written_as_standard_nir(pool, shape, tmp_path):
    """ceil_mode adds a window on the right that NIR's both-sides padding cannot give a SumPool2d:
    such a pool was kept as an extension op, which nir.read fails on (AssertionError). A convolution
    padded on both sides, whose kernel starts with zeros, sums exactly the pool's windows."""
    nir = pytest.importorskip("nir", reason="the nir package is not installed")
    graph = _spiking_pool_graph(pool, shape)
    assert pool.ceil_adds_windows(shape[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("error", SnnirWarning)
        snnir.write(graph, tmp_path / "g.nir")
    inner = nir.read(str(tmp_path / "g.nir")).nodes["pool"]
    assert {type(n).__name__ for n in inner.nodes.values()} == {"Input", f"Conv{pool.spatial_rank}d", "Threshold",
                                                                 "Output"}
    assert snnir.read(tmp_path / "g.nir") == graph
    x = np.random.default_rng(0).random((12, 2, *shape))
    expected = snnir.run(graph, x)["out"]
    as_nested = graph.with_nodes(pool=Subgraph(graph=pool.binary_form(shape)))
    np.testing.assert_array_equal(snnir.run(as_nested, x)["out"], expected)
    assert expected.any()


def test_a_traced_ceil_mode_pool_after_a_leaky_loads_in_nir(tmp_path):
    snntorch = pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")
    nir = pytest.importorskip("nir", reason="the nir package is not installed")
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), snntorch.Leaky(beta=0.9, init_hidden=True),
                              torch.nn.MaxPool2d(2, ceil_mode=True), torch.nn.Flatten(), torch.nn.Linear(2 * 13 * 13, 3),
                              snntorch.Leaky(beta=0.9, init_hidden=True))
    graph = snnir.trace(net, torch.zeros(1, 1, 27, 27))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SnnirWarning)
        snnir.write(graph, tmp_path / "g.nir")
    nir.read(str(tmp_path / "g.nir"))
    assert snnir.read(tmp_path / "g.nir") == graph


def test_a_pool_of_spikes_without_exact_form_stays_an_extension_op(tmp_path):
    pool, shape = MaxPool1d(kernel_size=2, padding=1, dilation=3), (2, 2)
    graph = _spiking_pool_graph(pool, shape)
    assert pool.binary_form(shape) is None  # a window of padding alone
    with pytest.warns(SnnirWarning, match="only snnir reads"):
        snnir.write(graph, tmp_path / "g.nir")
    assert snnir.read(tmp_path / "g.nir") == graph


def test_analogue_pools_are_written_losslessly_with_one_warning(tmp_path):
    graph = Graph.sequential(
        ("in", Input((2, 5, 5))), ("a", MaxPool2d(kernel_size=2, stride=1, ceil_mode=True)),
        ("b", MaxPool2d(kernel_size=2, dilation=2)), ("flat", Flatten(0)), ("out", Output()),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        snnir.write(graph, tmp_path / "g.nir")
    messages = [str(w.message) for w in caught if issubclass(w.category, SnnirWarning)]
    assert len(messages) == 1 and "'a', 'b'" in messages[0]
    assert snnir.read(tmp_path / "g.nir") == graph
    snnir.write(graph, tmp_path / "k.nir", keep_extensions=True)
    assert snnir.read(tmp_path / "k.nir") == graph


@pytest.mark.parametrize("dialect", ["snntorch", "norse", "sinabs", "rockpool", "spyx"])
def test_every_dialect_refuses_an_analogue_pool_naming_it(dialect, tmp_path):
    graph = Graph.sequential(("in", Input((2, 4, 4))), ("pool", MaxPool2d(2)), ("out", Output()))
    with pytest.raises(SnnirError, match="max pooling|MaxPool2d") as err:  # the dialect's words, or write's
        snnir.write(graph, tmp_path / "g.nir", dialect=dialect)
    assert err.value.node == "pool"
    assert not (tmp_path / "g.nir").exists()


def test_a_file_whose_pool_form_was_edited_reads_as_its_nested_graph(tmp_path):
    """The metadata alone does not make a max pool: the nested graph must still be its form."""
    pool = MaxPool2d(kernel_size=2)
    form = pool.binary_form((2, 4, 4))
    edited = form.with_nodes(spike=Threshold(np.float64(1.5)))
    record = {"op_type": pool.op_type, "kernel_size": [2, 2], "stride": [2, 2], "padding": [0, 0],
              "dilation": [1, 1], "ceil_mode": False}
    graph = Graph.sequential(("in", Input((2, 4, 4))),
                             ("pool", Subgraph(graph=edited, metadata={"snnir.max_pool": record})), ("out", Output()))
    snnir.write(graph, tmp_path / "g.nir")
    with pytest.warns(SnnirWarning, match="not that pool's standard form"):
        back = snnir.read(tmp_path / "g.nir")
    assert isinstance(back.nodes["pool"], Subgraph)


# --- targets -----------------------------------------------------------------------------
TARGET_POOLS = [
    (MaxPool1d(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True), (3, 10)),
    (MaxPool1d(kernel_size=2, padding=1, dilation=3), (2, 2)),  # a window of -inf padding
    (MaxPool2d(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), ceil_mode=True), (2, 6, 5)),
    (MaxPool2d(kernel_size=2, stride=3, dilation=(2, 1), ceil_mode=True), (2, 7, 8)),
]


@pytest.mark.parametrize("pool,shape", TARGET_POOLS)
def test_torch_target_equals_reference(pool, shape):
    graph = Graph.sequential(("in", Input(shape)), ("pool", pool), ("out", Output()))
    x = np.random.default_rng(3).normal(size=(5, 3) + shape)
    want = snnir.run(graph, x)["out"]
    for dtype in (torch.float64, torch.float32):
        module = snnir.compile(graph, target="torch", dtype=dtype)
        got = module(torch.from_numpy(x).to(dtype)).detach().numpy()
        np.testing.assert_array_equal(got, want.astype(got.dtype))


@pytest.mark.parametrize("pool,shape", TARGET_POOLS)
def test_onnx_target_equals_reference_in_onnxruntime(pool, shape, tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the test extra)")
    from snnir.targets.ipu.onnx_export import simulate

    graph = Graph.sequential(("in", Input(shape)), ("pool", pool), ("out", Output()))
    x = np.random.default_rng(4).normal(size=(5, 3) + shape)
    model_dir = snnir.compile(graph, target="onnx", out_dir=tmp_path / "onnx")
    np.testing.assert_array_equal(simulate(model_dir, x)["out"], snnir.run(graph, x)["out"].astype(np.float32))
