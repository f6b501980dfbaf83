"""The fused C++ neuron scan against the Python loop and the reference interpreter.

Forward: spikes and states identical to the Python path (float32 and float64)
and float64 spikes identical to ``snnir.run``. Backward: every gradient equal to
the Python path's to 1e-10 (float64). Skips when the kernel cannot be built.
"""

from __future__ import annotations

import dataclasses
import warnings
from unittest import mock

import numpy as np
import pytest
import torch

import snnir
from snnir.ir import Graph, Semantics
from snnir.ir.ops import LIF, CubaLIF, Input, Output
from snnir.targets.torch import native
from snnir.targets.torch.neuron_update import _config
from snnir.targets.torch.scan import neuron_sequence
from snnir.targets.torch.surrogate import Surrogate

from tests.targets.neuron_cases import (
    B, CASES, IDS, N, T, check_broadcast_parameters, random_arrays, random_op as _random_op,
)


@pytest.fixture(autouse=True)
def native_enabled(monkeypatch):
    """The suite runs the Python loop; these tests opt in (and opt out where they say so)."""
    monkeypatch.setenv("SNNIR_NATIVE", "1")


@pytest.fixture(scope="module")
def extension(native_kernels):
    """The neuron scan's extension (the kernels built once per session)."""
    return native_kernels.extension()


def _run_both(monkeypatch, op, params, x, state, **kwargs):
    """(native, python) results of ``neuron_sequence`` on the same inputs."""
    monkeypatch.setenv("SNNIR_NATIVE", "1")
    with mock.patch.object(native, "neuron_sequence", wraps=native.neuron_sequence) as spy:
        fast = neuron_sequence(op, params, x, state, **kwargs)
    assert spy.called, "the native kernel was not dispatched"
    monkeypatch.setenv("SNNIR_NATIVE", "0")
    slow = neuron_sequence(op, params, x, state, **kwargs)
    return fast, slow


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("cls", "sem", "surrogate", "per_neuron", "static", "detach"), CASES, ids=IDS)
def test_native_matches_python_and_reference(extension, monkeypatch, dtype, cls, sem, surrogate, per_neuron,
                                             static, detach):
    rng = np.random.default_rng(CASES.index((cls, sem, surrogate, per_neuron, static, detach)))
    op, x_np, state_np = random_arrays(cls, sem, rng, per_neuron, static)
    kwargs = dict(surrogate=Surrogate(surrogate), steps=T if static else None, detach_reset=detach)

    # forward (no grad): identical to the Python loop; float64 spikes identical to snnir.run
    x = torch.from_numpy(x_np).to(dtype)
    (out, final, _), (out_py, final_py, _) = _run_both(monkeypatch, op, {}, x, None, **kwargs)
    torch.testing.assert_close(out, out_py, rtol=0, atol=0)
    for name in op.state_names:
        torch.testing.assert_close(final[name], final_py[name], rtol=0, atol=0)
    if dtype == torch.float64:
        graph = Graph.sequential(("x", Input((N,))), ("n", op), ("y", Output()))
        ref = snnir.run(graph, np.broadcast_to(x_np, (T, B, N)) if static else x_np)["y"]
        if op.spiking:
            np.testing.assert_array_equal(out.numpy(), ref)
        else:
            np.testing.assert_allclose(out.numpy(), ref, rtol=1e-9, atol=1e-12)

    # backward: every gradient as the Python loop's
    params = {k: torch.tensor(np.asarray(v), dtype=dtype, requires_grad=True) for k, v in op.params().items()}
    x = torch.from_numpy(x_np).to(dtype).requires_grad_(True)
    state = {s: torch.from_numpy(v).to(dtype).requires_grad_(True) for s, v in state_np.items()}
    w_out = torch.from_numpy(rng.normal(size=(T, B, N))).to(dtype)
    w_state = {s: torch.from_numpy(rng.normal(size=(B, N))).to(dtype) for s in op.state_names}
    (out, final, _), (out_py, final_py, _) = _run_both(monkeypatch, op, params, x, state, **kwargs)
    torch.testing.assert_close(out, out_py, rtol=0, atol=0)
    leaves = [x, *state.values(), *params.values()]
    names = ["x", *state, *params]

    def grads(o, f):
        loss = (o * w_out).sum() + sum((f[s] * w_state[s]).sum() for s in op.state_names)
        return torch.autograd.grad(loss, leaves, allow_unused=True)

    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    for name, g, e in zip(names, grads(out, final), grads(out_py, final_py)):
        assert (g is None) == (e is None), name
        if g is not None:
            torch.testing.assert_close(g, e, **tol, msg=lambda m: f"grad of {name}: {m}")


def test_broadcast_parameters_and_multi_dim_neurons(extension, monkeypatch):
    """Parameters of shape [3] on neurons of shape [2, 3]: gradients summed back to [3]."""
    check_broadcast_parameters(lambda *args: _run_both(monkeypatch, *args), T)


def test_disabled_by_environment_and_record_use_python_loop(extension, monkeypatch):
    op = LIF(tau=1e-3, r=1.0, v_leak=0.0, v_threshold=1.0)
    x = torch.randn(T, B, N)
    with mock.patch.object(native, "neuron_sequence", wraps=native.neuron_sequence) as spy:
        monkeypatch.setenv("SNNIR_NATIVE", "0")
        neuron_sequence(op, {}, x, None)
        monkeypatch.setenv("SNNIR_NATIVE", "1")
        neuron_sequence(op, {}, x, None, record=True)
        neuron_sequence(op, {}, x.half(), None)
        assert not spy.called
        neuron_sequence(op, {}, x, None)
        assert spy.call_count == 1


def test_build_failure_warns_once_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv("SNNIR_NATIVE", "1")
    monkeypatch.setattr(native, "_extension", {})
    monkeypatch.setattr(native, "library_path", lambda kernel: tmp_path / f"{kernel}.so")  # not built
    op = LIF(tau=1e-3, r=1.0, v_leak=0.0, v_threshold=1.0)
    x = torch.randn(T, B, N)
    with mock.patch("torch.utils.cpp_extension.load", side_effect=RuntimeError("no compiler")) as load:
        with pytest.warns(RuntimeWarning, match="could not be built.*no compiler"):
            first, _, _ = neuron_sequence(op, {}, x, None)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            second, _, _ = neuron_sequence(op, {}, x, None)
    assert load.call_count == 1
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_repeated_backward_with_retain_graph(extension, monkeypatch):
    monkeypatch.setenv("SNNIR_NATIVE", "1")
    rng = np.random.default_rng(9)
    op = _random_op(CubaLIF, Semantics(reset="zero", reset_timing="next"), rng, per_neuron=True)
    params = {k: torch.tensor(np.asarray(v), requires_grad=True) for k, v in op.params().items()}
    x = torch.from_numpy(rng.normal(0.4, 1.0, (T, B, N))).requires_grad_(True)
    out, final, _ = neuron_sequence(op, params, x, None)
    loss = (out * torch.from_numpy(rng.normal(size=(T, B, N)))).sum() + final["v"].sum()
    first = torch.autograd.grad(loss, [x, params["tau_mem"]], retain_graph=True)
    second = torch.autograd.grad(loss, [x, params["tau_mem"]])
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_config_flags_it_does_not_know_use_python_loop(extension):
    op = LIF(tau=1e-3, r=1.0, v_leak=0.0, v_threshold=1.0)
    cfg = _config(op, Surrogate(), False)
    Later = dataclasses.make_dataclass("Later", [("later_flag", bool)], bases=(type(cfg),), frozen=True)
    x = torch.randn(T, B, N)
    common = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    assert native.supports(op, Later(**common, later_flag=False), x, record=False)
    assert not native.supports(op, Later(**common, later_flag=True), x, record=False)


@pytest.mark.parametrize("setting", [None, "auto"])
def test_unset_environment_uses_built_kernels_and_never_compiles(extension, monkeypatch, tmp_path, setting):
    """``SNNIR_NATIVE`` unset (or ``auto``): a built kernel is used; one not built is not
    compiled, and the Python loop runs; ``0`` and ``1`` decide outright."""
    if setting is None:
        monkeypatch.delenv("SNNIR_NATIVE")
    else:
        monkeypatch.setenv("SNNIR_NATIVE", setting)
    assert native.enabled() and native.enabled(kernel="neuron_scan")
    assert not native.enabled(False)
    monkeypatch.setattr(native, "_extension", {})
    monkeypatch.setattr(native, "library_path", lambda kernel: tmp_path / f"{kernel}.so")
    with mock.patch("torch.utils.cpp_extension.load", side_effect=AssertionError("compiled")):
        assert not native.enabled()
        op = LIF(tau=1e-3, r=1.0, v_leak=0.0, v_threshold=1.0)
        with mock.patch.object(native, "neuron_sequence") as spy:
            neuron_sequence(op, {}, torch.randn(T, B, N), None)
        assert not spy.called
    for value, expected in (("0", False), ("1", True)):
        monkeypatch.setenv("SNNIR_NATIVE", value)
        assert native.enabled() is expected


def test_a_built_library_is_imported_without_compiling(extension, monkeypatch):
    """A later process imports the library its sources name; it never reruns the compiler."""
    assert native.library_path("neuron_scan").exists()
    monkeypatch.setattr(native, "_extension", {})
    with mock.patch("torch.utils.cpp_extension.load", side_effect=AssertionError("compiled")):
        module = native.extension(build=False)
    assert module is not None and module.__name__ == native.library_name("neuron_scan")


def test_library_name_follows_the_sources(monkeypatch, tmp_path):
    """Changed kernel source, shared header or flags: another name, so an old build is never used."""
    monkeypatch.setattr(native, "_CSRC", tmp_path)
    (tmp_path / "neuron_scan.cpp").write_text("int a;")
    (tmp_path / "surrogates.h").write_text("int b;")
    names = []
    for edit in (None, ("neuron_scan.cpp", "int c;"), ("surrogates.h", "int d;")):
        if edit:
            (tmp_path / edit[0]).write_text(edit[1])
        native.library_name.cache_clear()
        names.append(native.library_name("neuron_scan"))
    native.library_name.cache_clear()
    assert len(set(names)) == 3 and all(n.startswith("snnir_neuron_scan_") for n in names)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("cls", "sem", "surrogate", "per_neuron", "static", "detach"), CASES, ids=IDS)
def test_fused_backward_without_parameter_gradients(extension, monkeypatch, dtype, cls, sem, surrogate,
                                                    per_neuron, static, detach):
    """Gradients of the input and states only (the kernel's fused backward where it applies),
    with a full output gradient and with broadcast ones (read in place, not copied)."""
    rng = np.random.default_rng(1000 + CASES.index((cls, sem, surrogate, per_neuron, static, detach)))
    op, x_np, state_np = random_arrays(cls, sem, rng, per_neuron, static)
    x = torch.from_numpy(x_np).to(dtype).requires_grad_(True)
    state = {s: torch.from_numpy(v).to(dtype).requires_grad_(True) for s, v in state_np.items()}
    kwargs = dict(surrogate=Surrogate(surrogate), steps=T if static else None, detach_reset=detach)
    (out, final, _), (out_py, final_py, _) = _run_both(monkeypatch, op, {}, x, state, **kwargs)
    torch.testing.assert_close(out, out_py, rtol=0, atol=0)
    leaves = [x, *state.values()]
    w_out = torch.from_numpy(rng.normal(size=(T, B, N))).to(dtype)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    losses = (  # output gradients: full, one value (a sum), and broadcast over steps
        lambda o, f: (o * w_out).sum() + f["v"].sum(), lambda o, f: o.sum(), lambda o, f: (o * w_out[0]).sum(),
    )
    for loss_of in losses:
        got = torch.autograd.grad(loss_of(out, final), leaves, retain_graph=True, allow_unused=True)
        want = torch.autograd.grad(loss_of(out_py, final_py), leaves, retain_graph=True, allow_unused=True)
        for g, e in zip(got, want):
            assert (g is None) == (e is None)
            if g is not None:
                torch.testing.assert_close(g, e, **tol)


def test_library_lives_under_torch_extensions_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    path = native.library_path("neuron_linear")
    assert path.is_relative_to(tmp_path) and path.name == native.library_name("neuron_linear") + ".so"


def test_unloadable_library_warns_and_falls_back(monkeypatch, tmp_path):
    """A damaged library in the cache (say, half written by another process) is not fatal."""
    monkeypatch.delenv("SNNIR_NATIVE")
    monkeypatch.setattr(native, "_extension", {})
    monkeypatch.setattr(native, "library_path", lambda kernel: tmp_path / f"{kernel}.so")
    (tmp_path / "neuron_scan.so").write_bytes(b"not a shared library")
    with pytest.warns(RuntimeWarning, match="could not be built or loaded"):
        assert not native.enabled()
    op = LIF(tau=1e-3, r=1.0, v_leak=0.0, v_threshold=1.0)
    with mock.patch.object(native, "neuron_sequence") as spy:
        neuron_sequence(op, {}, torch.randn(T, B, N), None)
    assert not spy.called


def test_unloadable_library_goes_through_the_build_when_building(monkeypatch, tmp_path):
    """``native=True`` (``build``): a library that does not load is handed to torch's build,
    which waits for another process's build of it and loads the result."""
    monkeypatch.setattr(native, "_extension", {})
    monkeypatch.setattr(native, "library_path", lambda kernel: tmp_path / f"{kernel}.so")
    (tmp_path / "neuron_scan.so").write_bytes(b"half written")
    built = object()
    with mock.patch.object(native, "_compile", return_value=built) as compile_:
        assert native.extension(build=True) is built
    compile_.assert_called_once()
