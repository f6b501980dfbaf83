"""Versioned dialects on the NIR paper's single-LIF files: each, read as its writer meant it,
spikes as that writer did in the paper.

Source (neuromorphs/NIR, folder ``paper/01_lif``): ``lif.ipynb`` builds Norse's
``Linear(1, 1, bias=False)`` (weight 1) -> ``LIFBoxCell(tau_mem_inv=400, v_th=0.1)`` at
``dt = 1e-4`` and drives it with ``PAPER_INPUT``; its ``lif_norse.csv`` records spikes at steps
460, 510, 710 and 760. The paper's figure has Rockpool's spikes at 450, 500, ...
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import snnir
from snnir.ir.nir_io import load

#: ``d0`` of the paper's notebook; each entry is followed by nine silent steps (1000 steps).
_D0 = [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0,
       0, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
       1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
PAPER_INPUT = np.zeros((10 * len(_D0), 1, 1))
PAPER_INPUT[::10, 0, 0] = _D0
NORSE_SPIKES = [460, 510, 710, 760]  # lif_norse.csv


def _spike_steps(path, **options) -> list[int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = snnir.read(path, **options)
    return np.nonzero(snnir.run(graph, PAPER_INPUT)["output"][:, 0, 0])[0].tolist()


def test_the_papers_norse_file_read_as_earlier_norse_spikes_as_norse_did(fixtures_dir) -> None:
    assert _spike_steps(fixtures_dir / "lif_norse.nir", dialect="norse-1.0", dt=1e-4) == NORSE_SPIKES


def test_the_papers_norse_file_read_as_norse_1_1_is_silent(fixtures_dir) -> None:
    """Norse 1.1 writes tau * dt: read that way, tau = 0.0025 s becomes 25 s and never fires."""
    assert _spike_steps(fixtures_dir / "lif_norse.nir", dialect="norse", dt=1e-4) == []


def test_norse_versions_differ_in_the_time_constants_and_the_current_order(fixtures_dir) -> None:
    """Norse 1.0.0's LIFCell steps the membrane from last step's current (tests/interop/test_norse_1_0.py
    runs it); 1.1's from the current after this step's jump."""
    old = load(fixtures_dir / "lif_norse.nir", dialect="norse-1.0", dt=1e-4)[0].nodes["1"]
    new = load(fixtures_dir / "lif_norse.nir", dialect="norse", dt=1e-4)[0].nodes["1"]
    np.testing.assert_allclose(old.tau, 0.0025)
    np.testing.assert_allclose(new.tau, 0.0025 / 1e-4)
    assert old.sem == new.sem.with_(current_order="voltage_first")
    assert old.sem.discretisation == "euler" and old.sem.threshold_compare == "gt"


def test_rockpool_dt_is_recovered_from_the_file(fixtures_dir) -> None:
    """The file's r = tau exp(-dt/tau)/dt = 24.019737 with tau = 0.0025 was written at dt = 1e-4;
    Rockpool's own from_nir would take min(tau / (1 + r)) = 9.992e-5."""
    graph, report = load(fixtures_dir / "lif_rockpool.nir", dialect="rockpool")
    lif = graph.nodes["1_LIFNeuronTorch"]
    assert lif.sem.dt == pytest.approx(1e-4, rel=1e-6)
    assert any("from the file's parameters" in line for line in report.defaults_applied)
    assert not any("was dt different" in line for line in report.warnings)


def test_the_papers_rockpool_file_needs_no_dt(fixtures_dir) -> None:
    steps = _spike_steps(fixtures_dir / "lif_rockpool.nir", dialect="rockpool")
    assert steps[:2] == [450, 500]
    assert steps == _spike_steps(fixtures_dir / "lif_rockpool.nir", dialect="rockpool", dt=1e-4)


def test_a_callers_dt_wins_over_the_files(fixtures_dir) -> None:
    graph, report = load(fixtures_dir / "lif_rockpool.nir", dialect="rockpool", dt=2e-4)
    assert graph.nodes["1_LIFNeuronTorch"].sem.dt == 2e-4
    assert any("was dt different" in line for line in report.warnings)
