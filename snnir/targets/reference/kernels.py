"""Numpy float64 implementations of every standard op for one timestep.

Each follows its op's docstring literally; clarity over speed. Tensors carry
a leading batch dimension: x is ``[B, *shape]``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from snnir.ir.ops import (
    IF, LI, LIF, Affine, AvgPool2d, Conv1d, Conv2d, CubaLI, CubaLIF, Delay, Flatten, I, Linear,
    Scale, SumPool2d, Threshold,
)
from snnir.ir.ops.neuron import Neuron
from snnir.ir.ops.norm import BatchNorm
from snnir.ir.ops.pool import MaxPool1d, MaxPool2d
from snnir.ir.semantics import DELAYED_RESET_TIMINGS, Semantics

F = np.float64


def p(op, name: str) -> np.ndarray:
    return np.asarray(getattr(op, name), dtype=F)


# --- stateless ----------------------------------------------------------------
def affine(op: Affine, x: np.ndarray) -> np.ndarray:
    return x @ p(op, "weight").T + p(op, "bias")


def linear(op: Linear, x: np.ndarray) -> np.ndarray:
    return x @ p(op, "weight").T


def scale(op: Scale, x: np.ndarray) -> np.ndarray:
    return x * p(op, "scale")


def flatten(op: Flatten, x: np.ndarray) -> np.ndarray:
    start, end = op.dims(x.ndim - 1, "?")
    shape = x.shape[1:]
    return x.reshape((x.shape[0],) + shape[:start] + (-1,) + shape[end + 1 :])


def threshold(op: Threshold, x: np.ndarray) -> np.ndarray:
    return (x > p(op, "threshold")).astype(F)


def _windows(x: np.ndarray, kernel, stride, padding, dilation) -> np.ndarray:
    """[B, C, *out, *kernel] views of the zero-padded input."""
    rank = len(kernel)
    pad = [(0, 0), (0, 0)] + [(q, q) for q in padding]
    x = np.pad(x, pad)
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    win = sliding_window_view(x, span, axis=tuple(range(2, 2 + rank)))
    index = (slice(None), slice(None))
    index += tuple(slice(None, None, s) for s in stride)
    index += tuple(slice(None, None, d) for d in dilation)
    return win[index]


def conv(op: Conv1d | Conv2d, x: np.ndarray) -> np.ndarray:
    w = p(op, "weight")
    rank = w.ndim - 2
    win = _windows(x, w.shape[2:], op.stride, op.explicit_padding(), op.dilation)
    groups = op.groups
    c_in_g, c_out_g = w.shape[1], w.shape[0] // groups
    outs = []
    # one matrix product per group (BLAS; a plain einsum loops in C without it, 14x slower on
    # tutorial 6's second conv, most of snnir.trace's check of that net)
    axes = ([1, *range(2 + rank, 2 + 2 * rank)], [1, *range(2, 2 + rank)])
    for g in range(groups):
        wg = w[g * c_out_g : (g + 1) * c_out_g]
        xg = win[:, g * c_in_g : (g + 1) * c_in_g]
        outs.append(np.moveaxis(np.tensordot(xg, wg, axes=axes), -1, 1))
    y = np.concatenate(outs, axis=1)
    bias = p(op, "bias")
    return y + bias.reshape((-1,) + (1,) * rank) if bias.ndim else y + bias


def sum_pool(op: SumPool2d, x: np.ndarray) -> np.ndarray:
    win = _windows(x, op.kernel_size, op.stride, op.padding, (1, 1))
    return win.sum(axis=(-2, -1))


def avg_pool(op: AvgPool2d, x: np.ndarray) -> np.ndarray:
    return sum_pool(op, x) / float(np.prod(op.kernel_size))


def max_pool(op: MaxPool1d | MaxPool2d, x: np.ndarray) -> np.ndarray:
    """Max over each window of ``x`` padded with -inf as ``op.pads`` says (torch's windows)."""
    rank = op.spatial_rank
    x = np.pad(x.astype(F), [(0, 0), (0, 0)] + op.pads(x.shape[2:]), constant_values=-np.inf)
    win = _windows(x, op.kernel_size, op.stride, (0,) * rank, op.dilation)
    return win.max(axis=tuple(range(-rank, 0)))


def batch_norm(op: BatchNorm, x: np.ndarray) -> np.ndarray:
    """``x * a + b`` with the op's per-channel ``(a, b)``, channels on axis 1 of ``[B, C, ...]``."""
    a, b = op.coefficients()
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return x * a.reshape(shape) + b.reshape(shape)


# --- neurons ------------------------------------------------------------------
def decay_and_gain(tau: np.ndarray, sem: Semantics) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) for one time constant, as the neuron docstring defines."""
    if sem.discretisation == "euler":
        return 1.0 - sem.dt / tau, sem.dt / tau
    a = np.exp(-sem.dt / tau)
    return a, 1.0 - a


def spike(u: np.ndarray, thr: np.ndarray, sem: Semantics) -> np.ndarray:
    if sem.spike_mode == "multi":
        return np.maximum(np.floor(u / thr), 0.0)
    fired = u >= thr if sem.threshold_compare == "ge" else u > thr
    return fired.astype(F)


def reset(u: np.ndarray, z: np.ndarray, op: Neuron) -> np.ndarray:
    mode = op.sem.reset
    if mode == "zero":
        return np.where(z > 0, p(op, "v_reset"), u)
    if mode == "subtract":
        return u - z * p(op, "v_threshold")
    return u


def _driven(leaked: np.ndarray, drive: np.ndarray, fed: np.ndarray | None) -> np.ndarray:
    """``leaked + drive``, then the fed-back drive ``fed`` when given (its own add)."""
    u = leaked + drive
    return u if fed is None else u + fed


def _fire(op: Neuron, leaked: np.ndarray, drive: np.ndarray, state: dict,
          fed: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Spike and reset around ``(leaked + drive) + fed`` as ``op.sem.reset_timing`` says."""
    thr = p(op, "v_threshold")
    if op.sem.reset_timing in DELAYED_RESET_TIMINGS:
        if op.sem.resets_after_input:
            u = reset(_driven(leaked, drive, fed), state["z"], op)
        else:
            u = _driven(reset(leaked, state["z"], op), drive, fed)
        z = spike(u, thr, op.sem)
        return z, {"v": u, "z": z}
    u = _driven(leaked, drive, fed)
    z = spike(u, thr, op.sem)
    return z, {"v": reset(u, z, op)}


# Each neuron kernel takes ``fed``: the fed-back drive (the sum of the edges from the neuron's
# own component, snnir.ir.schedule), None where there is none; it enters through the input's
# gain right after the drive.
def integrator(op: I | IF, x: np.ndarray, state: dict, fed: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    drive = op.sem.dt * p(op, "r") * x
    fed_drive = None if fed is None else op.sem.dt * p(op, "r") * fed
    if isinstance(op, I):
        v = _driven(state["v"], drive, fed_drive)
        return v, {"v": v}
    return _fire(op, state["v"], drive, state, fed_drive)


def leaky(op: LI | LIF, x: np.ndarray, state: dict, fed: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    a, b = decay_and_gain(p(op, "tau"), op.sem)
    v_leak = p(op, "v_leak")
    leaked = v_leak + a * (state["v"] - v_leak)
    drive = b * p(op, "r") * x
    fed_drive = None if fed is None else b * p(op, "r") * fed
    if isinstance(op, LI):
        v = _driven(leaked, drive, fed_drive)
        return v, {"v": v}
    return _fire(op, leaked, drive, state, fed_drive)


def current_based(op: CubaLI | CubaLIF, x: np.ndarray, state: dict,
                  fed: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    a_syn, b_syn = decay_and_gain(p(op, "tau_syn"), op.sem)
    a_mem, b_mem = decay_and_gain(p(op, "tau_mem"), op.sem)
    i_new = _driven(a_syn * state["i"], b_syn * p(op, "w_in") * x, None if fed is None else b_syn * p(op, "w_in") * fed)
    i_used = i_new if op.sem.current_order == "current_first" else state["i"]
    v_leak = p(op, "v_leak")
    leaked = v_leak + a_mem * (state["v"] - v_leak)
    drive = b_mem * p(op, "r") * i_used
    if isinstance(op, CubaLI):
        v = leaked + drive
        return v, {"i": i_new, "v": v}
    z, new = _fire(op, leaked, drive, state)
    return z, {"i": i_new, **new}


def delay(op: Delay, x: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
    steps = np.broadcast_to(op.steps(), x.shape[1:])
    history = np.concatenate([state["buffer"], x[None]], axis=0)  # newest last
    index = (history.shape[0] - 1 - steps)[None, None]
    y = np.take_along_axis(history, np.broadcast_to(index, (1,) + x.shape), axis=0)[0]
    return y, {"buffer": history[1:]}


def delay_state(op: Delay, shape, batch: int) -> dict:
    depth = int(op.steps().max()) if op.delay.size else 0
    return {"buffer": np.zeros((depth, batch) + tuple(shape), dtype=F)}


STATELESS = {
    Affine: affine, Linear: linear, Scale: scale, Flatten: flatten, Threshold: threshold,
    Conv1d: conv, Conv2d: conv, SumPool2d: sum_pool, AvgPool2d: avg_pool, MaxPool1d: max_pool,
    MaxPool2d: max_pool, BatchNorm: batch_norm,
}
STATEFUL = {
    I: integrator, IF: integrator, LI: leaky, LIF: leaky, CubaLI: current_based,
    CubaLIF: current_based, Delay: delay,
}
