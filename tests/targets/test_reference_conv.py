"""The reference interpreter's convolutions and pools against direct numpy loops (fixed and
hypothesis-drawn shapes)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import snnir
from snnir.ir import AvgPool2d, Conv1d, Conv2d, SumPool2d

from tests.targets.test_reference import single


def conv_loops(x, w, b, stride, padding, dilation, groups):
    """Direct cross-correlation over [B, C, *spatial] with explicit loops."""
    rank = w.ndim - 2
    xp = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in padding])
    c_out, c_in_g = w.shape[:2]
    out_sp = [
        (x.shape[2 + d] + 2 * padding[d] - dilation[d] * (w.shape[2 + d] - 1) - 1) // stride[d] + 1
        for d in range(rank)
    ]
    y = np.zeros((x.shape[0], c_out, *out_sp))
    per_group = c_out // groups
    for o in range(c_out):
        g = o // per_group
        for pos in np.ndindex(*out_sp):
            acc = np.zeros(x.shape[0])
            for c in range(c_in_g):
                for k in np.ndindex(*w.shape[2:]):
                    src = tuple(pos[d] * stride[d] + k[d] * dilation[d] for d in range(rank))
                    acc += w[(o, c) + k] * xp[(slice(None), g * c_in_g + c) + src]
            y[(slice(None), o) + pos] = acc + b[o]
    return y


CONVS = [
    ("1d plain", (3, 11), (4, 3, 3), 1, 0, 1, 1),
    ("1d strided padded dilated", (4, 13), (6, 2, 3), 2, 2, 2, 2),
    ("2d plain", (2, 7, 6), (3, 2, 3, 3), 1, 0, 1, 1),
    ("2d mixed", (4, 9, 8), (4, 2, 3, 2), (2, 1), (1, 2), (1, 2), 2),
    ("2d depthwise", (3, 6, 6), (3, 1, 3, 3), 1, 1, 1, 3),
]


@pytest.mark.parametrize("name, in_shape, w_shape, stride, padding, dilation, groups", CONVS, ids=[c[0] for c in CONVS])
def test_conv_matches_direct_loops(name, in_shape, w_shape, stride, padding, dilation, groups):
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=w_shape), rng.normal(size=w_shape[0])
    cls = Conv1d if len(in_shape) == 2 else Conv2d
    op = cls(weight=w, bias=b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    x = rng.normal(size=(3, 2) + in_shape)
    y = snnir.run(single(op, in_shape), x)["y"]
    for t in range(3):
        expected = conv_loops(x[t], w, b, op.stride, op.padding, op.dilation, groups)
        np.testing.assert_allclose(y[t], expected, rtol=1e-10, atol=1e-12)


def pool_loops(x, kernel, stride, padding, mean):
    xp = np.pad(x, [(0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2])
    out_h = (x.shape[2] + 2 * padding[0] - kernel[0]) // stride[0] + 1
    out_w = (x.shape[3] + 2 * padding[1] - kernel[1]) // stride[1] + 1
    y = np.zeros(x.shape[:2] + (out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            window = xp[:, :, i * stride[0] : i * stride[0] + kernel[0], j * stride[1] : j * stride[1] + kernel[1]]
            y[:, :, i, j] = window.mean(axis=(2, 3)) if mean else window.sum(axis=(2, 3))
    return y


@pytest.mark.parametrize("cls", [SumPool2d, AvgPool2d])
@pytest.mark.parametrize("kernel, stride, padding", [(2, None, 0), ((3, 2), (2, 1), (1, 0))])
def test_pool_matches_direct_loops(cls, kernel, stride, padding):
    op = cls(kernel_size=kernel, stride=stride, padding=padding)
    x = np.random.default_rng(2).normal(size=(2, 2, 3, 7, 6))
    y = snnir.run(single(op, (3, 7, 6)), x)["y"]
    for t in range(2):
        expected = pool_loops(x[t], op.kernel_size, op.stride, op.padding, cls is AvgPool2d)
        np.testing.assert_allclose(y[t], expected, rtol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    rank=st.sampled_from([1, 2]),
    groups=st.sampled_from([1, 2]),
    c_out_per_group=st.integers(1, 2),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    dilation=st.integers(1, 2),
    size=st.integers(5, 9),
)
def test_random_conv_shapes_and_values_match_loops(
    rank, groups, c_out_per_group, kernel, stride, padding, dilation, size
):
    """infer_shape agrees with what the kernel computes, and the values with direct loops."""
    rng = np.random.default_rng(kernel + 3 * stride + 7 * size)
    c_in = 2 * groups
    w = rng.normal(size=(c_out_per_group * groups, 2) + (kernel,) * rank)
    b = rng.normal(size=w.shape[0])
    in_shape = (c_in,) + (size,) * rank
    cls = Conv1d if rank == 1 else Conv2d
    op = cls(weight=w, bias=b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    out_shape = op.infer_shape(in_shape, "conv")
    x = rng.normal(size=(1, 2) + in_shape)
    y = snnir.run(single(op, in_shape), x)["y"]
    assert y.shape[2:] == out_shape
    expected = conv_loops(x[0], w, b, op.stride, op.padding, op.dilation, groups)
    np.testing.assert_allclose(y[0], expected, rtol=1e-10, atol=1e-12)
