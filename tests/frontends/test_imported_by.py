"""``snnir.imported_by``: what each library's own importer simulates from a graph's file.

Pure tier: the NIR paper's single-LIF files (predictions the interop tier confirms against the
real libraries, ``tests/interop/test_imported_by_peers.py``), refusals naming node and library,
and consistency with the write direction: a graph written for a library with its dialect and
then imported by that library's importer spikes as the graph does.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import snnir
from snnir.frontends.dialects import DIALECTS, get_dialect
from snnir.ir import Graph
from snnir.ir.nir_io import as_written
from snnir.ir.ops import LIF, Affine, Conv2d, CubaLIF, Delay, Input, Linear, Output, SumPool2d
from snnir.ir.semantics import Semantics

from interop.cells_common import _our_feedforward

from .test_dialect_versions import NORSE_SPIKES, PAPER_INPUT

LIBRARIES = ("snntorch", "norse", "norse-1.0", "sinabs", "rockpool", "spyx", "nengo", "lava")


def _read(path) -> Graph:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return snnir.read(path)


def _steps(graph: Graph) -> list[int]:
    (out,) = snnir.run(graph, PAPER_INPUT).values()
    return np.nonzero(out[:, 0, 0])[0].tolist()


@pytest.mark.parametrize("library", LIBRARIES)
def test_every_library_is_described_on_its_dialect(library) -> None:
    dialect = get_dialect(library)
    assert dialect.imported_by is not None and dialect.importer


@pytest.mark.parametrize(("file", "library", "options", "steps"), [
    ("lif_norse.nir", "snntorch", {}, NORSE_SPIKES),
    ("lif_norse.nir", "norse", {"dt": 1e-4}, NORSE_SPIKES),
    ("lif_rockpool.nir", "snntorch", {}, [460, 520, 720, 780]),  # its r: input gain 0.96, threshold / 0.96
    ("lif_rockpool.nir", "spyx", {"dt": 1e-4}, [461, 511, 711, 761]),  # the paper's Spyx steps
    ("lif_rockpool.nir", "norse", {"dt": 1e-4}, []),  # r = 24 ignored: the 0.04 weight alone never fires
])
def test_the_papers_lif_files_as_each_importer_runs_them(fixtures_dir, file, library, options, steps) -> None:
    predicted, _ = snnir.imported_by(_read(fixtures_dir / file), library, **options)
    assert _steps(predicted) == steps


def test_norse_1_0_imports_no_file(fixtures_dir) -> None:
    """Norse 1.0.0 has no from_nir (tests/interop/test_norse_1_0.py runs it)."""
    with pytest.raises(snnir.SnnirError, match="Norse 1.0.0.*has no NIR importer"):
        snnir.imported_by(_read(fixtures_dir / "lif_norse.nir"), "norse-1.0", dt=1e-4)


def test_spyx_adds_the_input_unscaled_and_emits_one_step_late(fixtures_dir) -> None:
    """lif_norse.nir's r = 1 is a gain of dt/tau = 0.04 in NIR; Spyx ignores r, so every input
    spike crosses the 0.1 threshold, and its spikes leave one step late."""
    predicted, notes = snnir.imported_by(_read(fixtures_dir / "lif_norse.nir"), "spyx")
    steps = _steps(predicted)
    assert steps[:3] == [61, 221, 271] and all(step % 10 == 1 for step in steps)
    assert any("delayed one step" in note for note in notes)
    assert any("dt 1, the graph states 0.0001" in note for note in notes)


def test_norse_at_its_default_dt_says_so(fixtures_dir) -> None:
    _, notes = snnir.imported_by(_read(fixtures_dir / "lif_norse.nir"), "norse")
    assert notes == ["node '1': Norse's from_nir simulates dt 0.001, the graph states 0.0001"]


@pytest.mark.parametrize(("file", "library", "options", "node", "words"), [
    ("lif_norse.nir", "rockpool", {}, "1", "LIF.tau_mem"),
    ("lif_rockpool.nir", "sinabs", {"batch_size": 1}, "0_LinearTorch", "no module for Linear"),
    ("two_lif_neurons.nir", "snntorch", {}, "lif1", "v_leak = 0"),
    ("two_lif_neurons.nir", "spyx", {}, None, "named 'input'"),
    ("braille_noDelay_bias_zero.nir", "snntorch", {}, "lif1", "'GraphModule' object has no attribute 'items'"),
    ("cnn_sinabs.nir", "snntorch", {}, "1", "builds IF as Leaky"),
    ("cnn_sinabs.nir", "sinabs", {"batch_size": 1}, "1", "min_v_mem=-v_threshold"),
    ("cnn_sinabs.nir", "rockpool", {}, "0", "no module for Conv2d"),
])
def test_an_importer_that_cannot_read_the_file_is_named_with_the_node(fixtures_dir, file, library, options, node,
                                                                      words) -> None:
    with pytest.raises(snnir.SnnirError) as caught:
        snnir.imported_by(_read(fixtures_dir / file), library, **options)
    assert caught.value.node == node and words in str(caught.value)
    assert get_dialect(library).importer in str(caught.value)


@pytest.mark.parametrize("library", ["snntorch", "norse", "sinabs", "rockpool"])
def test_nirtorch_importers_refuse_a_second_input(library) -> None:
    lif = LIF(tau=np.full(2, 1e-3), r=np.full(2, 10.0), v_leak=np.zeros(2), v_threshold=np.ones(2))
    graph = Graph({"a": Input(shape=(2,)), "b": Input(shape=(2,)), "fc": Affine(weight=np.eye(2), bias=np.zeros(2)),
                   "lif": lif if library != "rockpool" else CubaLIF(tau_syn=lif.tau, tau_mem=lif.tau, r=lif.r,
                                                                    v_leak=lif.v_leak, v_threshold=lif.v_threshold),
                   "y": Output()}, (("a", "fc"), ("b", "fc"), ("fc", "lif"), ("lif", "y")))
    with pytest.raises(snnir.SnnirError, match="reads one Input and one Output; this graph has 2 and 1"):
        snnir.imported_by(graph, library, **({"batch_size": 1} if library == "sinabs" else {}))


def test_options_are_the_importers_own(fixtures_dir) -> None:
    graph = _read(fixtures_dir / "lif_norse.nir")
    with pytest.raises(snnir.SnnirError, match="takes no option 'dt'"):
        snnir.imported_by(graph, "snntorch", dt=1e-3)
    with pytest.raises(snnir.SnnirError, match="batch_size or num_timesteps"):
        snnir.imported_by(graph, "sinabs")
    with pytest.raises(snnir.SnnirError, match="no importer is described for 'nir'"):
        snnir.imported_by(graph, "nir")
    with pytest.raises(snnir.SnnirError, match="unknown dialect"):
        snnir.imported_by(graph, "brian2")


def flat_loop() -> Graph:
    """input -> fc -> lif <-> rec, lif -> output, in execution order."""
    lif = LIF(tau=np.full(3, 1e-3), r=np.full(3, 10.0), v_leak=np.zeros(3), v_threshold=np.ones(3),
              sem=Semantics(dt=1e-4))
    return Graph(
        {"input": Input(shape=(3,)), "fc": Linear(weight=np.array([[1.2, 0, 0], [0.3, 0.9, 0], [0, 0.5, 1.1]])),
         "lif": lif, "rec": Linear(weight=np.full((3, 3), 0.37)), "output": Output()},
        (("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")))


def test_snntorch_routes_a_flat_loops_input_through_the_recurrent_weight() -> None:
    """``_create_rnn_subgraph`` wires ``input -> w_rec``: the prediction feeds the weight."""
    predicted, notes = snnir.imported_by(flat_loop(), "snntorch")
    assert ("fc", "rec") in predicted.edges and ("fc", "lif") not in predicted.edges
    assert any("W_rec multiplies the input too" in note for note in notes)



@pytest.mark.parametrize("library", LIBRARIES)
def test_a_non_zero_v_reset_is_refused_where_the_installed_nir_cannot_read_it(library) -> None:
    """nir.read builds each node from all its stored fields; nir 1.0.4's LIF has no v_reset."""
    import nir

    graph = flat_loop()
    lif = graph.nodes["lif"]
    graph = graph.replace(nodes={**graph.nodes, "lif": lif.replace(v_reset=np.full(3, -0.5))})
    options = {"batch_size": 1} if library == "sinabs" else {}
    if "v_reset" in nir.LIF.__dataclass_fields__:
        pytest.skip(f"nir {nir.__version__} reads LIF.v_reset")
    with pytest.raises(snnir.SnnirError, match=r"reads files with nir.read, and nir .* has no LIF.v_reset") as caught:
        snnir.imported_by(graph, library, **options)
    assert caught.value.node == "lif"


def _conv_net(after_conv, shape=(2, 3, 3)) -> Graph:
    conv = Conv2d(weight=np.full((2, 1, 2, 2), 0.6), bias=np.zeros(2))
    return Graph({"input": Input(shape=(1, 4, 4)), "conv": conv, "n": after_conv(shape), "output": Output()},
                 (("input", "conv"), ("conv", "n"), ("n", "output")))


def _lif(shape) -> LIF:
    return LIF(tau=np.full(shape, 1e-3), r=np.full(shape, 10.0), v_leak=np.zeros(shape), v_threshold=np.ones(shape),
               sem=Semantics(dt=1e-4))


def test_sinabs_any_over_a_layers_lif_parameters_is_predicted_to_fail() -> None:
    with pytest.raises(snnir.SnnirError, match=r"any\(\) to v_leak \(sinabs/nir.py:97, Sinabs' bug\)") as caught:
        snnir.imported_by(_conv_net(_lif), "sinabs", batch_size=1)
    assert caught.value.node == "n"
    snnir.imported_by(_conv_net(_lif, shape=(2, 1, 1)), "sinabs", batch_size=1)  # rows of one entry: no error


def test_snntorch_runs_sumpool2d_as_nirtorchs_lppool() -> None:
    graph = _conv_net(lambda shape: SumPool2d(kernel_size=3, stride=1))
    _, notes = snnir.imported_by(graph, "snntorch")
    assert any("LPPool2d(norm_type=1)" in note for note in notes)
    padded = _conv_net(lambda shape: SumPool2d(kernel_size=3, stride=1, padding=1))
    with pytest.raises(snnir.SnnirError, match="ignores padding: not predicted"):
        snnir.imported_by(padded, "snntorch")


def _cuba_loop(edges_order) -> Graph:
    lif = flat_loop().nodes["lif"]
    cuba = CubaLIF(tau_syn=lif.tau, tau_mem=lif.tau, r=lif.r, v_leak=lif.v_leak, v_threshold=lif.v_threshold)
    return flat_loop().replace(nodes={**flat_loop().nodes, "lif": cuba}, edges=edges_order)


def test_rockpool_runs_a_top_level_loop_without_its_way_back() -> None:
    """One GraphExecutor call over the whole sequence: 'rec' runs after 'lif', so its edge is dropped."""
    edges = (("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output"))
    predicted, notes = snnir.imported_by(_cuba_loop(edges), "rockpool")
    assert ("rec", "lif") not in predicted.edges and ("lif", "rec") in predicted.edges
    assert any("edge 'rec' -> 'lif'" in note and "drops this edge" in note for note in notes)
    last_runs_rec = (("input", "fc"), ("fc", "lif"), ("lif", "output"), ("lif", "rec"), ("rec", "lif"))
    with pytest.raises(snnir.SnnirError, match="returns the output of the node it runs last") as caught:
        snnir.imported_by(_cuba_loop(last_runs_rec), "rockpool")
    assert caught.value.node == "rec"

# --- consistency with the write direction ------------------------------------------
def _feedforward(kind: str, sem: Semantics, tau: float | None = None) -> Graph:
    """The interop matrix's two-layer net (``cells._our_feedforward``), LIF time constants ``tau``."""
    graph = _our_feedforward(kind, sem)
    if tau is None:
        return graph
    return graph.with_nodes({n: graph.nodes[n].replace(tau=np.full(graph.nodes[n].tau.shape, tau)) for n in ("n1", "n2")})


def _spyx_timed(graph: Graph, sem: Semantics) -> Graph:
    for neuron in ("n1", "n2"):  # Spyx's spikes leave one step late
        late = neuron + "_spyx_delay"
        graph = graph.replace(nodes={**graph.nodes, late: Delay(delay=np.asarray(sem.dt), sem=sem)},
                              edges=tuple((late if s == neuron else s, d) for s, d in graph.edges) + ((neuron, late),))
    return graph


_ZERO = Semantics(dt=5e-4, discretisation="exp", reset="zero")
_MULTI = Semantics(dt=1e-3, reset="subtract", threshold_compare="ge", spike_mode="multi")
_SPYX = Semantics(dt=1.0, reset="subtract", reset_timing="next")
WRITTEN = [
    ("snntorch", _feedforward("LIF", _ZERO), {}),
    ("snntorch", _feedforward("CubaLIF", _ZERO), {}),
    ("norse", _feedforward("LIF", _ZERO), {}),
    ("norse", _feedforward("CubaLIF", _ZERO), {}),
    ("norse", _feedforward("IF", _ZERO), {}),
    ("sinabs", _feedforward("LIF", _MULTI), {"batch_size": 3}),
    ("rockpool", _feedforward("CubaLIF", _MULTI.with_(discretisation="exp")), {}),
    ("spyx", _spyx_timed(_feedforward("LIF", _SPYX, tau=5.0), _SPYX), {}),
]


@pytest.mark.parametrize(("library", "graph", "options"), WRITTEN, ids=[f"{lib}-{i}" for i, (lib, _, _) in
                                                                        enumerate(WRITTEN)])
def test_a_file_written_for_a_library_is_imported_with_the_same_spikes(library, graph, options) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        written = as_written(graph, dialect=library)
    predicted, _ = snnir.imported_by(written, library, **options)
    x = (np.random.default_rng(0).random((40, 3, 6)) < 0.3) * 1.5
    (ours,), (theirs,) = snnir.run(graph, x).values(), snnir.run(predicted, x).values()
    assert ours.sum() > 0
    np.testing.assert_array_equal(ours, theirs)


def test_no_dialect_without_an_importer_description_claims_one() -> None:
    get_dialect("snntorch")  # loads the built-in dialects
    assert {name for name, d in DIALECTS.items() if d.imported_by is not None} >= set(LIBRARIES)


def test_the_file_has_fused_nodes_split_as_snnir_write_writes_them() -> None:
    """``imported_by`` reads what ``snnir.write`` writes: an optimised graph's FusedLayerNeuron is
    the Linear and LIF it came from."""
    graph = _our_feedforward("LIF", _ZERO)
    fused = snnir.optimize(graph, level=2)
    assert any(type(op).__name__ == "FusedLayerNeuron" for _, op in fused.walk())
    x = (np.random.default_rng(0).random((40, 3, 6)) < 0.3) * 1.5
    (plain,), (optimised,) = (snnir.run(snnir.imported_by(g, "norse")[0], x).values() for g in (graph, fused))
    np.testing.assert_array_equal(plain, optimised)
