"""Generated torch source: golden text, standalone loading, and the ``snnir compile`` command.

Set SNNIR_UPDATE_GOLDEN=1 to rewrite the golden file after an intended change.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import snnir
from snnir.cli.main import main
from snnir.ir import LIF, Graph, Input, Output, Affine, Semantics
from snnir.targets.torch import compile_torch
from snnir.targets.torch.codegen import write_module

from torch_target_graphs import graphs_for, random_input

GOLDEN = Path(__file__).with_name("golden") / "small_model.py.txt"


def small_graph() -> Graph:
    return Graph.sequential(
        ("input", Input((2,))),
        ("fc", Affine(weight=np.array([[1.0, -0.5], [0.25, 2.0], [0.0, 1.0]]), bias=np.array([0.1, 0.0, -0.1]))),
        ("lif", LIF(tau=np.full(3, 2e-3), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.full(3, 0.1),
                    sem=Semantics(dt=1e-3, reset="subtract"), trainable=("tau",))),
        ("output", Output()),
    )


def _import(path: Path):
    spec = importlib.util.spec_from_file_location(f"generated_{path.stem}_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_golden_source(tmp_path):
    source, _ = write_module(small_graph(), tmp_path / "small_model.py", "safetensors", source="small.nir")
    text = source.read_text()
    if os.environ.get("SNNIR_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
@pytest.mark.parametrize("which", ["small", "nested"])
def test_generated_module_rebuilds_the_graph(tmp_path, fmt, which):
    if fmt == "safetensors":
        pytest.importorskip("safetensors")
    graph = small_graph() if which == "small" else graphs_for(snnir.ir.Subgraph)[1]
    source, weights = write_module(graph, tmp_path / "model.py", fmt)
    assert weights.exists()
    generated = _import(source)
    assert generated.build_graph(generated.load_weights()) == graph
    model = generated.load_model(dtype=torch.float64)
    x = random_input(graph, 10, 2)
    expected = compile_torch(graph, dtype=torch.float64)
    with torch.no_grad():
        ours, theirs = model(torch.as_tensor(x)), expected(torch.as_tensor(x))
    for a, b in zip(*(o.values() if isinstance(o, dict) else [o] for o in (ours, theirs))):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_cli_compile_torch(tmp_path, capsys):
    graph = small_graph()
    nir_path = tmp_path / "small.nir"
    snnir.write(graph, nir_path)
    out = tmp_path / "gen" / "model.py"
    out.parent.mkdir()
    assert main(["compile", str(nir_path), "--target", "torch", "-o", str(out), "--dt", "1e-3"]) == 0
    assert "wrote" in capsys.readouterr().out
    generated = _import(out)
    x = random_input(graph, 12, 3)
    with torch.no_grad():
        got = generated.load_model(dtype=torch.float64)(torch.as_tensor(x)).numpy()
    np.testing.assert_array_equal(got, snnir.run(snnir.read(nir_path), x)["output"])


def test_cli_other_targets_call_snnir_compile(tmp_path, monkeypatch):
    nir_path = tmp_path / "small.nir"
    snnir.write(small_graph(), nir_path)
    calls = []
    monkeypatch.setattr(snnir, "compile", lambda graph, target, **options: calls.append((target, options)))
    assert main(["compile", str(nir_path), "--target", "onnx", "-o", str(tmp_path / "out"), "--reset", "zero"]) == 0
    assert calls == [("onnx", {"out_dir": str(tmp_path / "out")})]


def test_cli_error_is_one_line(tmp_path, capsys):
    assert main(["compile", str(tmp_path / "missing.nir"), "-o", str(tmp_path / "m.py")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("snnir compile: error:") and err.count("\n") == 1
