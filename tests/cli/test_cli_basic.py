"""The inspect, verify, run and plot commands, through ``main([...])`` and one real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import snnir
from snnir.cli.main import main
from snnir.ir import LIF, Affine, Graph, Input, Output, Semantics


def two_layer() -> Graph:
    sem = Semantics(dt=1e-3, discretisation="exp", reset="subtract")
    return Graph.sequential(
        ("x", Input((3,))),
        ("fc", Affine(weight=np.full((4, 3), 0.5), bias=np.zeros(4))),
        ("lif", LIF(tau=np.full(4, 0.01), r=np.array(5.0), v_leak=np.array(0.0), v_threshold=np.array(1.0), sem=sem)),
        ("y", Output()),
    )


@pytest.fixture
def nir_file(tmp_path):
    path = tmp_path / "net.nir"
    snnir.write(two_layer(), path)
    return path


@pytest.fixture
def x_file(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).uniform(0, 2, size=(40, 2, 3)))
    return path


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith(f"snnir {command}: error: ") and err.count("\n") == 1, err
    return err


def test_inspect_prints_table_edges_and_semantics(nir_file, capsys):
    assert main(["inspect", str(nir_file)]) == 0
    out = capsys.readouterr().out
    assert "node" in out and "stateful" in out
    lif_line = next(line for line in out.splitlines() if line.startswith("lif "))
    assert "LIF" in lif_line and "[4]" in lif_line and "yes" in lif_line and "reset=subtract@same" in lif_line
    assert "  x -> fc" in out and "  lif -> y" in out


def test_inspect_reports_defaults_applied_to_published_file(fixtures_dir, capsys):
    assert main(["inspect", str(fixtures_dir / "lif_norse.nir"), "--dt", "1e-3", "--reset", "subtract"]) == 0
    out = capsys.readouterr().out
    assert "default applied" in out
    assert "dt=0.001" in out and "reset=subtract" in out


def test_verify_ok_and_bad_file(nir_file, tmp_path, capsys):
    assert main(["verify", str(nir_file)]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {nir_file}")
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"not hdf5 at all")
    assert main(["verify", str(bad)]) == 1
    assert "bad.nir" in one_line_error(capsys, "verify")
    assert main(["verify", str(tmp_path / "missing.nir")]) == 1
    one_line_error(capsys, "verify")


def test_run_saves_the_same_keys_as_snnir_run(nir_file, x_file, tmp_path, capsys):
    out_path = tmp_path / "out.npz"
    assert main(["run", str(nir_file), "--input", str(x_file), "--record", "-o", str(out_path)]) == 0
    assert "wrote 2 arrays" in capsys.readouterr().out
    expected = snnir.run(snnir.read(nir_file), np.load(x_file), record=True)
    with np.load(out_path, allow_pickle=False) as saved:
        assert set(saved.files) == set(expected) == {"y", "lif.v"}
        for key in expected:
            np.testing.assert_array_equal(saved[key], expected[key])
    assert expected["y"].sum() > 0


def test_run_accepts_npz_inputs_by_name(nir_file, tmp_path, capsys):
    npz = tmp_path / "x.npz"
    np.savez(npz, x=np.ones((5, 1, 3)))
    assert main(["run", str(nir_file), "--input", str(npz), "-o", str(tmp_path / "o.npz")]) == 0
    np.savez(npz, wrong=np.ones((5, 1, 3)))
    assert main(["run", str(nir_file), "--input", str(npz), "-o", str(tmp_path / "o.npz")]) == 1
    assert "missing input" in one_line_error(capsys, "run")


def test_run_refuses_pickles_and_bad_shapes(nir_file, tmp_path, capsys):
    pickled = tmp_path / "p.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert main(["run", str(nir_file), "--input", str(pickled), "-o", str(tmp_path / "o.npz")]) == 1
    assert "pickled objects are refused" in one_line_error(capsys, "run")
    wrong = tmp_path / "w.npy"
    np.save(wrong, np.ones((5, 1, 2)))
    assert main(["run", str(nir_file), "--input", str(wrong), "-o", str(tmp_path / "o.npz")]) == 1
    assert "node 'x'" in one_line_error(capsys, "run")
    assert not (tmp_path / "o.npz").exists()


def test_plot_writes_a_raster(nir_file, x_file, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib (the test extra) is not installed")
    png = tmp_path / "raster.png"
    assert main(["plot", str(nir_file), "--input", str(x_file), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(nir_file), "--input", str(x_file), "-o", str(png), "--sample", "7"]) == 1
    assert "outside the batch" in one_line_error(capsys, "plot")
    assert main(["plot", str(nir_file), "--input", str(x_file), "-o", str(tmp_path / "raster.xyz")]) == 1
    assert "raster.xyz" in one_line_error(capsys, "plot")


def test_plot_without_matplotlib_says_so(nir_file, x_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["plot", str(nir_file), "--input", str(x_file), "-o", str(tmp_path / "r.png")]) == 1
    assert "needs matplotlib" in one_line_error(capsys, "plot")


def test_python_m_snnir_cli_subprocess(nir_file):
    ok = subprocess.run([sys.executable, "-m", "snnir.cli", "verify", str(nir_file)], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("ok:")
    bad = subprocess.run(
        [sys.executable, "-m", "snnir.cli", "inspect", str(nir_file) + ".missing"], capture_output=True, text=True
    )
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


@pytest.mark.parametrize("args", [["inspect", "{nir}"], ["verify", "{nir}"]])
def test_a_closed_output_ends_the_command_quietly(nir_file, args):
    """``snnir inspect net.nir | head``, the reader gone before the command writes: no traceback,
    no message, status 141 (as a shell reports a tool killed by SIGPIPE)."""
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([sys.executable, "-m", "snnir.cli", *(a.format(nir=nir_file) for a in args)],
                                stdout=write, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (141, "")
