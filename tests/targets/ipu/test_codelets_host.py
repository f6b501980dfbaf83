"""The generated Poplar vertices' arithmetic, compiled with g++ on the host.

A harness of our own stubs poplar::Vertex/Input/Output/Vector, includes the
generated snnir_codelets.cpp (which includes snnir_neuron_math.hpp, as on the
IPU) and calls each vertex's ``compute()``. Forward: float32 against the
reference interpreter's float64 kernels (identical spikes; inputs resampled so
no membrane lies within 1e-4 of a spike boundary; 1e-5 relative on states).
Backward: against a float64 numpy BPTT step, itself checked against torch
autograd through snnir's surrogate spike (resets detached).
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch

from snnir.targets.ipu import codegen
from snnir.targets.ipu.kernels import SURROGATES, Kernel, coefficients, kernel_for
from snnir.targets.reference.kernels import STATEFUL
from snnir.targets.torch.surrogate import DEFAULT_SLOPES, Surrogate

from .helpers import neurons, semantics_cases

GXX = shutil.which("g++")
pytestmark = pytest.mark.skipif(GXX is None, reason="g++ is not installed: cannot compile the codelets on the host")

STUB = """#pragma once
#include <cstddef>
namespace poplar {
class Vertex {};
template <class T> struct Vector {
  T *data = nullptr;
  std::size_t n = 0;
  std::size_t size() const { return n; }
  T &operator[](std::size_t k) const { return data[k]; }
};
template <class V> struct Input : V {};
template <class V> struct Output : V {};
}  // namespace poplar
"""


def harness_source(vertices) -> str:
    cases = []
    for v in vertices:
        fields = list(v.inputs) + list(v.outputs)
        binds = " ".join(f"v.{f}.data = buf[{k}].data(); v.{f}.n = n;" for k, f in enumerate(fields))
        cases.append(
            f'  if (name == "{v.name}") {{ snnir::{v.name} v; {binds} v.compute(); '
            f"return {len(v.inputs)}; }}"
        )
    return f"""#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>
#include "snnir_codelets.cpp"

static int run(const std::string &name, std::vector<std::vector<float>> &buf, std::size_t n) {{
{chr(10).join(cases)}
  return -1;
}}

// harness VERTEX IN OUT: IN = uint32 n, uint32 fields, fields * n float32 (inputs, then
// zeroed outputs); OUT = the output fields' n float32 each.
int main(int argc, char **argv) {{
  if (argc != 4) return 2;
  FILE *in = std::fopen(argv[2], "rb");
  std::uint32_t n = 0, fields = 0;
  if (!in || std::fread(&n, 4, 1, in) != 1 || std::fread(&fields, 4, 1, in) != 1) return 3;
  std::vector<std::vector<float>> buf(fields, std::vector<float>(n));
  for (auto &b : buf) if (std::fread(b.data(), 4, n, in) != n) return 3;
  std::fclose(in);
  const int n_in = run(argv[1], buf, n);
  if (n_in < 0) return 4;
  FILE *out = std::fopen(argv[3], "wb");
  for (std::size_t k = n_in; k < fields; ++k) std::fwrite(buf[k].data(), 4, n, out);
  std::fclose(out);
  return 0;
}}
"""


class Harness:
    def __init__(self, directory, surrogate: str, kernels: list[Kernel]):
        self.dir = directory
        (directory / "poplar").mkdir()
        (directory / "poplar" / "Vertex.hpp").write_text(STUB)
        (directory / codegen.MATH_HEADER).write_text(codegen.math_header())
        (directory / codegen.CONFIG_HEADER).write_text(
            codegen.config_header(surrogate, DEFAULT_SLOPES[surrogate]))
        (directory / codegen.CODELETS).write_text(codegen.codelets(kernels))
        vertices = [v for k in kernels for v in codegen.vertices(k)] + list(codegen.SPIKE_VERTICES)
        (directory / "harness.cpp").write_text(harness_source(vertices))
        self.exe = directory / "harness"
        subprocess.run(
            [GXX, "-std=c++17", "-O1", "-Wall", "-Werror", "-Wno-unused-variable", "-I", str(directory),
             str(directory / "harness.cpp"), "-o", str(self.exe)],
            check=True, capture_output=True, text=True,
        )

    def __call__(self, vertex: codegen.Vertex, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = next(iter(inputs.values())).size
        data = [np.asarray(inputs[f], np.float32).reshape(-1) for f in vertex.inputs]
        data += [np.zeros(n, np.float32) for _ in vertex.outputs]
        header = np.array([n, len(data)], np.uint32).tobytes()
        (self.dir / "in.bin").write_bytes(header + b"".join(d.tobytes() for d in data))
        subprocess.run([str(self.exe), vertex.name, str(self.dir / "in.bin"), str(self.dir / "out.bin")], check=True)
        out = np.fromfile(self.dir / "out.bin", np.float32).reshape(len(vertex.outputs), n)
        return dict(zip(vertex.outputs, out.astype(np.float64)))


# --- float64 numpy definition of the fused step and its BPTT step -------------------------
def np_forward(k: Kernel, x, s, c):
    i_next = c["a_syn"] * s["i"] + c["g_syn"] * x if k.has_current else None
    d = (i_next if k.current_order == "current_first" else s["i"]) if k.has_current else x
    leaked = c["v_leak"] + c["a_mem"] * (s["v"] - c["v_leak"])
    drive = c["g_mem"] * d
    out = {"i_next": i_next} if k.has_current else {}
    if not k.spiking:
        out["v_next"] = out["y"] = leaked + drive
        return out, out["v_next"]
    if k.reset_timing == "next_after_input":
        u = np_reset(k, leaked + drive, s["z"], c)
    else:
        u = (np_reset(k, leaked, s["z"], c) if k.reset_timing == "next" else leaked) + drive
    z = np_spike(k, u, c["thr"])
    out["y"] = z
    if k.reset_timing in ("next", "next_after_input"):
        out["v_next"], out["z_next"] = u, z
    else:
        out["v_next"] = np_reset(k, u, z, c)
    return out, u


def np_spike(k, u, thr):
    if k.spike_mode == "multi":
        return np.maximum(np.floor(u / thr), 0.0)
    return (u >= thr if k.threshold_compare == "ge" else u > thr).astype(np.float64)


def np_reset(k, u, z, c):
    if k.reset == "zero":
        return np.where(z > 0, c["v_reset"], u)
    return u - z * c["thr"] if k.reset == "subtract" else u


def np_surrogate(name, x):
    k = DEFAULT_SLOPES[name]
    if name == "fast_sigmoid":
        return 1.0 / (k * np.abs(x) + 1.0) ** 2
    if name == "arctan":
        return (k / 2) / (1 + (np.pi / 2 * k * x) ** 2)
    if name == "sigmoid":
        s = 1 / (1 + np.exp(-k * x))
        return k * s * (1 - s)
    if name == "straight_through":
        return np.ones_like(x)
    return k * np.maximum(0.0, 1 - k * np.abs(x))


def np_backward(k: Kernel, surrogate, x, s, c, g):
    """Gradients of x and the states from g (grads of y and the next states); resets detached."""
    _, u = np_forward(k, x, s, c)
    d_reset = (lambda z: np.where(z > 0, 0.0, 1.0)) if k.reset == "zero" else (lambda z: np.ones_like(z))
    if not k.spiking:
        gu = g["y"] + g["v_next"]
        g_leaked = gu
    elif k.reset_timing == "next":
        gu = g["v_next"] + (g["y"] + g["z_next"]) * np_surrogate(surrogate, u - c["thr"])
        g_leaked = gu * d_reset(s["z"])
    elif k.reset_timing == "next_after_input":
        gu = (g["v_next"] + (g["y"] + g["z_next"]) * np_surrogate(surrogate, u - c["thr"])) * d_reset(s["z"])
        g_leaked = gu
    else:
        z = np_spike(k, u, c["thr"])
        gu = g["v_next"] * d_reset(z) + g["y"] * np_surrogate(surrogate, u - c["thr"])
        g_leaked = gu
    out = {"v": g_leaked * c["a_mem"], "z": np.zeros_like(x)}
    gd = gu * c["g_mem"]
    if k.has_current:
        gi_next = g["i_next"] + (gd if k.current_order == "current_first" else 0)
        out["i"] = c["a_syn"] * gi_next + (0 if k.current_order == "current_first" else gd)
        out["x"] = c["g_syn"] * gi_next
    else:
        out["x"] = gd
    return out


def torch_backward(k: Kernel, surrogate, x, s, c, g):
    """The same gradients by autograd through snnir's surrogate spike (the torch target's)."""
    sg = Surrogate(surrogate)
    t = {n: torch.tensor(v, dtype=torch.float64, requires_grad=True) for n, v in {"x": x, **s}.items()}
    cc = {n: torch.tensor(v, dtype=torch.float64) for n, v in c.items()}

    def spike(u):
        h = sg.spike(u - cc["thr"], inclusive=k.threshold_compare == "ge")
        if k.spike_mode == "multi":
            return h + (torch.clamp(torch.floor(u / cc["thr"]), min=0) - h).detach()
        return h

    def reset(u, z):
        z = z.detach()
        if k.reset == "zero":
            return torch.where(z > 0, cc["v_reset"], u)
        return u - z * cc["thr"] if k.reset == "subtract" else u

    out = {}
    d = t["x"]
    if k.has_current:
        out["i_next"] = cc["a_syn"] * t["i"] + cc["g_syn"] * t["x"]
        d = out["i_next"] if k.current_order == "current_first" else t["i"]
    leaked = cc["v_leak"] + cc["a_mem"] * (t["v"] - cc["v_leak"])
    if not k.spiking:
        out["v_next"] = out["y"] = leaked + cc["g_mem"] * d
    elif k.reset_timing == "next":
        out["v_next"] = reset(leaked, t["z"]) + cc["g_mem"] * d
        out["y"] = out["z_next"] = spike(out["v_next"])
    elif k.reset_timing == "next_after_input":
        out["v_next"] = reset(leaked + cc["g_mem"] * d, t["z"])
        out["y"] = out["z_next"] = spike(out["v_next"])
    else:
        u = leaked + cc["g_mem"] * d
        out["y"] = spike(u)
        out["v_next"] = reset(u, out["y"])
    total = sum((out[n] * torch.tensor(g[n])).sum() for n in {n for n in out})
    total.backward()
    return {n: (v.grad.numpy() if v.grad is not None else np.zeros_like(x)) for n, v in t.items()}


def sample(k: Kernel, op, rng, n):
    """(coefficients as the device gets them, the same zero-filled in float64 exactly and as
    float32, x, state), every pre-spike membrane at least 1e-4 from a spike boundary."""
    exact = {name: np.broadcast_to(v, (n,)).copy() for name, v in coefficients(op).items()}
    device = {name: v.astype(np.float32).astype(np.float64) for name, v in exact.items()}
    zeros = dict.fromkeys(("a_syn", "g_syn", "thr", "v_reset"), np.zeros(n))
    full_exact, full_device = {**zeros, **exact}, {**zeros, **device}
    for _ in range(50):
        x = rng.normal(0.5, 2.0, n) * (1 / max(float(np.abs(exact["g_mem"]).max()), 1e-3))
        s = {"i": rng.normal(0, 1, n), "v": rng.normal(0.5, 0.6, n),
             "z": rng.integers(0, 2, n).astype(np.float64)}
        x = x.astype(np.float32).astype(np.float64)
        s = {a: b.astype(np.float32).astype(np.float64) for a, b in s.items()}
        if not k.spiking:
            return device, full_exact, full_device, x, s
        _, u = np_forward(k, x, s, full_exact)
        thr = full_exact["thr"]
        if k.spike_mode == "multi":
            near = np.abs(u / thr - np.round(u / thr)) * np.abs(thr) < 1e-4
        else:
            near = np.abs(u - thr) < 1e-4
        if not near.any():
            return device, full_exact, full_device, x, s
    raise AssertionError("could not draw inputs away from the threshold")


CASES = [(sem, name) for sem in semantics_cases() for name in ("i", "if", "li", "lif", "culi", "culif")]


@pytest.fixture(scope="module")
def harnesses(tmp_path_factory):
    ops = {}
    for index, (sem, name) in enumerate(CASES):
        op = neurons(np.random.default_rng(index), 64, sem)[name]
        ops.setdefault(kernel_for(op).name, (kernel_for(op), op))
    kernels = [k for k, _ in ops.values()]
    built = {s: Harness(tmp_path_factory.mktemp(s), s, kernels) for s in ("fast_sigmoid", "arctan")}
    return built, ops


def test_every_kernel_forward_matches_reference(harnesses):
    built, ops = harnesses
    assert len(ops) >= 40  # distinct specialisations covered
    harness = built["fast_sigmoid"]
    rng = np.random.default_rng(0)
    for kernel, op in ops.values():
        c, full, _, x, s = sample(kernel, op, rng, 64)
        fwd, _ = codegen.vertices(kernel)
        got = harness(fwd, {"x": x, **s, **c})
        state = {name: s[name] for name in kernel.state_names}
        want_y, want_state = STATEFUL[type(op)](op, x[None], {n: v[None] for n, v in state.items()})
        mine, _ = np_forward(kernel, x, s, full)
        np.testing.assert_allclose(mine["y"], want_y[0], rtol=1e-12, atol=1e-12, err_msg=kernel.name)
        if kernel.spiking:
            assert np.array_equal(got["y"], want_y[0]), kernel.name
            assert 0 < got["y"].sum(), f"{kernel.name}: the sample should spike somewhere"
        else:
            np.testing.assert_allclose(got["y"], want_y[0], rtol=1e-5, atol=1e-5, err_msg=kernel.name)
        for name in kernel.state_names:
            np.testing.assert_allclose(got[f"{name}_next"], want_state[name][0], rtol=1e-5, atol=1e-5,
                                       err_msg=f"{kernel.name}.{name}")


@pytest.mark.parametrize("surrogate", ["fast_sigmoid", "arctan"])
def test_every_kernel_backward_matches_numpy_bptt(harnesses, surrogate):
    built, ops = harnesses
    harness = built[surrogate]
    rng = np.random.default_rng(1)
    for kernel, op in ops.values():
        c, _, full, x, s = sample(kernel, op, rng, 64)
        g = {o: rng.normal(0, 1, 64).astype(np.float32).astype(np.float64) for o in kernel.output_names}
        g_full = {"i_next": np.zeros(64), "z_next": np.zeros(64), **g}
        want = np_backward(kernel, surrogate, x, s, full, g_full)
        check = torch_backward(kernel, surrogate, x, s, full, g_full)
        for name in ("x",) + kernel.state_names:
            np.testing.assert_allclose(want[name], check[name], rtol=1e-10, atol=1e-10,
                                       err_msg=f"numpy vs autograd {kernel.name} d{name}")
        _, bwd = codegen.vertices(kernel)
        got = harness(bwd, {"x": x, **s, **c, **{f"grad_{o}": v for o, v in g.items()}})
        for name in ("x",) + kernel.state_names:
            scale = max(1.0, float(np.abs(want[name]).max()))
            np.testing.assert_allclose(got[f"grad_{name}"], want[name], rtol=1e-4, atol=1e-5 * scale,
                                       err_msg=f"{kernel.name} d{name}")


@pytest.mark.parametrize("surrogate", ["fast_sigmoid", "arctan"])
def test_spike_vertices(harnesses, surrogate):
    built, _ = harnesses
    x = np.random.default_rng(2).normal(0, 1, 200)
    x = x[np.abs(x) > 1e-4]
    gy = np.random.default_rng(3).normal(0, 1, x.size)
    fwd, bwd = codegen.SPIKE_VERTICES
    assert np.array_equal(built[surrogate](fwd, {"x": x})["y"], (x > 0).astype(float))
    np.testing.assert_allclose(built[surrogate](bwd, {"x": x, "grad_y": gy})["grad_x"],
                               gy * np_surrogate(surrogate, x.astype(np.float32)), rtol=1e-5, atol=1e-6)


def test_every_surrogate_matches_the_torch_definition(tmp_path):
    """Each surrogate branch of the header against snnir.targets.torch.surrogate, via the Spike vertex."""
    assert set(SURROGATES) == set(DEFAULT_SLOPES)
    x = np.random.default_rng(4).normal(0, 0.5, 300)
    gy = np.random.default_rng(5).normal(0, 1, 300)
    for name in SURROGATES:
        (tmp_path / name).mkdir()
        harness = Harness(tmp_path / name, name, [])
        got = harness(codegen.SPIKE_VERTICES[1], {"x": x, "grad_y": gy})["grad_x"]
        x32 = torch.tensor(x.astype(np.float32), dtype=torch.float64)
        want = gy * Surrogate(name).grad(x32).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(np_surrogate(name, x), Surrogate(name).grad(torch.tensor(x)).numpy(),
                                   rtol=1e-12, err_msg=name)


def test_fed_back_kernels(harnesses, tmp_path):
    """Each kernel taking a fed-back drive ``fed`` (``Kernel.fed``): with ``x`` split into a drive
    and ``fed``, the reference's spikes and states (its ``fed``), and ``fed``'s gradient is ``x``'s,
    the unsplit kernel's."""
    import dataclasses

    _, ops = harnesses
    fed_ops = {dataclasses.replace(kernel, fed=True): (kernel, op) for kernel, op in ops.values()}
    harness = Harness(tmp_path, "fast_sigmoid", list(fed_ops))
    rng = np.random.default_rng(4)
    for fed_kernel, (kernel, op) in fed_ops.items():
        assert fed_kernel.input_names[:2] == ("x", "fed") and fed_kernel.name.endswith("_fed")
        c, _, full, x, s = sample(kernel, op, rng, 64)
        drive = (0.75 * x).astype(np.float32).astype(np.float64)
        fed = (x - drive).astype(np.float32).astype(np.float64)
        fwd, bwd = codegen.vertices(fed_kernel)
        got = harness(fwd, {"x": drive, "fed": fed, **s, **c})
        state = {name: s[name][None] for name in kernel.state_names}
        want_y, want_state = STATEFUL[type(op)](op, drive[None], state, fed[None])
        if kernel.spiking:
            assert np.array_equal(got["y"], want_y[0]), fed_kernel.name
        else:
            np.testing.assert_allclose(got["y"], want_y[0], rtol=1e-5, atol=1e-5, err_msg=fed_kernel.name)
        for name in kernel.state_names:
            np.testing.assert_allclose(got[f"{name}_next"], want_state[name][0], rtol=1e-5, atol=1e-5,
                                       err_msg=f"{fed_kernel.name}.{name}")
        g = {o: rng.normal(0, 1, 64).astype(np.float32).astype(np.float64) for o in kernel.output_names}
        want = np_backward(kernel, "fast_sigmoid", x, s, full, {"i_next": np.zeros(64), "z_next": np.zeros(64), **g})
        grads = harness(bwd, {"x": drive, "fed": fed, **s, **c, **{f"grad_{o}": v for o, v in g.items()}})
        assert np.array_equal(grads["grad_fed"], grads["grad_x"]), fed_kernel.name
        for name in ("x",) + kernel.state_names:
            scale = max(1.0, float(np.abs(want[name]).max()))
            np.testing.assert_allclose(grads[f"grad_{name}"], want[name], rtol=1e-4, atol=1e-5 * scale,
                                       err_msg=f"{fed_kernel.name} d{name}")
