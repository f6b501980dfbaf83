"""``examples/import_from_norse.py`` runs end to end and reproduces Norse's spikes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "import_from_norse.py"


def test_import_from_norse_example(tmp_path, capsys) -> None:
    pytest.importorskip("norse", reason="norse is not installed (scripts/install_interop.sh)")
    spec = importlib.util.spec_from_file_location("import_from_norse", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.main(["--out-dir", str(tmp_path / "ipu")]) == 0
    out = capsys.readouterr().out
    assert "spikes identical: True" in out
    assert "spikes equal to the interpreter: True" in out or "torch target unavailable" in out
