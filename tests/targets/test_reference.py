"""The reference interpreter against closed forms, direct numpy loops and hand-computed sequences."""

from __future__ import annotations

import math

import numpy as np
import pytest

import snnir
from snnir.errors import SnnirError
from snnir.ir import (
    IF, LI, LIF, Affine, CubaLI, CubaLIF, Delay, Flatten, Graph, I, Input, Linear, Output, Scale, Semantics, Subgraph,
    Threshold,
)
from snnir.targets.reference import check_lowerings

ONE = np.ones(())
ZERO = np.zeros(())
RTOL = 1e-10


def single(op, shape) -> Graph:
    return Graph.sequential(("x", Input(shape)), ("n", op), ("y", Output()))


def test_every_registered_op_has_a_kernel():
    assert check_lowerings() == []


# --- LIF under constant input: spike times from the exact solution ---------------------------------
@pytest.mark.parametrize("discretisation", ["exp", "euler"])
def test_lif_spike_times_under_constant_input(discretisation):
    """v_k = v_inf (1 - a^k) from rest (exp: a = exp(-dt/tau), the exact solution sampled;
    euler: a = 1 - dt/tau, the geometric series). With reset to zero the neuron fires every
    k* = min{k : v_k > thr} steps, first at step index k* - 1."""
    tau, dt, thr, steps = 0.02, 1e-3, 1.0, 200
    v_inf = np.array([1.5, 2.0, 3.7, 0.9])  # r x; the last never reaches threshold
    sem = Semantics(dt=dt, discretisation=discretisation)
    op = LIF(tau=np.array(tau), r=ONE, v_leak=ZERO, v_threshold=np.array(thr), sem=sem)
    x = np.broadcast_to(v_inf, (steps, 1, 4))
    out = snnir.run(single(op, (4,)), x, record=True)
    a = math.exp(-dt / tau) if discretisation == "exp" else 1 - dt / tau
    for j, vi in enumerate(v_inf):
        spikes = np.flatnonzero(out["y"][:, 0, j])
        if vi <= thr:
            assert spikes.size == 0
            np.testing.assert_allclose(out["n.v"][:, 0, j], vi * (1 - a ** np.arange(1, steps + 1)), rtol=RTOL)
            continue
        k_star = math.floor(math.log(1 - thr / vi) / math.log(a)) + 1
        np.testing.assert_array_equal(spikes, np.arange(k_star - 1, steps, k_star))
        phase = np.arange(steps) % k_star + 1
        expected_v = np.where(phase == k_star, 0.0, vi * (1 - a ** phase))
        np.testing.assert_allclose(out["n.v"][:, 0, j], expected_v, rtol=RTOL, atol=1e-12)


def test_lif_exp_membrane_matches_continuous_solution_with_leak():
    """exp discretisation is exact for piecewise-constant input: v(t) = v_leak + r x (1 - e^{-t/tau})."""
    tau, dt, v_leak = 5e-3, 1e-4, -0.3
    op = LI(tau=np.array(tau), r=np.array(2.0), v_leak=np.array(v_leak), sem=Semantics(dt=dt, discretisation="exp"))
    x = np.full((100, 2, 1), 0.4)
    x[:, 1] = -0.4
    y = snnir.run(single(op, (1,)), x)["y"]
    t = dt * np.arange(1, 101)
    # from v = 0: v(t) = v_fix + (0 - v_fix) e^{-t/tau}, v_fix = v_leak + r x
    for b, xb in enumerate((0.4, -0.4)):
        v_fix = v_leak + 2.0 * xb
        np.testing.assert_allclose(y[:, b, 0], v_fix * (1 - np.exp(-t / tau)), rtol=1e-10)


# --- CubaLIF impulse response -------------------------------------------------------------------
@pytest.mark.parametrize("discretisation", ["exp", "euler"])
@pytest.mark.parametrize("order", ["current_first", "voltage_first"])
def test_cuba_impulse_response(discretisation, order):
    """Unit impulse at t = 0: i_t = b_s w a_s^t, and
    current_first: v_t = b_m b_s w r (a_m^{t+1} - a_s^{t+1}) / (a_m - a_s);
    voltage_first: v_t = b_m b_s w r (a_m^t - a_s^t) / (a_m - a_s)."""
    tau_syn, tau_mem, dt, r, w = 2e-3, 5e-3, 1e-4, 1.5, 0.8
    sem = Semantics(dt=dt, discretisation=discretisation, current_order=order)
    op = CubaLIF(
        tau_syn=np.array(tau_syn), tau_mem=np.array(tau_mem), r=np.array(r), v_leak=ZERO,
        v_threshold=np.array(1e9), w_in=np.array(w), sem=sem,
    )
    steps = 300
    x = np.zeros((steps, 1, 1))
    x[0] = 1.0
    out = snnir.run(single(op, (1,)), x, record=True)
    if discretisation == "exp":
        a_s, a_m = math.exp(-dt / tau_syn), math.exp(-dt / tau_mem)
    else:
        a_s, a_m = 1 - dt / tau_syn, 1 - dt / tau_mem
    b_s, b_m = 1 - a_s, 1 - a_m
    t = np.arange(steps)
    np.testing.assert_allclose(out["n.i"][:, 0, 0], b_s * w * a_s**t, rtol=RTOL)
    k = t + 1 if order == "current_first" else t
    expected_v = b_m * b_s * w * r * (a_m**k - a_s**k) / (a_m - a_s)
    np.testing.assert_allclose(out["n.v"][:, 0, 0], expected_v, rtol=1e-9, atol=1e-15)
    assert not out["y"].any()


# --- integrate-and-fire ---------------------------------------------------------------------------
@pytest.mark.parametrize("x_value", [0.37, 0.9, 2.45])
def test_if_spike_counts(x_value):
    """Per step v grows by dt r x. Subtract reset loses no charge: floor(T dt r x / thr) spikes, with
    single spikes while they keep up (dt r x <= thr) and with multi-spikes always; zero reset fires
    every floor(thr / (dt r x)) + 1 steps (no step lands exactly on the threshold here)."""
    steps, thr = 97, 1.0
    x = np.full((steps, 1, 1), x_value)
    charge_spikes = math.floor(steps * x_value / thr)
    multi = IF(r=ONE, v_threshold=np.array(thr), sem=Semantics(dt=1.0, reset="subtract", spike_mode="multi",
                                                               threshold_compare="ge"))
    assert snnir.run(single(multi, (1,)), x)["y"].sum() == charge_spikes
    if x_value <= thr:
        subtract = multi.replace(sem=Semantics(dt=1.0, reset="subtract"))
        assert snnir.run(single(subtract, (1,)), x)["y"].sum() == charge_spikes
    zero = IF(r=ONE, v_threshold=np.array(thr), sem=Semantics(dt=1.0, reset="zero"))
    period = math.floor(thr / x_value) + 1
    assert snnir.run(single(zero, (1,)), x)["y"].sum() == steps // period


# --- reset modes and timings on a hand-computed sequence ------------------------------------------
DRIVE = [0.6, 0.6, 0.6, 0.0, 1.5, 0.2]
SEQUENCES = {  # (reset, timing) -> (spikes, v after the step)
    ("zero", "same"): ([0, 1, 0, 0, 1, 0], [0.6, 0.0, 0.6, 0.6, 0.0, 0.2]),
    ("subtract", "same"): ([0, 1, 0, 0, 1, 1], [0.6, 0.2, 0.8, 0.8, 1.3, 0.5]),
    ("none", "same"): ([0, 1, 1, 1, 1, 1], [0.6, 1.2, 1.8, 1.8, 3.3, 3.5]),
    ("zero", "next"): ([0, 1, 0, 0, 1, 0], [0.6, 1.2, 0.6, 0.6, 2.1, 0.2]),
    ("subtract", "next"): ([0, 1, 0, 0, 1, 1], [0.6, 1.2, 0.8, 0.8, 2.3, 1.5]),
    ("none", "next"): ([0, 1, 1, 1, 1, 1], [0.6, 1.2, 1.8, 1.8, 3.3, 3.5]),
}


@pytest.mark.parametrize("reset, timing", sorted(SEQUENCES))
def test_reset_modes_and_timings(reset, timing):
    op = IF(r=ONE, v_threshold=ONE, sem=Semantics(dt=1.0, reset=reset, reset_timing=timing))
    out = snnir.run(single(op, (1,)), np.array(DRIVE).reshape(-1, 1, 1), record=True)
    spikes, v = SEQUENCES[reset, timing]
    np.testing.assert_array_equal(out["y"][:, 0, 0], spikes)
    np.testing.assert_allclose(out["n.v"][:, 0, 0], v, rtol=1e-12)
    assert set(out) == ({"y", "n.v", "n.z"} if timing == "next" else {"y", "n.v"})
    if timing == "next":
        np.testing.assert_array_equal(out["n.z"], out["y"])


def test_reset_to_nonzero_v_reset_and_threshold_compare():
    x = np.array([1.0, 0.0, 1.0]).reshape(-1, 1, 1)
    gt = IF(r=ONE, v_threshold=ONE, v_reset=np.array(-0.5), sem=Semantics(dt=1.0))
    out = snnir.run(single(gt, (1,)), x, record=True)
    np.testing.assert_array_equal(out["y"][:, 0, 0], [0, 0, 1])  # 1 > 1 is false; 2 > 1 fires
    np.testing.assert_allclose(out["n.v"][:, 0, 0], [1.0, 1.0, -0.5])
    ge = gt.replace(sem=Semantics(dt=1.0, threshold_compare="ge"))
    out = snnir.run(single(ge, (1,)), x, record=True)
    np.testing.assert_array_equal(out["y"][:, 0, 0], [1, 0, 0])  # 1 >= 1 fires; -0.5 + 1 does not
    np.testing.assert_allclose(out["n.v"][:, 0, 0], [-0.5, -0.5, 0.5])


@pytest.mark.parametrize("reset, spikes, v", [
    ("subtract", [2, 1, 0], [0.5, 0.2, 0.2]),
    ("zero", [2, 0, 0], [0.0, 0.7, 0.7]),
])
def test_multi_spike(reset, spikes, v):
    sem = Semantics(dt=1.0, reset=reset, spike_mode="multi", threshold_compare="ge")
    op = IF(r=ONE, v_threshold=ONE, sem=sem)
    out = snnir.run(single(op, (1,)), np.array([2.5, 0.7, 0.0]).reshape(-1, 1, 1), record=True)
    np.testing.assert_array_equal(out["y"][:, 0, 0], spikes)
    np.testing.assert_allclose(out["n.v"][:, 0, 0], v, rtol=1e-12)


def test_recurrent_edge_is_one_step_delayed():
    """x -> n -> s -> n: s reads n's spike of the previous step (zero at t = 0)."""
    n = IF(r=ONE, v_threshold=ONE, sem=Semantics(dt=1.0, reset="subtract"))
    graph = Graph(
        {"x": Input((1,)), "n": n, "s": Scale(scale=np.array(0.7)), "y": Output()},
        (("x", "n"), ("n", "s"), ("s", "n"), ("n", "y")),
    )
    x = np.array([1.5, 0, 0, 0]).reshape(-1, 1, 1)
    out = snnir.run(graph, x, record=True)
    np.testing.assert_array_equal(out["y"][:, 0, 0], [1, 1, 0, 0])
    np.testing.assert_allclose(out["n.v"][:, 0, 0], [0.5, 0.2, 0.9, 0.9])


def test_a_stateful_node_may_be_named_like_the_interpreters_bookkeeping():
    """The previous step's outputs are kept apart from the per-node states: a recurrent
    neuron named '__out__', nested too, runs and records as under any other name."""
    def graph(name: str) -> Graph:
        n = IF(r=ONE, v_threshold=ONE, sem=Semantics(dt=1.0, reset="subtract"))
        inner = Graph(
            {"i": Input((1,)), name: n, "s": Scale(scale=np.array(0.7)), "o": Output()},
            (("i", name), (name, "s"), ("s", name), (name, "o")),
        )
        return Graph.sequential(("x", Input((1,))), (name, Subgraph(inner)), ("y", Output()))

    x = np.array([1.5, 0, 0, 0]).reshape(-1, 1, 1)
    out = snnir.run(graph("__out__"), x, record=True)
    plain = snnir.run(graph("n"), x, record=True)
    np.testing.assert_array_equal(out["y"][:, 0, 0], [1, 1, 0, 0])
    np.testing.assert_array_equal(out["__out__.__out__.v"], plain["n.n.v"])


# --- delay ----------------------------------------------------------------------------------------
def test_delay_shifts_each_element():
    dt = 1e-3
    steps_per_element = np.array([0, 2, 5])
    op = Delay(delay=steps_per_element * dt, sem=Semantics(dt=dt))
    x = np.random.default_rng(0).normal(size=(12, 2, 3))
    out = snnir.run(single(op, (3,)), x, record=True)
    for j, n in enumerate(steps_per_element):
        expected = np.concatenate([np.zeros((n, 2)), x[: 12 - n, :, j]])
        np.testing.assert_array_equal(out["y"][:, :, j], expected)
    assert out["n.buffer"].shape == (12, 5, 2, 3)


def test_stateless_ops_elementwise():
    rng = np.random.default_rng(3)
    w, b = rng.normal(size=(4, 3)), rng.normal(size=4)
    x = rng.normal(size=(5, 2, 3))
    np.testing.assert_allclose(snnir.run(single(Affine(weight=w, bias=b), (3,)), x)["y"], x @ w.T + b)
    np.testing.assert_allclose(snnir.run(single(Linear(weight=w), (3,)), x)["y"], x @ w.T)
    np.testing.assert_allclose(snnir.run(single(Scale(scale=np.arange(3.0)), (3,)), x)["y"], x * np.arange(3.0))
    np.testing.assert_array_equal(snnir.run(single(Threshold(threshold=np.array(0.1)), (3,)), x)["y"], x > 0.1)
    x4 = rng.normal(size=(2, 1, 2, 3, 4))
    np.testing.assert_array_equal(snnir.run(single(Flatten(start_dim=0), (2, 3, 4)), x4)["y"], x4.reshape(2, 1, 24))


# --- the run API: records, several inputs, nested graphs, errors ----------------------------------
def two_input_graph() -> Graph:
    lif = LIF(tau=np.array(0.01), r=ONE, v_leak=ZERO, v_threshold=ONE, sem=Semantics(dt=1e-3, reset_timing="next"))
    return Graph(
        {"a": Input((2,)), "b": Input((2,)), "lif": lif, "y": Output(), "sum": Output()},
        (("a", "lif"), ("b", "lif"), ("lif", "y"), ("a", "sum"), ("b", "sum")),
    )


def test_several_inputs_as_a_dict_are_summed():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(6, 3, 2)), rng.normal(size=(6, 3, 2))
    out = snnir.run(two_input_graph(), {"a": a, "b": b}, record=True)
    np.testing.assert_allclose(out["sum"], a + b)
    assert set(out) == {"y", "sum", "lif.v", "lif.z"}
    assert all(v.shape == (6, 3, 2) and v.dtype == np.float64 for v in out.values())
    summed_first = Graph.sequential(("x", Input((2,))), ("lif", two_input_graph().nodes["lif"]), ("y", Output()))
    single_input = snnir.run(summed_first, a + b)
    np.testing.assert_array_equal(out["y"], single_input["y"])


def test_record_keys_of_nested_graphs_use_the_path():
    inner = Graph.sequential(
        ("i", Input((2,))),
        ("c", CubaLIF(tau_syn=ONE, tau_mem=ONE, r=ONE, v_leak=ZERO, v_threshold=ONE)),
        ("o", Output()),
    )
    outer = Graph.sequential(("x", Input((2,))), ("sub", Subgraph(inner)), ("y", Output()))
    out = snnir.run(outer, np.ones((3, 1, 2)), record=True)
    assert set(out) == {"y", "sub.c.i", "sub.c.v"}
    flat = snnir.run(inner, np.ones((3, 1, 2)))
    np.testing.assert_array_equal(out["y"], flat["o"])


def test_record_refuses_an_output_named_like_a_state_key():
    """Output 'n.v' and LIF 'n''s recorded membrane would share one key: one would be lost."""
    graph = Graph({"x": Input((1,)), "n": LIF(tau=ONE, r=ONE, v_leak=ZERO, v_threshold=ONE), "n.v": Output()},
                  (("x", "n"), ("n", "n.v")))
    with pytest.raises(SnnirError, match="also the key of state v of node 'n'") as info:
        snnir.run(graph, np.ones((2, 1, 1)), record=True)
    assert info.value.node == "n.v"
    assert set(snnir.run(graph, np.ones((2, 1, 1)))) == {"n.v"}


@pytest.mark.parametrize(
    "x, node, fragment",
    [
        ({"a": np.zeros((2, 1, 2))}, "b", "missing input"),
        ({"a": np.zeros((2, 1, 2)), "b": np.zeros((2, 1, 2)), "c": 0}, None, "no Input node named ['c']"),
        (np.zeros((2, 1, 2)), None, "pass a dict by Input name"),
        ({"a": np.zeros((2, 1, 3)), "b": np.zeros((2, 1, 2))}, "a", "input must have shape [T, B, 2]"),
        ({"a": np.zeros((2, 2)), "b": np.zeros((2, 1, 2))}, "a", "input must have shape"),
        ({"a": np.full((2, 1, 2), np.nan), "b": np.zeros((2, 1, 2))}, "a", "NaN or inf"),
        ({"a": np.zeros((2, 1, 2)), "b": np.zeros((3, 1, 2))}, "b", "disagree on [T, B]"),
        ({"a": [["x"]], "b": np.zeros((2, 1, 2))}, "a", "not numeric"),
    ],
)
def test_bad_inputs_raise_snnir_error(x, node, fragment):
    with pytest.raises(SnnirError) as info:
        snnir.run(two_input_graph(), x)
    assert fragment in str(info.value)
    assert info.value.node == node


def test_run_refuses_an_invalid_graph():
    graph = Graph.sequential(("x", Input((2,))), ("fc", Affine(weight=np.ones((2, 3)), bias=ZERO)), ("y", Output()))
    with pytest.raises(SnnirError) as info:
        snnir.run(graph, np.zeros((1, 1, 2)))
    assert info.value.node == "fc"


def test_zero_steps_give_empty_outputs():
    out = snnir.run(single(Scale(scale=ONE), (2,)), np.zeros((0, 4, 2)))
    assert out["y"].shape == (0, 4, 2)


# --- invariances on random networks ---------------------------------------------------------------
def random_network(seed: int) -> Graph:
    """Input -> Affine -> neuron -> Affine -> neuron -> Output, random weights and semantics."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, size=3)

    def sem(dt: float) -> Semantics:
        multi = rng.random() < 0.3
        return Semantics(
            dt=dt,
            discretisation=str(rng.choice(["euler", "exp"])),
            reset=str(rng.choice(["zero", "subtract", "none"])),
            reset_timing=str(rng.choice(["same", "next", "next_after_input"])),
            threshold_compare="ge" if multi or rng.random() < 0.5 else "gt",
            spike_mode="multi" if multi else "single",
            current_order=str(rng.choice(["current_first", "voltage_first"])),
        )

    def neuron(n: int):
        """Time constants of 2 to 20 steps and gains of order one per step, so that neurons fire."""
        dt = float(rng.choice([1e-4, 1e-3, 1.0]))
        tau = lambda: dt * rng.uniform(2, 20, size=n)  # noqa: E731
        r, thr = rng.uniform(0.5, 2, n), rng.uniform(0.2, 1.0, size=n)
        kind = rng.integers(3)
        if kind == 0:
            return LIF(tau=tau(), r=r, v_leak=rng.normal(0, 0.1, n), v_threshold=thr, sem=sem(dt))
        if kind == 1:
            return CubaLIF(tau_syn=tau(), tau_mem=tau(), r=r, v_leak=ZERO, v_threshold=thr, sem=sem(dt))
        return IF(r=0.3 * r / dt, v_threshold=thr, sem=sem(dt))

    def affine(n_in: int, n_out: int):
        return Affine(weight=rng.normal(0, 3, size=(n_out, n_in)), bias=rng.normal(0, 0.5, n_out))

    return Graph.sequential(
        ("x", Input((int(sizes[0]),))),
        ("fc1", affine(sizes[0], sizes[1])), ("n1", neuron(sizes[1])),
        ("fc2", affine(sizes[1], sizes[2])), ("n2", neuron(sizes[2])),
        ("y", Output()),
    )


def random_input(graph: Graph, steps: int, batch: int, seed: int) -> np.ndarray:
    shape = graph.nodes["x"].shape
    return np.random.default_rng(seed).uniform(0, 2, size=(steps, batch) + shape)


@pytest.mark.parametrize("seed", range(12))
def test_nesting_a_network_changes_nothing_but_state_paths(seed):
    graph = random_network(seed)
    x = random_input(graph, 40, 2, seed)
    flat = snnir.run(graph, x, record=True)
    outer = Graph.sequential(("x", Input(graph.nodes["x"].shape)), ("net", Subgraph(graph)), ("y", Output()))
    nested = snnir.run(outer, x, record=True)
    assert set(nested) == {"y"} | {f"net.{key}" for key in flat if key != "y"}
    for key, value in flat.items():
        np.testing.assert_array_equal(nested["y" if key == "y" else f"net.{key}"], value)


@pytest.mark.parametrize("seed", range(12))
def test_batch_samples_are_independent(seed):
    graph = random_network(seed)
    x = random_input(graph, 30, 3, seed)
    together = snnir.run(graph, x, record=True)
    for b in range(3):
        alone = snnir.run(graph, x[:, b : b + 1], record=True)
        np.testing.assert_array_equal(together["y"][:, b : b + 1], alone["y"])  # spikes: exact
        for key, value in alone.items():  # membranes: batched matmul may round differently
            np.testing.assert_allclose(together[key][:, b : b + 1], value, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("discretisation", ["euler", "exp"])
def test_lif_that_never_fires_has_the_li_membrane(discretisation):
    rng = np.random.default_rng(5)
    sem = Semantics(dt=1e-3, discretisation=discretisation)
    params = dict(tau=rng.uniform(5e-3, 2e-2, 4), r=rng.uniform(0.5, 2, 4), v_leak=rng.normal(0, 0.1, 4))
    x = rng.normal(size=(50, 2, 4))
    li = snnir.run(single(LI(**params, sem=sem), (4,)), x)["y"]
    lif = snnir.run(single(LIF(**params, v_threshold=np.array(1e9), sem=sem), (4,)), x, record=True)
    np.testing.assert_array_equal(lif["n.v"], li)
    assert not lif["y"].any()


def test_unfed_nested_input_port_contributes_zero():
    inner = Graph(
        {"a": Input((2,)), "b": Input((2,)), "s": Scale(scale=np.array(3.0)), "o": Output()},
        (("a", "s"), ("b", "s"), ("s", "o")),
    )
    outer = Graph({"x": Input((2,)), "sub": Subgraph(inner), "y": Output()}, (("x", "sub.a"), ("sub", "y")))
    x = np.random.default_rng(6).normal(size=(4, 1, 2))
    np.testing.assert_allclose(snnir.run(outer, x)["y"], 3 * x)


def test_integrator_sums_its_input():
    """I: v_t = dt r sum_{s <= t} x_s."""
    x = np.random.default_rng(7).normal(size=(20, 2, 3))
    op = I(r=np.array([1.0, 2.0, -0.5]), sem=Semantics(dt=1e-3))
    y = snnir.run(single(op, (3,)), x)["y"]
    np.testing.assert_allclose(y, 1e-3 * np.array([1.0, 2.0, -0.5]) * np.cumsum(x, axis=0), rtol=1e-12)


@pytest.mark.parametrize("order", ["current_first", "voltage_first"])
def test_cuba_li_is_cuba_lif_without_spikes(order):
    rng = np.random.default_rng(8)
    sem = Semantics(dt=1e-3, discretisation="exp", current_order=order)
    params = dict(tau_syn=rng.uniform(2e-3, 1e-2, 3), tau_mem=rng.uniform(5e-3, 2e-2, 3), r=ONE, v_leak=ZERO,
                  w_in=rng.uniform(0.5, 2, 3))
    x = rng.normal(size=(40, 2, 3))
    li = snnir.run(single(CubaLI(**params, sem=sem), (3,)), x, record=True)
    lif = snnir.run(single(CubaLIF(**params, v_threshold=np.array(1e9), sem=sem), (3,)), x, record=True)
    np.testing.assert_array_equal(li["y"], lif["n.v"])
    np.testing.assert_array_equal(li["n.i"], lif["n.i"])


def test_loop_through_a_delay_adds_the_loop_step():
    """Delay is stateful, so its edge back into its own loop is delayed like any other:
    x -> s -> d -> s feeds back after delay/dt + 1 steps."""
    graph = Graph(
        {"x": Input((1,)), "s": Scale(scale=ONE), "d": Delay(delay=np.array(2.0), sem=Semantics(dt=1.0)),
         "y": Output()},
        (("x", "s"), ("s", "d"), ("d", "s"), ("s", "y")),
    )
    x = np.zeros((8, 1, 1))
    x[0] = 1.0
    np.testing.assert_array_equal(snnir.run(graph, x)["y"][:, 0, 0], [1, 0, 0, 1, 0, 0, 1, 0])
