"""Gradient of the scan primitive (backpropagation through time) against finite differences."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnc
from nnc.backend.scan import scan
from nnc.testing import check_grads

small = st.floats(-1.5, 1.5, width=64)


def scan_case(draw):
    t, b, h, k = (draw(st.integers(1, 4)) for _ in range(4))
    reverse = draw(st.booleans())
    arrays = [draw(hnp.arrays(np.float64, s, elements=small)) for s in [(h, h), (k, h), (b, h), (t, b, k)]]

    def step(c, carry, x):
        h_new = nnc.tanh(carry[0] @ c[0] + x[0] @ c[1])
        return [h_new], [h_new * x[0][..., :1]]

    def fn(W, U, h0, xs):
        final, (ys,) = scan(step, [W, U], [h0], [xs], reverse=reverse)
        return nnc.sum(ys**2) + nnc.sum(final[0] * final[0])

    return fn, tuple(arrays)


CASES = {"scan": scan_case}


@given(data=st.data())
def test_scan_gradient_matches_finite_differences(data):
    fn, args = data.draw(st.composite(lambda d: scan_case(d))())
    check_grads(fn, *args, rtol=1e-5, atol=1e-7)


@given(data=st.data())
def test_scan_second_derivative_matches_finite_differences(data):
    fn, args = data.draw(st.composite(lambda d: scan_case(d))())
    grad_W = nnc.grad(fn, 0)
    check_grads(lambda W, U, h0, xs: nnc.sum(grad_W(W, U, h0, xs) ** 2), *args, rtol=1e-4, atol=1e-6)
