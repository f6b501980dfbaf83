r"""A neuron whose spikes feed a Linear or Affine layer, on Triton: :func:`neuron_linear_sequence`.

The specification is :mod:`snnir.targets.torch.neuron_linear` (the neuron's scan, then the
layer on every step's spikes), for the cases it applies to (``neuron_linear.applies``):
the same ``y`` and final state bit for bit, gradients to rounding. bf16/fp16 inputs and
layers run the neuron with a float32 state (as :mod:`.scan` does) and the layer in their dtype.

Forward: one scan kernel writes the spikes in the layer's dtype and, for ``dL/dW``, as one
byte each; then one GEMM per step, the specification's call on the same ``[B, N]`` rows (a
step-by-step network's shape: cuBLAS rounds by shape, and one product over all ``T x B`` rows
differed on an H200), so ``y`` has its bits. Kept for the backward: the input, the initial
state and the spike bytes (the float spikes are freed). Backward: ``dL/dz = dL/dy W`` (one
GEMM over all steps), the scan's backward kernel (it recomputes the membranes),
``dL/dW = dL/dy^T z`` (one GEMM).

Not one kernel: the layer's product inside the scan (``tl.dot``) would round differently
from ``F.linear`` (another reduction order, TF32 by default on a GPU), so a neuron
downstream could spike differently from the specification.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from snnir.targets.torch.autograd_calls import untracked_apply
from snnir.targets.torch.gpu import scan
from snnir.targets.torch.neuron_linear import _input_grads
from snnir.targets.torch.neuron_update import _COEFFS, _Config, _state

Tensor = torch.Tensor


def supports(cfg: _Config, x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    """Whether the kernels run this case (besides ``neuron_linear.applies``): a dtype they take,
    the layer in the input's dtype."""
    return (
        scan.supports(cfg, x, record=False)
        and weight.dtype == x.dtype and (bias is None or bias.dtype == x.dtype)
    )


class _TritonNeuronLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cfg, steps, static, x, v0, z0, weight, bias, *coeff_values):  # type: ignore[override]
        shape, M = tuple(v0.shape), v0.numel()
        v0 = v0.contiguous()
        z = weight.new_empty((steps,) + shape)  # the spikes, in the layer's dtype
        bits = torch.empty((steps, M), dtype=torch.uint8, device=v0.device) if ctx.needs_input_grad[6] else None
        v_end, z_end = torch.empty_like(v0), torch.empty_like(v0)
        scan.launch_forward(
            cfg, steps, static, scan.per_neuron(coeff_values, shape[1:], v0), x.contiguous(), v0, None,
            z0.contiguous(), v_end, None, z_end, out=z, bits=bits,
        )
        y = z.new_empty((steps, shape[0], weight.shape[0]))
        w_t = weight.detach().t()
        for t in range(steps):  # as neuron_linear._NeuronLinear multiplies each step's spikes
            if bias is None:
                torch.mm(z[t], w_t, out=y[t])
            else:
                torch.addmm(bias.detach(), z[t], w_t, out=y[t])
        ctx.cfg, ctx.steps, ctx.static, ctx.has_bias = cfg, steps, static, bias is not None
        ctx.save_for_backward(x, v0, z0, bits, weight, *coeff_values)
        return y, v_end, z_end if cfg.next_timing else v0.new_zeros(())

    @staticmethod
    @once_differentiable
    def backward(ctx, g_y, g_v, g_z):  # type: ignore[override]
        cfg, steps = ctx.cfg, ctx.steps
        x, v0, z0, bits, weight, *coeffs = ctx.saved_tensors
        need = ctx.needs_input_grad
        g_x = g_v0 = g_w = None
        if need[3] or need[4]:
            dummy = v0.new_zeros(())
            g_x, g_v0, _, _, *_ = scan.backward(
                cfg, steps, ctx.static, (need[3], need[4], False, False) + (False,) * len(coeffs), x, v0, dummy,
                z0, coeffs, torch.matmul(g_y, weight), g_v, dummy, g_z,
            )
        if bits is not None:
            n, o = weight.shape[1], weight.shape[0]
            g_w = g_y.reshape(-1, o).T.matmul(bits.view(-1, n).to(weight.dtype))
        return _input_grads(ctx, g_y, v0, g_x, g_v0, g_w)


def neuron_linear_sequence(cfg: _Config, c: dict, x: Tensor, steps: int, static: bool, init: dict, weight: Tensor,
                           bias: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
    """``(y, final_state)`` as ``neuron_linear.neuron_linear_sequence`` returns them; ``c`` and
    ``init`` in the state's dtype (:func:`~snnir.targets.torch.gpu.state_dtype`)."""
    v0 = init["v"]
    z0 = init["z"] if "z" in init else v0.new_zeros(())
    y, v_t, z_t = untracked_apply(_TritonNeuronLinear, cfg, steps, static, x, v0, z0, weight, bias,
                                  *(c[n] for n in _COEFFS))
    return y, _state(cfg, v_t, None, z_t)
