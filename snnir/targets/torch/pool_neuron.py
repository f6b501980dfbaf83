"""A max pool whose only consumer is a neuron, run with it in one pass for inference.

``pooled_sequence`` returns what the neuron's scan would return on the pooled input
(spikes or membranes ``[T, B, C, *out]``, final state), from the C++ kernel
``csrc/pool_scan.cpp``: per block of pooled elements and step, the window maxima (those of
torch's ``max_pool1d/2d``, the same values) go straight into the neuron update, so the
pooled tensor and the pool's int64 indices are never made and the pool's input is read
once. That is most of a per-step conv net's inference time and memory beyond its
convolutions. It has no backward: it applies only where no gradient is wanted (under
``no_grad``, or nothing requiring one). Elsewhere (training, ``record``, a held input,
the kernel not built) the caller pools, then runs the neuron's usual scan: the same results.

The graph module hands a neuron its feeding pool (``plan_pools``) where the pool's output
goes to that neuron alone, undelayed, outside any loop, and the neuron is not probed; the
pool then passes its input on and the neuron pools (``NeuronModule.sequence(pool=...)``).
"""

from __future__ import annotations

import torch

from snnir.ir.ops.pool import MAX_POOLS
from snnir.targets.torch import native as kernels
from snnir.targets.torch.autograd_calls import recorded
from snnir.targets.torch.neuron_module import NeuronModule
from snnir.targets.torch.spatial import POOL_KERNEL, MaxPoolModule, window_args
from snnir.targets.torch.neuron_update import _COEFFS, _config, _state
from snnir.targets.torch.spike_flow import _consumers, _in_loop, hands_over

Tensor = torch.Tensor


def pooled_sequence(neuron: NeuronModule, pool: MaxPoolModule, x: Tensor, state: dict, coeffs) -> tuple | None:
    """``(out, final state, None)`` of ``neuron`` on ``pool(x)`` for a per-step ``x``
    ``[T, B, C, *in]``, by the fused kernel; None where it does not apply. ``coeffs``: the
    neuron's scan coefficients in ``x``'s dtype (None while a parameter trains)."""
    op = neuron.source_op
    rank = pool.source_op.spatial_rank
    if coeffs is None or x.dim() != rank + 3 or not isinstance(pool.source_op, MAX_POOLS):
        return None
    init = {name: state[name].to(x.dtype) for name in op.state_names}
    if recorded(x, *init.values()):
        return None  # no backward
    cfg = _config(op, neuron.surrogate, neuron.detach_reset)
    if not kernels.supports(op, cfg, x, False, neuron.native, kernel=POOL_KERNEL):
        return None
    v0 = init["v"]
    steps, batch_shape = x.shape[0], tuple(v0.shape)
    if batch_shape[:2] != tuple(x.shape[1:3]) or len(batch_shape) != rank + 2:
        return None
    out_hw = (1,) * (2 - rank) + batch_shape[2:]
    window = window_args(pool.source_op)
    planes = x.reshape((steps, batch_shape[0] * batch_shape[1], 1 if rank == 1 else x.shape[-2], x.shape[-1]))
    states, flat, flags, slope = neuron_args(cfg, coeffs, init, batch_shape, v0)
    out, v_end, i_end, z_end = kernels.extension(POOL_KERNEL).forward(
        planes.contiguous(), *states, flat, flags, slope, out_hw[0], out_hw[1], window,
    )
    final = _state(cfg, v_end.view(batch_shape), i_end.view(batch_shape) if cfg.has_current else None,
                   z_end.view(batch_shape) if cfg.next_timing else None)
    return out.view((steps,) + batch_shape), final, None


def neuron_args(cfg, coeffs: dict, init: dict, batch_shape: tuple, like: Tensor) -> tuple:
    """A neuron's arguments to ``csrc/pool_scan.cpp`` (``forward``, ``chain_forward``): its
    states ``v, i, z`` flat (empty where it has none), its scan coefficients flat over
    ``batch_shape``, its flags and its surrogate's slope."""
    empty = like.new_empty(0)
    states = [init[s].contiguous().view(-1) if s in init else empty for s in ("v", "i", "z")]
    flat = kernels._flat_coefficients([coeffs[n] for n in _COEFFS], batch_shape, like)
    return states, flat, kernels._flags(cfg), float(cfg.surrogate.slope)


def plan_pools(level) -> dict[str, MaxPoolModule]:
    """Neuron node -> the max pool module whose output only it takes (see the module docstring);
    that pool's node is the neuron's only source. Call after ``plan_probes``."""
    found = {}
    consumers = _consumers(level)
    for name, feeds in level._sources.items():
        if name not in level._attrs or name in level._probed or len(feeds) != 1 or _in_loop(level, name):
            continue
        pool_name, _, delayed = feeds[0]
        if delayed or pool_name not in level._attrs or _in_loop(level, pool_name):
            continue
        neuron, pool = level.node_module(name), level.node_module(pool_name)
        if (isinstance(neuron, NeuronModule) and neuron.fast and isinstance(pool, MaxPoolModule)
                and len(consumers.get(pool_name, [])) == 1):
            found[name] = pool
    return found


def passes_on(level, name: str, module) -> bool:
    """Node ``name`` (``module``) is a pool whose neuron pools: it passes its input on."""
    neuron = level._pooled_by.get(name)
    return neuron is not None and hands_over(neuron, module)
