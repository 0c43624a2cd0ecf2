"""Bad input gets the same clear nnc error on every path: interpreted, compiled, train_step.

A hypothesis fuzz test draws a model (MLP, CNN, recurrent, combinators) and a bad input
(wrong rank, width or dtype, NaN or infinity anywhere, an empty batch, a sequence of
no steps, swapped arguments) and runs it on every path. Each must raise an ``NNCError``
whose message names a layer of the model, with the same type and message everywhere; an
input that is fine (an empty batch) must give the same result everywhere.
"""

from __future__ import annotations

import functools
import inspect
import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnc
from nnc import (
    Conv2d,
    Input,
    Linear,
    Tensor,
    Vec,
    concat,
    fanout,
    fcrnn,
    flatten,
    lift,
    max_pool,
    relu,
    residual,
    softmax,
    tanh,
    unroll_last,
    zero_state,
)

HERE = os.path.relpath(__file__)


def line() -> int:
    return inspect.currentframe().f_back.f_lineno


# ----------------------------------------------------------------------------- the models


@functools.cache
def models() -> dict:
    """name -> (model, shape of one good batch, whether the input is a sequence)."""
    return {
        "mlp": (Linear(4, 6) >> relu >> Linear(6, 3) >> softmax, (3, 4), False),
        "cnn": (
            Input(Tensor[1, 6, 6])
            >> Conv2d(1, 2, 3)
            >> relu
            >> max_pool(2)
            >> flatten
            >> Linear(None, 3)
            >> softmax,
            (3, 1, 6, 6),
            False,
        ),
        "rnn": (zero_state(unroll_last(fcrnn(2, 5) >> Linear(5, 3))) >> softmax, (3, 4, 2), True),
        "combinators": (
            fanout(Linear(4, 2), Linear(4, 1) >> tanh) >> concat >> residual(Linear(3, 3) >> tanh) >> softmax,
            (3, 4),
            False,
        ),
    }


@functools.cache
def params_of(name: str) -> dict:
    return models()[name][0].init(seed=0)


@functools.cache
def compiled_model(name: str):
    return nnc.compile(models()[name][0])


@functools.cache
def steps(name: str):
    step = nnc.train_step(models()[name][0], loss=nnc.cross_entropy, opt=nnc.sgd(0.1))
    return step, nnc.compile(step)


def layer_reprs(model) -> set[str]:
    out, todo = set(), [model]
    while todo:
        m = todo.pop()
        out.add(repr(m)[:60])
        todo.extend(m.children)
    return out


def outcome(fn, *args):
    """``("ok", result)`` or ``("error", type, message)``; only nnc's own errors are expected."""
    try:
        return ("ok", fn(*args))
    except nnc.NNCError as err:
        return ("error", type(err), str(err))


def same_outcome(a, b) -> None:
    assert a[0] == b[0], (a, b)
    if a[0] == "error":
        assert a[1:] == b[1:]
    else:
        for x, y in zip(nnc.tree_leaves(a[1]), nnc.tree_leaves(b[1])):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- bad inputs


BAD_KINDS = ["rank", "width", "dtype", "nan", "inf", "empty", "no_steps", "swapped"]


@st.composite
def cases(draw):
    name = draw(st.sampled_from(sorted(models())))
    model, shape, is_seq = models()[name]
    kind = draw(st.sampled_from([k for k in BAD_KINDS if k != "no_steps" or is_seq]))
    x = np.asarray(
        draw(
            st.lists(st.floats(-2, 2, width=32), min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))
        ),
        np.float32,
    ).reshape(shape)
    if kind == "rank":
        x = x[None] if draw(st.booleans()) else x.reshape(-1)
    elif kind == "width":
        x = np.concatenate([x, x[..., :1]], axis=-1)
    elif kind == "dtype":
        x = x.astype(draw(st.sampled_from([np.complex64, np.str_, object])))
    elif kind in ("nan", "inf"):
        flat = x.reshape(-1).copy()
        flat[draw(st.integers(0, flat.size - 1))] = (
            np.nan if kind == "nan" else draw(st.sampled_from([np.inf, -np.inf]))
        )
        x = flat.reshape(shape)
    elif kind == "empty":
        x = x[:0]
    elif kind == "no_steps":
        x = x[:, :0]
    return name, kind, x


def labels_for(x: np.ndarray) -> np.ndarray:
    n = x.shape[0] if x.ndim else 0
    return (np.arange(n) % 3).astype(np.int64)


@given(cases())
@settings(max_examples=60)
def test_bad_input_gets_the_same_nnc_error_interpreted_and_compiled(case):
    name, kind, x = case
    model = models()[name][0]
    params = params_of(name)
    args = (x, params) if kind == "swapped" else (params, x)
    interpreted = outcome(model, *args)
    compiled = outcome(compiled_model(name), *args)
    same_outcome(interpreted, compiled)
    if kind == "empty":
        assert interpreted[0] == "ok" and interpreted[1].shape == (0, 3)
        return
    assert interpreted[0] == "error", f"{kind} input was accepted by {model!r}"
    assert any(r in interpreted[2] for r in layer_reprs(model)), interpreted[2]


@given(cases())
@settings(max_examples=40)
def test_bad_input_gets_the_same_nnc_error_in_the_training_step(case):
    name, kind, x = case
    if kind in ("swapped", "empty"):
        return  # the step's arguments are (params, opt_state, x, y); a loss on 0 rows: test_training
    params = params_of(name)
    step, compiled = steps(name)
    state = step.opt.init(params)
    y = labels_for(x)
    interpreted = outcome(step, params, state, x, y)
    native = outcome(compiled, params, state, x, y)
    same_outcome(interpreted, native)
    assert interpreted[0] == "error", f"{kind} input was accepted by the step of {name}"
    assert any(r in interpreted[2] for r in layer_reprs(models()[name][0])), interpreted[2]


# ----------------------------------------------------------------------------- golden messages


def test_compiled_model_refuses_a_nan_row_as_the_interpreter_does():
    # the example: the compiled path returned [-0.593, 0.0, -0.593]
    at = line() + 1
    reg = Linear(4, 16) >> relu >> Linear(16, 1)
    p = reg.init(seed=0)
    x = np.ones((3, 4), np.float32)
    x[1, 2] = np.nan
    message = (
        f"input of Linear(4 -> 16) >> relu >> Linear(16 -> 1) (created at {HERE}:{at}) "
        "holds nan at index (1, 2); nnc refuses NaN and infinite inputs\n"
        "  see docs/errors.md#nonfiniteerror"
    )
    for fn in (reg, nnc.compile(reg)):
        with pytest.raises(nnc.NonFiniteError) as info:
            fn(p, x)
        assert str(info.value) == message


def test_training_step_refuses_a_nan_pixel_on_both_paths():
    cnn = models()["cnn"][0]
    params = params_of("cnn")
    x = np.zeros((2, 1, 6, 6), np.float32)
    x[1, 0, 3, 4] = np.nan
    step, compiled = steps("cnn")
    for fn in (step, compiled):
        with pytest.raises(
            nnc.NonFiniteError,
            match=r"input of Input\(Tensor\[1, 6, 6\]\) >> "
            r".* holds nan at index \(1, 0, 3, 4\)",
        ):
            fn(params, step.opt.init(params), x, np.array([0, 1]))
    assert cnn is models()["cnn"][0]


def test_a_wrong_width_is_refused_before_the_data_is_touched():
    layer = Linear(4, 8)
    huge = np.broadcast_to(np.float32(0), (2**40, 5))  # 5 TiB if it were cast or scanned
    with pytest.raises(
        nnc.ShapeError,
        match=r"input of shape \(1099511627776, 5\) does not fit "
        r"Linear\(4 -> 8\).*\n  axis -1: expected size 4, got 5",
    ):
        layer(layer.init(seed=0), huge)


def test_a_large_wrong_memmap_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "big.dat"
    big = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(1 << 22, 3))
    layer = Linear(4, 8)
    reads = []
    original = np.ndarray.astype

    class Watched(np.memmap):
        def astype(self, *a, **k):  # noqa: D401 - records a cast of the whole array
            reads.append(a)
            return original(self, *a, **k)

    with pytest.raises(nnc.ShapeError, match="expected size 4, got 3"):
        layer(layer.init(seed=0), big.view(Watched))
    assert reads == []


def test_swapped_arguments_get_a_hint():
    at = line() + 1
    model = Linear(2, 3)
    with pytest.raises(nnc.ShapeError) as info:
        model(np.ones((5, 2)), model.init(seed=0))
    assert str(info.value) == (
        f"Linear(2 -> 3) (created at {HERE}:{at}) was called with its arguments swapped: the "
        "second argument is a parameter dict and the first an array of shape (5, 2)\n"
        "  hint: call it as model(params, x)\n"
        "  see docs/errors.md#shapeerror"
    )


@pytest.mark.parametrize(
    "right, shown, hint",
    [
        (
            5,
            "the int 5",
            "only models compose with >>: layers (nnc.Linear(...)), activations (nnc.tanh) and combinators",
        ),
        (np.tanh, "numpy's np.tanh", "use nnc.tanh, the model form of tanh"),
        (
            lambda x: x,
            "a lambda",
            "only models compose with >>; use a model from nnc (nnc.tanh, "
            "nnc.relu, ...) or wrap your function as a model with nnc.lift(fn), "
            "written with nnc operations",
        ),
    ],
)
def test_composing_with_a_non_model_says_what_to_use(right, shown, hint):
    at = line() + 1
    left = Linear(2, 3)
    with pytest.raises(nnc.TypeMismatch) as info:
        at_use = line() + 1
        left >> right
    assert str(info.value) == (
        f"cannot compose at {HERE}:{at_use}: {shown} is not an nnc model\n"
        f"  Linear(2 -> 3) (created at {HERE}:{at}) >> {shown}\n"
        f"  hint: {hint}\n"
        "  see docs/errors.md#typemismatch"
    )
    assert isinstance(info.value, TypeError)  # `except TypeError` keeps working


def test_a_non_model_on_the_left_is_named_too():
    with pytest.raises(
        nnc.TypeMismatch,
        match=r"numpy's np.tanh >> Linear\(2 -> 3\) .*\n"
        r"  hint: use nnc.tanh, the model form of tanh",
    ):
        np.tanh >> Linear(2, 3)


@pytest.mark.parametrize("seed, hint", [("abc", True), (1.5, True), (True, True), (-1, False)])
def test_init_refuses_a_seed_that_is_not_a_natural_number(seed, hint):
    model = Linear(2, 3)
    with pytest.raises(nnc.InitError) as info:
        model.init(seed=seed)
    text = str(info.value)
    assert f".init: seed must be an int >= 0, got {seed!r}" in text
    assert ("hint: write seed=0" in text) == hint
    assert isinstance(info.value, ValueError)


def test_a_sequence_of_no_steps_names_the_recurrent_model():
    at = line() + 1
    model = zero_state(unroll_last(fcrnn(2, 5)))
    with pytest.raises(nnc.ShapeError) as info:
        model(model.init(seed=0), np.zeros((4, 0, 2), np.float32))
    assert str(info.value) == (
        f"input of shape (4, 0, 2) does not fit zero_state(unroll_last(fcrnn(2 -> 5))) "
        f"(created at {HERE}:{at}), which expects Seq[Vec[2]]: one example of shape (time, 2) or "
        "a batch of shape (batch, time, 2)\n"
        "  the sequence has 0 steps; a recurrent model needs at least one\n"
        "  see docs/errors.md#shapeerror"
    )


# ----------------------------------------------------------------------------- lift


def test_lift_types_a_function_by_tracing_it_and_runs_on_every_path():
    def square(x):
        return x * x

    model = Input(Vec[3]) >> Linear(None, 4) >> lift(square) >> Linear(None, 2)
    assert str(model.signature) == "Vec[3] -> Vec[2]"
    assert repr(model) == "Input(Vec[3]) >> Linear(3 -> 4) >> lift(square) >> Linear(4 -> 2)"
    params = model.init(seed=0)
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    h = x @ params["linear_0"]["W"] + params["linear_0"]["b"]
    expected = (h * h) @ params["linear_1"]["W"] + params["linear_1"]["b"]
    np.testing.assert_allclose(model(params, x), expected, rtol=1e-6)
    np.testing.assert_allclose(nnc.compile(model)(params, x), expected, rtol=1e-5)
    grads = nnc.grad(lambda p: nnc.sum(model(p, x)))(params)
    np.testing.assert_allclose(grads["linear_1"]["b"], [2.0, 2.0])


def test_lift_refuses_a_function_that_drops_the_batch_axis():
    with pytest.raises(
        nnc.TypeMismatch,
        match=r"lift\(fn\) .* turns a batch of shape \(1, 3\) "
        r"into shape \(\): a lifted function must keep",
    ):
        Input(Vec[3]) >> lift(lambda x: nnc.sum(x))


def test_lift_explains_an_untraceable_function():
    with pytest.raises(
        nnc.TypeMismatch,
        match=r"lift\(sin\) .* fails on an input of type Vec\[3\]"
        r".*\n  hint: write the function with nnc operations",
    ):
        Input(Vec[3]) >> lift(np.sin)


def test_a_memmap_is_a_numpy_array_on_every_path(tmp_path):
    model = Linear(3, 2)
    params = model.init(seed=0)
    data = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=(4, 3))
    data[:] = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    plain = np.array(data)
    np.testing.assert_allclose(model(params, data), model(params, plain))
    np.testing.assert_allclose(nnc.compile(model)(params, data), model(params, plain), rtol=1e-6)
    grads = nnc.grad(lambda p, x: nnc.sum(model(p, x)))(params, data)
    np.testing.assert_allclose(grads["W"], np.repeat(plain.sum(0)[:, None], 2, axis=1), rtol=1e-6)


def test_an_input_that_overflows_the_parameters_dtype_names_its_value():
    model = Linear(3, 2)
    x = np.ones((2, 3))
    x[1, 2] = 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw RuntimeWarning from the cast
        with pytest.raises(nnc.NonFiniteError) as info:
            model(model.init(seed=0), x)
    assert "holds 1e+300 at index (1, 2), which overflows float32, the parameters' dtype" in str(info.value)
    assert "hint: rescale the data, or use float64 parameters" in str(info.value)


def test_a_model_called_on_values_computed_inside_a_traced_function_is_checked_too():
    # model(p, x / 2) refuses a NaN eagerly; traced and compiled it must too
    model = Linear(3, 2) >> softmax
    params = model.init(seed=0)
    x = np.ones((2, 3), np.float32)
    x[0, 1] = np.nan
    eager = outcome(model, params, x / 2)
    traced = outcome(nnc.grad(lambda p, x: nnc.sum(model(p, x / 2))), params, x)
    native = outcome(nnc.compile(lambda p, x: model(p, x / 2)), params, x)
    assert eager[0] == "error" and eager[1] is nnc.NonFiniteError
    assert traced[1:] == eager[1:] and native[1:] == eager[1:]


def test_big_endian_labels_are_labels():
    model = Linear(3, 2) >> softmax
    params = model.init(seed=0)
    x, little = np.ones((2, 3), np.float32), np.array([1, 0])
    big = little.astype(">i8")
    assert float(nnc.cross_entropy(model(params, x), big)) == float(
        nnc.cross_entropy(model(params, x), little)
    )
    step = nnc.train_step(model, loss=nnc.cross_entropy, opt=nnc.sgd(0.1))
    for fn in (step, nnc.compile(step)):
        assert float(fn(params, step.opt.init(params), x, big)[2]) == pytest.approx(
            float(step(params, step.opt.init(params), x, little)[2]), rel=1e-6
        )
    with pytest.raises(nnc.DomainError, match=r"label 2 at index \(0,\) is out of range for 2 classes"):
        nnc.cross_entropy(model(params, x), np.array([2, 0], ">i8"))


def test_a_lifted_function_is_drawn_summarised_and_checkpointed(tmp_path):
    def square(x):
        return x * x

    model = Input(Vec[3]) >> Linear(None, 4) >> lift(square) >> Linear(None, 2)
    params = model.init(seed=0)
    nnc.render(model, tmp_path / "m.gv", format="dot")
    text = (tmp_path / "m.gv").read_text()
    assert "lift(square)" in text and "Vec[4]" in text
    assert "lift_0    lift(square)    Vec[4]  Vec[4]       0" in str(nnc.summary(model))
    nnc.save(tmp_path / "m.npz", model, params)
    loaded = nnc.load(tmp_path / "m.npz", model)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(model(loaded, x), model(params, x))
