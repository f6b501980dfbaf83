"""Plain-torch kernels of snnir's standard ops, one time step on ``[B, ...]`` tensors.

Generated torch source (:mod:`snnir.targets.torch.codegen`) embeds this file's code after
its docstring, so it must import nothing but torch. Each kernel follows the op's docstring
in the same arithmetic order as the reference interpreter (``targets/reference/kernels.py``);
spikes are exact in the forward and take the surrogate gradient ``SURROGATE`` (the generated
module states its own; ``targets/torch/surrogate.py`` defines each); a reset passes no gradient
through the spikes (snnTorch's detached reset, the torch target's default).
"""

import torch
import torch.nn.functional as F

SURROGATE, SLOPE = "fast_sigmoid", 25.0


def surrogate_grad(d):
    """The surrogate derivative at ``d = u - threshold``."""
    k = SLOPE
    if SURROGATE == "fast_sigmoid":
        return 1.0 / (k * d.abs() + 1.0) ** 2
    if SURROGATE == "arctan":
        return (k / 2) / (1 + (torch.pi / 2 * k * d) ** 2)
    if SURROGATE == "sigmoid":
        s = torch.sigmoid(k * d)
        return k * s * (1 - s)
    if SURROGATE == "straight_through":
        return torch.ones_like(d)
    return k * torch.clamp(1 - k * d.abs(), min=0)  # triangular


class SpikeFn(torch.autograd.Function):
    """``d > 0`` (or ``d >= 0``) as 0/1, with the surrogate gradient."""

    @staticmethod
    def forward(ctx, d, ge):
        ctx.save_for_backward(d)
        return (d >= 0 if ge else d > 0).to(d.dtype)

    @staticmethod
    def backward(ctx, grad):
        (d,) = ctx.saved_tensors
        return grad * surrogate_grad(d), None


def spike(u, thr, sem):
    """Spikes of membrane ``u`` (``u - thr > 0`` exactly when ``u > thr``)."""
    if sem["spike_mode"] == "multi":
        surrogate = SpikeFn.apply(u - thr, True)
        return torch.clamp(torch.floor(u / thr), min=0).detach() + surrogate - surrogate.detach()
    return SpikeFn.apply(u - thr, sem["threshold_compare"] == "ge")


def decay_and_gain(p, tau, decay, sem):
    """(decay a, gain b) of time constant ``p[tau]``; a trained decay ``p[decay]`` (the op held
    its input gain while it trains), clamped to [0, 1] as snnTorch clamps beta, replaces a, b
    staying the time constant's."""
    dt = p[tau].new_tensor(sem["dt"])  # a true division, as the reference's (not ``* (1 / tau)``)
    if sem["discretisation"] == "euler":
        a, b = 1.0 - dt / p[tau], dt / p[tau]
    else:
        a = torch.exp(-dt / p[tau])
        b = 1.0 - a
    return (p[decay].clamp(0.0, 1.0), b) if decay in p else (a, b)


def reset(u, z, p, sem):
    """``u`` reset by spikes ``z``, which pass it no gradient (as snnTorch's detached reset)."""
    if sem["reset"] == "zero":
        return torch.where(z > 0, p["v_reset"], u)
    if sem["reset"] == "subtract":
        return u - z.detach() * p["v_threshold"]
    return u


def driven(base, drive, fed):
    """``base + drive``, then the fed-back drive ``fed`` (a recurrent edge's) where there is one."""
    return base + drive if fed is None else (base + drive) + fed


def fire(leaked, drive, state, p, sem, fed=None):
    """Spike and reset around ``(leaked + drive) + fed`` as the reset timing says: ``(z, new state)``."""
    thr = p["v_threshold"]
    if sem["reset_timing"] in ("next", "next_after_input"):
        if sem["reset_timing"] == "next_after_input" or sem["reset"] == "subtract":  # after the input
            u = reset(driven(leaked, drive, fed), state["z"], p, sem)
        else:
            u = driven(reset(leaked, state["z"], p, sem), drive, fed)
        z = spike(u, thr, sem)
        return z, {"v": u, "z": z}
    u = driven(leaked, drive, fed)
    z = spike(u, thr, sem)
    return z, {"v": reset(u, z, p, sem)}


# ``fed``: the neuron's fed-back drive (its edges from its own recurrent component), through
# the input's gain right after the drive, or None
def integrator(x, state, p, sem, spiking, fed=None):
    """I (``spiking`` False) and IF."""
    drive = sem["dt"] * p["r"] * x
    fed = None if fed is None else sem["dt"] * p["r"] * fed
    if not spiking:
        v = driven(state["v"], drive, fed)
        return v, {"v": v}
    return fire(state["v"], drive, state, p, sem, fed)


def leaky(x, state, p, sem, spiking, fed=None):
    """LI (``spiking`` False) and LIF."""
    a, b = decay_and_gain(p, "tau", "a_mem", sem)
    leaked = p["v_leak"] + a * (state["v"] - p["v_leak"])
    drive = b * p["r"] * x
    fed = None if fed is None else b * p["r"] * fed
    if not spiking:
        v = driven(leaked, drive, fed)
        return v, {"v": v}
    return fire(leaked, drive, state, p, sem, fed)


def current_based(x, state, p, sem, spiking, fed=None):
    """CubaLI (``spiking`` False) and CubaLIF."""
    a_syn, b_syn = decay_and_gain(p, "tau_syn", "a_syn", sem)
    a_mem, b_mem = decay_and_gain(p, "tau_mem", "a_mem", sem)
    i_new = driven(a_syn * state["i"], b_syn * p["w_in"] * x, None if fed is None else b_syn * p["w_in"] * fed)
    i_used = i_new if sem["current_order"] == "current_first" else state["i"]
    leaked = p["v_leak"] + a_mem * (state["v"] - p["v_leak"])
    drive = b_mem * p["r"] * i_used
    if not spiking:
        v = leaked + drive
        return v, {"i": i_new, "v": v}
    z, new = fire(leaked, drive, state, p, sem)
    return z, {"i": i_new, **new}


def delay(x, state, p, sem, spiking):
    """Each element of ``x`` ``p["steps"]`` steps late (zeros at first); no gradient where
    ``sem["detached"]``."""
    history = torch.cat([state["buffer"], x[None]], dim=0)  # newest last
    index = (history.shape[0] - 1 - p["steps"]).expand(x.shape)[None]
    y = torch.take_along_dim(history, index, dim=0)[0]
    return y.detach() if sem.get("detached") else y, {"buffer": history[1:]}


def affine(x, p):
    return x @ p["weight"].T + p["bias"]


def linear(x, p):
    return x @ p["weight"].T


def scale(x, p):
    return x * p["scale"]


def threshold(x, p):
    return SpikeFn.apply(x - p["threshold"], False)


def conv(x, p, stride, padding, dilation, groups):
    """Conv1d or Conv2d; the bias is added as the reference does (a scalar or one per channel)."""
    weight, bias = p["weight"], p["bias"]
    y = (F.conv1d if weight.dim() == 3 else F.conv2d)(x, weight, None, stride, padding, dilation, groups)
    return y + bias.reshape((-1,) + (1,) * (weight.dim() - 2)) if bias.dim() else y + bias


def sum_pool(x, kernel_size, stride, padding):
    return F.avg_pool2d(x, kernel_size, stride, padding, count_include_pad=True, divisor_override=1)


def avg_pool(x, kernel_size, stride, padding):
    return sum_pool(x, kernel_size, stride, padding) / float(kernel_size[0] * kernel_size[1])


def batch_norm(x, p, eps):
    """Per channel (dim 1) by fixed statistics, torch's eval kernel (the model's own bits)."""
    return F.batch_norm(x.contiguous(), p["mean"], p["var"], p["weight"], p["bias"], training=False, eps=eps)


def max_pool(x, kernel_size, stride, padding, dilation, ceil_mode):
    """MaxPool1d or MaxPool2d, padded with -inf (torch's max_pool)."""
    pool = F.max_pool1d if len(kernel_size) == 1 else F.max_pool2d
    return pool(x, kernel_size, stride, padding, dilation, ceil_mode)
