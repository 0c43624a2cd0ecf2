"""Gradients of the convolution and pooling primitives against central finite
differences (float64), over geometries drawn by hypothesis: odd sizes, stride > 1,
padding, dilation, batches of one. ``CASES`` joins the central completeness check."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnc
from nnc.backend import windows
from nnc.kernels.reference import output_size
from nnc.testing import check_grads

small = st.floats(-2, 2, width=64)
# Distinct values at least 0.01 apart: a finite difference never crosses a tie of max.
# Within [-1, 1]: the second-order check raises them to the sixth power, and larger
# values would drown the finite differences in rounding.
spaced = st.integers(-100, 100).map(lambda i: i / 100)


def arr(draw, shape, elements=small, unique=False):
    return draw(hnp.arrays(np.float64, shape, elements=elements, unique=unique))


def conv_geometry(draw):
    """Shapes and options of a valid convolution: every output size is at least 1."""
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    h = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0]), 6))
    w = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1]), 6))
    b, c, o = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    geometry = dict(stride=stride, padding=padding, dilation=dilation)
    ho = output_size(h, kh, stride[0], padding[0], dilation[0])
    wo = output_size(w, kw, stride[1], padding[1], dilation[1])
    return (b, c, h, w), (o, c, kh, kw), (b, o, ho, wo), geometry


def conv_case(draw):
    x_shape, w_shape, _, geometry = conv_geometry(draw)
    single = draw(st.booleans()) and x_shape[0] == 1
    x = arr(draw, x_shape[1:] if single else x_shape)
    return (lambda x, w: windows.conv2d(x, w, **geometry)), (x, arr(draw, w_shape))


def conv_input_grad_case(draw):
    x_shape, w_shape, y_shape, geometry = conv_geometry(draw)
    return (lambda g, w: windows.conv2d_input_grad(g, w, x_shape, **geometry)), (
        arr(draw, y_shape),
        arr(draw, w_shape),
    )


def conv_weight_grad_case(draw):
    x_shape, w_shape, y_shape, geometry = conv_geometry(draw)
    return (lambda x, g: windows.conv2d_weight_grad(x, g, w_shape, **geometry)), (
        arr(draw, x_shape),
        arr(draw, y_shape),
    )


def pool_geometry(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    h, w = draw(st.integers(kh, 6)), draw(st.integers(kw, 6))
    b, c = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    y_shape = (b, c, output_size(h, kh, stride[0], 0, 1), output_size(w, kw, stride[1], 0, 1))
    return (b, c, h, w), y_shape, (kh, kw), stride


def max_pool_case(draw):
    x_shape, _, kernel, stride = pool_geometry(draw)
    # squared, so that the gradient depends on the value routed, not only on where
    return (lambda x: windows.max_pool(x, kernel, stride) ** 2), (arr(draw, x_shape, spaced, unique=True),)


def max_pool_grad_case(draw):
    x_shape, y_shape, kernel, stride = pool_geometry(draw)
    x = arr(draw, x_shape, spaced, unique=True)  # fixed: the routing is constant in x
    return (lambda g: windows.max_pool_grad(x, g, kernel, stride)), (arr(draw, y_shape),)


def max_pool_gather_case(draw):
    x_shape, _, kernel, stride = pool_geometry(draw)
    x = arr(draw, x_shape, spaced, unique=True)
    return (lambda c: windows.max_pool_gather(x, c, kernel, stride)), (arr(draw, x_shape),)


def avg_pool_case(draw):
    x_shape, _, kernel, stride = pool_geometry(draw)
    single = draw(st.booleans()) and x_shape[0] == 1
    x = arr(draw, x_shape[1:] if single else x_shape)
    return (lambda x: windows.avg_pool(x, kernel, stride)), (x,)


def avg_pool_grad_case(draw):
    x_shape, y_shape, kernel, stride = pool_geometry(draw)
    return (lambda g: windows.avg_pool_grad(g, x_shape, kernel, stride)), (arr(draw, y_shape),)


CASES = {
    "conv2d": conv_case,
    "conv2d_input_grad": conv_input_grad_case,
    "conv2d_weight_grad": conv_weight_grad_case,
    "max_pool": max_pool_case,
    "max_pool_grad": max_pool_grad_case,
    "max_pool_gather": max_pool_gather_case,
    "avg_pool": avg_pool_case,
    "avg_pool_grad": avg_pool_grad_case,
}


@pytest.mark.parametrize("name", sorted(CASES))
@given(data=st.data())
def test_gradient_matches_finite_differences(name, data):
    fn, args = data.draw(st.composite(lambda d: CASES[name](d))())
    check_grads(fn, *args)


@pytest.mark.parametrize(
    "name", ["conv2d", "conv2d_input_grad", "conv2d_weight_grad", "max_pool", "avg_pool"]
)
@given(data=st.data())
def test_second_derivatives_match_finite_differences(name, data):
    """The gradient rules are written with primitives, so the backward pass differentiates too."""
    fn, args = data.draw(st.composite(lambda d: CASES[name](d))())
    if name.startswith("conv2d"):
        # within [-1, 1] (see `spaced`): the energy raises the values to the sixth power, and
        # from [-2, 2] its rounding drowned the finite differences of its smaller entries.
        args = tuple(a / 2 if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in args)

    def gradient_energy(*xs):
        grads = nnc.grad(lambda *ys: nnc.sum(fn(*ys) * fn(*ys)), tuple(range(len(xs))))(*xs)
        return sum(nnc.sum(g * g) for g in grads)

    check_grads(gradient_energy, *args, rtol=1e-4, atol=1e-6)


def test_the_cases_cover_every_primitive_this_area_defines():
    from nnc.backend.core import PRIMITIVES

    ours = {
        name
        for name, p in PRIMITIVES.items()
        if p.impl.__module__ in ("nnc.kernels.dispatch",) and not p.nondiff
    }
    assert ours == set(CASES)
