"""Edges of the layers (issue 14): constructor arguments nnc refuses with its own errors, an
empty batch through every layer kind (eagerly, under nnc.grad and under nnc.compile), and the
edges of recurrent models (0 steps, state=None)."""

import contextlib
import inspect
import os
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nnc
from nnc import (
    GRU,
    LSTM,
    Conv2d,
    Input,
    Linear,
    Mat,
    Seq,
    Tensor,
    Vec,
    add,
    avg_pool,
    concat,
    fanout,
    fcrnn,
    feedback,
    fix_state,
    flatten,
    lagged,
    learned_state,
    log_softmax,
    logistic,
    max_pool,
    parallel,
    prime,
    recurrently,
    relu,
    residual,
    softmax,
    tanh,
    unroll,
    unroll_last,
    zero_state,
)
from nnc.backend import windows
from nnc.backend.scan import scan
from nnc.kernels import im2col, reference
from nnc.kernels import pool as pool_kernels
from nnc.types import ArgumentError

HERE = os.path.relpath(__file__)


def line() -> int:
    """The line of the caller: where the next line's call is, minus one."""
    return inspect.currentframe().f_back.f_lineno


# ----------------------------------------------------------------------------- constructors

HINT_N_IN = "  hint: n_in is the input size; Linear(None, n) infers it from the model before\n"
HINT_CELL_IN = "  hint: n_in is the size of one step's input; {kind}(None, n) infers it\n"
INITS = "'glorot_uniform', 'he_normal', 'lecun_normal', 'normal', 'zeros' or a function (rng, shape) -> array"
PAIR = "an int >= 1 or a (rows, cols) pair of them"
HINT_STRIDE = "  hint: stride=1 visits every position, stride=2 every other one\n"
HINT_DIM = "  hint: a size is a positive int; a name ({kind}['n']) or None stands for one that is inferred\n"
HINT_TYPE = "  hint: use Vec[n], Mat[m, n], Tensor[c, h, w], Seq[...] or a tuple of them\n"
ARG = "  see docs/errors.md#argumenterror"
MISMATCH = "  see docs/errors.md#typemismatch"
NOT_A_MODEL = (
    "  hint: {name} takes models: layers (nnc.Linear(...)), activations (nnc.tanh) and compositions of them\n"
)
USE_TANH = "  hint: use nnc.tanh, the model form of tanh\n"

# (call, error class, the built-in it raised before, message with {at} for where it was written).
# Each call stays on the line of its lambda: that line is the place the message names.
CONSTRUCTOR_CASES = [
    (
        lambda: Linear(0, 3),
        ArgumentError,
        TypeError,
        "Linear (created at {at}): n_in must be a positive int or None (to infer it), got 0\n"
        + HINT_N_IN
        + ARG,
    ),
    (
        lambda: Linear(-1, 3),
        ArgumentError,
        TypeError,
        "Linear (created at {at}): n_in must be a positive int or None (to infer it), got -1\n"
        + HINT_N_IN
        + ARG,
    ),
    (
        lambda: Linear(2.5, 3),
        ArgumentError,
        TypeError,
        "Linear (created at {at}): n_in must be a positive int or None (to infer it), got 2.5 (float)\n"
        + HINT_N_IN
        + ARG,
    ),
    (
        lambda: Linear(True, 3),
        ArgumentError,
        TypeError,
        "Linear (created at {at}): n_in must be a positive int or None (to infer it), got True (bool)\n"
        + HINT_N_IN
        + ARG,
    ),
    (
        lambda: Linear("4", 3),
        ArgumentError,
        TypeError,
        "Linear (created at {at}): n_in must be a positive int or None (to infer it), got '4' (str)\n"
        + HINT_N_IN
        + ARG,
    ),
    (
        lambda: Linear(2, None),
        ArgumentError,
        TypeError,
        "Linear (created at {at}): n_out must be a positive int, got None\n"
        "  hint: n_out is the output size\n" + ARG,
    ),
    (
        lambda: Linear(2, 3, init="glorot"),
        nnc.InitError,
        ValueError,
        f"Linear (created at {{at}}): init must be one of {INITS}, got 'glorot' (str)\n"
        "  see docs/errors.md#initerror",
    ),
    (
        lambda: Linear(2, 3, bias="no"),
        ArgumentError,
        TypeError,
        "Linear (created at {at}): bias must be True or False, got 'no' (str)\n" + ARG,
    ),
    (
        lambda: Linear(2, 3, name=7),
        ArgumentError,
        TypeError,
        "Linear (created at {at}): name must be a non-empty string or None, got 7\n"
        "  hint: the name is the key of its parameters inside a composed model\n" + ARG,
    ),
    (
        lambda: Conv2d(0, 8, 3),
        ArgumentError,
        TypeError,
        "Conv2d (created at {at}): c_in must be a positive int or None (to infer it), got 0\n"
        "  hint: c_in is the number of input channels; None infers it\n" + ARG,
    ),
    (
        lambda: Conv2d(1, 8.0, 3),
        ArgumentError,
        TypeError,
        "Conv2d (created at {at}): c_out must be a positive int, got 8.0 (float)\n"
        "  hint: c_out is the number of filters (output channels)\n" + ARG,
    ),
    (
        lambda: Conv2d(1, 8, 0),
        ArgumentError,
        TypeError,
        f"Conv2d (created at {{at}}): kernel must be {PAIR}, got 0\n"
        "  hint: kernel=3 is a 3x3 window; (3, 5) is 3 rows by 5 columns\n" + ARG,
    ),
    (
        lambda: Conv2d(1, 8, (3,)),
        ArgumentError,
        TypeError,
        f"Conv2d (created at {{at}}): kernel must be {PAIR}, got (3,) (tuple)\n"
        "  hint: kernel=3 is a 3x3 window; (3, 5) is 3 rows by 5 columns\n" + ARG,
    ),
    (
        lambda: Conv2d(1, 8, 3, stride=0),
        ArgumentError,
        TypeError,
        f"Conv2d (created at {{at}}): stride must be {PAIR}, got 0\n" + HINT_STRIDE + ARG,
    ),
    (
        lambda: Conv2d(1, 8, 3, padding=-1),
        ArgumentError,
        TypeError,
        "Conv2d (created at {at}): padding must be an int >= 0 or a (rows, cols) pair of them, got -1\n"
        "  hint: padding=k // 2 keeps the size for an odd kernel k; 0 adds none\n" + ARG,
    ),
    (
        lambda: Conv2d(1, 8, 3, dilation=(1, 0)),
        ArgumentError,
        TypeError,
        f"Conv2d (created at {{at}}): dilation must be {PAIR}, got (1, 0) (tuple)\n"
        "  hint: dilation=1 is an ordinary kernel\n" + ARG,
    ),
    (
        lambda: Conv2d(1, 8, 3, init="uniform"),
        nnc.InitError,
        ValueError,
        f"Conv2d (created at {{at}}): init must be one of {INITS}, got 'uniform' (str)\n"
        "  see docs/errors.md#initerror",
    ),
    (
        lambda: max_pool(0),
        ArgumentError,
        TypeError,
        f"max_pool (created at {{at}}): kernel must be {PAIR}, got 0\n"
        "  hint: kernel=3 is a 3x3 window; (3, 5) is 3 rows by 5 columns\n" + ARG,
    ),
    (
        lambda: avg_pool(2, stride=1.5),
        ArgumentError,
        TypeError,
        f"avg_pool (created at {{at}}): stride must be {PAIR}, got 1.5 (float)\n" + HINT_STRIDE + ARG,
    ),
    (
        lambda: fcrnn(0, 4),
        ArgumentError,
        TypeError,
        "fcrnn (created at {at}): n_in must be a positive int or None (to infer it), got 0\n"
        + HINT_CELL_IN.format(kind="fcrnn")
        + ARG,
    ),
    (
        lambda: fcrnn(2, 4, activation="relu"),
        ArgumentError,
        ValueError,
        "fcrnn (created at {at}): activation must be 'tanh' or 'logistic', got 'relu' (str)\n" + ARG,
    ),
    (
        lambda: LSTM(3, 2.5),
        ArgumentError,
        TypeError,
        "LSTM (created at {at}): n_hidden must be a positive int, got 2.5 (float)\n"
        "  hint: n_hidden is the size of the state (and of the output)\n" + ARG,
    ),
    (
        lambda: GRU("3", 4),
        ArgumentError,
        TypeError,
        "GRU (created at {at}): n_in must be a positive int or None (to infer it), got '3' (str)\n"
        + HINT_CELL_IN.format(kind="GRU")
        + ARG,
    ),
    (
        lambda: lagged(0, Linear(2, 1)),
        ArgumentError,
        TypeError,
        "lagged (created at {at}): n must be a positive int, got 0\n"
        "  hint: n is how many inputs the model sees: lagged(2, Linear(2, 1)) predicts from the "
        "last two\n" + ARG,
    ),
    (
        lambda: lagged(2, np.tanh),
        nnc.TypeMismatch,
        TypeError,
        "lagged at {at}: numpy's np.tanh is not an nnc model\n" + USE_TANH + MISMATCH,
    ),
    (
        lambda: recurrently(np.tanh),
        nnc.TypeMismatch,
        TypeError,
        "recurrently at {at}: numpy's np.tanh is not an nnc model\n" + USE_TANH + MISMATCH,
    ),
    (
        lambda: learned_state(5),
        nnc.TypeMismatch,
        TypeError,
        "learned_state at {at}: the int 5 is not an nnc model\n"
        + NOT_A_MODEL.format(name="learned_state")
        + MISMATCH,
    ),
    (
        lambda: zero_state("cell"),
        nnc.TypeMismatch,
        TypeError,
        "zero_state at {at}: the str 'cell' is not an nnc model\n"
        + NOT_A_MODEL.format(name="zero_state")
        + MISMATCH,
    ),
    (
        lambda: unroll(3),
        nnc.TypeMismatch,
        TypeError,
        "unroll at {at}: the int 3 is not an nnc model\n" + NOT_A_MODEL.format(name="unroll") + MISMATCH,
    ),
    (
        lambda: fix_state(np.zeros(4), 2.0),
        nnc.TypeMismatch,
        TypeError,
        "fix_state at {at}: the float 2.0 is not an nnc model\n"
        + NOT_A_MODEL.format(name="fix_state")
        + MISMATCH,
    ),
    (
        lambda: residual(np.tanh),
        nnc.TypeMismatch,
        TypeError,
        "residual at {at}: numpy's np.tanh is not an nnc model\n" + USE_TANH + MISMATCH,
    ),
    (
        lambda: parallel(5, relu),
        nnc.TypeMismatch,
        TypeError,
        "parallel at {at}: the int 5 (argument 1) is not an nnc model\n"
        + NOT_A_MODEL.format(name="parallel")
        + MISMATCH,
    ),
    (
        lambda: fanout(),
        ArgumentError,
        TypeError,
        "fanout at {at} needs at least one model, got none\n"
        "  hint: write fanout(f, g) with the models as its arguments\n" + ARG,
    ),
    (
        lambda: fanout([Linear(2, 3), Linear(2, 3)]),
        nnc.TypeMismatch,
        TypeError,
        "fanout at {at}: the list [Linear(2 -> 3), Linear(2 -> 3)] is not an nnc model\n"
        "  hint: pass the models themselves, fanout(f, g), or unpack the list: fanout(*models)\n" + MISMATCH,
    ),
    (
        lambda: Input(5),
        ArgumentError,
        TypeError,
        "Input (created at {at}): the type must be an nnc type, got 5\n" + HINT_TYPE + ARG,
    ),
    (
        lambda: Input("Vec[3]"),
        ArgumentError,
        TypeError,
        "Input (created at {at}): the type must be an nnc type, got 'Vec[3]' (str)\n" + HINT_TYPE + ARG,
    ),
    (
        lambda: Vec[0],
        ArgumentError,
        TypeError,
        "Vec (created at {at}): dimension 0 must be a positive int, a name or None, got 0\n"
        + HINT_DIM.format(kind="Vec")
        + ARG,
    ),
    (
        lambda: Vec[-1],
        ArgumentError,
        TypeError,
        "Vec (created at {at}): dimension 0 must be a positive int, a name or None, got -1\n"
        + HINT_DIM.format(kind="Vec")
        + ARG,
    ),
    (
        lambda: Vec[2.5],
        ArgumentError,
        TypeError,
        "Vec (created at {at}): dimension 0 must be a positive int, a name or None, got 2.5 (float)\n"
        + HINT_DIM.format(kind="Vec")
        + ARG,
    ),
    (
        lambda: Vec[1, 2],
        ArgumentError,
        TypeError,
        "Vec takes 1 dimension(s), got 2: Vec[1, 2] at {at}\n"
        "  hint: Vec[n] is a vector, Mat[m, n] a matrix, Tensor[c, h, w] any rank\n" + ARG,
    ),
    (
        lambda: Tensor[1, 0, 3],
        ArgumentError,
        TypeError,
        "Tensor (created at {at}): dimension 1 must be a positive int, a name or None, got 0\n"
        + HINT_DIM.format(kind="Tensor")
        + ARG,
    ),
    (
        lambda: Mat["m", 2.5],
        ArgumentError,
        TypeError,
        "Mat (created at {at}): dimension 1 must be a positive int, a name or None, got 2.5 (float)\n"
        + HINT_DIM.format(kind="Mat")
        + ARG,
    ),
    (
        lambda: Seq[(Vec[2], Vec[3])],
        ArgumentError,
        TypeError,
        "Seq (created at {at}): its item must be one array type such as Vec[n], got (Vec[2], Vec[3])\n" + ARG,
    ),
]


@pytest.mark.parametrize(
    "call, cls, builtin, message", CONSTRUCTOR_CASES, ids=[f"case{i}" for i in range(len(CONSTRUCTOR_CASES))]
)
def test_bad_constructor_arguments_raise_nnc_errors_naming_layer_argument_value_and_place(
    call, cls, builtin, message
):
    with pytest.raises(cls) as info:
        call()
    err = info.value
    assert type(err) is cls
    assert isinstance(err, nnc.NNCError)
    assert isinstance(err, builtin)  # `except TypeError` written for the old errors still works
    assert str(err) == message.format(at=f"{HERE}:{call.__code__.co_firstlineno}")


def test_argument_error_is_an_nnc_error_and_both_builtins():
    assert ArgumentError.__module__ == "nnc"
    assert issubclass(ArgumentError, nnc.NNCError)
    assert issubclass(ArgumentError, TypeError) and issubclass(ArgumentError, ValueError)


bad_sizes = st.one_of(
    st.integers(max_value=0), st.floats(allow_nan=False), st.booleans(), st.text(max_size=3), st.just(None)
)


@given(bad_sizes)
def test_any_bad_output_size_is_refused_by_every_layer_that_takes_one(n):
    for make, argument in (
        (lambda: Linear(2, n), "n_out"),
        (lambda: Conv2d(1, n, 3), "c_out"),
        (lambda: fcrnn(2, n), "n_hidden"),
        (lambda: LSTM(2, n), "n_hidden"),
        (lambda: GRU(2, n), "n_hidden"),
    ):
        with pytest.raises(
            ArgumentError,
            match=rf"^\w+ \(created at .*\): {argument} must be a "
            rf"positive int, got ",
        ):
            make()


@given(st.integers(1, 64), st.integers(1, 64))
def test_numpy_integer_sizes_are_sizes(n_in, n_out):
    layer = Linear(np.int64(n_in), np.int32(n_out))
    assert str(layer.signature) == f"Vec[{n_in}] -> Vec[{n_out}]"
    assert {k: v.shape for k, v in layer.init(seed=0).items()} == {"W": (n_in, n_out), "b": (n_out,)}


def test_a_bad_init_name_is_refused_where_the_layer_is_written_not_at_init():
    with pytest.raises(nnc.InitError, match=rf"Linear \(created at {HERE}:{line() + 1}\): init must be"):
        Linear(2, 3, init="he_uniform")

    def ones(rng, shape):
        return np.ones(shape)

    assert np.array_equal(Linear(2, 3, init=ones).init(seed=0)["W"], np.ones((2, 3)))


def test_primitive_geometry_arguments_are_shape_errors():
    with pytest.raises(
        nnc.ShapeError,
        match=r"^conv2d: stride must be an int >= 1 or a pair of them, "
        r"got 0\n",
    ):
        windows.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), stride=0)
    with pytest.raises(
        nnc.ShapeError,
        match=r"^max_pool: kernel must be an int >= 1 or a pair of "
        r"them, got \(2, 0\)\n",
    ):
        windows.max_pool(np.ones((1, 1, 4, 4)), (2, 0))


def test_lagged_by_one_keeps_no_past_and_runs():
    model = zero_state(unroll_last(lagged(1, Linear(2, 1, init="zeros"))))
    assert str(model.signature) == "Seq[Vec[2]] -> Vec[1]"
    params = model.init(seed=0, dtype=np.float64)
    params["b"] = np.array([0.5])  # the wrappers are transparent: the Linear's own parameters
    np.testing.assert_array_equal(model(params, np.ones((3, 4, 2))), np.full((3, 1), 0.5))


# ----------------------------------------------------------------------------- empty batches


EMPTY_BATCH_CASES = {
    # name: (model, one example's input shape, one example's output shape)
    "linear": (Linear(3, 2), (3,), (2,)),
    "linear_no_bias": (Linear(3, 2, bias=False), (3,), (2,)),
    "logistic": (Input(Vec[3]) >> logistic, (3,), (3,)),
    "tanh": (Input(Vec[3]) >> tanh, (3,), (3,)),
    "relu": (Input(Vec[3]) >> relu, (3,), (3,)),
    "softmax": (Input(Vec[3]) >> softmax, (3,), (3,)),
    "log_softmax": (Input(Vec[3]) >> log_softmax, (3,), (3,)),
    "conv2d": (Conv2d(1, 2, 3, padding=1), (1, 4, 4), (2, 4, 4)),
    "conv2d_strided": (
        Input(Tensor[2, 5, 5]) >> Conv2d(2, 3, 3, stride=2, dilation=1, bias=False),
        (2, 5, 5),
        (3, 2, 2),
    ),
    "max_pool": (Input(Tensor[1, 4, 4]) >> max_pool(2), (1, 4, 4), (1, 2, 2)),
    "avg_pool": (Input(Tensor[1, 4, 4]) >> avg_pool(2, stride=1), (1, 4, 4), (1, 3, 3)),
    "flatten": (Input(Tensor[2, 2, 2]) >> flatten, (2, 2, 2), (8,)),
    "cnn": (
        Input(Tensor[1, 4, 4])
        >> Conv2d(1, 2, 3, padding=1)
        >> relu
        >> max_pool(2)
        >> flatten
        >> Linear(None, 3)
        >> softmax,
        (1, 4, 4),
        (3,),
    ),
    "residual": (residual(Linear(3, 3) >> tanh), (3,), (3,)),
    "parallel": (Input((Vec[3], Vec[2])) >> parallel(Linear(3, 2), Linear(2, 2)) >> add, (3,), (2,)),
    "fanout_concat": (fanout(Linear(3, 2), Linear(3, 4)) >> concat, (3,), (6,)),
    "fanout_add": (fanout(Linear(3, 2), Linear(3, 2)) >> add, (3,), (2,)),
    "fcrnn_unroll_last": (zero_state(unroll_last(fcrnn(3, 4))), (5, 3), (4,)),
    "lstm_unroll": (zero_state(unroll(LSTM(3, 4) >> Linear(4, 2))), (5, 3), (5, 2)),
    "gru_learned_state": (learned_state(unroll_last(GRU(3, 4))), (5, 3), (4,)),
    "fix_state": (fix_state(np.ones(4), unroll(fcrnn(3, 4))), (5, 3), (5, 4)),
    "lagged": (zero_state(unroll_last(lagged(2, Linear(6, 1)))), (5, 3), (1,)),
    "recurrently": (
        zero_state(unroll_last(Input(Vec[3]) >> recurrently(concat >> Linear(None, 4) >> tanh))),
        (5, 3),
        (4,),
    ),
}


@contextlib.contextmanager
def _quiet():
    """nnc.compile may warn about parts it runs with numpy: not what these tests are about."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _empty_input(model, example_shape):
    if isinstance(model.in_type, nnc.types.TupleType):  # parallel: a tuple of empty batches
        return tuple(np.zeros((0,) + nnc.types.example_shape(t)) for t in model.in_type.items)
    return np.zeros((0,) + example_shape)


def _zero_grads_of_parameter_shapes(grads, params):
    assert [(p, g.shape) for p, g in nnc.tree_paths(grads)] == [
        (p, v.shape) for p, v in nnc.tree_paths(params)
    ]
    for _, g in nnc.tree_paths(grads):
        np.testing.assert_array_equal(g, np.zeros_like(g))


@pytest.mark.parametrize("name", sorted(EMPTY_BATCH_CASES))
def test_an_empty_batch_runs_through_every_layer_eagerly_and_under_grad(name):
    model, example, out = EMPTY_BATCH_CASES[name]
    params = model.init(seed=0, dtype=np.float64)
    x = _empty_input(model, example)
    y = model(params, x)
    assert y.shape == (0,) + out and y.dtype == np.float64
    grads = nnc.grad(lambda p, x: nnc.sum(model(p, x)))(params, x)
    _zero_grads_of_parameter_shapes(grads, params)


@pytest.mark.parametrize("name", sorted(EMPTY_BATCH_CASES))
def test_an_empty_batch_runs_through_every_layer_compiled(name):
    model, example, out = EMPTY_BATCH_CASES[name]
    params = model.init(seed=0, dtype=np.float64)
    x = _empty_input(model, example)
    with _quiet():
        y = nnc.compile(model)(params, x)
    assert np.asarray(y).shape == (0,) + out


@pytest.mark.parametrize("name", ["cnn", "lstm_unroll", "fanout_concat"])
def test_the_compiled_gradient_of_an_empty_batch_is_zeros(name):
    model, example, _ = EMPTY_BATCH_CASES[name]
    params = model.init(seed=0, dtype=np.float64)
    x = _empty_input(model, example)
    with _quiet():
        grads = nnc.compile(nnc.grad(lambda p, x: nnc.sum(model(p, x))))(params, x)
    _zero_grads_of_parameter_shapes(grads, params)


def test_an_empty_batch_trains_one_step_without_changing_sgd_parameters_by_nan():
    model = Input(Tensor[1, 4, 4]) >> Conv2d(1, 2, 3) >> flatten >> Linear(None, 1)
    params = model.init(seed=0, dtype=np.float64)
    step = nnc.train_step(model, loss=lambda y, t: nnc.sum((y - t) * (y - t)), opt=nnc.sgd(0.1))
    new, _, loss = step(params, None, np.zeros((0, 1, 4, 4)), np.zeros((0, 1)))
    assert float(loss) == 0.0
    for (path, a), (_, b) in zip(nnc.tree_paths(new), nnc.tree_paths(params)):
        np.testing.assert_array_equal(a, b, err_msg=path)


def test_kernels_take_an_empty_batch():
    x, w = np.zeros((0, 2, 5, 5)), np.ones((3, 2, 3, 3))
    geometry = ((1, 1), (1, 1), (1, 1))
    for impl in (im2col, reference):
        forward = impl.conv2d_forward if impl is im2col else impl.conv2d
        assert forward(x, w, *geometry).shape == (0, 3, 5, 5)
        g = np.zeros((0, 3, 5, 5))
        np.testing.assert_array_equal(impl.conv2d_weight_grad(x, g, w.shape, *geometry), np.zeros(w.shape))
        assert impl.conv2d_input_grad(g, w, x.shape, *geometry).shape == x.shape
    for impl in (pool_kernels, reference):
        assert impl.max_pool(x, (2, 2), (2, 2)).shape == (0, 2, 2, 2)
        assert impl.avg_pool(x, (2, 2), (1, 1)).shape == (0, 2, 4, 4)
        assert impl.max_pool_grad(x, np.zeros((0, 2, 2, 2)), (2, 2), (2, 2)).shape == x.shape
        assert impl.avg_pool_grad(np.zeros((0, 2, 4, 4)), x.shape, (2, 2), (1, 1)).shape == x.shape


def test_blas_matmul_with_zero_rows_or_zero_inner_size():
    from nnc.backend.numba_blas import TRANS_A, matmul

    out = np.full((0, 4), np.nan)
    assert matmul(np.zeros((0, 3)), np.ones((3, 4)), np.int64(0), out).shape == (0, 4)
    out = np.full((3, 4), np.nan)  # a (0, 3).T @ (0, 4) product sums nothing: zeros
    np.testing.assert_array_equal(
        matmul(np.zeros((0, 3)), np.ones((0, 4)), np.int64(TRANS_A), out), np.zeros((3, 4))
    )


def test_reshape_cannot_infer_minus_one_of_an_empty_array_and_says_so():
    with pytest.raises(nnc.ShapeError) as info:
        nnc.reshape(np.zeros((0, 2, 2)), (0, -1))
    assert str(info.value) == (
        "reshape: cannot infer the -1 of (0, -1) for an array of shape (0, 2, 2): the other sizes "
        "multiply to 0, so no size or every size fits\n"
        "  hint: give every size, e.g. (0, n) for an empty batch of n features\n"
        "  see docs/errors.md#shapeerror"
    )


# ----------------------------------------------------------------------------- recurrent edges


def _generator():
    cell = fcrnn(1, 4) >> Linear(4, 1)
    return cell, cell.init(seed=0, dtype=np.float64)


def test_feedback_of_zero_steps_is_empty_with_the_shape_of_its_outputs():
    cell, params = _generator()
    single = feedback(cell, params, np.zeros(4), np.ones(1), steps=0)
    batch = feedback(cell, params, None, np.ones((3, 1)), steps=0)
    assert (single.shape, single.dtype) == ((0, 1), np.float64)
    assert (batch.shape, batch.dtype) == ((3, 0, 1), np.float64)
    # the arguments are still checked, as for any number of steps
    with pytest.raises(nnc.ShapeError, match=r"input of shape \(3, 2\) does not fit"):
        feedback(cell, params, None, np.ones((3, 2)), steps=0)


@pytest.mark.parametrize(
    "steps, shown", [(-1, "-1"), (2.5, "2.5 (float)"), (True, "True (bool)"), ("3", "'3' (str)")]
)
def test_feedback_refuses_a_step_count_that_is_not_an_int_at_least_zero(steps, shown):
    cell, params = _generator()
    with pytest.raises(ArgumentError) as info:
        at = line() + 1
        feedback(cell, params, None, np.ones(1), steps=steps)
    assert str(info.value) == (
        f"feedback (called at {HERE}:{at}): steps must be an int >= 0, got {shown}\n"
        "  hint: steps is how many outputs to generate\n" + ARG
    )


@given(st.integers(1, 4), st.integers(0, 5))
def test_state_none_means_the_zero_state_for_feedback_and_prime(batch, steps):
    cell, params = _generator()
    x0, xs = np.linspace(-1, 1, batch)[:, None], np.ones((batch, 6, 1))
    zeros = np.zeros((batch, 4))
    np.testing.assert_array_equal(
        feedback(cell, params, None, x0, steps), feedback(cell, params, zeros, x0, steps)
    )
    (last, state), (last0, state0) = prime(cell, params, None, xs), prime(cell, params, zeros, xs)
    np.testing.assert_array_equal(last, last0)
    np.testing.assert_array_equal(state, state0)


def test_state_none_for_one_example_and_for_a_tuple_state():
    cell = LSTM(1, 3) >> Linear(3, 1)
    params = cell.init(seed=0, dtype=np.float64)
    zeros = (np.zeros(3), np.zeros(3))
    np.testing.assert_array_equal(
        feedback(cell, params, None, np.ones(1), 4), feedback(cell, params, zeros, np.ones(1), 4)
    )
    last, (h, c) = prime(cell, params, None, np.ones((5, 1)))
    assert (last.shape, h.shape, c.shape) == ((1,), (3,), (3,))


def test_prime_with_an_empty_sequence_names_prime_and_the_cell():
    cell_line = line() + 1
    cell = fcrnn(1, 4) >> Linear(4, 1)
    params = cell.init(seed=0)
    with pytest.raises(nnc.ShapeError) as info:
        at = line() + 1
        prime(cell, params, None, np.zeros((2, 0, 1)))
    assert str(info.value) == (
        f"prime at {HERE}:{at}: the sequence xs of shape (2, 0, 1) has 0 steps, so "
        f"fcrnn(1 -> 4) >> Linear(4 -> 1) (created at {HERE}:{cell_line}) has nothing to run over\n"
        "  hint: to generate from a state without priming, call feedback(cell, params, state, x0, "
        "steps) directly\n"
        "  see docs/errors.md#shapeerror"
    )


@pytest.mark.parametrize("wrap", [unroll, unroll_last])
@pytest.mark.parametrize("shape", [(2, 0, 3), (0, 3)])
def test_inner_unrolls_reached_past_the_boundary_name_themselves_for_zero_steps(wrap, shape):
    model_line = line() + 1
    model = wrap(fcrnn(3, 4))
    params = model.init(seed=0)
    layout = "(batch, time, ...)" if len(shape) == 3 else "(time, ...)"
    with pytest.raises(nnc.ShapeError) as info:  # forward skips the model-boundary checks
        model.forward(model, params, np.zeros(shape), np.zeros(shape[:-2] + (4,)))
    assert str(info.value) == (
        f"{wrap.__name__}(fcrnn(3 -> 4)) (created at {HERE}:{model_line}) got a sequence of 0 steps "
        f"(input of shape {shape}, {layout}); it needs at least one step\n"
        "  hint: leave empty sequences out of the data, or pad them to at least one step\n"
        "  see docs/errors.md#shapeerror"
    )


def test_scan_of_zero_steps_keeps_the_carry_and_its_gradient_is_zero():
    def total(w, xs):
        final, (ys,) = scan(
            lambda c, carry, x: ([carry[0] * c[0] + x[0]], [carry[0]]), [w], [np.ones(3)], [xs]
        )
        return nnc.sum(final[0]) + nnc.sum(ys)

    assert float(total(np.full(3, 2.0), np.zeros((0, 3)))) == 3.0
    np.testing.assert_array_equal(nnc.grad(total)(np.full(3, 2.0), np.zeros((0, 3))), np.zeros(3))
    np.testing.assert_array_equal(nnc.grad(total)(np.full(3, 2.0), np.zeros((2, 3))), np.full(3, 5.0))


@pytest.mark.parametrize("length", [-1, 2.5, True])
def test_scan_refuses_a_length_that_is_not_a_step_count(length):
    with pytest.raises(
        nnc.ShapeError,
        match=rf"^scan: length must be an int >= 0 \(the number of "
        rf"steps\), got {length!r}\n",
    ):
        scan(lambda c, carry, x: (carry, []), [], [np.ones(3)], [], length=length)
