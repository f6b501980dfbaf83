"""torch.nn layers as snnir ops (per-sample: torch's batch dimension is dropped)."""

from __future__ import annotations

from typing import Any

import numpy as np

from snnir.errors import SnnirError
from snnir.ir.ops import Affine, AvgPool2d, Conv1d, Conv2d, Flatten, Linear, Op
from snnir.ir.ops.norm import BatchNorm
from snnir.ir.ops.pool import MaxPool1d, MaxPool2d

#: Layers that pass their input through in eval mode (no node).
DROPOUTS = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout")
PASSTHROUGH = ("Identity", *DROPOUTS)
BATCHNORMS = ("BatchNorm1d", "BatchNorm2d")
LAYERS = ("Linear", "Conv1d", "Conv2d", "AvgPool1d", "AvgPool2d", "MaxPool1d", "MaxPool2d", "Flatten", *BATCHNORMS)
#: torch functions that max-pool, by name (``F.max_pool1d/2d`` and the ``torch.`` ops they call).
MAX_POOL_FUNCS = {"max_pool1d": MaxPool1d, "max_pool2d": MaxPool2d}


def array(tensor: Any) -> np.ndarray:
    """A tensor's values in its own dtype (lossless)."""
    return tensor.detach().cpu().numpy().copy()


def _trainable(module: Any, names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n for n in names if getattr(getattr(module, n, None), "requires_grad", False))


def _conv(module: Any, layer: str) -> Op:
    if module.padding_mode != "zeros":
        raise SnnirError(f"{type(module).__name__} padding_mode={module.padding_mode!r} is not supported", layer)
    cls = Conv1d if type(module).__name__ == "Conv1d" else Conv2d
    bias = array(module.bias) if module.bias is not None else np.zeros((), dtype=array(module.weight).dtype)
    return cls(
        weight=array(module.weight), bias=bias, stride=module.stride, padding=module.padding,
        dilation=module.dilation, groups=module.groups, trainable=_trainable(module, ("weight", "bias")),
    )


def _avg_pool(module: Any, layer: str) -> Op:
    from snnir.frontends.functional import check_avg_pool

    check_avg_pool("AvgPool2d", vars(module), layer)
    return AvgPool2d(kernel_size=module.kernel_size, stride=module.stride, padding=module.padding)


def max_pool_op(cls: type, layer: str, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                ceil_mode: bool = False, return_indices: bool = False) -> Op:
    """torch's ``max_pool1d/2d`` arguments (stride None or empty: the kernel) as a max-pool op."""
    if return_indices:
        raise SnnirError(f"{cls.__name__} with return_indices=True is not supported (its indices are not a value "
                         "a graph can carry); pool without them", layer)
    if stride is not None and not isinstance(stride, int) and len(stride) == 0:
        stride = None
    try:
        return cls(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    except SnnirError as exc:
        raise SnnirError(exc.reason, layer) from None


def functional_max_pool(name: str, args: tuple, kwargs: dict, layer: str) -> Op | None:
    """The op for a call ``name(x, ...)`` to a max-pool function on batched ``x``, else ``None``."""
    cls = MAX_POOL_FUNCS[name]
    if args[0].dim() != cls.spatial_rank + 2:
        raise SnnirError(f"{name} on a {args[0].dim()}-D tensor: only batched input "
                         f"[B, C, {'L' if cls.spatial_rank == 1 else 'H, W'}] is supported", layer)
    return max_pool_op(cls, layer, *args[1:], **kwargs)


def flatten_op(start_dim: int, end_dim: int, layer: str) -> Flatten:
    """torch's batched ``flatten(start_dim, end_dim)`` as a per-sample Flatten."""
    if start_dim == 0:
        raise SnnirError("flattening the batch dimension (start_dim=0) is not supported", layer)
    return Flatten(start_dim=start_dim - 1 if start_dim > 0 else start_dim,
                   end_dim=end_dim - 1 if end_dim > 0 else end_dim)


def check_layer_input(module: Any, x: Any, layer: str) -> None:
    """Refuse an input a Linear or Conv layer cannot take, naming the layer and what it takes
    (torch says less: "mat1 and mat2 shapes cannot be multiplied")."""
    kind, shape = type(module).__name__, list(x.shape)
    if kind == "Linear" and shape[-1:] != [module.in_features]:
        raise SnnirError(f"Linear takes inputs [B, {module.in_features}] ({module.in_features} features last), "
                         f"got {shape}", layer)
    if kind in BATCHNORMS:
        ranks = (2, 3) if kind == "BatchNorm1d" else (4,)
        if len(shape) not in ranks or shape[1] != module.num_features:
            n = module.num_features
            takes = f"[B, {n}] or [B, {n}, L]" if kind == "BatchNorm1d" else f"[B, {n}, H, W]"
            raise SnnirError(f"{kind} takes inputs {takes} (channels second), got {shape}", layer)
    if kind in ("Conv1d", "Conv2d"):
        rank = 3 if kind == "Conv1d" else 4
        if len(shape) != rank or shape[1] != module.in_channels:
            spatial = "L" if kind == "Conv1d" else "H, W"
            raise SnnirError(f"{kind} takes inputs [B, {module.in_channels}, {spatial}] ({rank} dimensions), "
                             f"got {shape}", layer)


def layer_op(module: Any, layer: str) -> Op | None:
    """The op for a known stateless torch.nn layer, else ``None``."""
    kind = type(module).__name__
    if kind == "Linear":
        trainable = _trainable(module, ("weight", "bias"))
        if module.bias is None:
            return Linear(weight=array(module.weight), trainable=trainable)
        return Affine(weight=array(module.weight), bias=array(module.bias), trainable=trainable)
    if kind in ("Conv1d", "Conv2d"):
        return _conv(module, layer)
    if kind == "AvgPool2d":
        return _avg_pool(module, layer)
    if kind in ("MaxPool1d", "MaxPool2d"):
        cls = MaxPool1d if kind == "MaxPool1d" else MaxPool2d
        return max_pool_op(cls, layer, module.kernel_size, module.stride, module.padding, module.dilation,
                           module.ceil_mode, module.return_indices)
    if kind == "Flatten":
        return flatten_op(module.start_dim, module.end_dim, layer)
    if kind in BATCHNORMS:
        return batchnorm_op(module, layer)
    return None


def batchnorm_op(bn: Any, layer: str) -> Op:
    """An eval-mode BatchNorm1d/2d as :class:`~snnir.ir.ops.norm.BatchNorm` (its running statistics)."""
    if bn.running_mean is None or bn.running_var is None:
        raise SnnirError("BatchNorm without running statistics (track_running_stats=False) normalises each batch by "
                         "its own statistics, which a graph cannot state; build it with track_running_stats=True",
                         layer)
    mean, var = array(bn.running_mean), array(bn.running_var)
    weight = array(bn.weight) if bn.affine else np.ones_like(mean)
    bias = array(bn.bias) if bn.affine else np.zeros_like(mean)
    try:
        return BatchNorm(mean=mean, var=var, weight=weight, bias=bias, eps=bn.eps,
                         trainable=_trainable(bn, ("weight", "bias")) if bn.affine else ())
    except SnnirError as exc:
        raise SnnirError(exc.reason, layer) from None
