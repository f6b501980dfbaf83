r"""A recurrent component as one native call over all steps, forward and BPTT backward.

The component (:func:`feedback_loop`): a single-spike neuron ``N`` whose spikes a Linear or
Affine layer ``L`` alone takes and feeds back to ``N`` alone, one of the two edges delayed
(snnTorch's ``RLeaky``/``RSynaptic`` with ``all_to_all``, Norse's ``LIFRecurrent``, a
recurrent NIR graph). With ``x_t`` the sum of ``N``'s other inputs (computed over all steps
at once, outside the loop), each step is

    z_t = N(x_t, fed r_{t-1});  r_t = L(z_t) = z_t W^T (+ b)

(``r_{t-1}`` is the neuron's fed-back drive, :mod:`snnir.ir.schedule`: added right after the
drive of ``x_t``, ``(leak(v) + g x_t) + g r_{t-1}``, or into the current likewise)

with ``r_{-1} = L(z_{-1})``, the spikes kept in the state of the delayed edge ``N -> L``
(the schedule delays the edge out of the stateful node); the call also returns ``r`` after its
last step, which the next run of steps of the same module call starts from instead of running
``L`` again on the last spikes (``NeuronModule.with_feedback``; its gradient comes back to
``dL/dW``, ``dL/db`` and the last spikes). The C++ kernel (``csrc/recurrent.cpp``) runs the neuron update
of the sequence kernel one step at a time and the GEMM ``F.linear`` makes, so spikes, states
and ``r`` equal the step-by-step path's (:func:`step_loop.run_recurrent`, the
specification, used where this does not apply) bit for bit; gradients agree to rounding.

Kept for training: the spikes (the output itself: a Linear fed it keeps that same tensor,
:func:`~snnir.targets.torch.spike_linear.keeps_its_spikes`) and, where the neuron trains no parameter
and its update is one of the fused loops of ``neuron_step.h`` (``fast_path``: a delayed
subtract or a same-step zero reset), the membrane ``u_t`` after the input of every step and
nothing else; otherwise, per step, ``r_{t-1}`` and the neuron's states before the step
(membrane; current for Cuba neurons), in the input's dtype (and ``x`` itself). ``dL/dW`` is one GEMM
over all steps in the backward, or a sum of gradient rows at the spikes where few fired
(:data:`SPARSE_BELOW`); ``dL/db`` one sum. The forward's ``z_t W^T + b`` is the whole
batch's GEMM, as ``F.linear`` makes it (a GEMM over a block of rows, single-threaded, need
not give those rows' bits: MKL splits wide products over its threads), or, where the kernel
found that it gives the GEMM's bits for the shape and few spikes fired
(:data:`FORWARD_SPARSE_BELOW`), the sum of the rows of ``W^T`` at the spikes, each row of
the batch on its own (then each thread runs its own rows through every step); the fused
backward gives each thread its own block of batch rows for all steps (gradients agree to
rounding). The kernel reuses its buffers'
memory across calls once nothing holds them (no fresh pages each call).

Where it applies (:func:`supports`): the native kernels on, CPU tensors of float32 or
float64, no traces recorded, a single-spike neuron of shape ``[N]`` (every neuron op,
reset, timing, current order, surrogate and parameter gradient of the sequence kernel),
and no forward hook on either module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from snnir.ir.spikes import emits_spikes
from snnir.targets.torch import native as kernels
from snnir.targets.torch.autograd_calls import recorded
from snnir.targets.torch.bptt import _sum_to
from snnir.targets.torch.modules import AffineModule
from snnir.targets.torch.neuron_module import NeuronModule
from snnir.targets.torch.neuron_update import _COEFFS, _Config, _state
from snnir.targets.torch.spike_flow import _consumers, hands_over
from snnir.targets.torch.spike_linear import keeps_its_spikes

Tensor = torch.Tensor


@dataclass(frozen=True)
class FeedbackLoop:
    """A recurrent component of a neuron and the layer feeding its spikes back."""

    neuron: str
    layer: str


def feedback_loop(level, members: tuple[str, ...]) -> FeedbackLoop | None:
    """The component ``members`` of graph level ``level`` as a :class:`FeedbackLoop`, or None
    when it is anything else (it then runs step by step).

    The layer's edge must be the neuron's only fed-back drive (:mod:`snnir.ir.schedule`), its
    other inputs the drive, summed as the step loop sums them."""
    if len(members) != 2 or not all(m in level._attrs for m in members):
        return None
    modules = {m: level.node_module(m) for m in members}
    neurons = [m for m in members if isinstance(modules[m], NeuronModule)]
    layers = [m for m in members if isinstance(modules[m], AffineModule)]
    if len(neurons) != 1 or len(layers) != 1:
        return None
    neuron, layer = neurons[0], layers[0]
    op = level._graph.nodes[neuron]
    if not (modules[neuron].fast and emits_spikes(op) and len(level._shapes.outputs[level._shape_prefix + neuron]) == 1):
        return None
    into_layer = level._sources.get(layer, [])
    into_neuron = level._sources.get(neuron, [])
    if len(into_layer) != 1 or into_layer[0][0] != neuron or [c for c, _ in _consumers(level)[layer]] != [neuron]:
        return None
    feedback = [k for k, (key, _, _) in enumerate(into_neuron) if key == layer]
    if len(feedback) != 1 or len(into_neuron) < 2 or any(port is not None for _, port, _ in into_neuron):
        return None
    if level._fed_back.get(neuron) != frozenset(feedback):
        return None
    if into_neuron[feedback[0]][2] or not into_layer[0][2]:  # the edge into the layer is the delayed one
        return None
    return FeedbackLoop(neuron, layer)


def supports(module: NeuronModule, layer: AffineModule, cfg: _Config, x: Tensor, record: bool) -> bool:
    """Whether the native kernel runs this loop now (else the step loop does)."""
    return (
        cfg.spiking and not cfg.multi and x.dim() == 3
        and layer.weight.dtype == x.dtype and hands_over(module, layer)
        and kernels.supports(module.source_op, cfg, x, record, module.native, kernel="recurrent")
    )


#: ``dL/dW`` (and ``dL/db`` with it) is a sum of gradient rows at the spikes (``nnz x N`` adds)
#: where fewer than this fraction of them fired, else one GEMM (``rows x N x N`` multiply-adds);
#: both agree to rounding (the bench's recurrent net, T=100, 2 CPU threads, the whole backward
#: call: 5.7 ms by the sum at 11% fired, 6.9 at 20%, 7.3 at 40%, 7.9 at 50%; 7.8-7.9 by the GEMM)
SPARSE_BELOW = 0.4
#: a forward step's ``r_t = z_t W^T + b`` is a sum of rows of ``W^T`` at the spikes where fewer
#: than this fraction fired and the kernel found that the sum gives the GEMM's bits for the
#: call's shape (``sparse_agrees`` in ``csrc/recurrent.cpp``), else the GEMM; below it in the
#: last call with the same weight and batch, each thread runs its own rows through every step
#: (the bench's net, inference of 50 steps: GEMM per step 2.26 ms, sum per step 1.40, rows
#: apart 1.15 at 11% fired; 2.38 / 2.40 at 43%, 2.27 / 3.56 at 73%)
FORWARD_SPARSE_BELOW = 0.3


@keeps_its_spikes
class _Recurrent(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cfg, x, v0, i0, z0, r0, weight, bias, *coeff_values):  # type: ignore[override]
        flat = [kernels._flat(c, v0.shape, v0) for c in coeff_values]
        needed = [int(n) for n in ctx.needs_input_grad[8:]]
        out, v, i, z, r, *kept = _forward(cfg, x, v0, i0, z0, r0, weight, bias, flat, True, any(needed))
        ctx.cfg, ctx.shape, ctx.n_coeffs, ctx.n_kept = cfg, tuple(x.shape), len(coeff_values), len(kept)
        ctx.fused = kernels.extension("recurrent").fused(kernels._flags(cfg), any(needed))
        if not ctx.fused:  # the general backward recomputes each step from x and the kept r_{t-1}
            kept = [x.detach().contiguous().view(x.shape[0], -1), *kept]
            ctx.n_kept += 1
        ctx.save_for_backward(*kept, out, _flat_state(z0, cfg.next_timing), weight, *flat, *coeff_values)
        ctx.set_materialize_grads(False)  # r's gradient is None unless a later run of steps used it
        return _outputs(cfg, out, v, i, z, r, x.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_v, g_i, g_z, g_last, g_r):  # type: ignore[override]
        cfg, (steps, batch, n) = ctx.cfg, ctx.shape
        saved = ctx.saved_tensors
        kept, (spikes, z0, weight), rest = saved[: ctx.n_kept], saved[ctx.n_kept : ctx.n_kept + 3], saved[ctx.n_kept + 3 :]
        flat, coeff_values = rest[: ctx.n_coeffs], rest[ctx.n_coeffs :]
        need = ctx.needs_input_grad
        needed = [int(need[8 + k]) for k in range(len(_COEFFS))]
        like, m = kept[0], batch * n

        def flat_grad(g, present: bool = True, size: int = m) -> Tensor:  # a missing gradient is zeros
            return like.new_empty(0) if not present else like.new_zeros(size) if g is None else g.contiguous().view(-1)

        grads = (
            flat_grad(g_out, size=steps * m).view(steps, -1), flat_grad(g_v), flat_grad(g_i, cfg.has_current),
            flat_grad(g_z, cfg.next_timing), flat_grad(g_r), flat_grad(g_last, g_last is not None), batch,
            kernels._flags(cfg), float(cfg.surrogate.slope),
        )
        extension = kernels.extension("recurrent")
        if ctx.fused:
            g_x, g_v0, g_i0, g_z0, g_w, g_b = extension.backward_fused(
                *kept, spikes, flat, weight, *grads, need[6], need[7], SPARSE_BELOW,
            )
            acc = [None] * len(_COEFFS)
        else:
            g_x, g_v0, g_i0, g_z0, g_w, g_b, *acc = extension.backward(
                *kept, spikes, z0, flat, weight, *grads, needed, need[6], need[7], SPARSE_BELOW,
            )
        g_x = g_x.view(steps, batch, n)
        shape = (batch, n)
        if g_r is not None:  # r = z_{T-1} W^T + b fed the next run of steps
            g_r = g_r.reshape(shape)
            g_w = g_w.addmm_(g_r.t(), spikes[-1].view(shape)) if need[6] else g_w
            g_b = g_b.add_(g_r.sum(0)) if need[7] else g_b
        g_coeffs = [_sum_to(a.view(shape), c) if k else None for a, c, k in zip(acc, coeff_values, needed)]
        return (
            None, g_x if need[1] else None, g_v0.view(shape) if need[2] else None,
            g_i0.view(shape) if cfg.has_current and need[3] else None,
            g_z0.view(shape) if cfg.next_timing and need[4] else None,
            g_x[0] if need[5] else None, g_w if need[6] else None, g_b if need[7] else None, *g_coeffs,
        )


def _forward(cfg: _Config, x, v0, i0, z0, r0, weight, bias, flat, keep: bool, coefficient_grads: bool) -> list[Tensor]:
    """The kernel's forward: out (the spikes), v, i, z, r flat, then (with ``keep``) what the
    backward needs besides them (``u`` for the fused loops, else each step's ``r_{t-1}`` and states)."""
    steps, batch, _ = x.shape
    return kernels.extension("recurrent").forward(
        x.contiguous().view(steps, -1), v0.contiguous().view(-1), _flat_state(i0, cfg.has_current),
        _flat_state(z0, cfg.next_timing), flat, weight.detach(), _bias(bias), r0.contiguous().view(-1),
        batch, kernels._flags(cfg), float(cfg.surrogate.slope), keep, coefficient_grads, FORWARD_SPARSE_BELOW,
    )


def _flat_state(t: Tensor, present: bool) -> Tensor:
    return t.contiguous().view(-1) if present else t.new_empty(0)


def _bias(bias: Tensor | None) -> Tensor:
    return torch.empty(0) if bias is None else bias.detach()


def _outputs(cfg: _Config, out, v, i, z, r, shape) -> tuple[Tensor, ...]:
    """out, v, i, z shaped, the last spikes as a tensor of their own (the state handed to the
    next run of steps: its gradient then needs no ``[T, B, N]`` select backward) and ``r`` after
    the last step (the layer's value of the last spikes, which the next run starts from)."""
    steps, batch, n = shape
    dummy = v.new_zeros(())
    out = out.view(shape)
    return (
        out, v.view(batch, n), i.view(batch, n) if cfg.has_current else dummy,
        z.view(batch, n) if cfg.next_timing else dummy.clone(), out[-1].clone(), r.view(batch, n),
    )


def feedback_sequence(
    cfg: _Config, c: dict, x: Tensor, init: dict[str, Tensor], r0: Tensor, weight: Tensor, bias: Tensor | None,
) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor]:
    """``(spikes [T, B, N], the neuron's final state, the last spikes [B, N], r [B, N])`` of the
    loop over ``x`` [T, B, N] (the neuron's other inputs, summed), from its state ``init`` and
    ``r0`` = ``r_{-1}``. The last spikes equal ``spikes[-1]``, as a fresh tensor of their own; ``r``
    equals ``L(last spikes)`` bit for bit (the kernel's GEMM of the last step): the next run's ``r0``."""
    dummy = x.new_zeros(())
    args = (cfg, x, init["v"], init.get("i", dummy), init.get("z", dummy), r0, weight, bias)
    coeff_values = tuple(c[name] for name in _COEFFS)
    if recorded(x, r0, weight, bias, *init.values(), *coeff_values):
        out, v, i, z, last, r = _Recurrent.apply(*args, *coeff_values)
    else:
        flat = [kernels._flat(k, init["v"].shape, init["v"]) for k in coeff_values]
        out, v, i, z, last, r = _outputs(cfg, *_forward(*args, flat, False, False)[:5], x.shape)
    return out, _state(cfg, v, i, z), last, r
