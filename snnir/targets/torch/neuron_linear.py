r"""A neuron whose spikes feed a Linear or Affine layer, run as one autograd op.

``neuron_linear_sequence`` returns ``y[t] = F.linear(z[t], W, b)`` for the spikes ``z``
of :func:`~snnir.targets.torch.scan.neuron_sequence`, and the neuron's final state,
without ever making the ``[T, B, N]`` float spikes: each step's spikes are multiplied by
``W`` while they are in cache, the ``[B, N] x [N, O]`` GEMM of a step-by-step network
(snnTorch's). That shape is the one to keep: a GEMM library need not round a row alike in
products of other row counts (MKL on an AVX-512 CPU with two threads: ``[4, 24] x [24, 3]``
per step and over 8 steps differ), so the C++ kernel and this specification make the same
per-step products. The backward makes ``dL/dz[t] = dL/dy[t] W`` and ``dL/dW += dL/dy[t]^T z[t]``
in blocks of ``BLOCK`` steps (gradients agree to rounding).

Kept for the backward: the spikes as bools (one byte per neuron and step, for
``dL/dW``), the initial state, and the pre-reset membranes for a per-step input; a held
input (``steps=T``) is kept instead and the membranes are recomputed.

It applies (:func:`applies`) where the BPTT recursion is one scaled add per step
(:func:`~snnir.targets.torch.bptt._linear_backward_applies`: snnTorch's ``Leaky``, as
traced), the coefficients do not train, and the neuron is ``[B, N]``. The torch graph
module hands a neuron its consumer layer where the graph allows it.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from snnir.targets.torch import native as kernels
from snnir.targets.torch.autograd_calls import untracked_apply
from snnir.targets.torch.bptt import _linear_backward_applies, _linear_bptt
from snnir.targets.torch.neuron_update import _COEFFS, _Config, _run, _scalars, _state

Tensor = torch.Tensor


def applies(cfg: _Config, c: dict, v0: Tensor, weight: Tensor) -> bool:
    """True when the fused op computes this neuron then this layer."""
    frozen = not any(v is not None and v.requires_grad for v in c.values())
    return (
        frozen and v0.dim() == 2 and weight.dim() == 2 and weight.shape[1] == v0.shape[1]
        and _linear_backward_applies(cfg, _scalars(c), dict.fromkeys(_COEFFS, False))
    )


def native_step(cfg: _Config, c: dict) -> tuple | None:
    """The kernel's update of a step (``csrc/neuron_linear.cpp`` ``Step``: delayed reset, subtract
    reset, ``>=`` compare, decay, gain, threshold) for a neuron whose forward it computes (single
    spikes, no current, a subtract reset or none, one value per coefficient, no leak
    potential), else None. ``c``: the coefficients, as :func:`_scalars` makes them (an absent
    decay or gain is 1)."""
    if not (cfg.spiking and not cfg.multi and not cfg.has_current and not cfg.after_input
            and cfg.reset in ("none", "subtract") and c["v_leak"] is None
            and not any(isinstance(c[name], Tensor) for name in ("a_mem", "gain", "thr"))):
        return None
    return (cfg.next_timing, cfg.reset == "subtract", cfg.inclusive, 1.0 if c["a_mem"] is None else c["a_mem"],
            1.0 if c["gain"] is None else c["gain"], c["thr"])


#: steps whose gradients go through the backward's GEMMs together
BLOCK = 8


def _blocks(steps: int):
    """``(t0, t1)`` of consecutive blocks of at most ``BLOCK`` steps, aligned to multiples of it."""
    return [(t0, min(t0 + BLOCK, steps)) for t0 in range(0, steps, BLOCK)]


def _input_grads(ctx, g_y: Tensor, v0: Tensor, g_x, g_v0, g_w) -> tuple:
    """A backward's results in its forward's argument order (cfg, steps, static, x, v0, z0,
    weight, bias, coefficients...), None where no gradient is wanted."""
    need = ctx.needs_input_grad
    g_b = g_y.sum((0, 1)) if ctx.has_bias and need[7] else None
    g_z0 = torch.zeros_like(v0) if ctx.cfg.next_timing and need[5] else None
    return (
        None, None, None, g_x if need[3] else None, g_v0 if need[4] else None, g_z0, g_w if need[6] else None, g_b,
    ) + (None,) * (len(need) - 8)


class _NeuronLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cfg, steps, static, x, v0, z0, weight, bias, *coeff_values):  # type: ignore[override]
        c = dict(zip(_COEFFS, coeff_values))
        training = any(ctx.needs_input_grad[3:8])
        n, o = weight.shape[1], weight.shape[0]
        y = v0.new_empty((steps, v0.shape[0], o))
        bits = torch.empty((steps,) + v0.shape, dtype=torch.bool, device=v0.device) if ctx.needs_input_grad[6] else None
        w_t = weight.t()

        def then(t: int, z: Tensor) -> None:  # the step's spikes, [B, N]
            if bias is None:
                torch.mm(z, w_t, out=y[t])
            else:
                torch.addmm(bias, z, w_t, out=y[t])
            if bits is not None:
                bits[t].copy_(z)

        _, final, us, _, _ = _run(
            cfg, c, x, steps, static, _state(cfg, v0, None, z0), keep=training and not static, record=False,
            spikes=False, then=then,
        )
        ctx.cfg, ctx.steps, ctx.static, ctx.has_bias = cfg, steps, static, bias is not None
        ctx.save_for_backward(x if static else None, v0, z0, us, bits, weight, *coeff_values)
        return y, final["v"].clone(), final.get("z", z0).clone()

    @staticmethod
    def backward(ctx, g_y, g_v, g_z):  # type: ignore[override]
        cfg, steps, static = ctx.cfg, ctx.steps, ctx.static
        x, v0, z0, us, bits, weight, *coeff_values = ctx.saved_tensors
        shapes = dict(zip(_COEFFS, coeff_values))
        if static:  # recomputed here, so the recursion may overwrite them
            with torch.no_grad():
                _, _, us, _, _ = _run(cfg, shapes, x, steps, True, _state(cfg, v0, None, z0), keep=True, record=False, spikes=False)
        n, o = weight.shape[1], weight.shape[0]
        scratch = v0.new_empty((min(BLOCK, steps),) + v0.shape)

        def rows(t0: int, t1: int) -> tuple[Tensor, Tensor]:
            """dL/dy of steps t0..t1 as GEMM rows, and the scratch those steps' [B, N] values fill."""
            return g_y[t0:t1].reshape(-1, o), scratch[: t1 - t0].view(-1, n)

        def times_g_spikes(slopes: Tensor) -> None:  # slopes[t] *= dL/dz[t] = dL/dy[t] W, block by block
            for t0, t1 in _blocks(steps):
                g_rows, block = rows(t0, t1)
                slopes[t0:t1].view(-1, n).mul_(torch.mm(g_rows, weight, out=block))

        g_x = g_v0 = g_w = None
        if any(ctx.needs_input_grad[3:6]):
            g_x, g_v0 = _linear_bptt(cfg, _scalars(shapes), static, us, static, times_g_spikes, g_v, g_z)
        if bits is not None:
            g_w = torch.zeros_like(weight)
            for t0, t1 in _blocks(steps):
                g_rows, block = rows(t0, t1)
                g_w.addmm_(g_rows.t(), block.copy_(bits[t0:t1].view(-1, n).view(torch.uint8)))
        return _input_grads(ctx, g_y, v0, g_x, g_v0, g_w)


class _NativeNeuronLinear(torch.autograd.Function):
    """:class:`_NeuronLinear` by the C++ kernel ``csrc/neuron_linear.cpp`` (where built):
    the same outputs bit for bit, gradients to rounding. For a narrow layer (``NARROW``) it keeps
    only the input and the initial state, and the backward is one pass over chunks of neurons;
    otherwise it keeps what :class:`_NeuronLinear` keeps, and its recomputed membranes go to a
    per-thread workspace kept between calls."""

    @staticmethod
    def forward(ctx, cfg, steps, static, x, v0, z0, weight, bias, *coeff_values):  # type: ignore[override]
        step = native_step(cfg, _scalars(dict(zip(_COEFFS, coeff_values))))
        training = any(ctx.needs_input_grad[3:8])
        narrow = weight.shape[0] <= NARROW  # its backward recomputes everything from x
        no_bias = v0.new_empty(0)
        y, v_t, z_t, bits, us = _kernel(True).forward(
            x, v0, z0, weight.detach(), no_bias if bias is None else bias.detach(), steps, static, *step,
            bool(ctx.needs_input_grad[6]) and not narrow, training and not static and not narrow,
        )
        ctx.cfg, ctx.steps, ctx.static, ctx.step, ctx.has_bias = cfg, steps, static, step, bias is not None
        ctx.narrow = narrow
        ctx.save_for_backward(x if static or narrow else None, v0, z0, bits, us, weight)
        return y, v_t, z_t

    @staticmethod
    @once_differentiable
    def backward(ctx, g_y, g_v, g_z):  # type: ignore[override]
        cfg = ctx.cfg
        x, v0, z0, bits, us, weight = ctx.saved_tensors
        kernel = _kernel(True)  # the forward's choice, whatever the env says now
        g_z = g_z.expand_as(v0) if cfg.next_timing else v0.new_empty(0)
        tail = (ctx.steps, ctx.static, *ctx.step, kernels._SURROGATES[cfg.surrogate.name], float(cfg.surrogate.slope),
                bool(ctx.needs_input_grad[3]), bool(ctx.needs_input_grad[6]))
        if ctx.narrow:
            g_x, g_v0, g_w = kernel.backward_narrow(g_y, weight, x, v0, z0, g_v.expand_as(v0), g_z, *tail)
        else:
            g_x, g_v0, g_w = kernel.backward(
                g_y, weight, bits, us, v0.new_empty(0) if x is None else x, v0, z0, g_v.expand_as(v0), g_z, *tail
            )
        return _input_grads(ctx, g_y, v0, g_x, g_v0, g_w)


#: a layer of at most this many outputs takes the native one-pass backward (``backward_narrow``):
#: its products per batch row (``dL/dW`` read and written once a row) beat GEMMs per step over the
#: whole batch only while O is small
NARROW = 64


def _kernel(choice: bool | None = None):
    """The native kernel when chosen (``native.enabled``) and it builds, else None."""
    return kernels.extension("neuron_linear") if kernels.enabled(choice, "neuron_linear") else None


def neuron_linear_sequence(
    cfg: _Config, c: dict, x: Tensor, steps: int, static: bool, init: dict[str, Tensor], weight: Tensor,
    bias: Tensor | None, native: bool | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """``(y, final_state)``: ``y`` is ``[T, B, M]``, the layer applied to every step's spikes;
    ``x``, ``steps``, ``static``, ``init`` and ``native`` as for ``neuron_sequence`` (see
    :func:`applies`)."""
    v0 = init["v"]
    z0 = init["z"] if "z" in init else v0.new_zeros(())
    use_native = (
        x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and weight.dtype == x.dtype
        and cfg.surrogate.name in kernels._SURROGATES and _kernel(native) is not None
    )
    op = _NativeNeuronLinear if use_native else _NeuronLinear
    y, v_t, z_t = untracked_apply(op, cfg, steps, static, x, v0, z0, weight, bias, *(c[n] for n in _COEFFS))
    return y, _state(cfg, v_t, None, z_t)
