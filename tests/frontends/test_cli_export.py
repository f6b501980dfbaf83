"""``snnir export FILE.py:FUNCTION`` writes a NIR file that nir and snnir read back."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import snnir
from snnir.cli.cmd_export import load_builder
from snnir.cli.main import main

pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")

BUILDER = """
import torch
import snntorch as snn

def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(12, 8), snn.Leaky(beta=0.9, init_hidden=True),
                               torch.nn.Linear(8, 3), snn.Leaky(beta=0.8, init_hidden=True))

def broken():
    raise ValueError("no model today")
"""


@pytest.fixture
def builder_file(tmp_path):
    path = tmp_path / "my_model.py"
    path.write_text(BUILDER)
    return path


def test_export_writes_a_file_nir_and_snnir_read(builder_file, tmp_path, capsys):
    out = tmp_path / "model.nir"
    assert main(["export", f"{builder_file}:build", "--input-shape", "1,12", "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    nir = pytest.importorskip("nir", reason="the nir package is not installed")
    assert set(nir.read(str(out)).nodes) == {"input", "0", "1", "2", "3", "output"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = snnir.read(out)
    x = np.random.default_rng(0).random((20, 2, 12)) * 2
    model = load_builder(f"{builder_file}:build")()
    expected = snnir.run(snnir.trace(model, torch.zeros(1, 12)), x)["output"]
    np.testing.assert_array_equal(snnir.run(graph, x)["output"], expected)


@pytest.mark.parametrize(
    "spec,shape,needle",
    [
        ("{file}:nope", "1,12", "defines no function 'nope'"),
        ("{file}:broken", "1,12", "no model today"),
        ("missing.py:build", "1,12", "no such file"),
        ("{file}", "1,12", "FILE.py:FUNCTION"),
        ("{file}:build", "12", "batch"),
        ("{file}:build", "1,x", "comma-separated"),
        ("{file}:build", "1,5", "node '0': Linear takes inputs [B, 12] (12 features last), got [1, 5]"),
    ],
)
def test_export_errors_are_one_line(builder_file, tmp_path, capsys, spec, shape, needle):
    args = ["export", spec.format(file=builder_file), "--input-shape", shape, "-o", str(tmp_path / "m.nir")]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err
