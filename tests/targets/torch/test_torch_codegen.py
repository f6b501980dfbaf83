"""Generated torch source: golden text, spikes of the reference for every op, runs without snnir,
and the ``snnir compile`` command.

Set SNNIR_UPDATE_GOLDEN=1 to rewrite the golden file after an intended change.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import snnir
from snnir.cli.main import main
from snnir.errors import SnnirError
from snnir.ir import LIF, Graph, Input, Output, Affine, Semantics
from snnir.targets.torch import compile_torch
from snnir.targets.torch.codegen import write_module

from torch_target_graphs import all_op_classes, graphs_for, random_input

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


def _outputs(result) -> list:
    return list(result.values()) if isinstance(result, dict) else [result]


@pytest.mark.parametrize("op_class", all_op_classes(), ids=lambda c: c.op_type)
def test_generated_module_matches_the_reference_for_every_op(tmp_path, op_class):
    for index, graph in enumerate(graphs_for(op_class)):
        if op_class is snnir.ir.Subgraph:  # these nested graphs lie on a cycle: a refusal naming them
            with pytest.raises(SnnirError, match="node 'sub': a nested graph cannot be inlined \\(it lies on a cycle"):
                write_module(graph, tmp_path / f"model{index}.py", "safetensors")
            continue
        source, _ = write_module(graph, tmp_path / f"model{index}.py", "safetensors")
        model = _import(source).load_model(dtype=torch.float64)
        x = random_input(graph, 12, 2)
        with torch.no_grad():
            ours = _outputs(model({k: torch.as_tensor(v) for k, v in x.items()} if isinstance(x, dict)
                                  else torch.as_tensor(x)))
        expected = snnir.run(graph, x)
        for got, name in zip(ours, graph.outputs):  # spikes (integers) exact, other values to rounding
            np.testing.assert_allclose(got.numpy(), expected[name], rtol=1e-9, atol=1e-10,
                                       err_msg=f"{op_class.op_type} graph {index}")


def test_generated_module_inlines_a_nested_graph(tmp_path, fixtures_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = snnir.read(fixtures_dir / "braille_noDelay_bias_zero_subgraph.nir", repair=True)
    source, _ = write_module(graph, tmp_path / "braille.py", "torch")
    x = random_input(graph, 20, 2)
    with torch.no_grad():
        ours = _import(source).load_model(dtype=torch.float64)(torch.as_tensor(x)).numpy()
    np.testing.assert_array_equal(ours, snnir.run(graph, x)["output"])


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
def test_generated_module_trains_what_the_graph_marks_trainable(tmp_path, fmt):
    source, weights = write_module(small_graph(), tmp_path / "model.py", fmt)
    assert weights.exists()
    model = _import(source).load_model(dtype=torch.float64)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["params.lif:tau"]
    x = torch.as_tensor(random_input(small_graph(), 10, 2))
    model(x).sum().backward()
    assert model.params["lif:tau"].grad is not None


def test_a_held_gain_trains_the_decay_as_the_compiled_module_does(tmp_path):
    """``sem.gain_held`` (snnTorch's learn_beta): the generated module trains the decay, not tau."""
    graph = small_graph()
    graph = graph.with_nodes(lif=graph.nodes["lif"].replace(sem=graph.nodes["lif"].sem.with_(gain_held=True)))
    source, _ = write_module(graph, tmp_path / "model.py", "torch")
    model = _import(source).load_model(dtype=torch.float64)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["params.lif:a_mem"]
    compiled = compile_torch(graph, dtype=torch.float64)
    x = torch.as_tensor(random_input(graph, 10, 2))
    model(x).sum().backward()
    compiled(x).sum().backward()
    torch.testing.assert_close(model.params["lif:a_mem"].grad, compiled.node_module("lif").a_mem.grad,
                               rtol=1e-12, atol=0)


_STANDALONE_RUN = """
import sys
sys.path[:] = [p for p in sys.path if p] + [{site!r}, {here!r}]  # the venv's packages, not its .pth files
try:
    import snnir
except ImportError:
    pass
else:
    raise SystemExit("snnir is importable: the check proves nothing")
import numpy as np, torch
import model
with torch.no_grad():
    np.save("spikes.npy", model.load_model()(torch.from_numpy(np.load("x.npy"))).numpy())
"""


def test_generated_source_runs_without_snnir(tmp_path):
    """``python -I`` (no PYTHONPATH, no current directory) with site-packages but not its .pth
    files (the editable snnir install): ``import snnir`` fails there, and the spikes are snnir's."""
    pytest.importorskip("safetensors")
    import subprocess
    import sys
    import sysconfig

    snntorch = pytest.importorskip("snntorch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(20, 30), snntorch.Leaky(beta=0.9, init_hidden=True),
                              torch.nn.Linear(30, 5), snntorch.Leaky(beta=0.9, init_hidden=True))
    graph = snnir.optimize(snnir.trace(net, torch.zeros(1, 20)))  # fused nodes: split in the source
    write_module(graph, tmp_path / "model.py", "safetensors")
    x = (torch.rand(30, 4, 20) < 0.5).float()
    np.save(tmp_path / "x.npy", x.numpy())
    script = tmp_path / "run.py"
    script.write_text(_STANDALONE_RUN.format(site=sysconfig.get_paths()["purelib"], here=str(tmp_path)))
    done = subprocess.run([sys.executable, "-I", "-S", str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONSAFEPATH": "1"})
    assert done.returncode == 0, done.stderr
    with torch.no_grad():
        expected = snnir.compile(graph, target="torch")(x).numpy()
    np.testing.assert_array_equal(np.load(tmp_path / "spikes.npy"), expected)


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


def _names_graph(names: tuple[str, ...]) -> Graph:
    """A nested graph ``a`` holding an Affine ``b`` (path ``a.b``), then Affine nodes named ``names``
    in a chain, then a LIF."""
    from snnir.ir import Subgraph

    rng = np.random.default_rng(0)
    inner = Graph({"i": Input((3,)), "b": Affine(weight=rng.normal(size=(3, 3)), bias=np.zeros(3)), "o": Output()},
                  (("i", "b"), ("b", "o")))
    nodes = {"input": Input((3,)), "a": Subgraph(inner)}
    nodes.update({name: Affine(weight=rng.normal(size=(3, 3)), bias=np.full(3, 0.5)) for name in names})
    nodes["lif"] = LIF(tau=np.full(3, 2e-3), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.full(3, 0.5),
                       sem=Semantics(dt=1e-3))
    nodes["output"] = Output()
    chain = ("input", "a", *names, "lif", "output")
    return Graph(nodes, tuple(zip(chain, chain[1:])))


def test_node_names_that_escaping_could_confuse_keep_their_own_parameters(tmp_path):
    """The nested node ``a.b`` and top-level nodes ``a:b`` and ``a%3Ab`` each keep their own
    weights (``a.b`` and ``a:b`` shared one ParameterDict key, and one's weights replaced the other's)."""
    graph = _names_graph(("a:b", "a%3Ab"))
    source, _ = write_module(graph, tmp_path / "model.py", "safetensors")
    model = _import(source).load_model(dtype=torch.float64)
    assert {"a:b:weight", "a%3Ab:weight", "a%253Ab:weight"} <= set(model.params)
    x = np.random.default_rng(1).random((20, 2, 3)) * 2
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    expected = snnir.run(graph, x)["output"]
    assert 0 < expected.mean() < 1
    np.testing.assert_array_equal(got, expected)


def test_a_dotted_name_equal_to_a_nested_path_is_refused_as_snnir_run_refuses_it(tmp_path):
    graph = _names_graph(("a.b",))
    with pytest.raises(SnnirError, match="node 'a.b': two nodes have the path 'a.b'"):
        snnir.run(graph, np.zeros((2, 1, 3)))
    with pytest.raises(SnnirError, match="node 'a.b': two nodes have the path 'a.b'"):
        write_module(graph, tmp_path / "model.py", "safetensors")
    assert not list(tmp_path.iterdir())


HOSTILE_NAMES = ['a""";open("INJECTED", "w").close();""".nir', "net\\x\\N.nir", "é'\".nir"]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=["triple quotes", "backslashes", "quotes and non-ascii"])
def test_hostile_file_names_are_escaped_in_the_generated_source(tmp_path, monkeypatch, capsys, name):
    """File names went into the module's docstring as they were: a backslash made a module that
    does not parse, and triple quotes ended the docstring, so the rest of the name ran on import."""
    monkeypatch.chdir(tmp_path)
    graph = small_graph()
    snnir.write(graph, tmp_path / name)
    out = tmp_path / ("o" + name.replace(".nir", ".py"))
    assert main(["compile", name, "--target", "torch", "-o", str(out)]) == 0
    capsys.readouterr()
    text = out.read_text(encoding="utf-8")
    module = _import(out)
    assert not (tmp_path / "INJECTED").exists()
    assert ast.get_docstring(ast.parse(text)).startswith("Generated by `snnir compile` from " + ascii(name))
    x = random_input(graph, 12, 2)
    with torch.no_grad():
        got = module.load_model(dtype=torch.float64)(torch.as_tensor(x)).numpy()
    np.testing.assert_array_equal(got, snnir.run(graph, x)["output"])


def test_a_failed_write_leaves_the_previous_module_and_weights(tmp_path, monkeypatch):
    """The weights were written in place before the source: a full disk left the old model.py
    beside truncated weights, and the error named model.py."""
    pytest.importorskip("safetensors")
    import errno

    import safetensors.numpy

    source, weights = write_module(small_graph(), tmp_path / "model.py", "safetensors")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.numpy, "save", full_disk)
    with pytest.raises(SnnirError, match=r"cannot write .*model\.safetensors: No space left on device"):
        write_module(_names_graph(("c",)), source, "safetensors")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary file left either
    monkeypatch.setattr(Path, "write_text", lambda *args, **kwargs: full_disk())
    with pytest.raises(SnnirError, match=r"cannot write .*model\.py: No space left on device"):
        write_module(_names_graph(("c",)), source, "safetensors")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    monkeypatch.undo()
    with torch.no_grad():
        assert _import(source).load_model()(torch.ones(3, 1, 2)).shape == (3, 1, 3)


@pytest.mark.parametrize("fmt, suffix", [("safetensors", ".safetensors"), ("torch", ".weights.pt")])
def test_an_unrelated_weights_file_beside_the_module_is_refused(tmp_path, capsys, fmt, suffix):
    """``-o model.py`` overwrote a model.safetensors (model.weights.pt) that snnir had not written."""
    if fmt == "safetensors":
        pytest.importorskip("safetensors")
    snnir.write(small_graph(), tmp_path / "small.nir")
    theirs = tmp_path / f"model{suffix}"
    theirs.write_text("my own weights\n")
    command = ["compile", str(tmp_path / "small.nir"), "-o", str(tmp_path / "model.py"), "--weights-format", fmt]
    assert main(command) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot write {theirs}" in err and "would be lost" in err
    assert theirs.read_text() == "my own weights\n" and not (tmp_path / "model.py").exists()
    (tmp_path / "model.py").write_text("print('my own module')\n")  # named by -o, but not snnir's either
    assert main(command) == 1
    assert theirs.read_text() == "my own weights\n"
    assert (tmp_path / "model.py").read_text() == "print('my own module')\n"
    capsys.readouterr()
    theirs.unlink()
    assert main(command) == 0  # -o names model.py: it is replaced
    assert main(command) == 0  # snnir's own pair is replaced again
    assert f"wrote {tmp_path / 'model.py'} and {theirs}" in capsys.readouterr().out
    with torch.no_grad():
        assert _import(tmp_path / "model.py").load_model()(torch.ones(3, 1, 2)).shape == (3, 1, 3)


def _two_inputs() -> Graph:
    return Graph({"a": Input((2,)), "b": Input((2,)), "fc": small_graph().nodes["fc"], "lif": small_graph().nodes["lif"],
                  "y": Output()}, (("a", "fc"), ("b", "fc"), ("fc", "lif"), ("lif", "y")))


BAD_INPUTS = [  # (graph, input, what the generated module says)
    ("one", torch.zeros(4, 2), r"input 'input' of shape \[4, 2\] is a static \[B, 2\] input: give steps=T"),
    ("one", torch.zeros(5, 4, 3), r"input 'input' must have shape \[T, B, 2\], got \[5, 4, 3\]"),
    ("one", torch.zeros(5, 4, 1, 2), r"input 'input' must have shape \[T, B, 2\], got \[5, 4, 1, 2\]"),
    ("one", torch.zeros(2), r"input 'input' must have shape \[T, B, 2\], got \[2\]"),
    ("one", torch.zeros(0, 4, 2), r"no time steps \(T = 0\)"),
    ("one", {"input": torch.zeros(5, 4, 2), "other": torch.zeros(5, 4, 2)}, r"unexpected \['other'\]"),
    ("two", torch.zeros(5, 4, 2), r"the Inputs \['a', 'b'\]: give a dict"),
    ("two", {"a": torch.zeros(5, 4, 2)}, r"missing \['b'\]"),
    ("two", {"a": torch.zeros(5, 4, 2), "b": torch.zeros(6, 4, 2)}, r"disagree on the number of time steps T: 5 vs 6"),
    ("two", {"a": torch.zeros(5, 4, 2), "b": torch.zeros(5, 3, 2)}, r"disagree on the batch size B: 4 vs 3"),
    ("one", torch.zeros(5, 4, 2).index_fill_(0, torch.tensor([3]), float("nan")), r"input 'input' contains NaN or inf"),
    ("two", {"a": torch.zeros(5, 4, 2), "b": torch.full((5, 4, 2), float("-inf"))}, r"input 'b' contains NaN or inf"),
]


@pytest.mark.parametrize("which, x, message", BAD_INPUTS, ids=[m[:40] for _, _, m in BAD_INPUTS])
def test_the_generated_module_refuses_inputs_the_compiled_module_refuses(tmp_path, which, x, message):
    """A static image batch [B, 1, 14, 14] was read as T=B steps of an unbatched image: the
    generated module checked no input shape. Now it refuses what ``snnir.compile``'s module refuses."""
    graph = small_graph() if which == "one" else _two_inputs()
    source, _ = write_module(graph, tmp_path / "model.py", "torch")
    model = _import(source).load_model(dtype=torch.float64)
    with pytest.raises((ValueError, TypeError), match=message):
        model(x)
    with pytest.raises(SnnirError):
        compile_torch(graph, dtype=torch.float64)(x)


def test_the_generated_module_holds_a_static_input_for_steps(tmp_path):
    graph = small_graph()
    source, _ = write_module(graph, tmp_path / "model.py", "torch")
    model = _import(source).load_model(dtype=torch.float64)
    image = torch.as_tensor(random_input(graph, 1, 3)[0]) * 4
    with torch.no_grad():
        got = model(image, steps=7)
        with pytest.raises(ValueError, match="input 'input' has 7 time steps but steps=6"):
            model(image.expand(7, 3, 2), steps=6)
        with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
            model(image, steps=0)
    expected = snnir.run(graph, image.expand(7, 3, 2).numpy())["output"]
    assert 0 < expected.mean() < 1
    np.testing.assert_array_equal(got.numpy(), expected)
    np.testing.assert_array_equal(compile_torch(graph, dtype=torch.float64)(image, steps=7).detach().numpy(), expected)


def _tampered(weights: dict, key: str, value) -> dict:
    weights = dict(weights)
    if value is None:
        del weights[key]
    else:
        weights[key] = value
    return weights


TAMPERED = [  # (key, new value from the old one, message); None: delete the key
    ("fc.bias", lambda v: v[:1], r"'fc.bias' has shape \[1\], expected \[3\]"),
    ("lif.v_threshold", lambda v: v[:1], r"'lif.v_threshold' has shape \[1\], expected \[3\]"),
    ("fc.weight", lambda v: v.T.contiguous(), r"'fc.weight' has shape \[2, 3\], expected \[3, 2\]"),
    ("fc.bias", None, r"missing \['fc.bias'\], unexpected \[\]"),
    ("extra.weight", lambda v: torch.zeros(3), r"missing \[\], unexpected \['extra.weight'\]"),
    ("fc.weight", lambda v: v.long(), r"'fc.weight' has dtype torch.int64, expected a floating point dtype"),
    ("lif.tau", lambda v: v * float("nan"), r"'lif.tau' holds non-finite values"),
    ("fc.bias", lambda v: v.tolist(), r"'fc.bias' is a list, not a tensor"),
]


@pytest.mark.parametrize("key, edit, message", TAMPERED, ids=[m[:40] for _, _, m in TAMPERED])
def test_weights_that_do_not_fit_the_graph_are_refused_naming_the_key(tmp_path, key, edit, message):
    """A bias of shape [1] for [3] broadcast silently (other spikes); a missing tensor was a KeyError
    inside ``affine``, an int64 one failed inside torch: each is refused naming the key."""
    safetensors_torch = pytest.importorskip("safetensors.torch")
    source, weights_path = write_module(small_graph(), tmp_path / "model.py", "safetensors")
    generated = _import(source)
    weights = generated.load_weights()
    bad = _tampered(weights, key, None if edit is None else edit(weights.get(key, torch.zeros(3))))
    with pytest.raises((ValueError, TypeError), match="the weights given: .*" + message):
        generated.Model(weights=bad)
    if all(isinstance(v, torch.Tensor) for v in bad.values()):  # the file beside the module, tampered
        safetensors_torch.save_file(bad, str(weights_path))
        with pytest.raises(ValueError, match=f"the weights file {weights_path}: .*" + message):
            generated.load_model()


def test_a_weights_file_that_is_not_one_is_refused_naming_it(tmp_path):
    source, weights_path = write_module(small_graph(), tmp_path / "model.py", "torch")
    generated = _import(source)
    weights_path.write_bytes(b"not a weights file")
    with pytest.raises(ValueError, match=f"cannot read the weights file {weights_path}"):
        generated.load_model()
    weights_path.unlink()
    with pytest.raises(ValueError, match=f"cannot read the weights file {weights_path}"):
        generated.load_model()


def test_delay_steps_outside_the_buffer_are_refused(tmp_path):
    from snnir.ir import Delay

    graph = Graph.sequential(("input", Input((2,))), ("d", Delay(delay=np.array([2e-3, 1e-3]), sem=Semantics(dt=1e-3))),
                             ("output", Output()))
    source, _ = write_module(graph, tmp_path / "model.py", "torch")
    generated = _import(source)
    weights = generated.load_weights()
    x = torch.as_tensor(random_input(graph, 6, 2))
    np.testing.assert_array_equal(generated.Model(weights, torch.float64)(x).numpy(), snnir.run(graph, x.numpy())["output"])
    with pytest.raises(ValueError, match=r"'d.steps' holds delays outside 0..2"):
        generated.Model(_tampered(weights, "d.steps", torch.tensor([3, 1])))
    with pytest.raises(ValueError, match=r"'d.steps' has dtype torch.float32, expected torch.int64"):
        generated.Model(_tampered(weights, "d.steps", torch.tensor([2.0, 1.0])))


def test_the_generated_module_follows_dtype_moves(tmp_path):
    """``model.double()`` and ``load_model(dtype=torch.float64).float()`` failed inside ``affine``:
    the module cast inputs and built states in the dtype it was loaded with."""
    graph = small_graph()
    source, _ = write_module(graph, tmp_path / "model.py", "torch")
    generated = _import(source)
    x = torch.as_tensor(random_input(graph, 12, 3))
    expected = snnir.run(graph, x.numpy())["output"]
    with torch.no_grad():
        double = generated.load_model().double()
        assert double.dtype == torch.float64 and double.initial_state(3)["lif"]["v"].dtype == torch.float64
        np.testing.assert_array_equal(double(x).numpy(), expected)
        single = generated.load_model(dtype=torch.float64).float()
        assert single(x).dtype == torch.float32 and single.initial_state(3)["lif"]["v"].dtype == torch.float32
        assert single.to(torch.float64)(x.float()).dtype == torch.float64  # inputs are cast to the model's dtype
    assert "dtype_probe" not in generated.load_model().state_dict()


def test_the_generated_step_takes_what_the_compiled_modules_step_takes(tmp_path):
    """docs/torch-target.md's ``model.step(x[0], state)`` was an IndexError in the generated module
    (it wanted ``{input name: x_t}``); it takes a tensor (or a dict) and returns the output as the
    compiled module does."""
    graph = small_graph()
    source, _ = write_module(graph, tmp_path / "model.py", "torch")
    model = _import(source).load_model(dtype=torch.float64)
    compiled = compile_torch(graph, dtype=torch.float64)
    x = torch.as_tensor(random_input(graph, 12, 3))
    with torch.no_grad():
        whole = model(x)
        state, ours = model.initial_state(3), []
        for t in range(x.shape[0]):
            y_t, state = model.step(x[t] if t % 2 else {"input": x[t]}, state)
            ours.append(y_t)
        theirs, _ = compiled.step(x[0], compiled.initial_state(3))
        first, _ = model.step(x[0])  # no state: the initial one
    torch.testing.assert_close(torch.stack(ours), whole, rtol=0, atol=0)
    torch.testing.assert_close(first, theirs, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"input 'input' must have shape \[B, 2\], got \[12, 3, 2\]"):
        model.step(x, model.initial_state(3))
    with pytest.raises(ValueError, match=r"state\['lif'\]\['v'\] must have shape \[3, 3\] for batch 3, got \[4, 3\]"):
        model.step(x[0], model.initial_state(4))  # a state of another batch size


def test_the_generated_module_returns_its_final_state_for_chunks(tmp_path):
    """``forward(x, state)`` took a state but never returned the final one, and T=0 failed in
    torch.stack: ``return_state=True`` returns it as the compiled module's does."""
    graph = small_graph()
    source, _ = write_module(graph, tmp_path / "model.py", "torch")
    model = _import(source).load_model(dtype=torch.float64)
    x = torch.as_tensor(random_input(graph, 12, 3))
    with torch.no_grad():
        whole, final = model(x, return_state=True)
        first, state = model(x[:5], return_state=True)
        second, state = model(x[5:], state, return_state=True)
    torch.testing.assert_close(torch.cat([first, second]), whole, rtol=0, atol=0)
    torch.testing.assert_close(state["lif"]["v"], final["lif"]["v"], rtol=0, atol=0)
    compiled = compile_torch(graph, dtype=torch.float64)
    _, their_state = compiled(x, return_state=True)
    torch.testing.assert_close(final["lif"]["v"], their_state["lif.v"], rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"no time steps \(T = 0\)"):
        model(x[:0])
    with pytest.raises(ValueError, match=r"state must be a dict with the keys"):
        model(x, {"lif.v": final["lif"]["v"]})


def test_the_generated_module_copies_given_weights_and_checks_they_fit_its_dtype(tmp_path):
    """Model(weights=w) trained the caller's own tensors (a second model from the same dict then
    spiked differently); a float64 weight of 1e39 became inf in float32 without a word; a sparse
    tensor failed inside torch."""
    source, _ = write_module(small_graph(), tmp_path / "model.py", "safetensors")
    generated = _import(source)
    weights = generated.load_weights()
    kept = {k: v.clone() for k, v in weights.items()}
    model = generated.Model(weights=weights)
    model(torch.rand(5, 2, 2)).sum().backward()
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    assert all(torch.equal(weights[k], kept[k]) for k in kept)
    huge = dict(weights, **{"fc.weight": torch.full((3, 2), 1e39, dtype=torch.float64)})
    with pytest.raises(ValueError, match=r"'fc.weight' does not fit torch.float32.*dtype=torch.float64"):
        generated.Model(weights=huge)
    generated.Model(weights=huge, dtype=torch.float64)
    sparse = dict(weights, **{"fc.bias": weights["fc.bias"].to_sparse()})
    with pytest.raises(ValueError, match=r"'fc.bias' is a torch.sparse_coo tensor .* expected a dense one"):
        generated.Model(weights=sparse)


def test_a_torch_weights_file_of_more_than_tensors_is_refused_without_torchs_advice(tmp_path):
    """torch.load(weights_only=True) refuses it with advice to pass weights_only=False, which the
    generated module passed on to its user."""
    source, weights_path = write_module(small_graph(), tmp_path / "model.py", "torch")
    generated = _import(source)
    torch.save({"fc.weight": torch.zeros(3, 2), "hook": print}, weights_path)
    with pytest.raises(ValueError, match=f"cannot read the weights file {weights_path}: it is not a file of plain") as info:
        generated.load_model()
    assert "weights_only=False" not in str(info.value)


def test_a_node_named_like_the_carried_state_key_is_refused(tmp_path):
    """The generated state keeps what recurrent edges carry under '#carried': a stateful node of that
    name had its state overwritten by them every step (13 spikes differed)."""
    graph = Graph.sequential(
        ("input", Input((2,))), ("fc", Affine(weight=np.ones((3, 2)), bias=np.zeros(3))),
        ("#carried", LIF(tau=np.full(3, 2e-3), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.full(3, 0.1),
                         sem=Semantics(dt=1e-3))),
        ("output", Output()))
    with pytest.raises(SnnirError, match="node '#carried': .*rename this node"):
        write_module(graph, tmp_path / "model.py")


@pytest.mark.parametrize("existing", [False, True], ids=["new", "replacing"])
def test_a_source_that_does_not_go_in_takes_its_weights_back(tmp_path, monkeypatch, existing):
    """The weights go in first: when the source then failed to go in (a FIFO without a reader), the
    new weights stayed, beside no module that names them, and blocked every retry."""
    import os

    pytest.importorskip("safetensors")
    path = tmp_path / "model.py"
    if existing:
        write_module(small_graph(), path, "safetensors")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real = os.replace

    def source_fails(src, dst):
        if str(dst).endswith(".py"):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", source_fails)
    with pytest.raises(SnnirError, match="No space left on device"):
        write_module(_names_graph(("c",)), path, "safetensors")
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    write_module(_names_graph(("c",)), path, "safetensors")  # a retry is not blocked


@pytest.mark.parametrize("name, shown", [(".py", r"\.py"), ("out/", "out/")])
def test_an_output_that_names_no_module_is_refused_as_given(tmp_path, name, shown):
    """'.py' was refused as "must be a .py file, got .py", 'out/' as "got out"."""
    with pytest.raises(SnnirError, match=f"must be a file named NAME.py, got .*/{shown}$"):
        write_module(small_graph(), str(tmp_path) + "/" + name)


def test_a_nested_port_no_edge_enters_is_inlined_as_zero_or_refused_for_what_it_is(tmp_path):
    """Port b adds zero to fc: inlined without it, the module equals the reference. Where b
    alone feeds an Output read outside, the graph stays nested: refused saying so (was
    "invalid after pass 'flatten_subgraphs'")."""
    from snnir.ir import Subgraph

    inner = Graph({"a": Input((2,)), "b": Input((2,)), "fc": Affine(weight=np.ones((2, 2)), bias=np.zeros(2)),
                   "o": Output(), "ob": Output()}, (("a", "fc"), ("b", "fc"), ("fc", "o"), ("b", "ob")))
    nodes = {"input": Input((2,)), "s": Subgraph(graph=inner), "output": Output()}
    graph = Graph(nodes, (("input", "s.a"), ("s.o", "output")))
    source, _ = write_module(graph, tmp_path / "model.py", "torch")
    x = np.random.default_rng(0).normal(size=(4, 2, 2))
    with torch.no_grad():
        got = _import(source).load_model(dtype=torch.float64)(torch.as_tensor(x))
    np.testing.assert_allclose(got.numpy(), snnir.run(graph, x)["output"], rtol=1e-12)
    graph = Graph({**nodes, "zero": Output()}, (("input", "s.a"), ("s.o", "output"), ("s.ob", "zero")))
    with pytest.raises(SnnirError, match=r"node 's': a nested graph cannot be inlined \(its Input ports no edge "
                                         r"enters are zero, and inlining would leave \['zero'\]"):
        write_module(graph, tmp_path / "model2.py", "torch")


def test_tied_nested_graphs_are_refused_for_what_they_are(tmp_path):
    """Two tied nested graphs (no cycle) were refused as "a nested graph on a cycle"."""
    from snnir.ir import Subgraph

    inner = Graph.sequential(("i", Input((2,))), ("fc", Affine(weight=np.ones((2, 2)), bias=np.zeros(2))),
                             ("o", Output()))
    graph = Graph({"input": Input((2,)), "s1": Subgraph(graph=inner), "s2": Subgraph(graph=inner), "output": Output()},
                  (("input", "s1"), ("s1", "s2"), ("s2", "output")), ties=(("s1", "s2"),))
    with pytest.raises(SnnirError, match="node 's1': a nested graph cannot be inlined \\(it is tied to another"):
        write_module(graph, tmp_path / "model.py")


@pytest.mark.parametrize("discretisation", ["euler", "exp"])
def test_the_generated_module_divides_dt_by_tau_as_the_reference(tmp_path, discretisation):
    """A threshold exactly at the reference's first membrane (``dt / tau`` a true division, not
    torch's ``dt * (1 / tau)``, which is 0.14285714285714288 for 1e-3 / 0.007) does not fire."""
    dt, tau = 1e-3, 0.007
    first = dt / tau if discretisation == "euler" else 1.0 - np.exp(-dt / tau)
    sem = Semantics(dt=dt, discretisation=discretisation, reset="zero", threshold_compare="gt")
    lif = LIF(tau=np.array([tau]), r=np.array([1.0]), v_leak=np.array([0.0]), v_threshold=np.array([first]), sem=sem)
    graph = Graph.sequential(("in", Input((1,))), ("lif", lif), ("out", Output()))
    source, _ = write_module(graph, tmp_path / "model.py", "safetensors")
    model = _import(source).load_model(dtype=torch.float64)
    with torch.no_grad():
        assert float(_outputs(model(torch.ones(1, 1, 1, dtype=torch.float64)))[0][0, 0, 0]) == 0.0
    assert float(snnir.run(graph, np.ones((1, 1, 1)))["out"][0, 0, 0]) == 0.0
