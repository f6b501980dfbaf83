"""examples/import_and_finetune.py runs end to end (two optimiser steps)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

import snnir

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "import_and_finetune.py"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_import_and_finetune(fixtures_dir, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("import_and_finetune", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path / "tuned.nir"
    nir = fixtures_dir / "braille_noDelay_noBias_subtract.nir"
    loss = example.main(["--nir", str(nir), "--steps", "2", "--out", str(out)])
    assert math.isfinite(loss)
    tuned, original = snnir.read(out), snnir.read(nir, reset="subtract")
    assert tuned.nodes["fc1"] != original.nodes["fc1"]  # the weights were trained
    agreement = float(capsys.readouterr().out.split("agrees on ")[1].split("%")[0])
    assert agreement >= 99.0  # float32 module vs float64 reference
