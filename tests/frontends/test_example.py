"""examples/export_snntorch.py: train, export, and reproduce every snnTorch spike from the file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "export_snntorch.py"


def test_example_exports_a_trained_network_exactly(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("export_snntorch", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path / "net.nir")  # exits non-zero if any spike differs
    assert (tmp_path / "net.nir").is_file()
    assert ", 0 differ" in capsys.readouterr().out
