"""erf, gelu (exact and tanh) and silu: values against their closed forms, gradients and second
derivatives against finite differences over hypothesis-drawn shapes and values, compiled
against interpreted, and the array-API forms against numpy."""

import math

import array_api_strict as xp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnc
from nnc.backend import activations, ops
from nnc.testing import check_grads

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
values = st.floats(-5, 5, width=64)


def _unary(fn):
    def make(draw):
        return fn, (draw(hnp.arrays(np.float64, draw(shapes), elements=values)),)

    return make


# Gathered by tests/test_primitive_gradients.py, which holds every primitive to a case.
CASES = {
    "erf": _unary(activations.erf),
    "gelu": _unary(activations.gelu),
    "gelu_tanh": _unary(lambda x: activations.gelu(x, approximate="tanh")),
    "silu": _unary(activations.silu),
}


def _gelu_exact(v: float) -> float:
    return 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))


def _gelu_tanh(v: float) -> float:
    return 0.5 * v * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v**3)))


CLOSED_FORMS = {
    "erf": math.erf,
    "gelu": _gelu_exact,
    "gelu_tanh": _gelu_tanh,
    "silu": lambda v: v / (1.0 + math.exp(-v)),
}


@pytest.mark.parametrize("name", sorted(CASES))
@given(x=hnp.arrays(np.float64, shapes, elements=values))
@settings(max_examples=30, deadline=None)
def test_values_match_the_closed_forms(name, x):
    expected = np.vectorize(CLOSED_FORMS[name], otypes=[np.float64])(x)
    got = _call(name, x)
    assert got.shape == x.shape and got.dtype == x.dtype
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)


def _call(name, x):
    return {
        "erf": activations.erf,
        "gelu": activations.gelu,
        "gelu_tanh": lambda v: activations.gelu(v, approximate="tanh"),
        "silu": activations.silu,
    }[name](x)


@pytest.mark.parametrize("name", sorted(CASES))
@given(data=st.data())
@settings(max_examples=30, deadline=None)
def test_gradient_matches_finite_differences(name, data):
    fn, args = data.draw(st.composite(lambda d: CASES[name](d))())
    check_grads(fn, *args)


@pytest.mark.parametrize("name", sorted(CASES))
@given(data=st.data())
@settings(max_examples=20, deadline=None)
def test_second_derivatives_match_finite_differences(name, data):
    fn, args = data.draw(st.composite(lambda d: CASES[name](d))())

    def gradient_energy(x):
        g = nnc.grad(lambda y: ops.sum(fn(y) * fn(y)))(x)
        return ops.sum(g * g)

    check_grads(gradient_energy, *args, eps=1e-5, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_equals_interpreted(name, dtype):
    x = np.linspace(-6, 6, 61).astype(dtype).reshape(61, 1) * np.ones((1, 3), dtype)

    def fn(v):
        return _call(name, v)

    compiled = nnc.compile(lambda v: fn(v) * 2.0)
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(compiled(x), fn(x) * 2.0, rtol=rtol, atol=rtol)
    grad = nnc.compile(nnc.grad(lambda v: ops.sum(fn(v))))
    # float32 gradients near -1 + tanh cancel: a few ulps of tanh apart (the compiled float32
    # tanh is a rational approximation) become some 1e-6 there
    atol = 1e-5 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(grad(x), nnc.grad(lambda v: ops.sum(fn(v)))(x), rtol=rtol, atol=atol)


def test_the_compiled_float32_erf_is_within_one_ulp_and_gelu_close():
    # the compiled float32 forms use the rational erf, not libm's: erf within one unit in the
    # last place of the correctly rounded value on a dense grid, NaN and infinities kept; gelu
    # within an ulp plus |x| times erf's absolute error (1 + erf cancels for x << 0)
    grid = np.linspace(-7, 7, 200_001).astype(np.float32)
    x = np.concatenate([grid, np.array([0.0, -0.0, np.inf, -np.inf, 1e-30, np.nan], np.float32)])
    exact = activations.erf(x.astype(np.float64)).astype(np.float32)
    got = nnc.compile(activations.erf)(x)
    assert got.dtype == np.float32
    finite = np.isfinite(x)
    ulps = np.abs(got.view(np.int32).astype(np.int64) - exact.view(np.int32).astype(np.int64))
    assert ulps[finite].max() <= 1
    np.testing.assert_array_equal(got[~finite], [1.0, -1.0, np.nan])
    assert np.signbit(got[grid.size + 1])  # erf(-0.0) is -0.0

    x64 = grid.astype(np.float64)
    exact_gelu = x64 * 0.5 * (1.0 + activations.erf(x64 / np.sqrt(2.0)))
    error = np.abs(nnc.compile(activations.gelu)(grid) - exact_gelu)
    assert (error <= np.spacing(np.abs(exact_gelu).astype(np.float32)) + np.abs(x64) * 1e-8).all()


def test_the_array_api_forms_match_numpy():
    x = np.linspace(-6, 6, 120_001)
    # erf has no array-API function: its form is a rational function, within its stated bound
    generic = np.asarray(activations.erf_generic(xp, xp.asarray(x)))
    assert np.abs(generic - activations.erf(x)).max() < activations.ERF_GENERIC_ERROR
    assert np.isnan(np.asarray(activations.erf_generic(xp, xp.asarray([np.nan])))).all()
    for approximate in ("none", "tanh"):
        generic = activations.gelu_p.generic(xp, xp.asarray(x), approximate=approximate)
        expected = activations.gelu(x, approximate=approximate)
        np.testing.assert_allclose(np.asarray(generic), expected, atol=1e-6)


def test_gelu_layers_are_models_of_any_type():
    for layer, name in ((nnc.gelu, "gelu"), (nnc.gelu_tanh, "gelu_tanh"), (nnc.silu, "silu")):
        model = nnc.Linear(3, 4) >> layer
        assert str(model.signature) == "Vec[3] -> Vec[4]"
        x = np.linspace(-2, 2, 6).reshape(2, 3)
        params = model.init(seed=0, dtype=np.float64)
        y = model(params, x)
        h = nnc.Linear(3, 4)(params["linear_0"], x)
        np.testing.assert_allclose(y, np.vectorize(CLOSED_FORMS[name])(h), rtol=1e-12, atol=1e-14)


def test_gelu_refuses_an_unknown_approximation():
    with pytest.raises(nnc.ArgumentError, match="gelu: approximate must be 'none' or 'tanh', got 'fast'"):
        activations.gelu(np.ones(2), approximate="fast")
