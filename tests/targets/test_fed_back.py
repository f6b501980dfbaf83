"""A neuron's fed-back drive (``Schedule.fed_back``): ``(leak(v) + drive) + fed``, then the reset.

No snnTorch here: the recurrent graphs of snnTorch's ``RLeaky``/``RSynaptic`` (beta 0.9, alpha 0.8,
unit gains, the spikes fed back times 0.25 by a diagonal Linear or a Scale) built by hand, and
inputs held over the steps at constants whose float32 spikes differ between that order and the
old ``leak(v) + (drive + fed)`` (``tests/interop/test_snntorch_float32.py`` checks them against
snnTorch itself). Every runner spikes as a float32 numpy loop of the rule, bit for bit: the torch
target's Python loop, the C++ kernels, the Triton kernels (in Triton's interpreter without a GPU),
training or not, the step loop without the fast path, and the ONNX model; the reference
interpreter computes the rule's float64 values exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

import snnir
from snnir.ir import CubaLIF, Graph, Input, Linear, LIF, Output, Scale, Semantics
from snnir.ir.schedule import schedule

STEPS, BATCH, WIDTH = 200, 8, 32
SEM = Semantics(dt=1.0, reset="subtract", reset_timing="next")  # snnTorch's delayed subtract reset
_RLEAKY = ["0x1.e2b1c2p-2", "0x1.0cf67ap-2", "0x1.953c1ap-2", "0x1.7ad5a2p-2"]
_RSYNAPTIC = ["0x1.8616d6p-3", "0x1.af4b46p-4", "0x1.582fbap-3", "0x1.80b434p-3"]


def _full(value: float) -> np.ndarray:
    return np.full(WIDTH, value)


def recurrent_graph(kind: str, one_to_one: bool) -> Graph:
    """x -> cell, cell -> rec -> cell (rec: 0.25 times the identity, or a Scale by 0.25).
    LIF: tau 10, r 10, dt 1 (Euler: decay 0.9, gain 1); CubaLIF: also tau_syn 5, w_in 5 (0.8, 1)."""
    if kind == "lif":
        cell = LIF(tau=_full(10.0), r=_full(10.0), v_leak=_full(0.0), v_threshold=_full(0.8), sem=SEM)
    else:
        cell = CubaLIF(tau_syn=_full(5.0), tau_mem=_full(10.0), r=_full(10.0), v_leak=_full(0.0),
                       v_threshold=_full(2.0), w_in=_full(5.0), sem=SEM)
    rec = Scale(_full(0.25)) if one_to_one else Linear(weight=0.25 * np.eye(WIDTH))
    nodes = {"x": Input((WIDTH,)), "cell": cell, "rec": rec, "y": Output()}
    return Graph(nodes, (("x", "cell"), ("cell", "y"), ("cell", "rec"), ("rec", "cell")))


def held_input(kind: str, steps: int = STEPS) -> np.ndarray:
    """[steps, BATCH, WIDTH] float32, the same every step: the constants in sample 0 (each over four
    neurons), random currents from 0 to 2 elsewhere."""
    held = np.random.default_rng(6).uniform(0.0, 2.0, (BATCH, WIDTH)).astype(np.float32)
    for k, value in enumerate(_RLEAKY if kind == "lif" else _RSYNAPTIC):
        held[0, 4 * k: 4 * k + 4] = float.fromhex(value)
    return np.broadcast_to(held, (steps, BATCH, WIDTH)).copy()


def rule(kind: str, x: np.ndarray, fed_last: bool = True) -> np.ndarray:
    """The spikes of ``recurrent_graph(kind, ...)`` by a numpy loop in ``x``'s dtype: the rule,
    or with ``fed_last=False`` the old order (the fed-back drive summed into the drive first)."""
    f = x.dtype.type
    beta, alpha, thr = f(0.9), f(0.8), f(0.8 if kind == "lif" else 2.0)
    mem, syn, z = (np.zeros_like(x[0]) for _ in range(3))
    out = []
    for xt in x:
        rec = f(0.25) * z
        if kind == "lif":
            mem = ((beta * mem + xt) + rec if fed_last else beta * mem + (xt + rec)) - z * thr
        else:
            syn = (alpha * syn + xt) + rec if fed_last else alpha * syn + (xt + rec)
            mem = (beta * mem + syn) - z * thr
        z = (mem > thr).astype(x.dtype)
        out.append(z)
    return np.stack(out)


CASES = [(kind, one) for kind in ("lif", "cuba") for one in (False, True)]
IDS = [f"{kind}-{'scale' if one else 'linear'}" for kind, one in CASES]


def test_schedule_marks_the_fed_back_edges():
    graph = recurrent_graph("lif", False)
    assert schedule(graph).fed_back == {("rec", "cell")}
    assert schedule(graph).delayed == {("cell", "rec")}
    # a neuron whose every input comes from its own component: all of it is its drive
    alone = Graph({"x": Input((WIDTH,)), "rec": Linear(weight=np.eye(WIDTH)), "cell": graph.nodes["cell"],
                   "y": Output()}, (("x", "rec"), ("rec", "cell"), ("cell", "rec"), ("cell", "y")))
    assert schedule(alone).fed_back == frozenset()
    chain = Graph.sequential(("x", Input((WIDTH,))), ("cell", graph.nodes["cell"]), ("y", Output()))
    assert schedule(chain).fed_back == frozenset()


@pytest.mark.parametrize("kind", ["lif", "cuba"])
def test_the_constants_tell_the_orders_apart(kind):
    x = held_input(kind)
    new, old = rule(kind, x), rule(kind, x, fed_last=False)
    assert 0 < new[:, 0].mean() < 1
    assert (new[:, 0] != old[:, 0]).any(), "the held constants should spike differently in the old order"


@pytest.mark.parametrize("kind,one_to_one", CASES, ids=IDS)
def test_reference_computes_the_rule_in_float64(kind, one_to_one):
    x = np.random.default_rng(1).normal(0.4, 0.5, (60, BATCH, WIDTH))
    got = snnir.run(recurrent_graph(kind, one_to_one), x)["y"]
    np.testing.assert_array_equal(got, rule(kind, x))
    assert got.sum() > 0


def _torch_spikes(kind, one_to_one, x, device="cpu", train=False, **options):
    import torch

    graph = recurrent_graph(kind, one_to_one)
    module = snnir.compile(graph, target="torch", device=device, trainable="all" if train else "metadata",
                           **options)
    xs = torch.as_tensor(x, device=device)
    if not train:
        with torch.no_grad():
            return module(xs).cpu().numpy()
    y = module(xs.requires_grad_(True))
    y.sum().backward()
    assert xs.grad is not None
    return y.detach().cpu().numpy()


@pytest.mark.parametrize("train", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("kind,one_to_one", CASES, ids=IDS)
def test_python_loop_and_step_path(kind, one_to_one, train):
    pytest.importorskip("torch", reason="torch is not installed (the torch target needs it)")
    x = held_input(kind)
    want = rule(kind, x)
    np.testing.assert_array_equal(_torch_spikes(kind, one_to_one, x, train=train, native=False, triton=False), want)
    np.testing.assert_array_equal(_torch_spikes(kind, one_to_one, x, train=train, fast=False), want)


@pytest.mark.parametrize("train", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("kind,one_to_one", CASES, ids=IDS)
def test_native_kernels(kind, one_to_one, train, native_kernels):
    x = held_input(kind)
    got = _torch_spikes(kind, one_to_one, x, train=train, native=True, triton=False)
    np.testing.assert_array_equal(got, rule(kind, x))


@pytest.mark.parametrize("train", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("kind,one_to_one", CASES, ids=IDS)
def test_triton_kernels(kind, one_to_one, train):
    pytest.importorskip("torch", reason="torch is not installed (the torch target needs it)")
    from tests.targets.triton_device import DEVICE  # skips without Triton or a place to run it

    x = held_input(kind)
    got = _torch_spikes(kind, one_to_one, x, device=DEVICE, train=train, native=False, triton=True)
    np.testing.assert_array_equal(got, rule(kind, x))


@pytest.mark.parametrize("kind,one_to_one", CASES, ids=IDS)
def test_standalone_source(kind, one_to_one, tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed (the torch target needs it)")
    import importlib.util

    from snnir.targets.torch.codegen import write_module

    source, _ = write_module(recurrent_graph(kind, one_to_one), tmp_path / "model.py", "torch")
    assert "fed=prev['rec']" in source.read_text() or "fed=h['rec']" in source.read_text()
    spec = importlib.util.spec_from_file_location(f"fed_back_{kind}_{one_to_one}", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x = held_input(kind)
    with torch.no_grad():
        got = module.load_model(dtype=torch.float32)(torch.as_tensor(x))
    np.testing.assert_array_equal(got.numpy(), rule(kind, x))


@pytest.mark.parametrize("kind,one_to_one", CASES, ids=IDS)
def test_onnx_model(kind, one_to_one, tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from snnir.targets.ipu.onnx_export import compile_onnx, simulate

    graph = recurrent_graph(kind, one_to_one)
    compile_onnx(graph, tmp_path)
    x = held_input(kind)
    np.testing.assert_array_equal(simulate(tmp_path, x)["y"], rule(kind, x))
