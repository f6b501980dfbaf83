"""``torch.nn.functional`` layers called between traced layers, as ops.

- ``F.linear(x, w, b)`` -> Affine (Linear without ``b``); ``F.conv1d`` /
  ``F.conv2d`` -> Conv1d / Conv2d. The weights are read as they are at trace
  time; a weight that is a module's parameter names the node after that
  module and is trainable when it requires grad.
- ``F.avg_pool2d`` -> AvgPool2d; ``F.avg_pool1d`` (and ``nn.AvgPool1d``, NIR
  having no 1-D pooling) -> a depthwise Conv1d whose weights are ``1/k``:
  the same average, summed in a different order (equal to rounding).
  ``ceil_mode``, ``divisor_override`` and padding with
  ``count_include_pad=False`` are refused naming the call.
- ``F.max_pool1d`` / ``F.max_pool2d`` (and ``torch.max_pool*d``) -> snnir.MaxPool1d /
  MaxPool2d, every option (:func:`~snnir.frontends.torch_nn_map.functional_max_pool`).

Each call site is keyed by its function, parameters (weights by identity)
and sources, so a call repeated at every time step is one node.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from snnir.errors import SnnirError
from snnir.frontends.torch_nn_map import MAX_POOL_FUNCS, functional_max_pool
from snnir.ir.ops import Affine, AvgPool2d, Conv1d, Conv2d, Linear, Op

_CONV = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_POOL = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
SIGNATURES = {"linear": ("input", "weight", "bias"), "conv1d": _CONV, "conv2d": _CONV,
              "avg_pool2d": _POOL, "avg_pool1d": _POOL[:-1]}
_DEFAULTS = {"bias": None, "stride": None, "padding": 0, "dilation": 1, "groups": 1, "ceil_mode": False,
             "count_include_pad": True, "divisor_override": None}


def functional_op(name: str, args: tuple, kwargs: dict, owner: Callable[[Any], str | None],
                  where: str) -> tuple[tuple, str, Op] | None:
    """``(key, node base name, op)`` for a functional layer call, ``None`` if ``name`` is not one."""
    if name in MAX_POOL_FUNCS:
        op = functional_max_pool(name, args, kwargs, where)
        return (name, repr(op)), name, op
    if name not in SIGNATURES:
        return None
    bound = {**_DEFAULTS, **dict(zip(SIGNATURES[name], args)), **kwargs}
    if name.startswith("avg_pool"):
        check_avg_pool(f"F.{name}", bound, where)
        stride = bound["stride"] if bound["stride"] not in (None, []) else bound["kernel_size"]
        key = (name, str(bound["kernel_size"]), str(stride), str(bound["padding"]))
        if name == "avg_pool2d":
            return key, name, AvgPool2d(kernel_size=bound["kernel_size"], stride=stride, padding=bound["padding"])
        return key, name, avg_pool1d_op(int(bound["input"].shape[1]), bound["kernel_size"], stride, bound["padding"])
    weight, bias = bound["weight"], bound["bias"]
    base = owner(weight) or name
    trainable = tuple(n for n, t in (("weight", weight), ("bias", bias)) if getattr(t, "requires_grad", False))
    key = (name, id(weight), id(bias), str([bound.get(k) for k in _CONV[3:]]))
    w = weight.detach().cpu().numpy().copy()
    b = bias.detach().cpu().numpy().copy() if bias is not None else None
    if name == "linear":
        return key, base, Linear(weight=w, trainable=trainable) if b is None else Affine(weight=w, bias=b, trainable=trainable)
    cls = Conv1d if name == "conv1d" else Conv2d
    return key, base, cls(weight=w, bias=b if b is not None else np.zeros((), dtype=w.dtype), stride=bound["stride"] or 1,
                          padding=bound["padding"], dilation=bound["dilation"], groups=bound["groups"],
                          trainable=trainable)


def check_avg_pool(what: str, options: dict, layer: str) -> None:
    """Refuse the average-pooling options NIR's pooling cannot state."""
    if options.get("ceil_mode") or options.get("divisor_override") is not None:
        raise SnnirError(f"{what} with ceil_mode or divisor_override is not supported; use the defaults", layer)
    if not options.get("count_include_pad", True) and np.any(np.asarray(options.get("padding", 0)) != 0):
        raise SnnirError(f"{what} with padding and count_include_pad=False is not supported", layer)


def avg_pool1d_op(channels: int, kernel: Any, stride: Any, padding: Any) -> Conv1d:
    """1-D average pooling over ``[C, L]`` as a depthwise Conv1d of weight ``1/k``."""
    k = int(np.ravel(kernel)[0])
    return Conv1d(weight=np.full((channels, 1, k), 1.0 / k), bias=np.zeros(channels), stride=stride,
                  padding=padding, groups=channels)
