r"""The fast path: a whole sequence of neuron steps as one autograd op.

:func:`neuron_sequence` runs a snnir neuron (I, IF, LI, LIF, CubaLI, CubaLIF,
every :class:`~snnir.ir.semantics.Semantics` option) over ``T`` steps in a
loop under ``no_grad`` and differentiates it with a hand-written BPTT
recursion, instead of letting autograd record every elementwise op of every
step. The update is exactly the one in :mod:`snnir.ir.ops.neuron` (same
operation order as the reference kernels, so float64 spikes are identical).

Gradient conventions (what an unrolled autograd implementation built from
:meth:`Surrogate.spike` would give):

- single spikes: ``dz/du = surrogate.grad(u - thr)``, ``dz/dthr = -dz/du``;
- multi spikes (``floor(u / thr)``): the same derivative as a single spike;
- zero reset ``where(z > 0, v_reset, u)``: no gradient through ``z``;
- subtract reset ``u - z thr``: gradient through ``z`` unless
  ``detach_reset=True`` (snnTorch's behaviour).

Memory: for training with a per-step input it keeps the pre-reset membranes
``u`` (one tensor of ``x``'s dtype per step), the synaptic currents for Cuba
neurons, and the input only when a parameter multiplying it needs a gradient;
spikes, resets and surrogate derivatives are recomputed from ``u`` in backward.
With a held input (``steps=T``) it keeps only the input and the initial state
and reruns the forward loop in the backward. Saved tensors are never modified,
so ``retain_graph`` works. Under ``no_grad`` nothing is kept.

The update and its forward loop live in :mod:`~snnir.targets.torch.neuron_update`,
the backward recursions in :mod:`~snnir.targets.torch.bptt`.
"""

from __future__ import annotations

import functools
from typing import Mapping

import numpy as np
import torch

from snnir.errors import SnnirError
from snnir.ir.ops.neuron import Neuron
from snnir.targets.torch.autograd_calls import recorded
from snnir.targets.torch.bptt import _bptt, _linear_backward_applies, _linear_bptt, _sum_to
from snnir.targets.torch.neuron_update import _COEFFS, _config, _run, _scalars, _state, coefficients
from snnir.targets.torch.surrogate import Surrogate

Tensor = torch.Tensor


class _NeuronSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cfg, steps, static, x, v0, i0, z0, fed, *coeff_values):  # type: ignore[override]
        c = dict(zip(_COEFFS, coeff_values))
        # a held input is recomputed from: keep nothing of size T (see the module docstring)
        out, final, us, is_, _ = _run(
            cfg, c, x, steps, static, _state(cfg, v0, i0, z0), keep=not static, record=False, fed=fed,
        )
        ctx.cfg, ctx.steps, ctx.static, ctx.fed = cfg, steps, static, fed is not None
        needs_x = static or ctx.needs_input_grad[8 + _COEFFS.index("gain_syn" if cfg.has_current else "gain")]
        kept = (None, None) if static else (us, is_)
        if needs_x and fed is not None:  # the input gain's gradient is by all it scaled (to rounding)
            x = x + fed
        ctx.save_for_backward(x if needs_x else None, v0, i0, z0, *kept, *coeff_values)
        dummy = torch.zeros((), dtype=x.dtype, device=x.device)
        i_t, z_t = final.get("i", dummy), final.get("z", dummy)
        return out, final["v"].clone(), i_t.clone(), z_t.clone()

    @staticmethod
    def backward(ctx, g_out, g_v, g_i, g_z):  # type: ignore[override]
        cfg, steps, static = ctx.cfg, ctx.steps, ctx.static
        x, v0, i0, z0, us, is_, *coeff_values = ctx.saved_tensors
        shapes = dict(zip(_COEFFS, coeff_values))
        c = _scalars(shapes)
        need = {n: ctx.needs_input_grad[8 + k] for k, n in enumerate(_COEFFS)}
        owned = static  # membranes recomputed here, so the backward may overwrite them
        if owned:
            with torch.no_grad():
                _, _, us, is_, _ = _run(
                    cfg, shapes, x, steps, static, _state(cfg, v0, i0, z0), keep=True, record=False, spikes=False
                )
        if _linear_backward_applies(cfg, c, need):
            g_x, g_v0 = _linear_bptt(cfg, c, static, us, owned, g_out, g_v, g_z)
            g_i0 = g_z0 = None
            acc: dict[str, Tensor] = {}
        else:
            g_x, g_v0, g_i0, g_z0, acc = _bptt(
                cfg, c, need, steps, static, x, v0, i0, z0, us, is_, g_out, g_v, g_i, g_z
            )
        g_coeffs = [_sum_to(acc.get(n), shapes[n]) if need[n] else None for n in _COEFFS]
        if cfg.next_timing and g_z0 is None and ctx.needs_input_grad[6]:
            g_z0 = torch.zeros_like(v0)
        return (
            None, None, None,
            g_x if ctx.needs_input_grad[3] else None,
            g_v0 if ctx.needs_input_grad[4] else None,
            g_i0 if cfg.has_current and ctx.needs_input_grad[5] else None,
            g_z0 if cfg.next_timing and ctx.needs_input_grad[6] else None,
            g_x.clone() if ctx.fed and ctx.needs_input_grad[7] else None,  # the same gain: the same gradient
            *g_coeffs,
        )


@functools.lru_cache(maxsize=1024)
def _broadcasts(shape, target) -> bool:
    """``shape`` broadcasts to ``target`` without changing it (numpy's rule); tuples (cached)."""
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(reversed(shape), reversed(target)))


def _initial_state(op: Neuron, state: Mapping[str, Tensor] | None, batch_shape, like: Tensor) -> dict[str, Tensor]:
    names = op.state_names
    if state is not None and len(state) == len(names) and all(
            (value := state.get(name)) is not None and value.shape == batch_shape and value.dtype == like.dtype
            for name in names):
        return {name: state[name] for name in names}  # the common case, checked as below
    state = dict(state or {})
    unknown = sorted(set(state) - set(names))
    if unknown:
        raise SnnirError(f"{op.op_type} has no states {unknown} (it has {list(op.state_names)})")
    out = {}
    for name in op.state_names:
        value = state.get(name)
        if value is None:
            out[name] = torch.zeros(batch_shape, dtype=like.dtype, device=like.device)
        elif tuple(value.shape) != tuple(batch_shape):
            raise SnnirError(f"{op.op_type} state '{name}' has shape {list(value.shape)}, expected {list(batch_shape)}")
        else:
            out[name] = value.to(like.dtype)
    return out


def _triton_scan():
    from snnir.targets.torch.gpu import scan as triton_scan  # imports Triton

    return triton_scan


def neuron_sequence(
    op: Neuron,
    params: Mapping[str, Tensor],
    x: Tensor,
    state: Mapping[str, Tensor] | None,
    surrogate: Surrogate | None = None,
    record: bool = False,
    steps: int | None = None,
    detach_reset: bool = False,
    coeffs: Mapping[str, Tensor | None] | None = None,
    native: bool | None = None,
    triton: bool | None = None,
    fed: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor] | None]:
    """Run ``op`` over all steps of ``x``; returns ``(out, final_state, traces)``.

    - ``x``: ``[T, B, *shape]``, the summed input of every step; or, with
      ``steps=T``, ``[B, *shape]`` held constant over ``T`` steps (a hoisted,
      time-invariant input: its gradient is the sum over steps).
    - ``params``: torch tensors by parameter name, broadcastable to
      ``shape``; missing names take the op's own values. Gradients reach
      every one that requires grad.
    - ``state``: ``[B, *shape]`` tensors named as ``op.state_names``
      (missing ones start at zero); ``final_state`` has the same names.
    - ``out``: ``[T, B, *shape]`` spikes (spiking neurons) or membranes.
    - ``traces`` (``record=True``): ``{state: [T, B, *shape]}`` after each
      step, detached from autograd (while training, an extra forward loop
      computes them); otherwise ``None``.
    - ``coeffs``: :func:`coefficients` of ``op`` and ``params`` computed before in ``x``'s
      dtype (a caller running many sequences with unchanged parameters saves their cost);
      recomputed where the state has another dtype.
    - ``native``: use the native C++ kernel where it applies (None: where built, see
      :func:`~snnir.targets.torch.native.enabled`).
    - ``triton``: use the Triton kernels (None: on CUDA tensors where Triton is installed;
      see :mod:`snnir.targets.torch.gpu`). They keep the state in float32 for bf16/fp16
      inputs, and outputs are then in the input's dtype.
    - ``fed``: the fed-back drive ``[T, B, *shape]`` (:mod:`snnir.ir.schedule`), with a per-step
      ``x`` only (a recurrent component's step loop, one step a call); the Triton kernels or the
      Python loop run it.
    """
    if not isinstance(op, Neuron):
        raise SnnirError(f"neuron_sequence runs neuron ops, got {type(op).__name__}")
    if not torch.is_floating_point(x):
        raise SnnirError(f"{op.op_type}: input must be a floating tensor, got {x.dtype}")
    static = steps is not None
    if static and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise SnnirError(f"{op.op_type}: steps must be a positive int, got {steps!r}")
    if not static and x.dim() < 2:
        raise SnnirError(f"{op.op_type}: input must be [T, B, ...], got shape {list(x.shape)}")
    if fed is not None and (static or tuple(fed.shape) != tuple(x.shape)):
        raise SnnirError(f"{op.op_type}: the fed-back drive must be shaped as a per-step input "
                         f"{list(x.shape)}, got {list(fed.shape)}" + (" (the input is held)" if static else ""))
    n_steps = steps if static else x.shape[0]
    batch_shape = tuple(x.shape if static else x.shape[1:])
    for name in op.param_names():
        shape = tuple(params[name].shape) if params.get(name) is not None else np.shape(getattr(op, name))
        if not _broadcasts(shape, batch_shape[1:]):
            raise SnnirError(
                f"{op.op_type} parameter '{name}' of shape {list(shape)} does not broadcast to the "
                f"neuron shape {list(batch_shape[1:])}"
            )
    cfg = _config(op, surrogate or Surrogate(), detach_reset)
    from snnir.targets.torch import gpu  # no Triton import unless its kernels run

    on_gpu = gpu.enabled(triton, x) and _triton_scan().supports(cfg, x, record)
    like = x.new_empty(0, dtype=gpu.state_dtype(x)) if on_gpu else x  # the state's dtype
    c = coeffs if coeffs is not None and like.dtype == x.dtype else coefficients(op, params, like)
    init = _initial_state(op, state, batch_shape, like)
    tracked = recorded(x, fed, *init.values(), *c.values())
    if on_gpu:
        return _triton_scan().neuron_sequence(cfg, c, x, n_steps, static, init, tracked, fed)
    from snnir.targets.torch import native as kernels  # imported here: it builds on this module

    if fed is None and kernels.supports(op, cfg, x, record, native):
        return kernels.neuron_sequence(cfg, c, x, n_steps, static, init, tracked)
    if record or not tracked:
        with torch.no_grad():
            out, final, _, _, traces = _run(cfg, c, x, n_steps, static, init, keep=False, record=record, fed=fed)
        if not tracked:
            return out, final, traces
    else:
        traces = None
    dummy = torch.zeros((), dtype=x.dtype, device=x.device)
    out, v_t, i_t, z_t = _NeuronSequence.apply(
        cfg, n_steps, static, x, init["v"], init.get("i", dummy), init.get("z", dummy), fed,
        *(c[n] for n in _COEFFS),
    )
    return out, _state(cfg, v_t, i_t, z_t), traces


__all__ = ["neuron_sequence", "coefficients"]
