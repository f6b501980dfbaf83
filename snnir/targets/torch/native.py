r"""The C++ CPU kernels: the neuron scan of :func:`~snnir.targets.torch.scan.neuron_sequence`
(below), the neuron-then-Linear op (``neuron_linear.py``) and the recurrent component
(``recurrent.py``), all built on the update of ``csrc/neuron_step.h``.

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

Building: ``snnir native --build`` (run by ``make install``) or a first call with
``native=True`` compiles each kernel once with ``torch.utils.cpp_extension`` (needs a
C++ compiler and ninja; about 30-60 s a kernel; AVX2 code where torch reports
AVX2/AVX512). The library is named by a hash of its sources, flags and torch
version and kept in torch's extension cache, so a later process (from any checkout
of the same sources) imports it without compiling, and a changed source is never
served by an old library.

Choice (:func:`enabled`): ``native=True``/``False`` from ``compile_torch``, else
``SNNIR_NATIVE``: ``1`` builds where needed, ``0`` never uses the kernels, and unset
(or ``auto``) uses a kernel when it is already built and the Python loop otherwise,
so no library call ever starts a compile unasked. Every neuron op, semantics option,
surrogate, parameter shape and parameter gradient of the Python path is covered
(:func:`supports`: CPU tensors of float32 or float64, ``record=False``); if a build
fails, one warning is issued and the Python loop is used.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import importlib.util
import logging
import os
import sys
import time
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from snnir.errors import warn
from snnir.ir.ops.neuron import Neuron
from snnir.progress import progress
from snnir.targets.torch.bptt import _sum_to
from snnir.targets.torch.neuron_update import _COEFFS, _Config, _state

Tensor = torch.Tensor
log = logging.getLogger(__name__)

_CSRC = Path(__file__).parent / "csrc"
_RESETS = {"none": 0, "zero": 1, "subtract": 2}
_SURROGATES = {"fast_sigmoid": 0, "arctan": 1, "triangular": 2, "sigmoid": 3, "straight_through": 4}
_CONFIG_FIELDS = {
    "spiking", "has_current", "next_timing", "reset", "inclusive", "multi", "current_first", "detach_reset",
    "surrogate", "after_input", "input_first",  # input_first: the kernels derive it from after_input and reset
}
_extension: dict[str, object] = {}  # kernel name -> the loaded extension, or None once tried


#: the kernels, each ``csrc/<name>.cpp``
KERNELS = ("neuron_scan", "neuron_linear", "recurrent", "pool_scan")


def _cflags() -> list[str]:
    avx2 = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")  # only where torch found it
    # -ffp-contract=off: no multiply-add fusing (the reference's roundings); -fno-trapping-math
    # changes no value, it only lets GCC turn the spike compares' selects into vector blends
    # (without it some update loops ran scalar: 10x slower, docs/performance.md)
    return ["-O3", "-fopenmp", "-ffp-contract=off", "-fno-trapping-math"] + (["-mavx2"] if avx2 else [])


@functools.lru_cache(maxsize=None)
def library_name(kernel: str) -> str:
    """``snnir_<kernel>_<hash>``: the hash covers the kernel's source, the shared headers,
    the compiler flags and the torch version, so equal names mean interchangeable builds."""
    digest = hashlib.sha256()
    for path in [_CSRC / f"{kernel}.cpp", *sorted(_CSRC.glob("*.h"))]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(" ".join(_cflags()).encode() + torch.__version__.encode())
    return f"snnir_{kernel}_{digest.hexdigest()[:12]}"


def library_path(kernel: str) -> Path:
    """Where the built kernel lives: torch's extension cache (``TORCH_EXTENSIONS_DIR``)."""
    from torch.utils.cpp_extension import get_default_build_root

    name = library_name(kernel)
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
    suffix = ".pyd" if sys.platform == "win32" else ".so"  # what torch's builds are named
    return Path(root) / f"snnir-py{sys.version_info[0]}{sys.version_info[1]}" / name / f"{name}{suffix}"


def enabled(choice: bool | None = None, kernel: str = "neuron_scan") -> bool:
    """Whether to use the native kernel: ``choice`` when given (``compile_torch(native=...)``),
    else as ``SNNIR_NATIVE`` says: ``1`` yes (building it if needed), ``0`` no, unset or
    anything else: yes when it is already built (loading it here), never compiling."""
    if choice is not None:
        return choice
    setting = os.environ.get("SNNIR_NATIVE", "auto")
    if setting in ("0", "1"):
        return setting == "1"
    return extension(kernel, build=False) is not None


def extension(kernel: str = "neuron_scan", build: bool = True):
    """The kernel ``csrc/<kernel>.cpp`` as a Python module: imported when built before,
    compiled first when ``build``; None if it is not built and ``build`` is False, or if it
    cannot be built (one warning, then remembered)."""
    if kernel in _extension:
        return _extension[kernel]
    library = library_path(kernel)
    if not library.exists() and not build:
        return None
    start = time.perf_counter()
    try:
        module = _load(kernel, library, build)
    except Exception as exc:  # no compiler, no ninja, build error, unloadable library: never fatal
        warn(
            f"snnir: the native kernel {kernel} could not be built or loaded ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}); "
            "using the Python loop",
            RuntimeWarning,
        )
        module = None
    else:
        log.info("snnir native kernel %s ready in %.1f s (%s)", kernel, time.perf_counter() - start, library)
    _extension[kernel] = module
    return module


def _load(kernel: str, library: Path, build: bool):
    """Import a built library; where it does not load (say, half written by another process's
    build) and ``build``, go through torch's build, which waits for that build and loads it."""
    if library.exists():
        try:
            return _import(library)
        except ImportError:
            if not build:
                raise
    return _compile(kernel, library)


def _import(library: Path):
    spec = importlib.util.spec_from_file_location(library.stem, library)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compile(kernel: str, library: Path):
    from torch.utils.cpp_extension import load

    library.parent.mkdir(parents=True, exist_ok=True)
    return load(
        name=library.stem,
        sources=[str(_CSRC / f"{kernel}.cpp")],
        extra_include_paths=[str(_CSRC)],
        extra_cflags=_cflags(),
        extra_ldflags=["-fopenmp"],
        build_directory=str(library.parent),
    )


def build() -> dict[str, float | None]:
    """Build (or load) every kernel, the compiles side by side: ``{kernel: seconds taken,
    or None if it cannot be built}``."""

    def timed(kernel: str) -> float | None:
        start = time.perf_counter()
        return time.perf_counter() - start if extension(kernel) is not None else None

    with concurrent.futures.ThreadPoolExecutor(len(KERNELS)) as pool, \
            progress(desc="building the C++ kernels", total=len(KERNELS), unit="kernel", delay=0) as bar:
        futures = {kernel: pool.submit(timed, kernel) for kernel in KERNELS}
        for _ in concurrent.futures.as_completed(futures.values()):
            bar.update()
        return {kernel: future.result() for kernel, future in futures.items()}


def supports(
    op: Neuron, cfg: _Config, x: Tensor, record: bool, choice: bool | None = None, kernel: str = "neuron_scan",
) -> bool:
    """Whether the native ``kernel`` runs this neuron's case (building it if needed); ``choice``
    as for :func:`enabled`.

    Only the semantics it implements: a ``_Config`` flag added later and set turns it
    off until the kernel learns it.
    """
    return (
        enabled(choice, kernel)
        and not record
        and not any(getattr(cfg, name) for name in _unknown_fields(type(cfg)))
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and x.numel() > 0
        and cfg.surrogate.name in _SURROGATES
        and extension(kernel) is not None
    )


@functools.lru_cache(maxsize=None)
def _unknown_fields(config_type: type) -> tuple[str, ...]:
    """The flags of ``config_type`` the kernels do not implement (once per type: a call's cost)."""
    return tuple(f.name for f in dataclasses.fields(config_type) if f.name not in _CONFIG_FIELDS)


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


#: the flat coefficients of recent calls (see :func:`_flat_coefficients`)
_FLAT_MEMO: dict[tuple, tuple] = {}


def _flat_coefficients(coeffs, batch_shape, like: Tensor) -> list[Tensor]:
    """:func:`_flat` of each coefficient, kept while the same tensors (by identity and version)
    come again for the same shape, dtype and device, as a compiled module's frozen ones do every
    call (coefficients that train are made afresh each call, so they are not kept; nor under
    ``torch.inference_mode``, whose tensors have no version and cannot be saved for a backward)."""
    if torch.is_inference_mode_enabled() or any(c is not None and (c.requires_grad or c.is_inference()) for c in coeffs):
        return [_flat(c, batch_shape, like) for c in coeffs]
    key = (tuple(map(id, coeffs)), tuple(batch_shape), like.dtype, like.device)
    versions = tuple(-1 if c is None else c._version for c in coeffs)
    found = _FLAT_MEMO.get(key)
    if found is not None and found[1] == versions and all(a is b for a, b in zip(found[0], coeffs)):
        return found[2]
    if len(_FLAT_MEMO) >= 256:
        _FLAT_MEMO.clear()
    flat = [_flat(c, batch_shape, like) for c in coeffs]
    _FLAT_MEMO[key] = (tuple(coeffs), versions, flat)  # holding them: their ids stay theirs
    return flat


def _forward(cfg: _Config, steps: int, static: bool, x: Tensor, v0: Tensor, i0: Tensor, z0: Tensor, coeffs):
    """The outputs (out, v, i, z) and the flattened inputs (x, v0, i0, z0, coefficients)."""
    batch_shape = v0.shape
    empty = v0.new_empty(0)
    flat = _flat_coefficients(coeffs, batch_shape, v0)
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
