"""NIR file I/O: lossless round trips for every registered op, nir compatibility,
defaults and their report, and safe writes (extension ops: test_nir_io_extensions.py)."""

from __future__ import annotations

import dataclasses
import os
import warnings

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import snnir
from snnir.errors import SnnirError, SnnirWarning
from snnir.ir import OPS, DEFAULT_DT, Graph, Semantics, verify
from snnir.ir.ops import (
    AvgPool2d, Conv1d, Conv2d, CubaLIF, Delay, Flatten, Input, LIF, Linear, Output, Scale, Subgraph, SumPool2d,
)
from snnir.ir.ops.base import Op
from snnir.ir.ops.norm import BatchNorm
from snnir.ir.ops.pool import MaxPool1d, MaxPool2d
from snnir.ir.ops.probe import StateProbe
from snnir.ir.nir_io import SNNIR_KEY, load, read, write
from snnir.targets.reference import run

DTYPES = (np.float32, np.float64)


def random_sem(rng: np.random.Generator) -> Semantics:
    compare = str(rng.choice(["gt", "ge"]))
    return Semantics(
        dt=float(rng.uniform(1e-4, 1e-3)),
        discretisation=str(rng.choice(["euler", "exp"])),
        reset=str(rng.choice(["zero", "subtract", "none"])),
        reset_timing=str(rng.choice(["same", "next", "next_after_input"])),
        threshold_compare=compare,
        spike_mode="multi" if compare == "ge" and rng.random() < 0.5 else "single",
        current_order=str(rng.choice(["current_first", "voltage_first"])),
    )


def _neuron(cls: type[Op], rng: np.random.Generator, per_neuron: bool, n: int = 5) -> Op:
    """Random parameters; with ``per_neuron`` some are per-neuron and some scalar (mixed dtypes)."""
    kwargs = {}
    for i, name in enumerate(cls.param_names()):
        dtype = DTYPES[(i + per_neuron) % 2]
        shape = (n,) if per_neuron and i % 3 != 1 else ()
        low, high = (0.01, 0.05) if name.startswith("tau") else (0.2, 1.5)
        value = rng.uniform(low, high, size=shape)
        if name == "v_reset" and not per_neuron:
            value = np.zeros(shape)
        kwargs[name] = value.astype(dtype)
    return cls(**kwargs, sem=random_sem(rng), trainable=cls.param_names()[:1], metadata={"note": "x", "w": np.linspace(0, 1, 3, dtype=np.float32), "f": np.float32(0.1),
                                   "deep": {"n": 7, "names": ["a", "b"], "flag": True}})


def example(op_type: str, rng: np.random.Generator, variant: bool) -> tuple[Op, tuple[int, ...]]:
    """An op of ``op_type`` with random fields and the input shape it takes."""
    dtype = DTYPES[variant]
    r = lambda *shape: rng.standard_normal(shape).astype(dtype)  # noqa: E731
    cls = OPS[op_type]
    if op_type in ("LIF", "IF", "LI", "I", "CubaLI", "CubaLIF"):
        return _neuron(cls, rng, variant), (5,)
    simple = {
        "Input": lambda: (Input((4,)), (4,)),
        "Output": lambda: (Output((4,) if variant else None), (4,)),
        "Affine": lambda: (cls(weight=r(3, 4), bias=r(3) if variant else r()), (4,)),
        "Linear": lambda: (cls(weight=r(3, 4), trainable=("weight",)), (4,)),
        "Scale": lambda: (cls(scale=r(4) if variant else r()), (4,)),
        "Threshold": lambda: (cls(threshold=r(4) if variant else r()), (4,)),
        "Flatten": lambda: (cls(start_dim=0 if variant else 1, end_dim=-1), (2, 3, 4)),
        "Conv1d": lambda: (
            Conv1d(weight=r(4, 2, 3), bias=r(4), stride=2, padding=1, input_shape=(9,) if variant else None),
            (2, 9),
        ),
        "Conv2d": lambda: (
            Conv2d(weight=r(4, 1, 3, 3), bias=r(4), padding="same" if variant else (1, 0), dilation=1, groups=2),
            (2, 6, 7),
        ),
        "SumPool2d": lambda: (SumPool2d(kernel_size=2, stride=(2, 1) if variant else None, padding=(1, 0)), (3, 6, 6)),
        "AvgPool2d": lambda: (AvgPool2d(kernel_size=(2, 3), padding=1 if variant else 0), (3, 6, 6)),
        "snnir.MaxPool1d": lambda: (
            MaxPool1d(kernel_size=3, stride=2 if variant else None, padding=1, dilation=2 if variant else 1,
                      ceil_mode=variant),
            (2, 9),
        ),
        "snnir.MaxPool2d": lambda: (MaxPool2d(kernel_size=(2, 3), padding=1, ceil_mode=variant), (3, 6, 7)),
        "snnir.StateProbe": lambda: (StateProbe("i" if variant else "v"), (5,)),
        "snnir.BatchNorm": lambda: (
            BatchNorm(mean=r(3), var=np.abs(r(3)) + 0.5, weight=r(3), bias=r(3), eps=1e-3 if variant else 1e-5),
            (3, 4) if variant else (3,),
        ),
    }
    if op_type in simple:
        return simple[op_type]()
    if op_type == "Delay":
        sem = Semantics(dt=1e-3)
        return Delay(delay=(rng.integers(0, 4, size=4 if variant else ()) * 1e-3).astype(dtype), sem=sem), (4,)
    if op_type == "NIRGraph":
        inner = Graph(
            {"in": Input((5,)), "lif": _neuron(LIF, rng, variant), "rec": Linear(weight=r(5, 5)),
             "out": Output((5,))},
            (("in", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "out")),
            metadata={"inner": {"depth": 2}},
        )
        return Subgraph(graph=inner, metadata={"own": np.arange(3)}, trainable=()), (5,)
    if op_type == "snnir.FusedLayerNeuron":
        if variant:
            return cls(layer=Linear(weight=r(5, 4)), neuron=_neuron(CubaLIF, rng, True)), (4,)
        conv = Conv2d(weight=r(3, 2, 3, 3), bias=r(3), padding=1, input_shape=(4, 5))
        return cls(layer=conv, neuron=_neuron(LIF, rng, False)), (2, 4, 5)
    return generic_example(cls, rng), (4,)


def generic_example(cls: type[Op], rng: np.random.Generator) -> Op:
    """A best-effort instance of an op this test does not know (e.g. a later extension op)."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("kind") == "param":
            kwargs[f.name] = rng.uniform(0.1, 1.0, size=4)
    try:
        return cls(**kwargs)
    except Exception as exc:  # noqa: BLE001 - an unknown constructor
        pytest.skip(f"no example for {cls.op_type}: {exc}")


def wrap(op: Op, shape: tuple[int, ...], name: str = "node") -> Graph:
    """``in -> op -> out`` (the op alone when it is an Input or Output)."""
    if isinstance(op, Input):
        return Graph({"in": op, "out": Output()}, (("in", "out"),))
    if isinstance(op, Output):
        return Graph({"in": Input(shape), "out": op}, (("in", "out"),))
    if isinstance(op, StateProbe):  # it reads a neuron's state
        return Graph({"in": Input(shape), "cell": _neuron(CubaLIF, np.random.default_rng(0), True), name: op,
                      "out": Output()}, (("in", "cell"), ("cell", name), (name, "out")))
    return Graph(
        {"in": Input(shape), name: op, "out": Output()},
        (("in", name), (name, "out")),
        metadata={"title": "t", "n": 3, "x": 1.5, "arr": np.arange(4, dtype=np.int16), "nested": {"a": "b"}},
    )


@pytest.mark.parametrize("variant", [False, True], ids=["scalar", "per_neuron"])
@pytest.mark.parametrize("op_type", sorted(OPS))
def test_round_trip_every_registered_op(op_type, variant, tmp_path):
    rng = np.random.default_rng(abs(hash((op_type, variant))) % 2**32)
    op, shape = example(op_type, rng, variant)
    graph = wrap(op, shape)
    verify(graph)
    path = tmp_path / "g.nir"
    write(graph, path, keep_extensions=True)
    back, report = load(path)
    assert back == graph
    assert report.defaults_applied == []
    write(back, path, keep_extensions=True)
    assert load(path)[0] == graph


_keys = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=8).filter(
    lambda k: k != ".")
_leaves = (
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12)
    | st.integers(-(2**62), 2**62)
    | st.floats(allow_nan=False, width=64)
    | st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=4).map(
        lambda xs: np.array(xs, dtype=np.float32))
)
_metadata = st.recursive(_leaves, lambda inner: st.dictionaries(_keys, inner, max_size=3), max_leaves=8)


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(_keys.filter(lambda k: k != SNNIR_KEY), _metadata, max_size=4))
def test_metadata_round_trips(tmp_path_factory, metadata):
    path = tmp_path_factory.mktemp("meta") / "g.nir"
    graph = Graph.sequential(("in", Input((2,))), ("lin", Linear(weight=np.eye(2), metadata=metadata)),
                             ("out", Output()), metadata=metadata)
    write(graph, path)
    assert read(path) == graph


def test_write_refuses_parameters_broadcast_over_the_data_limit(tmp_path):
    """NIR types an elementwise node by its parameters' shape: a scalar scale on an Input of
    1e9 numbers would be written (and allocated) as 7.5 GiB."""
    graph = Graph.sequential(("x", Input((10**9,))), ("d", Scale(np.float64(2.0))), ("y", Output()))
    with pytest.raises(SnnirError, match="needs 7.5 GiB, more than the limit data_bytes") as info:
        write(graph, tmp_path / "g.nir")
    assert info.value.node == "d" and not (tmp_path / "g.nir").exists()


def test_dtypes_and_shapes_survive(tmp_path):
    rng = np.random.default_rng(0)
    lif = _neuron(CubaLIF, rng, True)
    graph = wrap(lif, (5,))
    write(graph, tmp_path / "g.nir")
    back = read(tmp_path / "g.nir")
    for name, value in lif.params().items():
        got = getattr(back.nodes["node"], name)
        assert got.dtype == value.dtype and got.shape == value.shape, name


def test_round_trip_runs_identically(tmp_path):
    rng = np.random.default_rng(1)
    op, shape = example("NIRGraph", rng, True)
    graph = wrap(op, shape)
    write(graph, tmp_path / "g.nir")
    x = rng.uniform(0, 2, size=(30, 2, 5))
    a, b = run(graph, x, record=True), run(read(tmp_path / "g.nir"), x, record=True)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


NIR_104_KNOWS = sorted(set(OPS) - {"CubaLI"} - {t for t in OPS if t.startswith("snnir.")})


@pytest.mark.parametrize("variant", [False, True], ids=["scalar", "per_neuron"])
@pytest.mark.parametrize("op_type", NIR_104_KNOWS)
def test_nir_reads_what_we_write(op_type, variant, tmp_path):
    nir = pytest.importorskip("nir", reason="the nir package is not installed")
    rng = np.random.default_rng(2)
    op, shape = example(op_type, rng, variant and op_type != "NIRGraph")
    if "v_reset" in op.param_names():  # nir 1.0.4 has no v_reset: only all-zero resets are expressible
        op = op.replace(v_reset=np.zeros(()))
    write(wrap(op, shape), tmp_path / "g.nir")
    graph = nir.read(tmp_path / "g.nir")
    assert set(graph.nodes) == set(wrap(op, shape).nodes)


def test_an_extension_lowers_by_its_own_expand_when_none_is_registered(tmp_path, monkeypatch):
    """Without snnir.passes imported (it registers lowerings) the fallback was the bound
    ``op.expand``, called with the op again: TypeError, depending on the import order."""
    import snnir.ir.nir_io as nir_io

    monkeypatch.setattr(nir_io, "LOWER_EXTENSION", {})
    op, shape = example("snnir.FusedLayerNeuron", np.random.default_rng(4), False)
    write(wrap(op, shape), tmp_path / "g.nir")
    assert read(tmp_path / "g.nir").nodes["node"].op_type == "NIRGraph"


#: max pools have a standard NIR form on spikes alone (tests/ir/test_max_pool.py), a BatchNorm only
#: folded into a layer before it (tests/frontends/test_trace_batchnorm.py), state probes none
#: (tests/ir/test_state_probe.py)
KEPT_EXTENSIONS = ("snnir.MaxPool1d", "snnir.MaxPool2d", "snnir.BatchNorm", "snnir.StateProbe")


@pytest.mark.parametrize("op_type", sorted(t for t in OPS if t.startswith("snnir.") and t not in KEPT_EXTENSIONS))
def test_extensions_lowered_for_nir(op_type, tmp_path):
    nir = pytest.importorskip("nir", reason="the nir package is not installed")
    rng = np.random.default_rng(4)
    op, shape = example(op_type, rng, False)
    graph = wrap(op, shape)
    write(graph, tmp_path / "g.nir")
    back = read(tmp_path / "g.nir")
    assert isinstance(back.nodes["node"], Subgraph)
    x = rng.uniform(0, 2, size=(10, 2) + shape)
    np.testing.assert_allclose(run(back, x)["out"], run(graph, x)["out"], rtol=1e-12, atol=1e-12)
    assert set(nir.read(tmp_path / "g.nir").nodes) == set(graph.nodes)


def test_nir_written_file_loads(tmp_path):
    nir = pytest.importorskip("nir", reason="the nir package is not installed")
    nir_graph = nir.NIRGraph.from_list(
        nir.Affine(weight=np.ones((3, 2), dtype=np.float32), bias=np.zeros(3, dtype=np.float32)),
        nir.LIF(tau=np.full(3, 0.01), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3)),
    )
    nir.write(tmp_path / "n.nir", nir_graph)
    graph, report = load(tmp_path / "n.nir", dt=1e-3, reset="subtract")
    lif = graph.nodes["lif"]
    assert lif.sem.dt == 1e-3 and lif.sem.reset == "subtract"
    assert any("lif" in line and "caller" in line for line in report.defaults_applied)


def test_defaults_reported_and_warned_once(fixtures_dir):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = read(fixtures_dir / "lif_norse.nir")
    ours = [w for w in caught if issubclass(w.category, SnnirWarning)]
    assert len(ours) == 1 and "dt=0.0001" in str(ours[0].message)
    assert graph.nodes["1"].sem == Semantics(dt=DEFAULT_DT, reset="zero")


def test_reads_file_objects(fixtures_dir):
    import io

    data = io.BytesIO((fixtures_dir / "two_lif_neurons.nir").read_bytes())
    graph, report = load(data, dt=1e-3)
    assert set(graph.nodes) == {"in", "linear1", "lif1", "linear2", "lif2", "out"}


def test_caller_semantics_override_defaults(fixtures_dir):
    graph, report = load(fixtures_dir / "lif_norse.nir", dt=1e-3, semantics={"discretisation": "exp"})
    sem = graph.nodes["1"].sem
    assert (sem.dt, sem.discretisation, sem.reset) == (1e-3, "exp", "zero")
    assert any("discretisation='exp' (caller)" in line for line in report.defaults_applied)


def test_file_semantics_win_over_defaults(tmp_path):
    sem = Semantics(dt=5e-4, reset="subtract", reset_timing="next")
    lif = LIF(tau=0.02, r=1.0, v_leak=0.0, v_threshold=1.0, sem=sem)
    write(wrap(lif, (1,)), tmp_path / "g.nir")
    graph, report = load(tmp_path / "g.nir", dt=1e-3)
    assert graph.nodes["node"].sem == sem and report.defaults_applied == []
    assert any("kept them, not {'dt': 0.001}" in w for w in report.warnings)


def test_semantics_stored_as_one_json_key(tmp_path):
    lif = LIF(tau=0.02, r=1.0, v_leak=0.0, v_threshold=1.0)
    write(wrap(lif, (1,)), tmp_path / "g.nir")
    with h5py.File(tmp_path / "g.nir") as f:
        meta = f["node/nodes/node/metadata"]
        assert set(meta) == {SNNIR_KEY}
        assert b'"sem"' in meta[SNNIR_KEY][()]
        assert f["version"][()].decode().startswith("1.0")


def test_unknown_dialect_is_a_clear_error(tmp_path):
    write(wrap(Linear(weight=np.ones((2, 2))), (2,)), tmp_path / "g.nir")
    with pytest.raises(SnnirError, match="unknown dialect"):
        read(tmp_path / "g.nir", dialect="nonesuch")


def test_a_file_for_a_peer_needs_every_shape(tmp_path):
    """Plain NIR may leave a shape unstated; a peer's importer cannot, so writing for one
    refuses a graph whose shapes do not infer, naming the node, and writes nothing."""
    graph = Graph.sequential(("x", Input((2, 3))), ("f", Flatten(start_dim=4, end_dim=6)), ("y", Output()))
    with pytest.raises(SnnirError, match="for sinabs: node 'f'"):
        write(graph, tmp_path / "peer.nir", dialect="sinabs")
    assert not os.listdir(tmp_path)
    write(graph, tmp_path / "plain.nir")
    assert os.listdir(tmp_path) == ["plain.nir"]


def test_reserved_metadata_key_refused(tmp_path):
    graph = wrap(Linear(weight=np.ones((2, 2)), metadata={SNNIR_KEY: 1}), (2,))
    with pytest.raises(SnnirError, match="reserved"):
        write(graph, tmp_path / "g.nir")


def test_failed_write_keeps_old_file(tmp_path):
    path = tmp_path / "g.nir"
    good = wrap(Linear(weight=np.ones((2, 2))), (2,))
    write(good, path)
    before = path.read_bytes()
    bad = wrap(Linear(weight=np.ones((2, 2)), metadata={"obj": object()}), (2,))
    with pytest.raises(SnnirError, match="node 'node'"):
        write(bad, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.nir"]
    assert read(path) == good


def test_write_errors_are_clear(tmp_path):
    graph = wrap(Linear(weight=np.eye(2)), (2,))
    with pytest.raises(SnnirError, match="no such directory"):
        write(graph, tmp_path / "missing" / "g.nir")
    with pytest.raises(SnnirError, match="cannot contain '/'"):
        write(graph.replace(nodes={**graph.nodes, "a/b": Linear(weight=np.eye(2))}), tmp_path / "g.nir")
    assert list(tmp_path.iterdir()) == []


def test_write_keeps_permissions(tmp_path):
    path = tmp_path / "g.nir"
    graph = wrap(Linear(weight=np.eye(2)), (2,))
    write(graph, path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    path.chmod(0o640)
    write(graph, path)
    assert path.stat().st_mode & 0o777 == 0o640


def test_snnir_top_level_api(tmp_path):
    graph = wrap(Linear(weight=np.eye(2)), (2,))
    snnir.write(graph, tmp_path / "g.nir")
    assert snnir.read(tmp_path / "g.nir") == graph


def test_flatten_and_conv_shapes_written_for_nir(tmp_path):
    graph = wrap(Flatten(start_dim=0), (2, 3))
    write(graph, tmp_path / "g.nir")
    with h5py.File(tmp_path / "g.nir") as f:
        assert list(f["node/nodes/node/input_type"][()]) == [2, 3]
        assert list(f["node/nodes/out/shape"][()]) == [6]
    assert read(tmp_path / "g.nir") == graph


def _legacy_file(path) -> None:
    """A NIR 0.2-style file as old writers made it: scalar groups, array stride, string padding,
    Flatten input_type, scalar (empty-shape) neuron parameters as Norse writes, no v_reset, and
    a nested NIRGraph."""
    text = h5py.string_dtype()

    def node(group, kind, **fields):
        group.create_dataset("type", data=kind, dtype=text)
        for key, value in fields.items():
            if isinstance(value, str):
                group.create_dataset(key, data=value, dtype=text)
            else:
                group.create_dataset(key, data=value)

    def edges(group, pairs):
        group.create_dataset("edges", data=np.array(pairs, dtype=object), dtype=text)

    with h5py.File(path, "w") as f:
        f.create_dataset("version", data=b"0.2.0")
        root = f.create_group("node")
        node(root, "NIRGraph")
        nodes = root.create_group("nodes")
        node(nodes.create_group("input"), "Input", shape=np.array([1, 6, 6]))
        node(nodes.create_group("conv"), "Conv2d", weight=np.ones((2, 1, 3, 3), np.float32),
             bias=np.zeros(2, np.float32), stride=np.array([1, 1]), padding="same", dilation=np.array([1, 1]),
             groups=np.int64(1), input_shape=np.array([6, 6]))
        node(nodes.create_group("flat"), "Flatten", start_dim=np.int64(0), end_dim=np.int64(-1),
             input_type=np.array([2, 6, 6]))
        sub = nodes.create_group("rec.block")
        node(sub, "NIRGraph")
        inner = sub.create_group("nodes")
        node(inner.create_group("input"), "Input", shape=np.array([72]))
        node(inner.create_group("lif.0"), "LIF", tau=np.float32(0.02), r=np.float32(1.0),
             v_leak=np.float32(0.0), v_threshold=np.float32(0.5))
        node(inner.create_group("output"), "Output", shape=np.array([72]))
        edges(sub, [["input", "lif.0"], ["lif.0", "output"]])
        node(nodes.create_group("output"), "Output", shape=np.array([72]))
        edges(root, [["input", "conv"], ["conv", "flat"], ["flat", "rec.block"], ["rec.block", "output"]])


def test_legacy_layouts(tmp_path):
    _legacy_file(tmp_path / "old.nir")
    graph, report = load(tmp_path / "old.nir", dt=1e-3)
    conv = graph.nodes["conv"]
    assert conv.padding == "same" and conv.stride == (1, 1) and conv.groups == 1 and conv.input_shape == (6, 6)
    lif = graph.nodes["rec.block"].graph.nodes["lif.0"]
    assert lif.tau.shape == () and lif.tau.dtype == np.float32 and lif.sem.dt == 1e-3
    assert any("rec.block.lif.0: v_reset=0" in d for d in report.defaults_applied)
    out = run(graph, np.ones((3, 1, 1, 6, 6)))["output"]
    assert out.shape == (3, 1, 72)
    write(graph, tmp_path / "new.nir")
    assert read(tmp_path / "new.nir") == graph


def test_nested_graph_written_by_nir(tmp_path):
    nir = pytest.importorskip("nir", reason="the nir package is not installed")
    inner = nir.NIRGraph.from_list(nir.LI(tau=np.full(2, 0.01), r=np.ones(2), v_leak=np.zeros(2)))
    outer = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2])), "sub": inner, "output": nir.Output(np.array([2]))},
        edges=[("input", "sub.input"), ("sub.output", "output")],
    )
    nir.write(tmp_path / "n.nir", outer)
    graph, report = load(tmp_path / "n.nir", dt=1e-3)
    assert isinstance(graph.nodes["sub"], Subgraph) and graph.nodes["sub"].graph.nodes["li"].sem.dt == 1e-3
    assert run(graph, np.ones((4, 1, 2)))["output"].shape == (4, 1, 2)


def test_an_endpoint_into_a_dotted_nested_graph_round_trips(tmp_path):
    """Nodes 'layer' and 'layer.sub': the reader resolves 'layer.sub.a' to the dotted node's port."""
    inner = Graph({"a": Input((2,)), "s": Scale(np.array(2.0)), "y": Output()}, (("a", "s"), ("s", "y")))
    graph = Graph(
        {"x": Input((2,)), "layer": Scale(np.array(1.0)), "layer.sub": Subgraph(inner), "y": Output(), "z": Output()},
        (("x", "layer"), ("layer", "z"), ("x", "layer.sub.a"), ("layer.sub.y", "y")),
    )
    write(graph, tmp_path / "g.nir")
    back = read(tmp_path / "g.nir")
    assert back == graph
    assert run(back, np.ones((1, 1, 2)))["y"].ravel().tolist() == [2.0, 2.0]


def test_dialect_leaves_stated_semantics_alone(tmp_path):
    """A file snnir wrote states its semantics: a dialect must not re-interpret those nodes."""
    from snnir.ir import LIF, Affine, Graph, Input, Output

    graph = Graph.sequential(
        ("input", Input((3,))),
        ("fc", Affine(np.ones((2, 3)), np.zeros(2))),
        ("lif", LIF(tau=np.full(2, 1e-2), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))),
        ("output", Output()),
    )
    path = tmp_path / "ours.nir"
    snnir.write(graph, path)
    again, report = load(path, dialect="norse")
    assert report.defaults_applied == []
    assert again == graph
