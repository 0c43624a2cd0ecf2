"""nnc.compile keeps numpy's NaN and infinity semantics, and runs the check primitives natively.

Every form the code generator emits (each elementwise expression, each statement emitter) is
compiled on its own, as a plain function of arrays (plain functions get no input check), and
run on arrays holding NaN, +inf and -inf at positions hypothesis chooses. The result must
equal numpy's: NaN exactly where numpy has NaN, the same infinities, the finite entries to
float rounding (the compiled code sums in another order, and its float32 tanh is a rational
approximation within a few ulps). The case tables are checked against the compiled forms the
primitives register, so a new form fails here until it has a case.

numpy's result is the interpreter's on its numpy path (the kernel dispatch switched off, as
under NUMBA_DISABLE_JIT): the numpy references are the definition the Numba kernels are
tested against (tests/test_kernels.py), NaN included.
"""

from __future__ import annotations

import functools
import re
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnc
from nnc.backend import activations, ops
from nnc.backend.attention import attention, attention_grads, attention_probs, scores_grad
from nnc.backend.checks import DomainError, check_finite, check_labels, check_probabilities
from nnc.backend.core import PRIMITIVES, bind
from nnc.backend.staging import call_signature
from nnc.backend.structural import swap_last, unindex_p, unpick_p, untake_p
from nnc.backend.windows import (
    avg_pool_grad_p,
    avg_pool_p,
    conv2d,
    conv2d_input_grad_p,
    conv2d_weight_grad_p,
    max_pool_gather_p,
    max_pool_grad_p,
    max_pool_p,
)
from nnc.compile import compile as ncompile
from nnc.kernels import dispatch

DTYPES = [np.float32, np.float64]
TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-6)}
SPECIAL = [np.nan, np.inf, -np.inf]
# Finite entries on a grid in [-3, 3], and often the values where NaN and infinity rules
# differ most (0 ** -2, 1 ** nan, -1 ** inf, 0 * inf): nothing overflows, so every NaN or
# infinity in a result comes from a special input, which fixes it whatever the rounding.
ENTRY = st.one_of(
    st.sampled_from(SPECIAL),
    st.sampled_from([0.0, -0.0, 1.0, -1.0]),
    st.integers(-300, 300).map(lambda k: k / 100),
)
LABELS = np.array([2, 0, 3])
LABELS_3D = np.array([[2, 0, 3], [1, 1, 0]])  # (batch, time) labels of (batch, time, classes) predictions
ROWS = np.array([[2, 0], [2, 3]])  # row 2 twice: its gradients add up
KEEP = np.array([[[[True, True, False]]], [[[False, False, False]]]])  # (2, 1, 1, 3): one row keeps none


def entries(shape: tuple) -> st.SearchStrategy:
    n = int(np.prod(shape, dtype=np.int64))
    return st.lists(ENTRY, min_size=n, max_size=n).map(lambda v: np.array(v).reshape(shape))


def _scan_relu(h0, xs, w):
    """A recurrence whose NaN can only reach later steps through the carry."""

    def step(consts, carry, x):
        h = ops.relu(carry[0] * consts[0] + x[0])
        return [h], [ops.tanh(h)]

    (h,), (hs,) = ops.scan(step, [w], [h0], [xs])
    return h, hs


def _attention_gradient(q, k, v):
    """The gradient of an attention head, softmax(q k^T / 8) v, as products of batches."""

    def loss(q, k, v):
        return ops.sum(ops.matmul(ops.softmax(ops.matmul(q, swap_last(k)) / 8.0), v) * v)

    return nnc.value_and_grad(loss, (0, 1, 2))(q, k, v)


# id -> (primitive the generator must emit, function of arrays, the arrays' shapes)
ELEMENTWISE_CASES = {
    "add": ("add", lambda x, y: x + y, [(3, 4), (3, 4)]),
    "add_bias": ("add", lambda x, b: x + b, [(3, 4), (4,)]),
    "sub": ("sub", lambda x, y: x - y, [(3, 4), (3, 4)]),
    "mul": ("mul", lambda x, y: x * y, [(3, 4), (3, 4)]),
    "div": ("div", lambda x, y: x / y, [(3, 4), (3, 4)]),
    "neg": ("neg", lambda x: -x, [(3, 4)]),
    "exp": ("exp", ops.exp, [(3, 4)]),
    "log": ("log", ops.log, [(3, 4)]),
    "sqrt": ("sqrt", ops.sqrt, [(3, 4)]),
    "abs": ("abs", ops.absolute, [(3, 4)]),
    "tanh": ("tanh", ops.tanh, [(3, 4)]),
    "erf": ("erf", activations.erf, [(3, 4)]),
    "gelu": ("gelu", activations.gelu, [(3, 4)]),
    "gelu_tanh": ("gelu", lambda x: activations.gelu(x, approximate="tanh"), [(3, 4)]),
    "sign": ("sign", ops.sign, [(3, 4)]),
    "greater": ("greater", ops.greater, [(3, 4), (3, 4)]),
    "less": ("less", ops.less, [(3, 4), (3, 4)]),
    "equal": ("equal", ops.equal, [(3, 4), (3, 4)]),
    "where": ("where", lambda c, a, b: ops.where(ops.greater(c, 0.0), a, b), [(3, 4), (3, 4), (3, 4)]),
    "maximum": ("where", ops.maximum, [(3, 4), (3, 4)]),  # lowers to where(greater(b, a), b, a)
    "minimum": ("where", ops.minimum, [(3, 4), (3, 4)]),
    "pow": ("pow", ops.power, [(3, 4), (3, 4)]),
    "square": ("integer_pow", lambda x: x**2, [(3, 4)]),
    "cube": ("integer_pow", lambda x: x**3, [(3, 4)]),
    "reciprocal_square": ("integer_pow", lambda x: x**-2, [(3, 4)]),
    "zeroth_power": ("integer_pow", lambda x: x**0, [(3, 4)]),
    "logistic": ("logistic", ops.logistic, [(3, 4)]),
    "relu": ("relu", ops.relu, [(3, 4)]),
    "step": ("step", ops.step, [(3, 4)]),
    "cast_to_float32": ("cast", lambda x: ops.cast(x, np.float32), [(3, 4)]),
    "cast_to_float64": ("cast", lambda x: ops.cast(x, np.float64), [(3, 4)]),
    "cast_to_bool": ("cast", lambda x: ops.cast(x, np.bool_), [(3, 4)]),
    # float-to-integer casts are left out: numpy's own result for NaN or an infinity is
    # undefined (it warns, and gives what the machine's conversion instruction gives)
    "nan_made_inside": ("relu", lambda x, y: ops.relu(ops.log(x) * y), [(3, 4), (3, 4)]),
}

STATEMENT_CASES = {
    "dot": ("dot", ops.matmul, [(3, 4), (4, 2)]),
    "dot_vector": ("dot", ops.matmul, [(4,), (4, 2)]),
    "dot_transposed": ("dot", lambda a, b: ops.matmul(ops.transpose(a), b), [(4, 3), (4, 2)]),
    "matmul": ("matmul", ops.matmul, [(2, 3, 4), (4, 2)]),
    "matmul_batched": ("matmul", ops.matmul, [(2, 2, 3, 4), (2, 2, 4, 3)]),
    "matmul_broadcast_batch": ("matmul", ops.matmul, [(2, 3, 4), (1, 4, 2)]),
    "matmul_matrix_by_batch": ("matmul", ops.matmul, [(3, 4), (2, 4, 2)]),
    # a swap of the last two axes read only by products is a BLAS flag, never copied
    "matmul_swapped": ("matmul", lambda q, k: ops.matmul(swap_last(q), swap_last(k)), [(2, 4, 3), (2, 5, 4)]),
    "attention_gradient": ("matmul", _attention_gradient, [(1, 2, 5, 3), (1, 2, 5, 3), (1, 2, 5, 3)]),
    "conv2d": ("conv2d", lambda x, w: conv2d(x, w, padding=1), [(2, 2, 4, 5), (3, 2, 3, 3)]),
    "conv2d_input_grad": (
        "conv2d_input_grad",
        lambda g, w: bind(
            conv2d_input_grad_p, g, w, x_shape=(2, 2, 4, 5), stride=(1, 1), padding=(1, 1), dilation=(1, 1)
        ),
        [(2, 3, 4, 5), (3, 2, 3, 3)],
    ),
    "conv2d_weight_grad": (
        "conv2d_weight_grad",
        lambda x, g: bind(
            conv2d_weight_grad_p, x, g, w_shape=(3, 2, 3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1)
        ),
        [(2, 2, 4, 5), (2, 3, 4, 5)],
    ),
    "max_pool": ("max_pool", lambda x: bind(max_pool_p, x, kernel=(2, 3), stride=(1, 2)), [(2, 2, 4, 7)]),
    "max_pool_grad": (
        "max_pool_grad",
        lambda x, g: bind(max_pool_grad_p, x, g, kernel=(2, 3), stride=(1, 2)),
        [(2, 2, 4, 7), (2, 2, 3, 3)],
    ),
    "max_pool_gather": (
        "max_pool_gather",
        lambda x, c: bind(max_pool_gather_p, x, c, kernel=(2, 3), stride=(1, 2)),
        [(2, 2, 4, 7), (2, 2, 4, 7)],
    ),
    "avg_pool": ("avg_pool", lambda x: bind(avg_pool_p, x, kernel=(2, 3), stride=(1, 2)), [(2, 2, 4, 7)]),
    "avg_pool_grad": (
        "avg_pool_grad",
        lambda g: bind(avg_pool_grad_p, g, x_shape=(2, 2, 4, 7), kernel=(2, 3), stride=(1, 2)),
        [(2, 2, 3, 3)],
    ),
    "transpose": ("transpose", ops.transpose, [(3, 4)]),
    "permute": ("transpose", lambda x: ops.transpose(x, (2, 0, 1)), [(2, 3, 4)]),
    "reshape": ("reshape", lambda x: ops.reshape(x, (4, 3)) * 2.0, [(3, 4)]),
    "sum_rows": ("sum", lambda x: ops.sum(x, 0), [(3, 4)]),
    "sum_columns_kept": ("sum", lambda x: ops.sum(x, 1, keepdims=True), [(3, 4)]),
    "sum_all": ("sum", ops.sum, [(3, 4)]),
    "sum_to": ("sum_to", lambda x: ops.sum_to(x, (1, 4)), [(3, 4)]),
    "max_rows": ("max", lambda x: ops.max(x, 0), [(3, 4)]),
    "max_columns_kept": ("max", lambda x: ops.max(x, 1, keepdims=True), [(3, 4)]),
    "max_all": ("max", ops.max, [(3, 4)]),
    "broadcast_to": ("broadcast_to", lambda x: ops.broadcast_to(x, (3, 4)), [(4,)]),
    "softmax": ("softmax", ops.softmax, [(3, 4)]),
    "softmax_columns": ("softmax", lambda x: ops.softmax(x, axis=0), [(3, 4)]),
    "log_softmax": ("log_softmax", ops.log_softmax, [(3, 4)]),
    "log_softmax_columns": ("log_softmax", lambda x: ops.log_softmax(x, axis=0), [(3, 4)]),
    "pick": ("pick", lambda x: ops.pick(x, LABELS), [(3, 4)]),
    "unpick": ("unpick", lambda g: bind(unpick_p, g, LABELS, k=4), [(3,)]),
    "pick_3d": ("pick", lambda x: ops.pick(x, LABELS_3D), [(2, 3, 4)]),
    "unpick_3d": ("unpick", lambda g: bind(unpick_p, g, LABELS_3D, k=4), [(2, 3)]),
    "softmax_4d": ("softmax", ops.softmax, [(2, 2, 3, 4)]),
    "log_softmax_3d": ("log_softmax", ops.log_softmax, [(2, 3, 4)]),
    "permute_merged": ("transpose", lambda x: ops.transpose(x, (0, 2, 1, 3)), [(2, 3, 2, 2)]),
    "sum_merged": ("sum", lambda x: ops.sum(x, (0, 1)), [(2, 3, 4)]),
    "take": ("take", lambda table: ops.take(table, ROWS), [(4, 3)]),
    "attention_probs": (
        "attention_probs",
        functools.partial(attention_probs, causal=False, scale=0.5),
        [(2, 2, 3, 4)] * 2,
    ),
    "attention_probs_causal": (
        "attention_probs",
        functools.partial(attention_probs, causal=True, scale=0.5),
        [(2, 2, 3, 4)] * 2,
    ),
    "attention_probs_padded": (
        "attention_probs",
        lambda q, k: attention_probs(q, k, KEEP, causal=True, scale=0.5),
        [(2, 2, 3, 4)] * 2,
    ),
    "scores_grad": (
        "scores_grad",
        functools.partial(scores_grad, causal=False, scale=0.5),
        [(2, 2, 3, 3)] * 2,
    ),
    "scores_grad_causal": (
        "scores_grad",
        functools.partial(scores_grad, causal=True, scale=0.5),
        [(2, 2, 3, 3)] * 2,
    ),
    "scores_grad_padded": (
        "scores_grad",
        lambda g, p: scores_grad(g, p, KEEP, causal=False, scale=0.5),
        [(2, 2, 3, 3)] * 2,
    ),
    "attention": (
        "attention",
        functools.partial(attention, causal=False, scale=0.5),
        [(2, 2, 3, 4), (2, 2, 3, 4), (2, 2, 3, 2)],
    ),
    "attention_causal": (
        "attention",
        functools.partial(attention, causal=True, scale=0.5),
        [(2, 2, 3, 4), (2, 2, 3, 4), (2, 2, 3, 2)],
    ),
    "attention_padded": (
        "attention",
        lambda q, k, v: attention(q, k, v, KEEP, causal=False, scale=0.5),
        [(2, 2, 3, 4), (2, 2, 3, 4), (2, 2, 3, 2)],
    ),
    "attention_grads": (
        "attention_grads",
        functools.partial(attention_grads, causal=False, scale=0.5),
        [(2, 2, 3, 4), (2, 2, 3, 4), (2, 2, 3, 2), (2, 2, 3, 3), (2, 2, 3, 2)],
    ),
    "attention_grads_causal": (
        "attention_grads",
        functools.partial(attention_grads, causal=True, scale=0.5),
        [(2, 2, 3, 4), (2, 2, 3, 4), (2, 2, 3, 2), (2, 2, 3, 3), (2, 2, 3, 2)],
    ),
    "attention_grads_padded": (
        "attention_grads",
        lambda q, k, v, p, g: attention_grads(q, k, v, p, g, KEEP, causal=True, scale=0.5),
        [(2, 2, 3, 4), (2, 2, 3, 4), (2, 2, 3, 2), (2, 2, 3, 3), (2, 2, 3, 2)],
    ),
    "untake": ("untake", lambda g: bind(untake_p, g, ROWS, v=4), [(2, 2, 3)]),
    "getitem": ("getitem", lambda x: x[1:, ::2], [(3, 4)]),
    "unindex": (
        "unindex",
        lambda g: bind(unindex_p, g, index=(slice(1, None), slice(None, None, 2)), shape=(3, 4)),
        [(2, 2)],
    ),
    "concat": ("concat", lambda a, b: ops.concat([a, b], axis=1), [(3, 4), (3, 2)]),
    "scan": ("scan", _scan_relu, [(2, 3), (5, 2, 3), (3,)]),
}


# Their inputs are keys (0-d uint64), which hold no NaN: tests/test_effects_compile.py holds
# their compiled forms to the interpreter, bit for bit.
KEYED = {"fold_in", "uniform"}


def _emitted_statements() -> set:
    return {name for name, prim in PRIMITIVES.items() if prim.emit is not None}


def test_every_emitted_form_has_a_case():
    """A compiled form registered with a primitive must come with its cases here."""
    scalar_forms = {name for name, prim in PRIMITIVES.items() if prim.scalar is not None}
    assert {prim for prim, _, _ in ELEMENTWISE_CASES.values()} == scalar_forms
    checks = {name for name in _emitted_statements() if name.startswith("check_")}
    assert checks == {name for name in PRIMITIVES if name.startswith("check_")}
    assert {prim for prim, _, _ in STATEMENT_CASES.values()} == _emitted_statements() - checks - KEYED


def _numpy_path():
    """The interpreter with every kernel on its numpy reference: numpy's semantics."""
    return mock.patch.object(dispatch, "jit_enabled", lambda: False)


def _forbid_interpreter(*args):
    pytest.fail("the compiled code raised, and nnc.compile reran the interpreter")


@functools.cache
def _compiled(case: str, dtype: type):
    """The case compiled for ``dtype`` (once: a compilation takes a while), and proof that the
    generator emitted its form natively rather than as an object-mode fallback."""
    prim, fn, shapes = {**ELEMENTWISE_CASES, **STATEMENT_CASES}[case]
    compiled = ncompile(fn)
    compiled(*[np.ones(s, dtype) for s in shapes])
    (entry,) = compiled.specialisations.values()
    assert entry.fallbacks == ()
    compiled.fn = _forbid_interpreter  # from now on only the generated code runs
    return compiled, entry.source


def assert_same_values(got, want, dtype) -> None:
    """NaN where ``want`` has NaN, the same infinities, finite entries to float rounding."""
    got, want = np.asarray(got), np.asarray(want)
    assert (got.shape, got.dtype) == (want.shape, want.dtype)
    if want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want)
        return
    finite = np.isfinite(want)
    np.testing.assert_array_equal(np.where(finite, 0, got), np.where(finite, 0, want))
    np.testing.assert_allclose(got[finite], want[finite], **TOL[dtype])


def _check(case: str, dtype: type, data) -> None:
    _, fn, shapes = {**ELEMENTWISE_CASES, **STATEMENT_CASES}[case]
    compiled, _ = _compiled(case, dtype)
    args = [data.draw(entries(s), label=f"argument {k}").astype(dtype) for k, s in enumerate(shapes)]
    with np.errstate(all="ignore"):  # numpy warns of the NaN it makes (as does NUMBA_DISABLE_JIT)
        with _numpy_path():
            want = fn(*args)
        got = compiled(*args)
    for g, w in zip(nnc.tree_leaves(got), nnc.tree_leaves(want)):
        assert_same_values(g, w, dtype)


@settings(max_examples=30, deadline=None)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("case", sorted(ELEMENTWISE_CASES))
@given(data=st.data())
def test_elementwise_forms_propagate_nan_and_infinities_as_numpy(case, dtype, data):
    _check(case, dtype, data)


@settings(max_examples=30, deadline=None)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("case", sorted(STATEMENT_CASES))
@given(data=st.data())
def test_statements_propagate_nan_and_infinities_as_numpy(case, dtype, data):
    _check(case, dtype, data)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_relu_keeps_nan_and_zeroes_negative_zero_as_np_maximum_does(dtype):
    x = np.resize(np.array([np.nan, -0.0, -np.inf, np.inf, -1.0, 2.0], dtype), (3, 4))
    relu, source = _compiled("relu", dtype)
    got = relu(x)
    np.testing.assert_array_equal(got, np.maximum(x, 0))
    assert np.signbit(got).tolist() == np.signbit(np.maximum(x, 0)).tolist()  # -0.0 becomes 0.0
    assert " <= np." in source and " > np." not in source  # 0 if x <= 0 else x: NaN is not <= 0


# --------------------------------------------------------------------------- check primitives

MODEL = nnc.Linear(3, 2) >> nnc.relu


def non_finite(value: str, at: tuple) -> str:
    """The interpreter's message for MODEL's input, as a regex."""
    return (
        re.escape("input of Linear(3 -> 2) >> relu (created at ")
        + r".*test_compile_nonfinite\.py:\d+\) "
        + re.escape(f"holds {value} at index {at}; nnc refuses NaN and infinite inputs")
    )


def _with(value: float, at: tuple, dtype=np.float32) -> np.ndarray:
    x = np.linspace(-1, 1, 12).reshape(4, 3).astype(dtype)
    x[at] = value
    return x


def _generated(compiled, *args):
    """The generated function alone, and the arguments it takes: no rerun of the interpreter."""
    (entry,) = compiled.specialisations.values()
    return entry, call_signature(args)[1]


@functools.cache
def _compiled_model(dtype: type):
    predict = ncompile(MODEL)
    params = MODEL.init(seed=0, dtype=dtype)
    predict(params, _with(0.5, (0, 0), dtype))
    return predict, params


@settings(max_examples=20, deadline=None)
@given(
    value=st.sampled_from(SPECIAL),
    row=st.integers(0, 3),
    col=st.integers(0, 2),
    dtype=st.sampled_from(DTYPES),
)
def test_a_compiled_model_refuses_non_finite_inputs_with_the_interpreters_error(value, row, col, dtype):
    predict, params = _compiled_model(dtype)
    x = _with(value, (row, col), dtype)
    with pytest.raises(nnc.NonFiniteError) as interpreted:
        MODEL(params, x)
    with pytest.raises(nnc.NonFiniteError, match=non_finite(str(dtype(value)), (row, col))) as compiled:
        predict(params, x)
    assert str(compiled.value) == str(interpreted.value)
    entry, values = _generated(predict, params, x)
    with pytest.raises(ValueError, match="^nnc: non-finite input$"):  # found by the native check
        entry.run(*values)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_the_check_runs_natively_and_finite_inputs_give_the_models_values(dtype):
    predict, params = _compiled_model(dtype)
    (entry,) = predict.specialisations.values()
    assert entry.fallbacks == () and "objmode" not in entry.source
    assert entry.source.count("if not np.isfinite(") == 1
    assert entry.source.count("raise ValueError('nnc: non-finite input')") == 1
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(dtype)
    np.testing.assert_allclose(predict(params, x), MODEL(params, x), **TOL[dtype])
    assert len(predict.specialisations) == 1


def test_a_compiled_training_step_refuses_non_finite_inputs_with_the_interpreters_error():
    step = nnc.train_step(MODEL, loss=nnc.mse, opt=nnc.sgd(0.1))
    compiled = ncompile(step)
    params = MODEL.init(seed=0)
    state, y = nnc.sgd(0.1).init(params), np.zeros((4, 2), np.float32)
    finite = _with(0.5, (0, 0))
    for got, want in zip(
        nnc.tree_leaves(compiled(params, state, finite, y)), nnc.tree_leaves(step(params, state, finite, y))
    ):
        np.testing.assert_allclose(got, want, **TOL[np.float32])
    (entry,) = compiled.specialisations.values()
    assert entry.fallbacks == ()
    x = _with(-np.inf, (3, 1))
    with pytest.raises(nnc.NonFiniteError) as interpreted:
        step(params, state, x, y)
    with pytest.raises(nnc.NonFiniteError, match=non_finite("-inf", (3, 1))) as got:
        compiled(params, state, x, y)
    assert str(got.value) == str(interpreted.value)
    entry, values = _generated(compiled, params, state, x, y)
    with pytest.raises(ValueError, match="^nnc: non-finite input$"):
        entry.run(*values)


def _checked_views(x, w):
    """Checks of a transposed view and of a slice, each used by a product and returned."""
    t = check_finite(ops.transpose(x), what="x.T")
    part = check_finite(x[1:, :], what="a slice of x")
    return t, ops.matmul(t, w), part, ops.matmul(ops.transpose(part), part)


def test_a_checks_result_is_its_input_and_views_stay_views():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((3, 4)), rng.standard_normal((3, 2))
    compiled = ncompile(_checked_views)
    got = compiled(x, w)
    (entry,) = compiled.specialisations.values()
    assert entry.fallbacks == () and entry.source.count("if not np.isfinite(") == 2
    for g, want in zip(got, _checked_views(x, w)):
        assert g.flags.c_contiguous
        np.testing.assert_allclose(g, want, **TOL[np.float64])
    bad = x.copy()
    bad[2, 3] = np.nan
    with pytest.raises(nnc.NonFiniteError, match=re.escape("x.T holds nan at index (3, 2)")):
        compiled(bad, w)
    entry, values = _generated(compiled, bad, w)
    with pytest.raises(ValueError, match="^nnc: non-finite input$"):
        entry.run(*values)


def test_integer_inputs_are_not_checked():
    labels = np.array([3, -1, 7])
    compiled = ncompile(lambda k: check_finite(k, what="labels") * 2)
    np.testing.assert_array_equal(compiled(labels), [6, -2, 14])
    (entry,) = compiled.specialisations.values()
    assert entry.fallbacks == () and "isfinite" not in entry.source


# Entries around the edges of a probability row: values just inside and just outside the
# tolerance (1e-3), and NaN and infinities.
PROBABILITY = st.sampled_from(
    [0.0, 0.25, 0.5, 1.0, 1.0009, 1.0011, -0.0009, -0.0011, -0.5, 2.0, np.nan, np.inf, -np.inf]
)


def probability_rows(width: int) -> st.SearchStrategy:
    """Distributions, distributions with one entry moved by about the tolerance, and any rows."""
    valid = st.permutations([0.5, 0.25, 0.25] + [0.0] * (width - 3))
    nudged = st.tuples(valid, st.sampled_from([0.0009, -0.0009, 0.0011, -0.0011, np.nan, np.inf])).map(
        lambda r: [r[0][0] + r[1], *r[0][1:]]
    )
    return st.one_of(valid, nudged, st.lists(PROBABILITY, min_size=width, max_size=width))


def _raised(run, *args):
    """The exception ``run(*args)`` raised, or None."""
    try:
        run(*args)
    except Exception as err:  # noqa: BLE001 - which one is what the tests compare
        return err
    return None


@functools.cache
def _compiled_check(kind: str, shape: tuple, dtype: type):
    fn = {
        "probabilities": lambda p: check_probabilities(p, what="cross_entropy") * 1.0,
        "labels": lambda k: check_labels(k, what="cross_entropy", classes=4) + 0,
    }[kind]
    compiled = ncompile(fn)
    compiled(np.full(shape, 1.0 / shape[-1], dtype) if kind == "probabilities" else np.zeros(shape, dtype))
    (entry,) = compiled.specialisations.values()
    assert entry.fallbacks == ()
    return fn, compiled, entry


@settings(max_examples=60, deadline=None)
@given(data=st.data(), shape=st.sampled_from([(3, 4), (5,)]), dtype=st.sampled_from(DTYPES))
def test_the_probabilities_check_raises_exactly_where_numpys_does(data, shape, dtype):
    fn, compiled, entry = _compiled_check("probabilities", shape, dtype)
    rows = int(np.prod(shape[:-1]))
    p = np.array(data.draw(st.lists(probability_rows(shape[-1]), min_size=rows, max_size=rows)), dtype)
    p = p.reshape(shape)
    want = _raised(fn, p)
    native = _raised(entry.run, p)
    assert want is None or isinstance(want, DomainError)
    assert (native is None) == (want is None)
    if want is not None:
        assert str(native) == "nnc: not probabilities"
        assert str(_raised(compiled, p)) == str(want)  # the interpreter's message, rerun
    else:
        np.testing.assert_array_equal(compiled(p), p)


@settings(max_examples=40, deadline=None)
@given(
    labels=st.lists(st.integers(-3, 6), min_size=5, max_size=5),
    dtype=st.sampled_from([np.int64, np.int32, np.uint8]),
)
def test_the_labels_check_raises_exactly_where_numpys_does(labels, dtype):
    fn, compiled, entry = _compiled_check("labels", (5,), dtype)
    k = np.array(labels).astype(dtype)  # a negative label wraps round as uint8, and is then too big
    want = _raised(fn, k)
    native = _raised(entry.run, k)
    assert (native is None) == (want is None)
    if want is not None:
        assert isinstance(want, DomainError) and str(native) == "nnc: label out of range"
        assert str(_raised(compiled, k)) == str(want)
    else:
        np.testing.assert_array_equal(compiled(k), k)


def test_a_compiled_cross_entropy_refuses_what_the_interpreted_one_does():
    loss = ncompile(nnc.cross_entropy)
    p, labels = np.full((2, 3), 1 / 3, np.float32), np.array([0, 2])
    assert loss(p, labels) == pytest.approx(np.log(3.0), rel=1e-6)
    (entry,) = loss.specialisations.values()
    assert entry.fallbacks == ()
    with pytest.raises(
        DomainError,
        match=re.escape(
            "cross_entropy: label 3 at index (1,) is out of range for 3 classes (labels must be 0..2)"
        ),
    ):
        loss(p, np.array([0, 3]))
    bad = p.copy()
    bad[1] = [0.5, 0.6, -0.1]
    with pytest.raises(
        DomainError,
        match=re.escape(
            "but row 1 of its prediction is [0.5, 0.6, -0.1], which holds -0.1 at index (1, 2) and sums to 1"
        ),
    ):
        loss(bad, labels)


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_maximum_and_minimum_give_nan_for_a_nan_in_either_operand_as_numpy(name):
    ours, theirs = getattr(nnc, name), getattr(np, name)
    a = np.array([1.0, np.nan, 3.0, -np.inf, np.nan, 2.0], np.float32)
    b = np.array([np.nan, 2.0, 1.0, 5.0, np.nan, 2.0], np.float32)
    expected = theirs(a, b)
    np.testing.assert_array_equal(ours(a, b), expected)
    np.testing.assert_array_equal(nnc.compile(lambda x, y: ours(x, y))(a, b), expected)
    traced = nnc.value_and_grad(lambda x, y: nnc.sum(ours(x, y) * 0.0 + ours(x, y)))(a, b)[0]
    assert np.isnan(traced)
    # at a tie the gradient goes to the first operand
    grads = nnc.grad(lambda x, y: nnc.sum(ours(x, y)), (0, 1))(np.float32([2.0]), np.float32([2.0]))
    assert [float(g[0]) for g in grads] == [1.0, 0.0]


def test_a_swap_read_only_by_batched_products_is_a_flag_not_a_copy():
    _, source = _compiled("matmul_swapped", np.float64)
    assert "_src" not in source  # no permuting copy of either operand
    assert "np.int64(3)" in source  # both operands transposed by BLAS flags (TRANS_A | TRANS_B)


def test_float32_exp_is_within_an_ulp_of_the_exact_value_and_keeps_numpys_limits():
    """The vectorising float32 exp (elementwise and in softmax) on a dense grid over its whole
    range: within one ulp of the correctly rounded value (numpy's own expf is within two, so
    within three of numpy), and exactly numpy's inf, 0, NaN and overflow threshold."""
    x = np.concatenate(
        [
            np.linspace(-110, 95, 400_001, dtype=np.float32),
            np.linspace(-1, 1, 100_001, dtype=np.float32),
            np.array(
                [np.nan, np.inf, -np.inf, 0.0, -0.0, 88.72283, 88.72284, -87.33654, -103.97, -104.0],
                np.float32,
            ),
            np.nextafter(np.float32(88.72283172607422), np.float32(np.inf), dtype=np.float32)[None],
        ]
    )
    compiled = ncompile(ops.exp)
    got = compiled(x)
    (entry,) = compiled.specialisations.values()
    assert "exp32_" in entry.source and entry.fallbacks == ()
    with np.errstate(all="ignore"):
        exact = np.exp(x.astype(np.float64)).astype(np.float32)
        numpy = np.exp(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(numpy))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(numpy))
    np.testing.assert_array_equal(got == 0, numpy == 0)
    finite = np.isfinite(exact)

    def ulps(a, b):
        return np.abs(a.view(np.int32).astype(np.int64) - b.view(np.int32).astype(np.int64))[finite]

    assert ulps(got, exact).max() <= 1
    assert ulps(got, numpy).max() <= 3
    # the same form inside softmax: rows of one entry are exp(0) / exp(0), rows with a huge gap
    # underflow to exactly 0 as numpy's do
    rows = np.array([[0.0, -200.0, 1.0], [np.inf, 0.0, 0.0], [-np.inf, 0.0, 3.0]], np.float32)
    with np.errstate(all="ignore"), _numpy_path():
        want = ops.softmax(rows)
    assert_same_values(ncompile(ops.softmax)(rows), want, np.float32)
