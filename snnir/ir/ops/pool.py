"""Max pooling, an extension op (NIR has none): ``snnir.MaxPool1d`` and ``snnir.MaxPool2d``.

Per channel, over the per-sample shape ``[C, *spatial]``, exactly as torch's ``max_pool1d`` /
``max_pool2d``::

    y[c, o] = max over j in [0, k)^rank of x_pad[c, o * s + j * d]

where ``x_pad`` is ``x`` with ``p`` cells of -inf on both sides of each spatial dim (and
-inf past its end for ``ceil_mode``), ``k`` the kernel, ``s`` the stride (default ``k``),
``d`` the dilation. Output size per spatial dim (torch's formula)::

    n_out = floor((n + 2p - d(k - 1) - 1 + (s - 1 if ceil_mode else 0)) / s) + 1,
    less one if ceil_mode and (n_out - 1) s >= n + p (the last window must start
    inside the input or the left padding).

Torch's limits hold: ``k, s, d >= 1``, ``0 <= p <= k // 2``, and ``n_out >= 1``; a window
spans at most ``MAX_ELEMENTS`` cells per dim (``d(k - 1) + 1``). A window
that samples only padding yields -inf (as torch). When every window samples the input and
the input is 0/1 spikes, the op equals a window sum then ``> 0.5`` (:meth:`binary_form`), its
extra ``ceil_mode`` windows included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from snnir.errors import SnnirError
from snnir.ir.ops.base import MAX_PARAM_ELEMENTS, Op, Shape, require_input
from snnir.ir.ops.shape_utils import MAX_ELEMENTS, as_int_tuple
from snnir.ir.registry import register_op

if TYPE_CHECKING:
    from snnir.ir.graph import Graph


def pool_output_size(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """Torch's ``pooling_output_shape`` for one spatial dim (may be < 1: no output)."""
    span = n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
    out = span // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


class _MaxPoolBase(Op):
    """``y = max of each window, -inf padded``; see the module docstring for the equation."""

    spatial_rank = 0

    def __post_init__(self) -> None:
        rank, set_ = self.spatial_rank, object.__setattr__
        set_(self, "kernel_size", as_int_tuple(self.kernel_size, rank, f"{self.op_type}.kernel_size", 1))
        stride = self.kernel_size if self.stride is None else self.stride
        set_(self, "stride", as_int_tuple(stride, rank, f"{self.op_type}.stride", 1))
        set_(self, "padding", as_int_tuple(self.padding, rank, f"{self.op_type}.padding", 0))
        set_(self, "dilation", as_int_tuple(self.dilation, rank, f"{self.op_type}.dilation", 1))
        ceil = self.ceil_mode
        if not isinstance(ceil, (bool, np.bool_, int, np.integer)) or ceil not in (0, 1):
            raise SnnirError(f"{self.op_type}.ceil_mode must be true or false, got {ceil!r}")
        set_(self, "ceil_mode", bool(ceil))
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise SnnirError(
                f"{self.op_type}.padding {list(self.padding)} must be at most half the kernel "
                f"{list(self.kernel_size)} (as torch)"
            )
        spans = [d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation)]
        if max(spans) > MAX_ELEMENTS:
            raise SnnirError(f"{self.op_type} window (kernel {list(self.kernel_size)}, dilation {list(self.dilation)}) "
                             f"spans {max(spans)} cells, more than the limit {MAX_ELEMENTS}")
        super().__post_init__()

    def _dims(self):
        return zip(self.kernel_size, self.stride, self.padding, self.dilation)

    def infer_shape(self, input_shape: Shape | None, node: str) -> Shape:
        shape = require_input(self, input_shape, node)
        rank = self.spatial_rank
        if len(shape) != rank + 1:
            dims = "L" if rank == 1 else "H, W"
            raise SnnirError(f"{self.op_type} expects input [C, {dims}], got {list(shape)}", node)
        spatial = tuple(
            pool_output_size(n, k, s, p, d, self.ceil_mode) for n, (k, s, p, d) in zip(shape[1:], self._dims())
        )
        if any(n < 1 for n in spatial):
            raise SnnirError(
                f"{self.op_type} output would be empty for input {list(shape)} "
                f"(kernel {list(self.kernel_size)}, dilation {list(self.dilation)}, padding {list(self.padding)})",
                node,
            )
        return (shape[0],) + spatial

    def every_window_samples_input(self, spatial: Shape) -> bool:
        """No window samples padding alone (so none yields -inf). Torch's rules make every
        window start before the input's end, so only windows starting in the left padding
        (at most ``p / s + 1`` per dim) can miss it; each is checked at its first sample >= 0, which
        lies at ``start mod d``: the first ``d`` such windows show every case (the first is the
        furthest left)."""
        for n, (k, s, p, d) in zip(spatial, self._dims()):
            last = (pool_output_size(n, k, s, p, d, self.ceil_mode) - 1) * s - p
            for start in [*range(-p, min(0, last + 1), s)[:d], last]:
                first = (-start + d - 1) // d if start < 0 else 0  # index of the first sample >= 0
                if first >= k or start + first * d >= n:
                    return False
        return True

    def pads(self, spatial: Shape) -> list[tuple[int, int]]:
        """Per spatial dim, the (left, right) -inf padding after which floor-mode windows
        (stride ``s``, no further padding) are exactly this op's: right padding reaches the
        end of the last window, and stops short of starting another."""
        pads = []
        for n, out, (k, s, p, d) in zip(spatial, self.infer_shape((1,) + tuple(spatial), "?")[1:], self._dims()):
            pads.append((p, max(0, (out - 1) * s + d * (k - 1) + 1 - n - p)))
        return pads

    def padded_elements(self, input_shape: Shape) -> int:
        """Numbers per sample of the input padded as :meth:`pads` says (what the reference
        interpreter copies the input into)."""
        padded = [n + left + right for n, (left, right) in zip(input_shape[1:], self.pads(tuple(input_shape[1:])))]
        return int(input_shape[0]) * int(np.prod(padded, dtype=object))

    def ceil_taps(self, spatial: Shape) -> tuple[np.ndarray, tuple[int, ...], tuple[int, ...]]:
        """(kernel, padding, dilation) of an undilated convolution whose windows, with the same
        padding on both sides, are this op's ceil-mode windows: each dim is padded by ``p + e``
        (``e``: what the last window needs past ``p`` on the right) and the kernel's first ``e``
        taps are zero, so each window starts where the op's does."""
        taps, padding = [], []
        for (left, right), k, d in zip(self.pads(spatial), self.kernel_size, self.dilation):
            extra = max(0, right - left)
            tap = np.zeros(extra + d * (k - 1) + 1)
            tap[extra::d] = 1.0
            taps.append(tap)
            padding.append(left + extra)
        kernel = taps[0] if self.spatial_rank == 1 else np.multiply.outer(*taps)
        return kernel, tuple(padding), (1,) * self.spatial_rank

    def ceil_adds_windows(self, spatial: Shape) -> bool:
        """``ceil_mode`` gives more windows than floor mode on this input."""
        return self.ceil_mode and any(
            pool_output_size(n, k, s, p, d, True) != pool_output_size(n, k, s, p, d, False)
            for n, (k, s, p, d) in zip(spatial, self._dims())
        )

    def binary_form(self, input_shape: Shape) -> "Graph | None":
        """On 0/1 inputs of ``input_shape``, the same op in standard NIR: a window sum then
        ``Threshold`` 0.5 (max of 0/1 values is 1 iff their sum is >= 1; zero padding adds
        nothing). None where no such form is exact: a window of padding alone (-inf), or a
        kernel past the parameter limit. The sum is ``SumPool2d`` (2-D, no dilation) or else a
        convolution with a kernel of ones from each channel to itself (``groups=1``: nir 1.0.8's
        type check ignores groups); where ``ceil_mode`` adds windows, which need more padding on
        the right than on the left and NIR pads both sides alike, that kernel is
        :meth:`ceil_taps`'. Sizes are checked before anything is allocated."""
        from snnir.ir.graph import Graph  # graph.py imports the ops package
        from snnir.ir.ops import Conv1d, Conv2d, Input, Output, SumPool2d, Threshold

        spatial = tuple(input_shape[1:])
        if not self.every_window_samples_input(spatial):
            return None
        channels = int(input_shape[0])
        ceil = self.ceil_adds_windows(spatial)
        if ceil:
            lengths = [max(0, right - left) + d * (k - 1) + 1
                       for (left, right), k, d in zip(self.pads(spatial), self.kernel_size, self.dilation)]
        else:
            lengths = list(self.kernel_size)
        if self.spatial_rank == 2 and self.dilation == (1, 1) and not ceil:
            window_sum: Op = SumPool2d(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding)
        elif channels * channels * int(np.prod(lengths, dtype=object)) > MAX_PARAM_ELEMENTS:
            return None  # the convolution's kernel would pass the parameter limit
        else:
            if ceil:
                taps, padding, dilation = self.ceil_taps(spatial)
            else:
                taps, padding, dilation = np.ones(self.kernel_size), self.padding, self.dilation
            conv = Conv1d if self.spatial_rank == 1 else Conv2d
            eye = np.eye(channels, dtype=np.float32).reshape((channels, channels) + (1,) * self.spatial_rank)
            ones = eye * taps.astype(np.float32)  # float32 sums of 0/1 are exact
            window_sum = conv(ones, np.zeros(channels, dtype=np.float32), stride=self.stride, padding=padding,
                              dilation=dilation, input_shape=spatial)
        out_shape = self.infer_shape(tuple(input_shape), "?")
        return Graph.sequential(
            ("input", Input(tuple(input_shape))),
            ("sum", window_sum),
            ("spike", Threshold(np.float64(0.5))),
            ("output", Output(out_shape)),
        )


@dataclass(frozen=True, eq=False)
class MaxPool1d(_MaxPoolBase):
    """y = max of each window of x, -inf padded; input [C, L] (torch's max_pool1d)."""

    op_type = "snnir.MaxPool1d"
    spatial_rank = 1
    kernel_size: Any = 2
    stride: Any = None
    padding: Any = 0
    dilation: Any = 1
    ceil_mode: bool = False


@dataclass(frozen=True, eq=False)
class MaxPool2d(_MaxPoolBase):
    """y = max of each window of x, -inf padded; input [C, H, W] (torch's max_pool2d)."""

    op_type = "snnir.MaxPool2d"
    spatial_rank = 2
    kernel_size: Any = 2
    stride: Any = None
    padding: Any = 0
    dilation: Any = 1
    ceil_mode: bool = False


MAX_POOLS = (MaxPool1d, MaxPool2d)
for _cls in MAX_POOLS:
    register_op(_cls)
