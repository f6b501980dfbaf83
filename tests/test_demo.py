"""``make demo`` (examples/demo.py) runs end to end: every check passes and every file is written."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"


@pytest.mark.slow
def test_demo_quick(tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime (the test extra) is not installed")
    spec = importlib.util.spec_from_file_location("demo", DEMO)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert demo.main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "FAILED" not in out and "identical to snnTorch's: True" in out
    for name in ("model.nir", "onnx/model.onnx", "ipu/manifest.json", "spike_raster.png", "membrane_traces.png",
                 "graph_before.png", "graph_after.png"):
        assert (tmp_path / name).is_file(), name
    for where in ("model.nir", "onnx/model.onnx", "ipu", "spike_raster.png", "graph_after.png"):
        assert str(tmp_path / where) in out, where  # it prints where everything went


def test_readme_quickstart_runs_as_written(tmp_path, monkeypatch):
    """The README's Quickstart, pasted as it stands (it once asserted on a dict and crashed)."""
    pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("## Quickstart", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(block, "README.md (Quickstart)", "exec"), {})
    assert (tmp_path / "model.nir").is_file() and (tmp_path / "build" / "ipu").is_dir()
