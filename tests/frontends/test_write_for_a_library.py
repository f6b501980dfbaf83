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
