"""``write(graph, path, dialect=LIB)``: a file LIB's importer cannot read (it would fail, or drop a
node or a loop's edge without a word) is refused by name, as ``imported_by`` predicts; where snnir
cannot state what LIB runs, the write warns that spikes may differ. Each case was a file written
without a word that the real library then failed on or ran differently (2026-12-04 probe)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import snnir
from snnir.errors import SnnirError
from snnir.ir import Graph
from snnir.ir.ops import LIF, Affine, CubaLIF, Input, Linear, Output
from snnir.ir.semantics import Semantics


def _loop(neuron, rng, bias: bool) -> Graph:
    n = neuron.v_threshold.shape[0]
    back = Affine(weight=rng.normal(0, 0.5, (n, n)), bias=rng.normal(0, 0.1, n)) if bias else Linear(
        weight=rng.normal(0, 0.5, (n, n)))
    return Graph({"input": Input((4,)), "fc": Affine(weight=rng.normal(0.5, 0.5, (n, 4)), bias=np.zeros(n)),
                  "lif": neuron, "rec": back, "output": Output()},
                 (("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")))


def test_snntorch_one_threshold_per_layer_is_checked_exactly(tmp_path):
    """snnTorch asserts one threshold / input gain per CubaLIF layer by np.unique; the write checked
    it with np.allclose, so ratios equal but for their last bits were written and snnTorch failed."""
    rng = np.random.default_rng(0)
    dt, n = 1e-4, 6
    tau_syn = rng.uniform(2, 20, n) * dt
    graph = Graph.sequential(
        ("input", Input((4,))), ("fc", Affine(weight=rng.normal(0.5, 0.5, (n, 4)), bias=np.zeros(n))),
        ("lif", CubaLIF(tau_syn=tau_syn, tau_mem=np.full(n, 5 * dt), r=np.full(n, 5.0), v_leak=np.zeros(n),
                        v_threshold=np.full(n, 1.0), w_in=tau_syn / dt * 1.3, sem=Semantics(dt=dt))),
        ("output", Output()))
    with pytest.raises(SnnirError, match="node 'lif': not written for snntorch: .*one v_threshold"):
        snnir.write(graph, tmp_path / "f.nir", dialect="snntorch")
    assert not (tmp_path / "f.nir").exists()


def test_rockpool_loop_is_refused(tmp_path):
    """Rockpool runs the sequence in one call and drops a loop's edge: 380 of 480 entries differed."""
    rng = np.random.default_rng(2)
    dt, n = 1e-3, 6
    sem = Semantics(dt=dt, discretisation="exp", reset="subtract", threshold_compare="ge", spike_mode="multi")
    lif = CubaLIF(tau_syn=np.full(n, 3 * dt), tau_mem=np.full(n, 5 * dt), r=np.full(n, 5.0), v_leak=np.zeros(n),
                  v_threshold=np.full(n, 1.0), w_in=np.full(n, 3.0), sem=sem)
    with pytest.raises(SnnirError, match="node 'lif': not written for rockpool: edge 'rec' -> 'lif'.*drops this edge"):
        snnir.write(_loop(lif, rng, bias=False), tmp_path / "f.nir", dialect="rockpool")


def test_norse_loop_is_written_with_a_warning_that_spikes_may_differ(tmp_path):
    """Norse runs a loop in nirtorch's order, which snnir does not describe (with a bias, 6 of 480
    entries differed): the file is written, saying so."""
    rng = np.random.default_rng(0)
    dt, n = 1e-4, 5
    lif = LIF(tau=np.full(n, 5 * dt), r=np.full(n, 5.0), v_leak=np.zeros(n), v_threshold=np.full(n, 1.0),
              sem=Semantics(dt=dt))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        snnir.write(_loop(lif, rng, bias=True), tmp_path / "f.nir", dialect="norse")
    said = " ".join(str(w.message) for w in caught)
    assert "norse: node 'lif': Norse's from_nir runs loops in nirtorch's own order" in said
    assert "its spikes may differ" in said


def test_a_field_the_installed_nir_cannot_store_is_refused_for_every_library(tmp_path):
    """A non-zero v_reset: nir 1.0.4's LIF has none, so every library's nir.read fails; the write
    only warned that the library resets to 0 (Sinabs not even that)."""
    import nir

    if "v_reset" in getattr(nir.LIF, "__dataclass_fields__", {}):
        pytest.skip(f"nir {nir.version} stores LIF.v_reset")
    n, dt = 4, 1e-4
    graph = Graph.sequential(
        ("input", Input((3,))), ("fc", Affine(weight=np.ones((n, 3)), bias=np.zeros(n))),
        ("lif", LIF(tau=np.full(n, 5 * dt), r=np.full(n, 5.0), v_leak=np.zeros(n), v_threshold=np.ones(n),
                    v_reset=np.full(n, 0.2), sem=Semantics(dt=dt, reset="zero"))),
        ("output", Output()))
    for library in ("snntorch", "norse", "sinabs", "spyx", "nengo"):
        with pytest.raises(SnnirError, match=f"node 'lif': not written for {library}: .*no LIF.v_reset"):
            snnir.write(graph, tmp_path / f"{library}.nir", dialect=library)


def test_sinabs_names_a_node_it_cannot_import_after_one_it_runs_unpredictably(tmp_path):
    """An IF (Sinabs' membrane floor: not predicted) before a conv LIF with [C, H, W] parameters
    (Sinabs' any() fails): the check stopped at the IF and the file was written."""
    from snnir.ir.ops import IF, Conv2d, Flatten

    rng = np.random.default_rng(0)
    sem = Semantics(dt=1.0, discretisation="exp", reset="subtract", threshold_compare="ge", spike_mode="multi")
    s1, s2 = (2, 4, 4), (2, 2, 2)
    graph = Graph.sequential(
        ("input", Input((1, 6, 6))), ("conv0", Conv2d(weight=rng.normal(0.5, 0.5, (2, 1, 3, 3)), bias=np.zeros(2))),
        ("n0", IF(r=np.ones(s1), v_threshold=np.ones(s1), sem=sem)),
        ("conv1", Conv2d(weight=rng.normal(0.5, 0.5, (2, 2, 3, 3)), bias=np.zeros(2))),
        ("n1", LIF(tau=np.full(s2, 5.0), r=np.full(s2, 1 / (1 - np.exp(-1 / 5.0))), v_leak=np.zeros(s2),
                   v_threshold=np.ones(s2), sem=sem)),
        ("flat", Flatten(start_dim=0)), ("fc", Affine(weight=rng.normal(0.3, 0.3, (3, 8)), bias=np.zeros(3))),
        ("output", Output()))
    with pytest.raises(SnnirError, match=r"node 'n1': not written for sinabs: .*any\(\) to v_leak"):
        snnir.write(graph, tmp_path / "f.nir", dialect="sinabs")


def test_nengo_write_names_the_step_nengo_runs(tmp_path):
    """nengo steps the exact rule at dt 1e-3: a file of another dt or discretisation ran differently
    (168 of 480 entries at dt 1e-4), and the write's warning left that out."""
    dt = 1e-4
    graph = Graph.sequential(
        ("input", Input((5,))), ("fc", Affine(weight=np.full((6, 5), 0.5), bias=np.zeros(6))),
        ("lif", LIF(tau=np.full(6, 5 * dt), r=np.ones(6), v_leak=np.zeros(6), v_threshold=np.full(6, 0.6),
                    sem=Semantics(dt=dt, discretisation="exp"))),
        ("output", Output()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        snnir.write(graph, tmp_path / "f.nir", dialect="nengo")
    assert "simulates dt 0.001, the graph states 0.0001" in " ".join(str(w.message) for w in caught)


def test_snntorch_write_takes_the_sum_pool_its_importer_builds(tmp_path):
    """nirtorch builds a SumPool2d for snnTorch (as LPPool2d), and the spikes were snnir.run's: the
    write refused it as having no module."""
    from snnir.ir.ops import Flatten, SumPool2d

    n, dt = 5, 1e-4
    graph = Graph.sequential(
        ("input", Input((1, 6, 6))), ("pool", SumPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))),
        ("flat", Flatten(start_dim=0)), ("fc", Affine(weight=np.full((n, 9), 0.5), bias=np.zeros(n))),
        ("lif", LIF(tau=np.full(n, 5 * dt), r=np.full(n, 5.0), v_leak=np.zeros(n), v_threshold=np.ones(n),
                    sem=Semantics(dt=dt))),
        ("output", Output()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snnir.write(graph, tmp_path / "f.nir", dialect="snntorch")
    assert (tmp_path / "f.nir").exists()


def test_snntorch_write_takes_any_structure_metadata(tmp_path):
    """A file's metadata 'structure' of numbers (an array) made the recheck test 'array == str'
    ambiguous: a raw ValueError instead of the write."""
    sem = Semantics(dt=1e-4)
    lif = LIF(tau=np.full(2, 5e-4), r=np.full(2, 5.0), v_leak=np.zeros(2), v_threshold=np.ones(2), sem=sem,
              metadata={"structure": np.array([1, 2])})
    graph = Graph.sequential(("input", Input((2,))), ("fc", Linear(weight=np.eye(2))), ("lif", lif), ("output", Output()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snnir.write(graph, tmp_path / "f.nir", dialect="snntorch")
    assert (tmp_path / "f.nir").exists()
