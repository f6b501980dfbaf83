r"""Triton kernels of one neuron's scan over T steps: forward and BPTT backward.

The same update, operation order and gradient conventions as the Python loop
(:mod:`snnir.targets.torch.neuron_update`, :mod:`snnir.targets.torch.bptt`: the
specification). One program runs ``BLOCK`` of the ``M = B x N`` elements with their
state in registers and walks time inside. The state is computed in the dtype of
the state tensors (float32, or float64), whatever the input's (bf16/fp16 inputs are
read and widened); outputs are written in their tensor's dtype. Launched with
``enable_fp_fusion=False`` so no multiply-add is fused: every operation rounds as
the corresponding torch op does, and spikes equal the Python loop's.

Coefficients (``a_mem, v_leak, gain, thr, v_reset, a_syn, gain_syn``) are ``[N]``
tensors of the state's dtype, read at ``m % N``; absent ones are flagged by
``HAS_*`` and their pointer is not read.
"""

from __future__ import annotations

import triton
import triton.language as tl
from triton import knobs


def _device(fn):
    """A device function called from the kernels: jitted, or in Triton's interpreter the plain
    function (the interpreter patches ``triton.language`` again on every jitted call, which
    made the interpreted kernels several times slower)."""
    return fn if knobs.runtime.interpret else triton.jit(fn)


@_device
def _reset(u, z, thr, v_reset, RESET: tl.constexpr):
    """``u`` reset by spikes ``z``: to ``v_reset`` (RESET 1, zero), by ``z thr`` (2, subtract), or not (0)."""
    if RESET == 1:
        return tl.where(z > 0, v_reset, u)
    elif RESET == 2:
        return u - z * thr
    else:
        return u



@_device
def _spike(u, thr, MULTI: tl.constexpr, INCLUSIVE: tl.constexpr):
    """The spikes of pre-reset membranes ``u`` (a count ``max(floor(u / thr), 0)`` with MULTI)."""
    if MULTI:
        if u.dtype == tl.float32:  # correctly rounded, as torch's (fp32 `/` may be approximate)
            q = tl.math.div_rn(u, thr)
        else:
            q = u / thr
        return tl.maximum(tl.floor(q), 0.0).to(u.dtype)
    elif INCLUSIVE:
        return (u >= thr).to(u.dtype)
    else:
        return (u > thr).to(u.dtype)


@_device
def _coefficients(
    a_mem_ptr, v_leak_ptr, gain_ptr, thr_ptr, v_reset_ptr, a_syn_ptr, gain_syn_ptr, n, mask,
    SPIKING: tl.constexpr, RESET: tl.constexpr, HAS_CURRENT: tl.constexpr, HAS_A_MEM: tl.constexpr,
    HAS_V_LEAK: tl.constexpr,
):
    """The coefficients of neurons ``n``; an absent one is zeros, never used (thr and v_reset
    of a neuron without spikes or zero reset are zeros that cancel)."""
    gain = tl.load(gain_ptr + n, mask=mask, other=1.0)
    a_mem = tl.zeros(gain.shape, gain.dtype)
    v_leak = a_mem
    thr = a_mem
    v_reset = a_mem
    a_syn = a_mem
    gain_syn = a_mem
    if HAS_A_MEM:
        a_mem = tl.load(a_mem_ptr + n, mask=mask, other=1.0)
    if HAS_V_LEAK:
        v_leak = tl.load(v_leak_ptr + n, mask=mask, other=0.0)
    if SPIKING:
        thr = tl.load(thr_ptr + n, mask=mask, other=1.0)
    if RESET == 1:
        v_reset = tl.load(v_reset_ptr + n, mask=mask, other=0.0)
    if HAS_CURRENT:
        a_syn = tl.load(a_syn_ptr + n, mask=mask, other=1.0)
        gain_syn = tl.load(gain_syn_ptr + n, mask=mask, other=1.0)
    return a_mem, v_leak, gain, thr, v_reset, a_syn, gain_syn


@triton.jit(do_not_specialize=["M", "N", "steps"])
def scan_forward(
    x_ptr, fed_ptr, v0_ptr, i0_ptr, z0_ptr,
    a_mem_ptr, v_leak_ptr, gain_ptr, thr_ptr, v_reset_ptr, a_syn_ptr, gain_syn_ptr,
    out_ptr, v_ptr, i_ptr, z_ptr, us_ptr, is_ptr, bits_ptr,
    M, N, steps,
    SPIKING: tl.constexpr, HAS_CURRENT: tl.constexpr, NEXT: tl.constexpr, RESET: tl.constexpr,
    INCLUSIVE: tl.constexpr, MULTI: tl.constexpr, CURRENT_FIRST: tl.constexpr, AFTER_INPUT: tl.constexpr,
    STATIC: tl.constexpr, HAS_A_MEM: tl.constexpr, HAS_V_LEAK: tl.constexpr,
    WRITE_OUT: tl.constexpr, KEEP: tl.constexpr, BITS: tl.constexpr, FED: tl.constexpr, BLOCK: tl.constexpr,
):
    """Runs T steps from (v0, i0, z0): writes each step's output (spikes, or the membrane of
    a non-spiking neuron) to ``out`` with WRITE_OUT, its pre-reset membrane to ``us`` and its
    current to ``is`` with KEEP (the backward's recomputation), single spikes as one byte each
    to ``bits`` with BITS (a layer's dL/dW), and the final states. With FED, ``fed`` (laid out
    as a per-step x) is the fed-back drive (``snnir.ir.schedule``): through the input's gain
    right after the drive, ``(leak + gain x) + gain fed``, or into the current likewise."""
    m = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = m < M
    n = m % N
    v = tl.load(v0_ptr + m, mask=mask, other=0.0)
    dt = v.dtype
    a_mem, v_leak, gain, thr, v_reset, a_syn, gain_syn = _coefficients(
        a_mem_ptr, v_leak_ptr, gain_ptr, thr_ptr, v_reset_ptr, a_syn_ptr, gain_syn_ptr, n, mask,
        SPIKING, RESET, HAS_CURRENT, HAS_A_MEM, HAS_V_LEAK,
    )
    if HAS_CURRENT:
        i = tl.load(i0_ptr + m, mask=mask, other=0.0)
    else:
        i = tl.zeros([BLOCK], dt)
    if NEXT:
        z = tl.load(z0_ptr + m, mask=mask, other=0.0)
    else:
        z = tl.zeros([BLOCK], dt)
    if STATIC:  # a held input: its drive is computed once
        x_held = tl.load(x_ptr + m, mask=mask, other=0.0).to(dt)
        if HAS_CURRENT:
            drive_held = gain_syn * x_held
        else:
            drive_held = gain * x_held
    for t in range(steps):
        row = tl.cast(t, tl.int64) * M + m
        if HAS_CURRENT:
            if STATIC:
                i_new = a_syn * i + drive_held
            else:
                i_new = a_syn * i + gain_syn * tl.load(x_ptr + row, mask=mask, other=0.0).to(dt)
            if FED:
                i_new = i_new + gain_syn * tl.load(fed_ptr + row, mask=mask, other=0.0).to(dt)
            if CURRENT_FIRST:
                drive = gain * i_new
            else:
                drive = gain * i
            i = i_new
            if KEEP:
                tl.store(is_ptr + row, i, mask=mask)
        elif STATIC:
            drive = drive_held
        else:
            drive = gain * tl.load(x_ptr + row, mask=mask, other=0.0).to(dt)
        if HAS_A_MEM:
            if HAS_V_LEAK:
                leaked = v_leak + a_mem * (v - v_leak)
            else:
                leaked = v * a_mem
        else:
            leaked = v
        if FED and not HAS_CURRENT:
            fed_drive = gain * tl.load(fed_ptr + row, mask=mask, other=0.0).to(dt)
        if NEXT:  # reset by the previous step's spikes: after the input (always for subtract), or before
            if AFTER_INPUT or RESET == 2:
                u = leaked + drive
                if FED and not HAS_CURRENT:
                    u = u + fed_drive
                u = _reset(u, z, thr, v_reset, RESET)
            else:
                u = _reset(leaked, z, thr, v_reset, RESET) + drive
                if FED and not HAS_CURRENT:
                    u = u + fed_drive
        else:
            u = leaked + drive
            if FED and not HAS_CURRENT:
                u = u + fed_drive
        if KEEP:
            tl.store(us_ptr + row, u, mask=mask)
        if SPIKING:
            z = _spike(u, thr, MULTI, INCLUSIVE)
            if NEXT:
                v = u
            else:
                v = _reset(u, z, thr, v_reset, RESET)
            if WRITE_OUT:
                tl.store(out_ptr + row, z.to(out_ptr.dtype.element_ty), mask=mask)
            if BITS:
                tl.store(bits_ptr + row, (z > 0).to(tl.uint8), mask=mask)
        else:
            v = u
            if WRITE_OUT:
                tl.store(out_ptr + row, u.to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(v_ptr + m, v, mask=mask)
    if HAS_CURRENT:
        tl.store(i_ptr + m, i, mask=mask)
    if NEXT:
        tl.store(z_ptr + m, z, mask=mask)


@triton.jit(do_not_specialize=["M", "N", "steps"])
def scan_backward(
    x_ptr, v0_ptr, i0_ptr, z0_ptr,
    a_mem_ptr, v_leak_ptr, gain_ptr, thr_ptr, v_reset_ptr, a_syn_ptr, gain_syn_ptr,
    us_ptr, is_ptr, g_out_ptr, g_v_ptr, g_i_ptr, g_z_ptr, surr_ptr,
    g_x_ptr, g_v0_ptr, g_i0_ptr, g_z0_ptr, acc_ptr,
    M, N, steps,
    SPIKING: tl.constexpr, HAS_CURRENT: tl.constexpr, NEXT: tl.constexpr, RESET: tl.constexpr,
    INCLUSIVE: tl.constexpr, MULTI: tl.constexpr, CURRENT_FIRST: tl.constexpr, AFTER_INPUT: tl.constexpr,
    STATIC: tl.constexpr, HAS_A_MEM: tl.constexpr, HAS_V_LEAK: tl.constexpr,
    DETACH: tl.constexpr, SURR: tl.constexpr, NEED_X: tl.constexpr, NEED_COEFFS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """BPTT from the final-state gradients (g_v, g_i, g_z) and each step's output gradient,
    given every step's pre-reset membrane ``us`` (and current ``is``). Writes dL/dx (summed
    over steps for a held input), the initial-state gradients and, with NEED_COEFFS, each
    element's gradient at every coefficient summed over steps (``acc[k, m]``, in the order
    of the pointers)."""
    m = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = m < M
    n = m % N
    v0 = tl.load(v0_ptr + m, mask=mask, other=0.0)
    dt = v0.dtype
    k = tl.load(surr_ptr)
    k_arg = tl.load(surr_ptr + 1)
    k_out = tl.load(surr_ptr + 2)
    a_mem, v_leak, gain, thr, v_reset, a_syn, gain_syn = _coefficients(
        a_mem_ptr, v_leak_ptr, gain_ptr, thr_ptr, v_reset_ptr, a_syn_ptr, gain_syn_ptr, n, mask,
        SPIKING, RESET, HAS_CURRENT, HAS_A_MEM, HAS_V_LEAK,
    )
    if HAS_CURRENT:
        i0 = tl.load(i0_ptr + m, mask=mask, other=0.0)
        g_i = tl.load(g_i_ptr + m, mask=mask, other=0.0)
    if NEXT:
        z0 = tl.load(z0_ptr + m, mask=mask, other=0.0)
        g_zs = tl.load(g_z_ptr + m, mask=mask, other=0.0)  # dL/dz_t as the next step's state
    else:
        g_zs = tl.zeros([BLOCK], dt)
    if STATIC:
        x_held = tl.load(x_ptr + m, mask=mask, other=0.0).to(dt)
    g_v = tl.load(g_v_ptr + m, mask=mask, other=0.0)
    g_x_sum = tl.zeros([BLOCK], dt)
    acc_a_mem = tl.zeros([BLOCK], dt)
    acc_v_leak = tl.zeros([BLOCK], dt)
    acc_gain = tl.zeros([BLOCK], dt)
    acc_thr = tl.zeros([BLOCK], dt)
    acc_v_reset = tl.zeros([BLOCK], dt)
    acc_a_syn = tl.zeros([BLOCK], dt)
    acc_gain_syn = tl.zeros([BLOCK], dt)
    # u and z: step t's pre-reset membrane and spikes; u_prev and z_prev: step t - 1's (z0 at t = 0)
    u = tl.load(us_ptr + tl.cast(steps - 1, tl.int64) * M + m, mask=mask, other=0.0)
    if SPIKING:
        z = _spike(u, thr, MULTI, INCLUSIVE)
    for step in range(steps):
        t = steps - 1 - step
        row = tl.cast(t, tl.int64) * M + m
        prev_row = row - M
        has_prev = mask & (row >= M)  # t > 0
        u_prev = tl.load(us_ptr + prev_row, mask=has_prev, other=0.0)
        if SPIKING:
            z_prev = _spike(u_prev, thr, MULTI, INCLUSIVE)
            if NEXT:
                z_prev = tl.where(has_prev, z_prev, z0)
        # through the spike and a same-step reset: g_u, the gradient at u
        if SPIKING:
            x_s = u - thr  # the surrogate derivative s at x_s (see surrogate.py)
            if SURR == 0:
                d = tl.abs(x_s) * k + 1.0
                s = 1.0 / (d * d)
            elif SURR == 1:
                a = x_s * k_arg
                s = (1.0 / (a * a + 1.0)) * k_out
            elif SURR == 2:
                s = tl.maximum(tl.abs(x_s) * (-k) + 1.0, 0.0) * k
            elif SURR == 3:
                sig = 1.0 / (1.0 + tl.exp(-(k * x_s)))
                s = k * sig * (1.0 - sig)
            else:
                s = tl.full(x_s.shape, 1.0, dt)
            g_spike = tl.load(g_out_ptr + row, mask=mask, other=0.0).to(dt)
            if NEXT:
                g_spike = g_spike + g_zs
            g_u = g_v
            if not NEXT and RESET == 1:
                g_u = tl.where(z > 0, 0.0, g_v).to(dt)
                acc_v_reset += g_v - g_u
            elif not NEXT and RESET == 2:
                if not DETACH:
                    g_spike = g_spike - g_v * thr
                acc_thr += -g_v * z
            g_u = g_u + g_spike * s
            acc_thr += -g_spike * s
        else:
            g_u = g_v + tl.load(g_out_ptr + row, mask=mask, other=0.0).to(dt)
        # through a reset by the previous step's spikes: g_leaked
        g_leaked = g_u
        if NEXT:
            if RESET == 2 and not DETACH:
                g_zs = -g_u * thr
            else:
                g_zs = tl.zeros([BLOCK], dt)
            if RESET == 1:
                g_leaked = tl.where(z_prev > 0, 0.0, g_u).to(dt)
                acc_v_reset += g_u - g_leaked
            elif RESET == 2:
                acc_thr += -g_u * z_prev
            if AFTER_INPUT:
                g_u = g_leaked  # the drive also entered before the reset
        # through the leak: g_v, the gradient at the previous step's stored membrane
        if HAS_A_MEM:
            g_v = g_leaked * a_mem
            if NEED_COEFFS:  # the previous step's stored membrane
                if SPIKING and not NEXT:
                    after = _reset(u_prev, z_prev, thr, v_reset, RESET)
                else:
                    after = u_prev
                v_prev = tl.where(has_prev, after, v0)
                if HAS_V_LEAK:
                    acc_a_mem += g_leaked * (v_prev - v_leak)
                    acc_v_leak += g_leaked * (1.0 - a_mem)
                else:
                    acc_a_mem += g_leaked * v_prev
        else:
            g_v = g_leaked
        # through the drive (and the synaptic current) to the input
        if STATIC:
            x_t = x_held
        elif NEED_COEFFS:
            x_t = tl.load(x_ptr + row, mask=mask, other=0.0).to(dt)
        g_drive_in = g_u * gain
        if HAS_CURRENT:
            i_prev = tl.where(has_prev, tl.load(is_ptr + prev_row, mask=has_prev, other=0.0), i0)
            if CURRENT_FIRST:
                if NEED_COEFFS:
                    acc_gain += g_u * tl.load(is_ptr + row, mask=mask, other=0.0)
                g_i_in = g_i + g_drive_in
                g_i = g_i_in * a_syn
            else:
                if NEED_COEFFS:
                    acc_gain += g_u * i_prev
                g_i_in = g_i
                g_i = g_drive_in + g_i_in * a_syn
            if NEED_COEFFS:
                acc_a_syn += g_i_in * i_prev
                acc_gain_syn += g_i_in * x_t
            g_in = g_i_in * gain_syn
        else:
            if NEED_COEFFS:
                acc_gain += g_u * x_t
            g_in = g_drive_in
        if STATIC:
            g_x_sum += g_in
        elif NEED_X:
            tl.store(g_x_ptr + row, g_in.to(g_x_ptr.dtype.element_ty), mask=mask)
        u = u_prev
        if SPIKING:
            z = z_prev
    if STATIC and NEED_X:
        tl.store(g_x_ptr + m, g_x_sum.to(g_x_ptr.dtype.element_ty), mask=mask)
    tl.store(g_v0_ptr + m, g_v, mask=mask)
    if HAS_CURRENT:
        tl.store(g_i0_ptr + m, g_i, mask=mask)
    if NEXT:
        tl.store(g_z0_ptr + m, g_zs, mask=mask)
    if NEED_COEFFS:
        tl.store(acc_ptr + m, acc_a_mem, mask=mask)
        tl.store(acc_ptr + M + m, acc_v_leak, mask=mask)
        tl.store(acc_ptr + 2 * M + m, acc_gain, mask=mask)
        tl.store(acc_ptr + 3 * M + m, acc_thr, mask=mask)
        tl.store(acc_ptr + 4 * M + m, acc_v_reset, mask=mask)
        tl.store(acc_ptr + 5 * M + m, acc_a_syn, mask=mask)
        tl.store(acc_ptr + 6 * M + m, acc_gain_syn, mask=mask)
