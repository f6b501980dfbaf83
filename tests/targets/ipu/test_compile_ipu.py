"""compile_ipu: the artifacts, their mutual agreement, and the generated Python module."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator

import snnir
from snnir.errors import SnnirError
from snnir.ir import LIF, Affine, Delay, Graph, Input, Output, Semantics
from snnir.targets.ipu import compile_ipu, codegen
from snnir.targets.ipu.kernels import DOMAIN

from .helpers import all_neurons_graph, conv_graph, semantics_cases


def tutorial_like(rng) -> Graph:
    sem = Semantics(dt=1e-3, reset="subtract", reset_timing="next")
    return Graph.sequential(
        ("input", Input((6,))),
        ("fc1", Affine(rng.normal(0, 1, (8, 6)), rng.normal(0, 0.2, 8))),
        ("lif1", LIF(tau=1e-2, r=10.0, v_leak=0.0, v_threshold=1.0, sem=sem)),
        ("fc2", Affine(rng.normal(0, 1, (3, 8)), np.zeros(3))),
        ("lif2", LIF(tau=1e-2, r=10.0, v_leak=0.0, v_threshold=1.0, sem=sem)),
        ("output", Output()),
    )


@pytest.fixture
def artifacts(tmp_path):
    graph = all_neurons_graph(np.random.default_rng(0), semantics_cases()[5])
    return graph, compile_ipu(graph, tmp_path / "ipu", surrogate="arctan", slope=3.0)


def test_writes_every_artifact_for_only_the_needed_kernels(tmp_path):
    graph = tutorial_like(np.random.default_rng(0))
    out = snnir.compile(graph, target="ipu", out_dir=tmp_path)
    expected = {"model.onnx", "manifest.json", "graph.nir", "ipu_model.py", "Makefile", codegen.CODELETS,
                codegen.CUSTOM_OPS, codegen.MATH_HEADER, codegen.CONFIG_HEADER}
    assert set(out.files) == expected == {p.name for p in tmp_path.iterdir()}
    assert out.custom_ops == ("LIF_subtract_next_gt_single", "Spike")
    source = (tmp_path / codegen.CUSTOM_OPS).read_text()
    assert "CubaLIF" not in source and "LIF_zero" not in source
    assert "#define SNNIR_SURROGATE 0" in (tmp_path / codegen.CONFIG_HEADER).read_text()


def _cpp_ops(source: str) -> dict[str, dict]:
    """Custom op name -> domain, version, inputs, outputs, attributes, as the C++ declares them."""
    domain = re.search(r'kDomain = "([^"]+)"', source).group(1)
    version = int(re.search(r"kVersion = (\d+);", source).group(1))
    ops = {}
    for block in re.finditer(
        r"OpDefinitions\(\{\{(\w+)Id, popart::OpDefinition\(\s*"
        r"popart::OpDefinition::Inputs\(\{(.*?)\}\),\s*popart::OpDefinition::Outputs\(\{(.*?)\}\),\s*"
        r"popart::OpDefinition::Attributes\(\{(.*?)\}\)\)\}\}\),", source, re.S,
    ):
        name, ins, outs, attrs = block.groups()
        ident = re.search(rf'{name}Id = \{{kDomain, "(\w+)", kVersion\}}', source).group(1)
        ops[ident] = {
            "domain": domain, "version": version, "inputs": re.findall(r'\{"(\w+)", kFloat\}', ins),
            "outputs": re.findall(r'\{"(\w+)", kFloat\}', outs), "attributes": re.findall(r'\{"(\w+)", \{', attrs),
        }
    return ops


def _python_constants(source: str) -> dict:
    tree = ast.parse(source)
    wanted = {"DOMAIN", "DOMAIN_VERSION", "SURROGATE", "SLOPE", "CUSTOM_OPS"}
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id in wanted
    }


def test_names_attributes_and_domains_agree(artifacts):
    _, out = artifacts
    cpp = _cpp_ops((out.out_dir / codegen.CUSTOM_OPS).read_text())
    py = _python_constants((out.out_dir / "ipu_model.py").read_text())
    model = onnx.load(out.out_dir / "model.onnx")
    config = (out.out_dir / codegen.CONFIG_HEADER).read_text()
    codelets = (out.out_dir / codegen.CODELETS).read_text()

    assert set(cpp) == set(py["CUSTOM_OPS"]) == set(out.custom_ops)
    assert py["DOMAIN"] == DOMAIN and py["DOMAIN_VERSION"] == 1
    assert (py["SURROGATE"], py["SLOPE"]) == ("arctan", 3.0)
    assert '#define SNNIR_SURROGATE_NAME "arctan"' in config and "#define SNNIR_SLOPE 3.0f" in config
    functions = {f.name: f for f in model.functions}
    for name, decl in cpp.items():
        assert (decl["domain"], decl["version"]) == (py["DOMAIN"], py["DOMAIN_VERSION"])
        assert (tuple(decl["inputs"]), tuple(decl["outputs"])) == tuple(map(tuple, py["CUSTOM_OPS"][name]))
        assert decl["attributes"] == ["surrogate", "slope"]
        for vertex in re.findall(rf'"snnir::({name}(?:Fwd|Bwd))"', (out.out_dir / codegen.CUSTOM_OPS).read_text()):
            assert f"class {vertex} : public poplar::Vertex" in codelets
        if name in functions:  # the ONNX function declares the same signature
            f = functions[name]
            assert f.domain == DOMAIN and list(f.input) == decl["inputs"] and list(f.output) == decl["outputs"]
            assert list(f.attribute) == decl["attributes"]
    used = {(n.domain, n.op_type) for n in model.graph.node if n.domain == DOMAIN}
    assert used and all(op in cpp for _, op in used)
    version = {o.domain: o.version for o in model.opset_import}[DOMAIN]
    assert version == py["DOMAIN_VERSION"]


def test_generated_module_falls_back_to_torch_target(artifacts, monkeypatch):
    graph, out = artifacts
    monkeypatch.setitem(sys.modules, "poptorch", None)  # importing poptorch fails
    module = out.load_module()
    assert module.poptorch is None
    x = np.random.default_rng(1).normal(0.3, 1.0, (25, 2, 5))
    with pytest.warns(RuntimeWarning, match="poptorch is not installed"):
        net = module.build_module()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module.build_module()  # says so once
    got = net(torch.tensor(x, dtype=torch.float32))
    want = snnir.run(graph, x)
    for name in ("out_lif", "out_culif", "out_if"):
        assert np.array_equal(got[name].detach().numpy(), want[name]), name
    with pytest.raises(ImportError, match="poptorch"):
        module.ipu_module()


def _stub_poptorch(model_path):
    """A CPU stand-in for poptorch: custom_op runs the op's ONNX function body with onnx.reference."""
    functions = {f.name: f for f in onnx.load(model_path).functions}
    calls = []

    def custom_op(inputs, name, domain, domain_version, example_outputs, attributes):
        calls.append((name, domain, domain_version, dict(attributes), len(example_outputs)))
        f = functions[name]
        feeds = {n: t.detach().numpy().astype(np.float32) for n, t in zip(f.input, inputs)}
        return [torch.from_numpy(np.asarray(v)) for v in ReferenceEvaluator(f).run(None, feeds, attributes={})]

    stub = types.SimpleNamespace(custom_op=custom_op, identity_loss=lambda loss, reduction: loss)
    return stub, calls


@pytest.mark.parametrize("make_graph", [tutorial_like, conv_graph], ids=["mlp", "conv"])
def test_ipu_code_path_with_a_stub_poptorch(make_graph, tmp_path, monkeypatch):
    graph = make_graph(np.random.default_rng(2))
    out = compile_ipu(graph, tmp_path)
    stub, calls = _stub_poptorch(tmp_path / "model.onnx")
    monkeypatch.setitem(sys.modules, "poptorch", stub)
    module = out.load_module()
    shape = snnir.verify(graph).shapes.outputs["input"]
    x = np.random.default_rng(3).uniform(0, 1, (10, 2) + tuple(shape))
    net = module.IpuSequence()
    got = net(torch.tensor(x, dtype=torch.float32)).detach().numpy()
    assert np.array_equal(got, snnir.run(graph, x)["output"])
    assert calls and all(c[1:] == (DOMAIN, 1, {"surrogate": "fast_sigmoid", "slope": 25.0}, c[4]) for c in calls)
    assert any(p.requires_grad for p in net.parameters())
    trainer = module.IpuTraining(lambda y, t: ((y.sum(0) - t) ** 2).mean())
    _, loss = trainer(torch.tensor(x, dtype=torch.float32), torch.zeros(2, got.shape[-1]))
    assert loss.ndim == 0



def test_training_module_passes_no_gradient_through_a_detached_delay(tmp_path):
    """A Delay with ``sem.detached`` (a traced snnTorch membrane read-out's last spikes) passes no
    gradient back in the generated module, as in the torch target; the other Delay passes it."""
    rng = np.random.default_rng(4)
    nodes = {"input": Input((4,)), "output_held": Output(), "output_passed": Output()}
    edges = [("input", "fc"), ("fc", "held"), ("fc", "passed"), ("held", "output_held"), ("passed", "output_passed")]
    nodes["fc"] = Affine(rng.normal(0, 1, (3, 4)), rng.normal(0, 1, 3), trainable=("weight", "bias"))
    for name, detached in (("held", True), ("passed", False)):
        nodes[name] = Delay(np.full(3, 1e-3), sem=Semantics(dt=1e-3, detached=detached))
    graph = Graph(nodes, tuple(edges))
    out = compile_ipu(graph, tmp_path)
    assert out.load_module().DETACHED == {"held/y"}
    x = torch.tensor(rng.uniform(0, 1, (6, 2, 4)), dtype=torch.float32)
    ours = out.load_module().IpuSequence()
    weight_t = ours.step.params[ours.step.where["fc/weight_t"][1]]  # the Affine as x W^T
    theirs = snnir.compile(graph, target="torch")
    for name in ("output_held", "output_passed"):
        ours.zero_grad(), theirs.zero_grad()
        got, want = ours(x)[name], theirs(x)[name]
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)  # ONNX's MatMul then Add, torch's addmm
        if name == "output_held":
            assert not got.requires_grad and not want.requires_grad
            continue
        got.square().sum().backward()
        want.square().sum().backward()
        assert weight_t.grad.abs().max() > 0
        torch.testing.assert_close(weight_t.grad.T, theirs.node_module("fc").weight.grad)

def test_makefile_explains_a_missing_sdk(artifacts):
    _, out = artifacts
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    result = subprocess.run([make, "-C", str(out.out_dir), "POPC=snnir-no-such-popc"], capture_output=True, text=True)
    assert result.returncode != 0 and "Poplar SDK not found" in result.stdout + result.stderr


def test_bad_options_are_clear(tmp_path):
    graph = tutorial_like(np.random.default_rng(0))
    with pytest.raises(SnnirError, match="surrogate"):
        compile_ipu(graph, tmp_path, surrogate="nope")
    with pytest.raises(SnnirError, match="slope"):
        compile_ipu(graph, tmp_path, slope=-1.0)
    with pytest.raises(SnnirError, match="out_dir"):
        compile_ipu(graph, None)


def test_fp16_manifest(tmp_path):
    compile_ipu(tutorial_like(np.random.default_rng(0)), tmp_path, precision="fp16")
    import json

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["precision"] == "fp16" and manifest["states"]["lif1.v"]["dtype"] == "float32"
    assert manifest["ipu"]["library"] == codegen.LIBRARY


@pytest.mark.hardware
def test_on_ipu_hardware(tmp_path):
    """Hardware tier: build the library with the Poplar SDK and run on an IPU."""
    poptorch = pytest.importorskip(
        "poptorch", reason="poptorch (Graphcore Poplar SDK) is not installed: no IPU run possible here")
    if not poptorch.ipuHardwareIsAvailable():
        pytest.skip("poptorch is installed but no IPU is attached")
    graph = tutorial_like(np.random.default_rng(0))
    out = compile_ipu(graph, tmp_path)
    subprocess.run(["make", "-C", str(tmp_path)], check=True)
    module = out.load_module()
    net = poptorch.inferenceModel(module.ipu_module())
    x = np.random.default_rng(1).uniform(0, 1, (10, 2, 6))
    got = net(torch.tensor(x, dtype=torch.float32)).numpy()
    assert np.array_equal(got, snnir.run(graph, x)["output"])


@pytest.mark.interop
def test_example_script(tmp_path):
    pytest.importorskip("snntorch", reason="the example traces an snnTorch network")
    import runpy

    example = runpy.run_path(str(Path(__file__).resolve().parents[3] / "examples" / "compile_for_ipu.py"))
    with pytest.warns(RuntimeWarning, match="poptorch"):
        assert example["main"](tmp_path) == 0


def test_command_line(tmp_path, capsys):
    from snnir.cli.main import main

    graph = tutorial_like(np.random.default_rng(0))
    snnir.write(graph, tmp_path / "net.nir")
    assert main(["compile", str(tmp_path / "net.nir"), "--target", "ipu", "-o", str(tmp_path / "ipu")]) == 0
    assert (tmp_path / "ipu" / codegen.CUSTOM_OPS).exists() and (tmp_path / "ipu" / "model.onnx").exists()
    assert main(["compile", str(tmp_path / "net.nir"), "--target", "onnx", "-o", str(tmp_path / "onnx")]) == 0
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == ["manifest.json", "model.onnx"]
