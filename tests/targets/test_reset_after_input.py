"""``reset_timing="next_after_input"``: the previous step's spike resets the membrane after this
step's decay and input (snnTorch's delayed zero reset in Synaptic, RLeaky, RSynaptic, Lapicque).

Hand-computed sequences for the reference interpreter, then every other implementation (torch
target, both paths; the NIR file round trip; ``snnir.nn``) against the reference on random inputs.
The ONNX/IPU kernels are covered by ``tests/targets/ipu/helpers.semantics_cases``.
"""

from __future__ import annotations

import numpy as np
import pytest

import snnir
from snnir.ir import IF, LI, LIF, CubaLIF, Graph, Input, Linear, Output, Semantics
from snnir.ir.printer import format_semantics

ONE = np.ones(())
ZERO = np.zeros(())
DRIVE = [0.6, 0.6, 0.6, 0.0, 1.5, 0.2]
SEQUENCES = {  # reset -> (spikes, v after the step), IF with r = dt = thr = 1
    "zero": ([0, 1, 0, 0, 1, 0], [0.6, 1.2, 0.0, 0.0, 1.5, 0.0]),  # input of the step after a spike is lost
    "subtract": ([0, 1, 0, 0, 1, 1], [0.6, 1.2, 0.8, 0.8, 2.3, 1.5]),  # linear: the same as "next"
    "none": ([0, 1, 1, 1, 1, 1], [0.6, 1.2, 1.8, 1.8, 3.3, 3.5]),
}


def single(op, shape=(1,)) -> Graph:
    return Graph.sequential(("x", Input(shape)), ("n", op), ("y", Output()))


@pytest.mark.parametrize("reset", sorted(SEQUENCES))
def test_if_hand_computed(reset):
    op = IF(r=ONE, v_threshold=ONE, sem=Semantics(dt=1.0, reset=reset, reset_timing="next_after_input"))
    out = snnir.run(single(op), np.array(DRIVE).reshape(-1, 1, 1), record=True)
    spikes, v = SEQUENCES[reset]
    np.testing.assert_array_equal(out["y"][:, 0, 0], spikes)
    np.testing.assert_allclose(out["n.v"][:, 0, 0], v, rtol=1e-12)
    assert set(out) == {"y", "n.v", "n.z"}
    np.testing.assert_array_equal(out["n.z"], out["y"])


def test_cuba_current_is_not_reset():
    """dt = 1, tau_syn = tau_mem = 2 (decays 0.5), w_in = r = 2: i' = i/2 + x, u = v/2 + i'."""
    def run(timing):
        op = CubaLIF(tau_syn=2 * ONE, tau_mem=2 * ONE, r=2 * ONE, v_leak=ZERO, v_threshold=ONE, w_in=2 * ONE,
                     sem=Semantics(dt=1.0, reset="zero", reset_timing=timing))
        return snnir.run(single(op), np.array([1.0, 1.0, 0.0, 0.0]).reshape(-1, 1, 1), record=True)

    out = run("next_after_input")
    np.testing.assert_array_equal(out["y"][:, 0, 0], [0, 1, 0, 0])
    np.testing.assert_allclose(out["n.i"][:, 0, 0], [1.0, 1.5, 0.75, 0.375], rtol=1e-12)
    np.testing.assert_allclose(out["n.v"][:, 0, 0], [1.0, 2.0, 0.0, 0.375], rtol=1e-12)
    np.testing.assert_allclose(run("next")["n.v"][:, 0, 0], [1.0, 2.0, 0.75, 0.75], rtol=1e-12)


def test_lif_hand_computed_with_v_reset_and_leak():
    """dt = 1, tau = 2: u = v_leak + (v - v_leak)/2 + x/2 (r = 1), then set to v_reset after a spike."""
    op = LIF(tau=2 * ONE, r=ONE, v_leak=np.array(0.2), v_threshold=ONE, v_reset=np.array(-0.5),
             sem=Semantics(dt=1.0, reset="zero", reset_timing="next_after_input", threshold_compare="ge"))
    out = snnir.run(single(op), np.array([1.8, 1.0, 1.0]).reshape(-1, 1, 1), record=True)
    # t0: 0.2 - 0.1 + 0.9 = 1.0 (>= thr: spike); t1: reset -> -0.5; t2: 0.2 - 0.35 + 0.5 = 0.35
    np.testing.assert_array_equal(out["y"][:, 0, 0], [1, 0, 0])
    np.testing.assert_allclose(out["n.v"][:, 0, 0], [1.0, -0.5, 0.35], rtol=1e-12)


def test_state_names_and_printing():
    sem = Semantics(reset_timing="next_after_input")
    assert LIF(tau=ONE, r=ONE, v_leak=ZERO, v_threshold=ONE, sem=sem).state_names == ("v", "z")
    assert CubaLIF(tau_syn=ONE, tau_mem=ONE, r=ONE, v_leak=ZERO, v_threshold=ONE, sem=sem).state_names == (
        "i", "v", "z")
    assert LI(tau=ONE, r=ONE, v_leak=ZERO, sem=sem).state_names == ("v",)
    assert "reset=zero@next_after_input" in format_semantics(sem)


def _random_graph(cls, rng, sem) -> Graph:
    n = 4
    values = {"tau": rng.uniform(3e-3, 2e-2, n), "tau_syn": rng.uniform(3e-3, 1e-2, n),
              "tau_mem": rng.uniform(3e-3, 2e-2, n), "v_leak": rng.normal(0, 0.05, n),
              "v_threshold": rng.uniform(0.05, 0.2, n), "v_reset": rng.normal(0, 0.02, n),
              "w_in": rng.uniform(0.5, 2, n), "r": rng.uniform(20, 60, n) if cls is IF else rng.uniform(0.5, 2, n)}
    neuron = cls(**{k: v for k, v in values.items() if k in cls.param_names()}, sem=sem)
    nodes = {"in": Input((3,)), "fc": Linear(weight=rng.normal(0, 0.6, (n, 3))), "cell": neuron,
             "rec": Linear(weight=rng.normal(0, 0.3, (n, n))), "out": Output()}
    edges = (("in", "fc"), ("fc", "cell"), ("cell", "out"), ("cell", "rec"), ("rec", "cell"))
    return Graph(nodes, edges)


CASES = [
    (cls, Semantics(dt=1e-3, reset=reset, reset_timing="next_after_input", discretisation=disc, **extra))
    for cls in (IF, LIF, CubaLIF)
    for reset, disc, extra in (
        ("zero", "euler", {}),
        ("subtract", "exp", {"threshold_compare": "ge", "current_order": "voltage_first"}),
        ("zero", "exp", {"threshold_compare": "ge", "spike_mode": "multi"}),
    )
]


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("cls,sem", CASES, ids=lambda c: getattr(c, "__name__", None) or f"{c.reset}-{c.spike_mode}")
def test_torch_target_matches_reference(cls, sem, fast):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    graph = _random_graph(cls, rng, sem)
    x = rng.normal(0.3, 2.0, (60, 3, 3))
    ref = snnir.run(graph, x, record=True)
    assert 0 < ref["out"].mean() and ref["cell.z"].any(), "the input should make the neurons spike"
    module = snnir.compile(graph, target="torch", dtype=torch.float64, fast=fast)
    with torch.no_grad():
        out, traces = module(torch.as_tensor(x), record=True)
    np.testing.assert_array_equal(out.numpy(), ref["out"])
    for key in ("cell.v", "cell.z"):
        np.testing.assert_allclose(traces[key].numpy(), ref[key], rtol=0, atol=1e-9, err_msg=key)


def test_torch_target_gradients_flow():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    graph = _random_graph(CubaLIF, rng, Semantics(dt=1e-3, reset="zero", reset_timing="next_after_input"))
    module = snnir.compile(graph, target="torch", dtype=torch.float64)
    x = torch.tensor(rng.normal(0.3, 2.0, (30, 2, 3)), dtype=torch.float64, requires_grad=True)
    module(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_nir_file_round_trip(tmp_path):
    sem = Semantics(dt=1e-3, reset="zero", reset_timing="next_after_input")
    graph = _random_graph(LIF, np.random.default_rng(1), sem)
    snnir.write(graph, tmp_path / "g.nir")
    back = snnir.read(tmp_path / "g.nir")
    assert back.nodes["cell"].sem == sem
    x = np.random.default_rng(2).normal(0.3, 2.0, (40, 2, 3))
    np.testing.assert_array_equal(snnir.run(back, x)["out"], snnir.run(graph, x)["out"])


def test_nn_module_accepts_the_timing():
    pytest.importorskip("torch")
    from snnir import nn

    layer = nn.LIF(tau=2e-3, v_threshold=0.5, dt=1e-3, reset="zero", reset_timing="next_after_input")
    assert layer.to_op().sem.reset_timing == "next_after_input"
