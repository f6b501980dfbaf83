"""Dialect transforms without the peer libraries: re-timing keeps dynamics, lossy writes
warn, impossible writes refuse naming the node, and ``snnir convert`` works."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import snnir
from snnir.cli.main import main
from snnir.errors import SnnirError
from snnir.frontends.dialects import DIALECTS, as_euler, get_dialect, map_neurons
from snnir.ir import Graph
from snnir.ir.ops import IF, LI, LIF, Affine, CubaLIF, Input, Linear, Output
from snnir.ir.semantics import Semantics

LIBRARIES = ("snntorch", "norse", "sinabs", "rockpool")


def _graph(sem: Semantics, v_leak: float = 0.0, cuba: bool = False) -> Graph:
    rng = np.random.default_rng(3)
    neuron = (CubaLIF(tau_syn=np.full(5, 3e-3), tau_mem=np.full(5, 7e-3), r=np.full(5, 1.5), v_leak=np.full(5, v_leak),
                      v_threshold=np.full(5, 0.1), sem=sem) if cuba else
              LIF(tau=np.full(5, 6e-3), r=np.full(5, 2.0), v_leak=np.full(5, v_leak), v_threshold=np.full(5, 0.3),
                  sem=sem))
    return Graph.sequential(("input", Input(shape=(4,))), ("fc", Affine(weight=rng.normal(0.5, 0.5, (5, 4)),
                                                                        bias=np.zeros(5))),
                            ("lif", neuron), ("output", Output()))


def _spikes(seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((200, 2, 4)) < 0.3).astype(float)


def test_every_library_dialect_is_registered() -> None:
    for name in LIBRARIES:
        dialect = get_dialect(name)
        assert dialect.name == name and dialect.description
    assert set(LIBRARIES) <= set(DIALECTS)


@pytest.mark.parametrize("cuba", [False, True])
@pytest.mark.parametrize("discretisation", ["exp", "euler"])
def test_as_euler_keeps_the_dynamics(cuba: bool, discretisation: str) -> None:
    graph = _graph(Semantics(dt=1e-3, discretisation=discretisation), cuba=cuba)
    retimed = map_neurons(graph, lambda path, op: as_euler(op, 1e-4, path))
    assert retimed.nodes["lif"].sem.dt == 1e-4 and retimed.nodes["lif"].sem.discretisation == "euler"
    x = _spikes()
    before = snnir.run(graph, x, record=True)
    after = snnir.run(retimed, x, record=True)
    np.testing.assert_array_equal(before["output"], after["output"])
    np.testing.assert_allclose(before["lif.v"], after["lif.v"], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("library", ["snntorch", "norse"])
def test_writing_warns_about_semantics_the_library_drops(library: str, tmp_path) -> None:
    graph = _graph(Semantics(dt=1e-3, reset="subtract", reset_timing="next"))
    with pytest.warns(UserWarning, match="reset"):
        snnir.write(graph, tmp_path / "out.nir", dialect=library)


@pytest.mark.parametrize("library", ["snntorch", "sinabs", "rockpool"])
def test_writing_what_the_library_cannot_read_names_the_node(library: str, tmp_path) -> None:
    graph = _graph(Semantics(dt=1e-3), v_leak=0.2, cuba=library == "rockpool")
    with pytest.raises(SnnirError, match="node 'lif'"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snnir.write(graph, tmp_path / "out.nir", dialect=library)


def test_snntorch_refuses_if_it_cannot_run(tmp_path) -> None:
    graph = Graph.sequential(("input", Input(shape=(3,))), ("if", IF(r=np.ones(3), v_threshold=np.ones(3))),
                             ("output", Output()))
    with pytest.raises(SnnirError, match="node 'if'.*Leaky"):
        snnir.write(graph, tmp_path / "out.nir", dialect="snntorch")


def test_snntorch_needs_one_threshold_per_layer(tmp_path) -> None:
    graph = _graph(Semantics(dt=1e-4, reset="zero"))
    graph = graph.with_nodes(lif=graph.nodes["lif"].replace(v_threshold=np.linspace(0.1, 0.5, 5)))
    with pytest.raises(SnnirError, match="node 'lif'.*one v_threshold"):
        snnir.write(graph, tmp_path / "out.nir", dialect="snntorch")


def test_rockpool_refuses_lif(tmp_path) -> None:
    with pytest.raises(SnnirError, match="node 'lif'.*LIF"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snnir.write(_graph(Semantics(dt=1e-3)), tmp_path / "out.nir", dialect="rockpool")


def test_norse_read_undoes_the_dt_scaling(tmp_path) -> None:
    """A Norse file stores tau * dt; read back with dialect='norse' the true tau returns."""
    graph = _graph(Semantics(dt=1e-3, discretisation="euler"))
    path = tmp_path / "norse.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snnir.write(graph.with_nodes(lif=graph.nodes["lif"].replace(tau=np.full(5, 6e-3 * 1e-3))), path)
        read = get_dialect("norse").on_read(snnir.read(path), [])
    np.testing.assert_allclose(read.nodes["lif"].tau, 6e-3)


def test_convert_between_dialects(tmp_path, capsys) -> None:
    source, target = tmp_path / "in.nir", tmp_path / "out.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snnir.write(_graph(Semantics(dt=1e-3)), source)
    assert main(["convert", str(source), str(target), "--from", "nir", "--to", "snntorch"]) == 0
    assert "wrote" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        written = snnir.read(target)
    assert written.nodes["lif"].sem.dt == 1e-4


def test_convert_to_an_unknown_library_fails_in_one_line(tmp_path, capsys) -> None:
    assert main(["convert", str(tmp_path / "missing.nir"), str(tmp_path / "o.nir"), "--to", "bogus"]) == 1
    assert "unknown dialect 'bogus'" in capsys.readouterr().err


def _spyx_conv_graph() -> Graph:
    from snnir.ir.ops import Conv2d, Flatten

    rng = np.random.default_rng(0)
    sem = Semantics(dt=1.0, reset="subtract", reset_timing="next")
    return Graph.sequential(
        ("input", Input((2, 5, 5))),  # Spyx's importer follows edges from 'input' to 'output'
        ("conv", Conv2d(weight=rng.normal(size=(3, 2, 3, 3)), bias=np.zeros(3))),
        ("lif1", LIF(tau=np.full((3, 3, 3), 5.0), r=np.full((3, 3, 3), 5.0), v_leak=np.zeros((3, 3, 3)),
                     v_threshold=np.ones((3, 3, 3)), sem=sem)),
        ("flat", Flatten(start_dim=0)),
        ("fc", Affine(weight=rng.normal(size=(4, 27)), bias=np.zeros(4))),
        ("output", Output()),
    )


def test_spyx_linear_after_flatten_is_written_channels_last_and_read_back(tmp_path) -> None:
    """Spyx flattens ``[H, W, C]``: the weights after a Flatten of ``[C, H, W]`` are written in
    that column order, and the spyx reading restates them channel-first."""
    graph = _spyx_conv_graph()
    path = tmp_path / "spyx-conv.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snnir.write(graph, path, dialect="spyx")
        as_written = snnir.read(path).nodes["fc"].weight
        back = snnir.read(path, dialect="spyx").nodes["fc"].weight
    want = np.asarray(graph.nodes["fc"].weight)
    assert np.array_equal(as_written, want.reshape(4, 3, 3, 3).transpose(0, 2, 3, 1).reshape(4, 27))
    assert np.array_equal(back, want)


def _spyx_recurrent_graph(spyx_edges: bool, cuba: bool = True) -> Graph:
    """A recurrent CubaLIF (or LIF) layer: as Spyx's ``to_nir`` writes it (``input -> w_rec``)
    or as Spyx runs it (``input -> lif``, spikes one step late)."""
    from snnir.ir.ops import Delay, Linear, Subgraph

    rng = np.random.default_rng(2)
    sem = Semantics(dt=1.0, reset="subtract", reset_timing="next")
    if cuba:
        lif = CubaLIF(tau_mem=np.full(5, 4.0), tau_syn=np.full(5, 2.0), r=np.full(5, 4.0), w_in=np.full(5, 2.0),
                      v_leak=np.zeros(5), v_threshold=np.full(5, 0.5), sem=sem)
    else:
        lif = LIF(tau=np.full(5, 4.0), r=np.full(5, 4.0), v_leak=np.zeros(5), v_threshold=np.full(5, 0.5), sem=sem)
    inner = {"input": Input((5,)), "w_rec": Linear(weight=rng.normal(0, 0.5, (5, 5))), "lif": lif,
             "output": Output()}
    if spyx_edges:
        edges = [("input", "w_rec"), ("w_rec", "lif"), ("lif", "w_rec"), ("lif", "output")]
    else:
        inner["late"] = Delay(delay=np.asarray(1.0), sem=Semantics(dt=1.0))
        edges = [("input", "lif"), ("w_rec", "lif"), ("lif", "w_rec"), ("lif", "late"), ("late", "output")]
    nodes = {"input": Input((3,)), "fc": Affine(weight=rng.normal(0.5, 0.5, (5, 3)), bias=np.zeros(5)),
             "rec": Subgraph(graph=Graph(nodes=inner, edges=edges)), "output": Output()}
    return Graph(nodes=nodes, edges=[("input", "fc"), ("fc", "rec"), ("rec", "output")])


def test_spyx_recurrent_layer_reads_as_spyx_runs_it(tmp_path) -> None:
    """Spyx's recurrent subgraph routes its input through ``w_rec``; Spyx itself adds the
    input straight to the neuron. The spyx reading restates that, with the late spikes."""
    path = tmp_path / "spyx-rec.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snnir.write(_spyx_recurrent_graph(spyx_edges=True), path)
        got = snnir.read(path, dialect="spyx")
    inner = got.nodes["rec"].graph
    late = "lif_spyx_delay"
    assert set(inner.edges) == {("input", "lif"), ("w_rec", "lif"), ("lif", "w_rec"), ("lif", late),
                                (late, "output")}
    x = (np.random.default_rng(0).random((30, 2, 3)) < 0.5) * 1.0
    want = snnir.run(_spyx_recurrent_graph(spyx_edges=False), x)["output"]
    assert 0 < want.mean() < 1
    np.testing.assert_array_equal(snnir.run(got, x)["output"], want)


def test_spyx_write_drops_the_late_spikes_of_a_recurrent_layer_too(tmp_path) -> None:
    """Written back for Spyx, the recurrent subgraph is Spyx's four nodes again (its
    ``from_nir`` parses exactly four; it adds the late step itself)."""
    path, back = tmp_path / "spyx-rec.nir", tmp_path / "back.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snnir.write(_spyx_recurrent_graph(spyx_edges=True, cuba=False), path)
        snnir.write(snnir.read(path, dialect="spyx"), back, dialect="spyx")
        inner = snnir.read(back).nodes["rec"].graph
    assert sorted(inner.nodes) == ["input", "lif", "output", "w_rec"]


def test_snntorch_reset_note_only_where_the_reset_was_assumed(tmp_path) -> None:
    """The snnTorch dialect notes the assumed reset for a file without semantics records, and not
    where the caller gave the reset or the file is snnir's own (its records state it)."""
    from snnir.ir.nir_io import load

    paper = Path(__file__).parents[1] / "fixtures" / "nir-paper" / "braille_noDelay_bias_zero.nir"
    note = "do not store the reset mechanism"
    graph, report = load(paper, dialect="snntorch")
    assert any(note in line for line in report.warnings)
    assert not any(note in line for line in load(paper, dialect="snntorch", reset="zero")[1].warnings)
    snnir.write(graph, tmp_path / "ours.nir")
    assert not any(note in line for line in load(tmp_path / "ours.nir", dialect="snntorch")[1].warnings)


def test_the_dialect_registry_is_the_io_cores() -> None:
    """Library dialects register in ``snnir.ir.dialect``; NIR I/O finds them by name only."""
    from snnir.ir import dialect

    assert get_dialect("norse") is dialect.get_dialect("norse") is DIALECTS["norse"] is dialect.DIALECTS["norse"]


def test_sinabs_expleak_is_read_with_its_unscaled_input(tmp_path) -> None:
    """Sinabs writes ExpLeak (norm_input=False: v' = a v + x) as LI with r = 1; it was read as NIR's
    exp step, v' = a v + (1 - a) x, about 5x too small without a word (found by probing)."""
    pytest.importorskip("sinabs", reason="sinabs is not installed")
    import nir
    import sinabs.layers as sl
    import torch
    from sinabs.nir import to_nir

    from snnir import peers

    peers.nir_compat()
    layer = torch.nn.Linear(1, 1, bias=False)
    layer.weight.data.fill_(1.0)
    net = torch.nn.Sequential(layer, sl.ExpLeakSqueeze(tau_mem=torch.tensor(5.0), batch_size=1))
    x = np.ones((5, 1, 1), np.float32)
    theirs = peers.run_sinabs(net, x)
    nir.write(tmp_path / "li.nir", to_nir(net, torch.from_numpy(x[:, 0])))
    (ours,) = snnir.run(snnir.read(tmp_path / "li.nir", dialect="sinabs"), x.astype(np.float64)).values()
    np.testing.assert_allclose(np.asarray(ours).ravel(), np.asarray(theirs).ravel(), rtol=1e-6)


def test_norse_cells_starting_at_v_leak_are_named(tmp_path) -> None:
    """Norse starts a cell's membrane at v_leak, snnir's neurons at 0: the first steps differ, now
    with a warning naming the node (found by probing)."""
    pytest.importorskip("norse", reason="norse is not installed")
    import nir
    import norse.torch as nt
    import torch

    from snnir import peers

    peers.nir_compat()
    cell = nt.LIBoxCell(nt.LIBoxParameters(tau_mem_inv=torch.tensor([100.0]), v_leak=torch.tensor([0.2])), dt=1e-3)
    net = nt.SequentialState(torch.nn.Linear(1, 1, bias=False), cell)
    nir.write(tmp_path / "li.nir", nt.to_nir(net, torch.ones(1, 1), dt=1e-3))
    with pytest.warns(UserWarning, match=r"node '1': Norse's cells start the membrane at v_leak"):
        snnir.read(tmp_path / "li.nir", dialect="norse", dt=1e-3)


def _spyx_file(tmp_path, neuron_of):
    """A Spyx Linear(1, 1) of weight 1 into ``neuron_of(rngs)``, its own run on ones and its file."""
    pytest.importorskip("spyx", reason="spyx is not installed")
    import jax.numpy as jnp
    import nir
    import spyx.nir as spyx_nir
    import spyx.nn as spyx_nn
    from flax import nnx

    rngs = nnx.Rngs(0)
    layer = nnx.Linear(1, 1, use_bias=False, rngs=rngs)
    layer.kernel[...] = jnp.ones((1, 1))
    model = spyx_nn.Sequential(layer, neuron_of(spyx_nn, rngs))
    x = np.ones((8, 1, 1), np.float32)
    theirs, _ = spyx_nn.run(model, jnp.asarray(x))
    nir.write(tmp_path / "s.nir", spyx_nir.to_nir(model, {"input": np.array([1])}, {"output": np.array([1])}, dt=1))
    return np.asarray(theirs), x.astype(np.float64)


def test_spyx_psu_lif_is_read_with_its_unscaled_input(tmp_path) -> None:
    """Spyx writes PSU_LIF as an LI (V' = beta V + x); it was read with the gain 1 - beta and never
    spiked (found by probing)."""
    theirs, x = _spyx_file(tmp_path, lambda nn, rngs: nn.PSU_LIF((1,), beta=0.9, threshold=1.5, rngs=rngs))
    (ours,) = snnir.run(snnir.read(tmp_path / "s.nir", dialect="spyx"), x).values()
    np.testing.assert_array_equal(np.asarray(ours).ravel(), theirs.ravel())
    assert theirs.any()


def test_spyx_negative_threshold_is_named(tmp_path) -> None:
    """Spyx spikes at its first step from the zero membrane below a negative threshold; the read graph's
    first output is 0 (one step late): named in a warning."""
    _spyx_file(tmp_path, lambda nn, rngs: nn.LIF((1,), beta=0.9, threshold=-0.5, rngs=rngs))
    with pytest.warns(UserWarning, match=r"a threshold below 0: Spyx spikes at its first step"):
        snnir.read(tmp_path / "s.nir", dialect="spyx")


def test_writing_for_norse_refuses_what_its_importer_drops(tmp_path) -> None:
    """Norse's nirtorch load drops an LI without a word (an snnTorch reset_delay=False Leaky made its
    importer fail with KeyError); writing for Norse now refuses it by name (found by probing)."""
    graph = Graph.sequential(("input", Input((2,))), ("fc", Affine(np.ones((2, 2)), np.zeros(2))),
                             ("li", LI(tau=np.full(2, 1e-2), r=np.ones(2), v_leak=np.zeros(2))), ("output", Output()))
    with pytest.raises(SnnirError, match=r"node 'li'.*Norse's from_nir has no module for LI"):
        snnir.write(graph, tmp_path / "n.nir", dialect="norse")
    assert not (tmp_path / "n.nir").exists()


def test_writing_for_sinabs_gives_a_linear_zero_bias(tmp_path) -> None:
    """Sinabs' from_nir has no Linear and dropped it (an output of the wrong shape); written as an
    Affine of zero bias, as Sinabs' to_nir writes one."""
    import nir

    graph = Graph.sequential(("input", Input((3,))), ("fc", Linear(np.ones((1, 3)))),
                             ("lif", LIF(tau=np.full(1, 5.0), r=np.ones(1), v_leak=np.zeros(1), v_threshold=np.ones(1),
                                         sem=Semantics(dt=1.0, discretisation="exp"))), ("output", Output()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snnir.write(graph, tmp_path / "s.nir", dialect="sinabs")
    written = nir.read(tmp_path / "s.nir").nodes["fc"]
    assert type(written).__name__ == "Affine" and not np.any(written.bias)
