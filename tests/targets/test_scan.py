"""The fast sequence kernel against the reference interpreter (forward) and
against plain autograd through an unrolled per-step implementation (backward)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import snnir
from snnir.errors import SnnirError
from snnir.ir import Graph, Semantics
from snnir.ir.ops import IF, LI, LIF, CubaLI, CubaLIF, I, Input, Linear, Output
from snnir.targets.torch.scan import neuron_sequence
from snnir.targets.torch.surrogate import DEFAULT_SLOPES, Surrogate

T, B, N = 20, 3, 4
SURROGATES = tuple(DEFAULT_SLOPES)
SPIKE_OPTIONS = (("gt", "single"), ("ge", "single"), ("ge", "multi"))


def _semantics_cases():
    """Every semantics option that applies to each op; surrogates rotate."""
    cases = []
    for cls in (I, LI, CubaLI, IF, LIF, CubaLIF):
        spiking, cuba = cls.spiking, cls.has_current
        for disc, reset, timing, (cmp, mode), order in itertools.product(
            ("euler", "exp"),
            ("zero", "subtract", "none") if spiking else ("zero",),
            ("same", "next", "next_after_input") if spiking else ("same",),
            SPIKE_OPTIONS if spiking else SPIKE_OPTIONS[:1],
            ("current_first", "voltage_first") if cuba else ("current_first",),
        ):
            sem = Semantics(
                discretisation=disc, reset=reset, reset_timing=timing,
                threshold_compare=cmp, spike_mode=mode, current_order=order,
            )
            cases.append((cls, sem, SURROGATES[len(cases) % len(SURROGATES)]))
    return cases


CASES = _semantics_cases()
IDS = [
    f"{c.__name__}-{s.discretisation}-{s.reset}-{s.reset_timing}-{s.threshold_compare}-{s.spike_mode}-"
    f"{s.current_order}-{g}"
    for c, s, g in CASES
]


def _random_op(cls, sem, rng):
    u = lambda lo, hi: rng.uniform(lo, hi, N)  # noqa: E731
    fields = {
        "tau": u(2e-4, 2e-3), "tau_syn": u(2e-4, 1e-3), "tau_mem": u(2e-4, 2e-3),
        "v_leak": u(-0.2, 0.2), "v_threshold": u(0.5, 1.5), "v_reset": u(-0.3, 0.1), "w_in": u(0.5, 2.0),
    }
    fields["r"] = u(0.5, 2.0) * (1e4 if cls in (I, IF) else 5.0)
    names = set(cls.__dataclass_fields__) - {"sem", "metadata", "trainable"}
    return cls(**{k: v for k, v in fields.items() if k in names}, sem=sem)


def _inputs(rng, multi):
    scale = 3.0 if multi else 1.0
    return rng.normal(0.4, 1.0, (T, B, N)) * scale


def _torch_params(op):
    return {k: torch.tensor(np.asarray(v), dtype=torch.float64, requires_grad=True) for k, v in op.params().items()}


# --- the unrolled reference: autograd through one step at a time ----------------
def _unrolled(op, P, x, state, surrogate, detach_reset=False):
    sem = op.sem

    def decay(tau):
        if sem.discretisation == "euler":
            b = tau.new_tensor(sem.dt) / tau  # a true division, as the reference's
            return 1 - b, b
        a = torch.exp(tau.new_tensor(-sem.dt) / tau)
        return a, 1 - a

    def spike(u):
        thr = P["v_threshold"]
        if sem.spike_mode == "multi":
            h = surrogate.spike(u - thr, inclusive=True)
            return h + (torch.clamp(torch.floor(u / thr), min=0) - h).detach()
        return surrogate.spike(u - thr, inclusive=sem.threshold_compare == "ge")

    def reset(u, z):
        if sem.reset == "zero":
            return torch.where(z > 0, P["v_reset"], u)
        if sem.reset == "subtract":
            return u - (z.detach() if detach_reset else z) * P["v_threshold"]
        return u

    st = dict(state)
    outs = []
    for t in range(x.shape[0]):
        if isinstance(op, (I, IF)):
            a, b, v_leak = 1.0, sem.dt, 0.0
            drive_in = x[t]
            gain = b * P["r"]
        elif isinstance(op, (LI, LIF)):
            (a, b), v_leak = decay(P["tau"]), P["v_leak"]
            drive_in, gain = x[t], b * P["r"]
        else:
            (a_s, b_s), (a, b), v_leak = decay(P["tau_syn"]), decay(P["tau_mem"]), P["v_leak"]
            i_new = a_s * st["i"] + b_s * P["w_in"] * x[t]
            drive_in = i_new if sem.current_order == "current_first" else st["i"]
            st["i"] = i_new
            gain = b * P["r"]
        leaked = v_leak + a * (st["v"] - v_leak)
        drive = gain * drive_in
        if not op.spiking:
            st["v"] = leaked + drive
            outs.append(st["v"])
        elif sem.reset_timing == "next":
            u = reset(leaked, st["z"]) + drive
            st["z"] = spike(u)
            st["v"] = u
            outs.append(st["z"])
        elif sem.reset_timing == "next_after_input":
            u = reset(leaked + drive, st["z"])
            st["z"] = spike(u)
            st["v"] = u
            outs.append(st["z"])
        else:
            u = leaked + drive
            z = spike(u)
            st["v"] = reset(u, z)
            outs.append(z)
    return torch.stack(outs), st


def _graph(op):
    return Graph.sequential(("x", Input((N,))), ("n", op), ("y", Output()))


@pytest.mark.parametrize(("cls", "sem", "surrogate"), CASES, ids=IDS)
def test_forward_matches_reference_and_backward_matches_unrolled(cls, sem, surrogate):
    rng = np.random.default_rng(abs(hash(IDS[CASES.index((cls, sem, surrogate))])) % 2**32)
    op = _random_op(cls, sem, rng)
    x_np = _inputs(rng, sem.spike_mode == "multi")

    # forward: spikes identical, membranes to 1e-6 relative, vs snnir.run
    ref = snnir.run(_graph(op), x_np, record=True)
    out, final, traces = neuron_sequence(op, {}, torch.from_numpy(x_np), None, Surrogate(surrogate), record=True)
    if op.spiking:
        np.testing.assert_array_equal(out.numpy(), ref["y"])
    else:
        np.testing.assert_allclose(out.numpy(), ref["y"], rtol=1e-6, atol=1e-12)
    for name in op.state_names:
        np.testing.assert_allclose(traces[name].numpy(), ref[f"n.{name}"], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(final[name].numpy(), ref[f"n.{name}"][-1], rtol=1e-6, atol=1e-12)

    # backward: every gradient equals autograd through the unrolled steps
    sg = Surrogate(surrogate)
    P = _torch_params(op)
    x = torch.from_numpy(x_np).requires_grad_(True)
    state = {s: torch.from_numpy(rng.normal(0, 0.3, (B, N))).requires_grad_(True) for s in op.state_names}
    if "z" in state:
        state["z"] = (state["z"].detach() > 0).double().requires_grad_(True)
    w_out = torch.from_numpy(rng.normal(size=(T, B, N)))
    w_state = {s: torch.from_numpy(rng.normal(size=(B, N))) for s in op.state_names}

    def loss(out, final):
        return (out * w_out).sum() + sum((final[s] * w_state[s]).sum() for s in op.state_names)

    got_out, got_final, _ = neuron_sequence(op, P, x, state, sg)
    want_out, want_final = _unrolled(op, P, x, state, sg)
    torch.testing.assert_close(got_out, want_out, rtol=0, atol=0)
    leaves = [x, *state.values(), *P.values()]
    got = torch.autograd.grad(loss(got_out, got_final), leaves, allow_unused=True)
    want = torch.autograd.grad(loss(want_out, want_final), leaves, allow_unused=True)
    names = ["x", *state, *P]
    for name, g, w in zip(names, got, want):
        w = torch.zeros_like(g) if w is None and g is not None else w
        g = torch.zeros_like(w) if g is None and w is not None else g
        torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-10, msg=lambda m: f"grad of {name}: {m}")


@pytest.mark.parametrize("reset_timing", ["same", "next"])
def test_detach_reset_matches_unrolled_with_detached_reset(reset_timing):
    rng = np.random.default_rng(1)
    op = _random_op(LIF, Semantics(reset="subtract", reset_timing=reset_timing), rng)
    sg, P = Surrogate("arctan"), _torch_params(op)
    x = torch.from_numpy(_inputs(rng, False)).requires_grad_(True)
    got, _, _ = neuron_sequence(op, P, x, None, sg, detach_reset=True)
    want, _ = _unrolled(op, P, x, {s: torch.zeros(B, N, dtype=torch.float64) for s in op.state_names}, sg, True)
    w = torch.from_numpy(rng.normal(size=(T, B, N)))
    leaves = [x, *(v for k, v in P.items() if k != "v_reset")]
    for g, e in zip(torch.autograd.grad((got * w).sum(), leaves), torch.autograd.grad((want * w).sum(), leaves)):
        torch.testing.assert_close(g, e, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("cls", [LIF, CubaLIF, LI])
def test_static_input_equals_expanded_input(cls):
    rng = np.random.default_rng(2)
    op = _random_op(cls, Semantics(reset="subtract", reset_timing="next"), rng)
    P = _torch_params(op)
    x = torch.from_numpy(rng.normal(0.4, 1.0, (B, N))).requires_grad_(True)
    w = torch.from_numpy(rng.normal(size=(T, B, N)))
    held, _, _ = neuron_sequence(op, P, x, None, steps=T)
    expanded, _, _ = neuron_sequence(op, P, x.expand(T, B, N), None)
    torch.testing.assert_close(held, expanded, rtol=0, atol=0)
    leaves = [x, *(v for k, v in P.items() if k != "v_reset")]
    got = torch.autograd.grad((held * w).sum(), leaves)
    want = torch.autograd.grad((expanded * w).sum(), leaves)
    for g, e in zip(got, want):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", [LI, LIF])
def test_unit_gain_as_snntorch_maps_it(cls):
    """snnTorch's Leaky maps to tau = dt / (1 - beta), r = tau / dt: input gain exactly 1."""
    rng = np.random.default_rng(4)
    dt, beta = 1e-4, 0.9
    tau = dt / (1 - beta)
    fields = {"tau": tau, "r": tau / dt, "v_leak": 0.0}
    if cls is LIF:
        fields["v_threshold"] = 1.0
    op = cls(**fields, sem=Semantics(dt=dt, reset="subtract", reset_timing="next"))
    P = {k: torch.tensor(np.asarray(v), dtype=torch.float64) for k, v in op.params().items()}
    x = torch.from_numpy(_inputs(rng, False)).requires_grad_(True)
    state = {s: torch.zeros(B, N, dtype=torch.float64) for s in op.state_names}
    got, _, _ = neuron_sequence(op, P, x, None, Surrogate("arctan"))
    want, _ = _unrolled(op, P, x, state, Surrogate("arctan"))
    w = torch.from_numpy(rng.normal(size=(T, B, N)))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    (g,) = torch.autograd.grad((got * w).sum(), [x])
    (e,) = torch.autograd.grad((want * w).sum(), [x])
    torch.testing.assert_close(g, e, rtol=1e-8, atol=1e-10)


def test_no_grad_path_and_float32_match():
    rng = np.random.default_rng(3)
    op = _random_op(LIF, Semantics(reset="subtract", reset_timing="next"), rng)
    x = torch.from_numpy(_inputs(rng, False)).float()
    P = {k: v.float() for k, v in _torch_params(op).items()}
    with torch.no_grad():
        fast, _, _ = neuron_sequence(op, P, x, None)
    tracked, _, _ = neuron_sequence(op, P, x, None)
    assert tracked.requires_grad and not fast.requires_grad
    torch.testing.assert_close(fast, tracked.detach(), rtol=0, atol=0)


def test_record_while_training_and_repeated_backward():
    rng = np.random.default_rng(5)
    op = _random_op(CubaLIF, Semantics(reset="zero", reset_timing="next"), rng)
    P = _torch_params(op)
    x = torch.from_numpy(_inputs(rng, False)).requires_grad_(True)
    out, final, traces = neuron_sequence(op, P, x, None, record=True)
    assert set(traces) == set(op.state_names) and not traces["v"].requires_grad
    torch.testing.assert_close(traces["v"][-1], final["v"].detach(), rtol=0, atol=0)
    loss = (out * torch.from_numpy(rng.normal(size=(T, B, N)))).sum() + final["v"].sum()
    first = torch.autograd.grad(loss, [x, P["tau_mem"]], retain_graph=True)
    second = torch.autograd.grad(loss, [x, P["tau_mem"]])
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_bad_inputs_raise_snnir_errors():
    op = LIF(tau=np.ones(N) * 1e-3, r=np.ones(N), v_leak=np.zeros(N), v_threshold=np.ones(N))
    x = torch.zeros(T, B, N)
    with pytest.raises(SnnirError, match="no parameters"):
        neuron_sequence(op, {"beta": torch.ones(())}, x, None)
    with pytest.raises(SnnirError, match="no states"):
        neuron_sequence(op, {}, x, {"q": torch.zeros(B, N)})
    with pytest.raises(SnnirError, match="shape"):
        neuron_sequence(op, {}, x, {"v": torch.zeros(B, N + 1)})
    with pytest.raises(SnnirError, match="broadcast"):
        neuron_sequence(op, {}, torch.zeros(T, B, N + 1), None)
    with pytest.raises(SnnirError, match="neuron ops"):
        neuron_sequence(Linear(weight=np.ones((N, N))), {}, x, None)
    with pytest.raises(SnnirError, match="floating"):
        neuron_sequence(op, {}, x.long(), None)


@pytest.mark.parametrize("static", [False, True], ids=["per-step", "held"])
@pytest.mark.parametrize(
    ("cls", "reset", "timing", "surrogate"),
    [(LIF, "subtract", "next", "arctan"), (LIF, "subtract", "same", "sigmoid"), (IF, "subtract", "next", "triangular"),
     (LIF, "none", "same", "straight_through"), (IF, "none", "next", "fast_sigmoid")],
)
def test_scalar_backward_equals_general_recursion(monkeypatch, cls, reset, timing, surrogate, static):
    """Uniform, untrained coefficients take the one-add-per-step backward (snnTorch's Leaky);
    its gradients equal the general recursion's, also for the held input's recompute."""
    from snnir.targets.torch import scan

    monkeypatch.setenv("SNNIR_NATIVE", "0")  # the Python loop, whatever the environment
    rng = np.random.default_rng(6)
    fields = {"tau": np.full(N, 1e-3), "r": np.full(N, 10.0), "v_leak": np.zeros(N), "v_threshold": np.full(N, 0.8)}
    if cls is IF:
        fields = {"r": np.full(N, 1e4), "v_threshold": np.full(N, 0.8)}
    op = cls(**fields, sem=Semantics(dt=1e-4, reset=reset, reset_timing=timing))
    shape = (B, N) if static else (T, B, N)
    x0 = torch.from_numpy(rng.normal(0.3, 0.5, shape))
    state0 = {s: torch.from_numpy(rng.normal(0, 0.3, (B, N))) for s in op.state_names}
    if "z" in state0:
        state0["z"] = (state0["z"] > 0).double()
    w_out, w_v = torch.from_numpy(rng.normal(size=(T, B, N))), torch.from_numpy(rng.normal(size=(B, N)))

    def grads():
        x = x0.clone().requires_grad_(True)
        v0 = state0["v"].clone().requires_grad_(True)
        out, final, _ = neuron_sequence(
            op, {}, x, dict(state0, v=v0), Surrogate(surrogate), steps=T if static else None, detach_reset=True
        )
        return torch.autograd.grad((out * w_out).sum() + (final["v"] * w_v).sum(), [x, v0])

    calls = []
    original = scan._linear_bptt
    monkeypatch.setattr(scan, "_linear_bptt", lambda *a: calls.append(1) or original(*a))
    fast = grads()
    assert calls, "the scalar backward was not taken"
    monkeypatch.setattr(scan, "_linear_backward_applies", lambda *a: False)
    general = grads()
    for f, g in zip(fast, general):
        torch.testing.assert_close(f, g, rtol=1e-10, atol=1e-12)
