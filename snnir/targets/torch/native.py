r"""A fused C++ CPU kernel for :func:`~snnir.targets.torch.scan.neuron_sequence`.

The kernel (``csrc/neuron_scan.cpp``) runs the same update, in the same
operation order, with the same hand-written BPTT as the Python loop in
:mod:`snnir.targets.torch.scan` (the specification), chunk by chunk of
elements with the state in local arrays, parallel over elements
(``at::parallel_for``). Outputs and final states equal the Python path's
bit for bit (float32 and float64), so float64 spikes equal ``snnir.run``'s;
gradients agree to rounding (1e-10 in float64).

Memory: for training it keeps only the input and initial state; the backward
recomputes each chunk's membranes (and currents) in a local buffer of
``T x 1024`` values per thread. The Python loop keeps a ``[T, B, ...]``
membrane tensor instead: the same size as a per-step input, but with a held
static input (``steps=T``) nothing of size T is kept at all. The backward is
once differentiable (no ``create_graph`` double backward).

It is compiled on first use with ``torch.utils.cpp_extension.load`` (needs a
C++ compiler and ninja; AVX2 code where torch reports AVX2/AVX512; cached in
torch's extensions directory, so only the first process pays the ~30-60 s
build, logged once at INFO) and used whenever :func:`supports` says so: CPU
tensors of float32 or float64, ``record=False``. Every neuron op, semantics
option, surrogate, parameter shape and parameter gradient of the Python path
is covered. It is opt-in: ``SNNIR_NATIVE=1`` enables it; if the build fails, one warning is
issued and the Python loop is used.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import warnings
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from snnir.ir.ops.neuron import Neuron
from snnir.targets.torch.bptt import _sum_to
from snnir.targets.torch.neuron_update import _COEFFS, _Config, _state

Tensor = torch.Tensor
log = logging.getLogger(__name__)

_CSRC = Path(__file__).parent / "csrc"
_RESETS = {"none": 0, "zero": 1, "subtract": 2}
_SURROGATES = {"fast_sigmoid": 0, "arctan": 1, "triangular": 2, "sigmoid": 3, "straight_through": 4}
_CONFIG_FIELDS = {
    "spiking", "has_current", "next_timing", "reset", "inclusive", "multi", "current_first", "detach_reset",
    "surrogate", "after_input",
}
_extension: dict[str, object] = {}  # kernel name -> the loaded extension, or None once tried


def enabled(choice: bool | None = None) -> bool:
    """Whether to use the native kernels: ``choice`` when given (``compile_torch(native=...)``),
    else True only when the environment sets ``SNNIR_NATIVE=1`` (opt-in: the first build
    compiles C++ for about 40-50 s here, and needs a compiler; see docs/performance.md for
    what it buys)."""
    return choice if choice is not None else os.environ.get("SNNIR_NATIVE", "0") == "1"


def extension(kernel: str = "neuron_scan"):
    """The compiled extension ``csrc/<kernel>.cpp`` (built on first call), or None if it
    cannot be built."""
    if kernel not in _extension:
        start = time.perf_counter()
        try:
            from torch.utils.cpp_extension import load

            # AVX2 only where torch itself found it (a separately cached build)
            avx2 = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
            module = load(
                name=f"snnir_{kernel}" + ("_avx2" if avx2 else ""),
                sources=[str(_CSRC / f"{kernel}.cpp")],
                extra_include_paths=[str(_CSRC)],
                extra_cflags=["-O3", "-fopenmp", "-ffp-contract=off"] + (["-mavx2"] if avx2 else []),
                extra_ldflags=["-fopenmp"],
            )
        except Exception as exc:  # no compiler, no ninja, build error: never fatal
            warnings.warn(
                f"snnir: the native kernel {kernel} could not be built ({type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}); "
                "using the Python loop",
                RuntimeWarning,
                stacklevel=3,
            )
            module = None
        else:
            elapsed = time.perf_counter() - start
            log.info("snnir native kernel %s ready in %.1f s (built, or loaded from cache)", kernel, elapsed)
        _extension[kernel] = module
    return _extension[kernel]


def supports(op: Neuron, cfg: _Config, x: Tensor, record: bool, choice: bool | None = None) -> bool:
    """Whether the native kernel runs this case (building it if needed); ``choice`` as for
    :func:`enabled`.

    Only the semantics it implements: a ``_Config`` flag added later and set turns it
    off until the kernel learns it.
    """
    return (
        enabled(choice)
        and not record
        and not any(getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in _CONFIG_FIELDS)
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and x.numel() > 0
        and cfg.surrogate.name in _SURROGATES
        and extension() is not None
    )


def _flags(cfg: _Config) -> list[int]:
    return [
        int(cfg.spiking), int(cfg.has_current), int(cfg.next_timing), int(cfg.inclusive), int(cfg.multi),
        int(cfg.current_first), int(cfg.detach_reset), _RESETS[cfg.reset], _SURROGATES[cfg.surrogate.name],
        int(cfg.after_input),
    ]


def _flat(t: Tensor | None, batch_shape, like: Tensor) -> Tensor:
    """``t`` as one value, or broadcast to the neuron shape ``batch_shape[1:]``, flat (empty for None)."""
    if t is None:
        return like.new_empty(0)
    if t.numel() == 1:
        return t.detach().reshape(1)
    return t.detach().expand(batch_shape[1:]).contiguous().view(-1)


def _forward(cfg: _Config, steps: int, static: bool, x: Tensor, v0: Tensor, i0: Tensor, z0: Tensor, coeffs):
    """The outputs (out, v, i, z) and the flattened inputs (x, v0, i0, z0, coefficients)."""
    batch_shape = v0.shape
    empty = v0.new_empty(0)
    flat = [_flat(c, batch_shape, v0) for c in coeffs]
    v_flat = v0.contiguous().view(-1)
    i_flat = i0.contiguous().view(-1) if cfg.has_current else empty
    z_flat = z0.contiguous().view(-1) if cfg.next_timing else empty
    x_flat = x.contiguous().view(-1) if static else x.contiguous().view(steps, -1)
    out, v_end, i_end, z_end = extension().forward(
        x_flat, v_flat, i_flat, z_flat, flat, steps, static, _flags(cfg), float(cfg.surrogate.slope)
    )
    dummy = torch.zeros((), dtype=x.dtype, device=x.device)
    outputs = (
        out.view((steps,) + tuple(batch_shape)),
        v_end.view(batch_shape),
        i_end.view(batch_shape) if cfg.has_current else dummy,
        z_end.view(batch_shape) if cfg.next_timing else dummy.clone(),
    )
    return outputs, (x_flat, v_flat, i_flat, z_flat, flat)


class _NativeSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cfg, steps, static, x, v0, i0, z0, *coeff_values):  # type: ignore[override]
        outputs, (x_flat, v_flat, i_flat, z_flat, flat) = _forward(cfg, steps, static, x, v0, i0, z0, coeff_values)
        ctx.cfg, ctx.steps, ctx.static, ctx.n_coeffs = cfg, steps, static, len(coeff_values)
        ctx.save_for_backward(x_flat, v_flat, i_flat, z_flat, *flat, *coeff_values)
        return outputs

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_v, g_i, g_z):  # type: ignore[override]
        cfg, steps, static = ctx.cfg, ctx.steps, ctx.static
        x_flat, v0, i0, z0, *rest = ctx.saved_tensors
        flat, coeff_values = rest[: ctx.n_coeffs], rest[ctx.n_coeffs :]
        batch_shape = g_out.shape[1:]
        empty = v0.new_empty(0)

        def state_grad(g: Tensor, present: bool) -> Tensor:
            return g.expand(batch_shape).contiguous().view(-1) if present else empty

        needed = [int(ctx.needs_input_grad[7 + k]) for k in range(len(_COEFFS))]
        g_x, g_v0, g_i0, g_z0, *acc = extension().backward(
            x_flat, v0, i0, z0, flat,
            g_out.reshape(steps, -1),  # a view where possible: a broadcast is read in place
            state_grad(g_v, True), state_grad(g_i, cfg.has_current),
            state_grad(g_z, cfg.next_timing), steps, static, _flags(cfg), float(cfg.surrogate.slope),
            needed, bool(ctx.needs_input_grad[3]),
        )
        g_coeffs = [
            _sum_to(a.view(batch_shape), coeff) if need else None
            for a, coeff, need in zip(acc, coeff_values, needed)
        ]
        shape_x = tuple(batch_shape) if static else (steps,) + tuple(batch_shape)
        return (
            None, None, None,
            g_x.view(shape_x) if ctx.needs_input_grad[3] else None,
            g_v0.view(batch_shape) if ctx.needs_input_grad[4] else None,
            g_i0.view(batch_shape) if cfg.has_current and ctx.needs_input_grad[5] else None,
            g_z0.view(batch_shape) if cfg.next_timing and ctx.needs_input_grad[6] else None,
            *g_coeffs,
        )


def neuron_sequence(cfg: _Config, c: dict, x: Tensor, steps: int, static: bool, init: dict, tracked: bool):
    """``(out, final_state, None)`` as :func:`scan.neuron_sequence` returns them (``record=False``)."""
    dummy = torch.zeros((), dtype=x.dtype, device=x.device)
    args = (cfg, steps, static, x, init["v"], init.get("i", dummy), init.get("z", dummy), *(c[n] for n in _COEFFS))
    if tracked:
        out, v_t, i_t, z_t = _NativeSequence.apply(*args)
    else:
        (out, v_t, i_t, z_t), _ = _forward(*args[:7], args[7:])
    return out, _state(cfg, v_t, i_t, z_t), None
