"""Training never goes on silently on non-finite numbers, and losses say what they expect.

Issue 14: non-finite inputs and targets are refused by every training path; ``fit`` stops on
a non-finite loss or parameter by default, naming the epoch, the batch and the parameter;
no raw numpy ``RuntimeWarning`` reaches the user; ``cross_entropy`` refuses values that are
not probabilities and labels out of range, and takes logits with ``from_logits=True``.
"""

from __future__ import annotations

import functools
import inspect
import os
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnc
from nnc import Conv2d, Input, Linear, Tensor, flatten, max_pool, relu, softmax, tanh
from nnc.backend.checks import DomainError, check_labels, check_probabilities
from nnc.callbacks import Decision, StopOnNaN
from nnc.metrics import mse as mse_metric
from nnc.optim import ConfigError, adam, sgd
from nnc.train import fit, train_step

HERE = os.path.relpath(__file__)
HINT = (
    "\n  hint: lower the learning rate, or clip gradients (e.g. nnc.adam(1e-3, clip_norm=1.0))"
    "\n  see docs/errors.md#nonfiniteerror"
)
NOT_PROBABILITIES_HINT = (
    "\n  hint: end the model with >> softmax, or, if these are logits, use "
    "cross_entropy(..., from_logits=True) (in fit: loss=functools.partial(nnc.cross_entropy, "
    "from_logits=True))\n  see docs/errors.md#domainerror"
)


def line() -> int:
    return inspect.currentframe().f_back.f_lineno


def quiet_fit(*args, **kwargs):
    return fit(*args, progress=False, **kwargs)


@functools.cache
def compiled_step(model, loss):
    return nnc.compile(train_step(model, loss=loss, opt=sgd(0.1)))


def both_steps(model, loss):
    """The interpreted and the compiled training step of ``model``, as (name, step) pairs."""
    return [
        ("interpreted", train_step(model, loss=loss, opt=sgd(0.1))),
        ("compiled", compiled_step(model, loss)),
    ]


def refused(error, fn, *args, **kwargs) -> str:
    """The message of the ``error`` that ``fn(*args, **kwargs)`` raises, with no RuntimeWarning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(error) as info:
            fn(*args, **kwargs)
    assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []
    return str(info.value)


def no_runtime_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []
    return result


def same_leaves(a, b) -> bool:
    la, lb = nnc.tree_leaves(a), nnc.tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


# ----------------------------------------------------------------------------- non-finite inputs, targets


def test_train_step_refuses_a_nan_input_of_an_mlp_and_a_cnn():
    mlp_line = line() + 1
    mlp = Linear(4, 16) >> relu >> Linear(16, 3) >> softmax
    cnn_line = line() + 2  # a composition is created where its first operand starts
    cnn = (
        Input(Tensor[1, 6, 6])
        >> Conv2d(1, 2, 3)
        >> relu
        >> max_pool(2)
        >> flatten
        >> Linear(None, 3)
        >> softmax
    )
    x_mlp = np.ones((3, 4), np.float32)
    x_mlp[1, 2] = np.nan
    x_cnn = np.zeros((2, 1, 6, 6), np.float32)
    x_cnn[1, 0, 3, 4] = -np.inf
    for model, x, at, index, value in (
        (mlp, x_mlp, mlp_line, "(1, 2)", "nan"),
        (cnn, x_cnn, cnn_line, "(1, 0, 3, 4)", "-inf"),
    ):
        step = train_step(model, loss=nnc.cross_entropy, opt=sgd(0.1))
        params = model.init(seed=0)
        labels = np.zeros(len(x), np.int64)
        message = refused(nnc.NonFiniteError, step, params, step.opt.init(params), x, labels)
        text = repr(model) if len(repr(model)) < 80 else repr(model)[:77] + "..."  # as model.py shortens it
        assert message == (
            f"input of {text} (created at {HERE}:{at}) holds {value} at index "
            f"{index}; nnc refuses NaN and infinite inputs\n"
            "  see docs/errors.md#nonfiniteerror"
        )


def test_train_step_refuses_nan_targets_naming_the_loss_on_both_paths():
    model = Linear(2, 2) >> softmax
    params = model.init(seed=0)
    x = np.ones((3, 2), np.float32)
    y = np.zeros((3, 2), np.float32)
    y[2, 1] = np.nan
    for loss, name in ((nnc.mse, "mse"), (nnc.cross_entropy, "cross_entropy")):
        for path, step in both_steps(model, loss):
            message = refused(nnc.NonFiniteError, step, params, (), x, y)
            assert message == (
                f"target of {name} holds nan at index (2, 1); nnc refuses NaN and "
                "infinite inputs\n  see docs/errors.md#nonfiniteerror"
            ), path


def test_a_finite_target_passes_the_check_unchanged():
    assert float(nnc.mse(np.array([[1.0], [3.0]]), np.array([[0.0], [1.0]]))) == 2.5
    value, grads = nnc.value_and_grad(lambda p, y: nnc.mse(p, y))(np.array([[1.0]]), np.array([[3.0]]))
    assert float(value) == 4.0 and grads.tolist() == [[-4.0]]


# ----------------------------------------------------------------------------- fit stops by default


def diverging_data():
    """The issue's example: targets of scale 1e3, which sgd(10.0) cannot fit without overflowing."""
    rng = np.random.default_rng(0)
    return (rng.normal(size=(64, 4)).astype(np.float32), (rng.normal(size=(64, 1)) * 1e3).astype(np.float32))


@pytest.mark.parametrize("compiled", [False, True], ids=["interpreted", "compiled"])
def test_a_diverging_fit_stops_with_the_message_and_no_runtime_warning(compiled):
    model = Linear(4, 16) >> relu >> Linear(16, 1)
    message = refused(
        nnc.NonFiniteError,
        quiet_fit,
        model,
        model.init(seed=0),
        diverging_data(),
        loss=nnc.mse,
        opt=sgd(10.0),
        epochs=5,
        compile=compiled,
    )
    assert message == (
        "the loss of epoch 2, batch 1 is inf: the parameters and the model's "
        "output are finite (largest magnitude 5e+24), so the loss itself "
        "overflowed or met bad targets in this batch" + HINT
    )


def test_the_error_carries_the_last_finite_parameters_and_the_epochs_completed():
    model = Linear(4, 16) >> relu >> Linear(16, 1)
    with pytest.raises(nnc.NonFiniteError) as info:
        quiet_fit(model, model.init(seed=0), diverging_data(), loss=nnc.mse, opt=sgd(10.0), epochs=5)
    error = info.value
    assert len(error.history) == 1 and error.history["loss"][0] > 1e14
    # batch 1 of epoch 2 started from the parameters at the end of epoch 1
    _, one_epoch = quiet_fit(
        model, model.init(seed=0), diverging_data(), loss=nnc.mse, opt=sgd(10.0), epochs=1, stop_on_nan=False
    )
    params, _ = quiet_fit(model, model.init(seed=0), diverging_data(), loss=nnc.mse, opt=sgd(10.0), epochs=1)
    assert same_leaves(error.params, params) and one_epoch["loss"] == error.history["loss"]


def test_opting_out_trains_on_without_runtime_warnings():
    model = Linear(4, 16) >> relu >> Linear(16, 1)
    params, history = no_runtime_warnings(
        quiet_fit,
        model,
        model.init(seed=0),
        diverging_data(),
        loss=nnc.mse,
        opt=sgd(10.0),
        epochs=3,
        stop_on_nan=False,
    )
    assert history["loss"][1:] == [np.inf, pytest.approx(np.nan, nan_ok=True)]
    assert history.stopped_at is None and not np.isfinite(nnc.tree_leaves(params)[0]).all()


def test_stop_on_nan_without_raising_returns_and_records_the_message():
    model = Linear(4, 16) >> relu >> Linear(16, 1)
    params, history = no_runtime_warnings(
        quiet_fit,
        model,
        model.init(seed=0),
        diverging_data(),
        loss=nnc.mse,
        opt=sgd(10.0),
        epochs=5,
        callbacks=[StopOnNaN(raise_error=False)],
    )
    assert history.stopped_at == 2 and len(history) == 1
    assert history.events == (
        (
            2,
            "the loss of epoch 2, batch 1 is inf: the parameters and the "
            "model's output are finite (largest magnitude 5e+24), so the "
            "loss itself overflowed or met bad targets in this batch" + HINT.split("\n  see")[0],
        ),
    )
    assert all(np.isfinite(leaf).all() for leaf in nnc.tree_leaves(params))


@pytest.mark.parametrize("compiled", [False, True], ids=["interpreted", "compiled"])
def test_parameters_that_go_non_finite_in_the_last_update_are_found_at_the_epoch_end(compiled):
    # sgd(1e38): the first loss (4.0) is finite, the update overflows float32 to infinity
    at = line() + 1
    model = Linear(1, 1, init="zeros")
    data = (np.ones((4, 1), np.float32), np.full((4, 1), 2.0, np.float32))
    message = refused(
        nnc.NonFiniteError,
        quiet_fit,
        model,
        model.init(seed=0),
        data,
        loss=nnc.mse,
        opt=sgd(1e38),
        epochs=3,
        batch_size=4,
        compile=compiled,
    )
    assert message == (
        "the parameters went non-finite in the update of epoch 1, batch 1, whose "
        f"loss (4) was finite; the first is W of Linear(1 -> 1) (created at "
        f"{HERE}:{at}), which holds inf at index (0, 0) (2 of 2 parameters hold "
        "NaN or infinity)" + HINT
    )


def test_the_first_parameter_to_go_non_finite_is_named_with_its_layer():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((3, 5)) * 3
    labels = rng.integers(0, 3, 150)
    x = (centers[labels] + rng.standard_normal((150, 5))).astype(np.float32)
    at = line() + 1
    model = Linear(5, 16) >> tanh >> Linear(16, 3) >> softmax
    message = refused(
        nnc.NonFiniteError,
        quiet_fit,
        model,
        model.init(seed=0),
        (x, labels),
        loss=nnc.cross_entropy,
        opt=adam(1e39),
        epochs=2,
    )
    assert message.startswith(
        "the loss of epoch 1, batch 2 is nan: the parameters it was computed from went non-finite "
        f"in the update before it; the first is linear_0/W of linear_0: Linear(5 -> 16) (created at "
        f"{HERE}:{at}), which holds "
    )
    assert message.endswith("(4 of 4 parameters hold NaN or infinity)" + HINT)


# A pure stand-in for a training step, to place a non-finite update where a test wants it: a
# batch whose first x is 1 makes W NaN, one whose first x is 2 reports the loss sum(W), every
# other batch a loss of 1.0 (as compiled code can, whose relu maps NaN to 0).
def marked_step(params, opt_state, x, y):
    mark = float(x[0, 0])
    W = params["W"] * np.float32(np.nan) if mark == 1 else params["W"]
    return {"W": W, "b": params["b"]}, opt_state, float(W.sum()) if mark == 2 else 1.0


def marked_data(*marks):
    x = np.zeros((2 * len(marks), 1), np.float32)
    x[::2, 0] = marks
    return x, np.zeros_like(x)


def test_the_update_that_made_the_parameters_non_finite_is_found_by_rerunning_the_epoch():
    at = line() + 1
    model = Linear(1, 1)
    with pytest.raises(nnc.NonFiniteError) as info:
        quiet_fit(
            model,
            model.init(seed=0),
            marked_data(0, 1, 0, 2),
            loss=nnc.mse,
            opt=sgd(0.1),
            batch_size=2,
            shuffle=False,
            step=marked_step,
        )
    assert str(info.value) == (
        "the loss of epoch 1, batch 4 is nan: the parameters it was computed from went non-finite "
        f"in the update of batch 2, whose loss (1) was finite; the first is W of Linear(1 -> 1) "
        f"(created at {HERE}:{at}), which holds nan at index (0, 0) (1 of 2 parameters hold NaN or "
        "infinity)" + HINT
    )
    assert same_leaves(info.value.params, model.init(seed=0))
    with pytest.raises(nnc.NonFiniteError) as info:
        quiet_fit(
            model,
            model.init(seed=0),
            marked_data(0, 0, 1, 0),
            loss=nnc.mse,
            opt=sgd(0.1),
            batch_size=2,
            shuffle=False,
            step=marked_step,
        )
    assert str(info.value).startswith(
        "the parameters went non-finite in the update of epoch 1, "
        "batch 3, whose loss (1) was finite; the first is W of "
    )


def test_parameters_a_callback_made_non_finite_are_still_reported():
    at = line() + 1
    model = Linear(1, 1)
    poisoned = {"W": np.full((1, 1), np.inf, np.float32), "b": np.zeros(1, np.float32)}
    with pytest.raises(nnc.NonFiniteError) as info:
        quiet_fit(
            model,
            model.init(seed=0),
            marked_data(0, 2),
            loss=nnc.mse,
            opt=sgd(0.1),
            batch_size=2,
            shuffle=False,
            step=marked_step,
            epochs=2,
            callbacks=[lambda log: Decision(params=poisoned)],
        )
    assert str(info.value) == (
        "the loss of epoch 2, batch 2 is inf: the parameters it was computed from are not finite; "
        "they were already when epoch 2 began (did a callback replace them?); the first is W "
        f"of Linear(1 -> 1) (created at {HERE}:{at}), which holds inf at index (0, 0) (1 of 2 "
        "parameters hold NaN or infinity)" + HINT
    )


def test_non_finite_initial_parameters_are_refused_up_front():
    at = line() + 1
    model = Linear(2, 3) >> tanh >> Linear(3, 1)
    params = model.init(seed=0)
    params["linear_1"]["b"] = np.array([np.nan], np.float32)
    message = refused(
        nnc.NonFiniteError,
        quiet_fit,
        model,
        params,
        (np.ones((4, 2), np.float32), np.ones((4, 1), np.float32)),
        loss=nnc.mse,
        opt=sgd(0.1),
        stop_on_nan=False,
    )
    assert message == (
        "fit: the initial parameters are not finite; the first is linear_1/b of linear_1: "
        f"Linear(3 -> 1) (created at {HERE}:{at}), which holds nan at index (0,) (1 of 4 "
        "parameters hold NaN or infinity)\n  hint: start from model.init(seed=...), or from the last "
        "finite parameters of a run that diverged (the params attribute of its NonFiniteError)\n"
        "  see docs/errors.md#nonfiniteerror"
    )


def test_the_nan_guard_settings_are_checked():
    model = Linear(1, 1)
    data = (np.ones((2, 1), np.float32), np.ones((2, 1), np.float32))
    run = functools.partial(quiet_fit, model, model.init(seed=0), data, loss=nnc.mse, opt=sgd(0.1))
    with pytest.raises(ConfigError, match=r"^fit: stop_on_nan must be True or False, got 'no'\n"):
        run(stop_on_nan="no")
    with pytest.raises(ConfigError, match=r"^fit: 2 StopOnNaN callbacks given; give at most one\n"):
        run(callbacks=[StopOnNaN(), StopOnNaN(raise_error=False)])
    with pytest.raises(
        ConfigError,
        match=r"^fit: stop_on_nan=False contradicts the StopOnNaN "
        r"callback; drop one of them\n",
    ):
        run(stop_on_nan=False, callbacks=[StopOnNaN()])


def test_overflow_in_a_users_value_and_grad_raises_no_runtime_warning():
    value, grad = no_runtime_warnings(
        nnc.value_and_grad(lambda x: nnc.sum(nnc.exp(x))), np.array([1000.0, 0.0])
    )
    assert float(value) == np.inf and grad.tolist() == [np.inf, 1.0]


# ----------------------------------------------------------------------------- cross_entropy's input


def test_values_that_are_not_probabilities_are_refused_eagerly():
    logits = np.array([[0.2, 0.3, 0.5], [1.5, -0.25, 0.5]], np.float32)
    assert refused(DomainError, nnc.cross_entropy, logits, np.array([0, 1])) == (
        "cross_entropy expects probabilities (values in [0, 1] that sum to 1 along the last axis), "
        "but row 1 of its prediction is [1.5, -0.25, 0.5], which holds 1.5 at index (1, 0) and "
        "sums to 1.75" + NOT_PROBABILITIES_HINT
    )
    unnormalised = np.array([[[0.25, 0.25]], [[0.5, 0.5]]])
    assert refused(DomainError, nnc.cross_entropy, unnormalised, np.zeros((2, 1), np.int64)) == (
        "cross_entropy expects probabilities (values in [0, 1] that sum to 1 along the last axis), "
        "but row (0, 0) of its prediction is [0.25, 0.25], which sums to 0.5" + NOT_PROBABILITIES_HINT
    )


@pytest.mark.parametrize("compiled", [False, True], ids=["interpreted", "compiled"])
def test_fit_of_a_model_without_softmax_is_refused_with_the_fix(compiled):
    # the example: a PyTorch user's Linear(4, 3) trained with loss stuck at 65.6
    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(64, 4)).astype(np.float32), rng.integers(0, 3, 64)
    model = Linear(4, 3)
    message = refused(
        DomainError,
        quiet_fit,
        model,
        model.init(seed=0),
        (x, labels),
        loss=nnc.cross_entropy,
        opt=adam(0.01),
        shuffle=False,
        compile=compiled,
    )
    assert message == (
        "cross_entropy expects probabilities (values in [0, 1] that sum to 1 along the last axis), "
        "but row 0 of its prediction is [0.2441, 0.1666, -0.03564], which holds -0.03564 at index "
        "(0, 2) and sums to 0.375" + NOT_PROBABILITIES_HINT
    )


def test_from_logits_trains_like_a_final_softmax():
    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(64, 4)).astype(np.float32), rng.integers(0, 3, 64)
    params = Linear(4, 3).init(seed=0)
    with_softmax, h1 = quiet_fit(
        Linear(4, 3) >> softmax,
        {"linear_0": params},
        (x, labels),
        loss=nnc.cross_entropy,
        opt=adam(0.01),
        epochs=3,
    )
    logits, h2 = quiet_fit(
        Linear(4, 3),
        params,
        (x, labels),
        opt=adam(0.01),
        epochs=3,
        loss=functools.partial(nnc.cross_entropy, from_logits=True),
    )
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-6)
    np.testing.assert_allclose(with_softmax["linear_0"]["W"], logits["W"], rtol=1e-5, atol=1e-6)
    assert h2["loss"][-1] < h2["loss"][0]


@given(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 6)), elements=st.floats(-30, 30)),
    st.data(),
)
def test_from_logits_equals_the_log_likelihood_of_the_softmax(logits, data):
    n, k = logits.shape
    labels = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    expected = -log_p[np.arange(n), labels].mean()
    np.testing.assert_allclose(nnc.cross_entropy(logits, labels, from_logits=True), expected, rtol=1e-9)
    g = nnc.grad(lambda z: nnc.cross_entropy(z, labels, from_logits=True))(logits)
    np.testing.assert_allclose(g, (np.exp(log_p) - np.eye(k)[labels]) / n, atol=1e-12)


def test_from_logits_on_the_output_of_softmax_is_refused():
    model = Linear(2, 3) >> softmax
    step = train_step(model, loss=functools.partial(nnc.cross_entropy, from_logits=True), opt=sgd(0.1))
    params = model.init(seed=0)
    assert refused(DomainError, step, params, (), np.ones((2, 2), np.float32), np.array([0, 1])) == (
        "cross_entropy(..., from_logits=True) was given the output of softmax, which is "
        "probabilities, not logits: the loss would apply softmax twice\n  hint: drop "
        "from_logits=True (cross_entropy of softmax's output is computed stably from its logits "
        "anyway), or end the model without softmax\n  see docs/errors.md#domainerror"
    )


@given(
    hnp.arrays(
        np.float32, st.tuples(st.integers(1, 6), st.integers(1, 40)), elements=st.floats(-50, 50, width=32)
    )
)
def test_every_softmax_output_passes_the_probability_check(logits):
    probabilities = nnc.softmax(logits)
    assert check_probabilities(probabilities, what="cross_entropy") is probabilities


@given(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(2, 5)), elements=st.floats(0, 1)),
    st.data(),
)
def test_a_value_outside_zero_one_is_always_refused(p, data):
    p = p / p.sum(axis=1, keepdims=True) if (p.sum(axis=1) > 0).all() else np.full(p.shape, 1 / p.shape[1])
    row, col = data.draw(st.integers(0, p.shape[0] - 1)), data.draw(st.integers(0, p.shape[1] - 1))
    p[row, col] = data.draw(st.sampled_from([-0.01, 1.01, 7.0]))
    with pytest.raises(DomainError, match=rf"but row {row} of its prediction is \["):
        check_probabilities(p, what="cross_entropy")


def test_rows_holding_nan_are_left_to_the_nan_guard():
    p = np.array([[np.nan, 0.5], [0.25, 0.75]])
    assert check_probabilities(p, what="cross_entropy") is p
    assert np.isnan(nnc.cross_entropy(p, np.array([0, 1])))


# ----------------------------------------------------------------------------- cross_entropy's labels


def test_out_of_range_labels_are_reported_by_cross_entropy_on_every_path():
    p = np.full((4, 3), 1 / 3)
    expected = (
        "cross_entropy: label 7 at index (2,) is out of range for 3 classes (labels must be "
        "0..2)\n  hint: the prediction has 3 columns, one per class; make the model's last "
        "layer as wide as the number of classes (labels.max() + 1 = 8)\n"
        "  see docs/errors.md#domainerror"
    )
    labels = np.array([0, 1, 7, 2])
    assert refused(DomainError, nnc.cross_entropy, p, labels) == expected
    model = Linear(2, 3) >> softmax
    params = model.init(seed=0)
    for path, step in both_steps(model, nnc.cross_entropy):
        assert refused(DomainError, step, params, (), np.ones((4, 2), np.float32), labels) == expected, path


def test_negative_labels_say_that_labels_count_from_zero():
    assert refused(DomainError, nnc.cross_entropy, np.full((2, 3), 1 / 3), np.array([0, -1])) == (
        "cross_entropy: label -1 at index (1,) is out of range for 3 classes (labels must be 0..2)\n"
        "  hint: labels count classes from 0; shift them so that the smallest is 0\n"
        "  see docs/errors.md#domainerror"
    )


@given(
    st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32]),
    st.integers(1, 5),
    st.lists(st.integers(0, 4), min_size=1, max_size=12),
    st.data(),
)
def test_labels_pass_exactly_when_all_are_in_range(dtype, classes, values, data):
    labels = np.array(values, dtype)
    if max(values) < classes:
        assert check_labels(labels, what="cross_entropy", classes=classes) is labels
        return
    if np.dtype(dtype).kind == "i" and data.draw(st.booleans()):
        values = [-v - 1 if v >= classes else v for v in values]  # negatives in place of the big ones
        labels = np.array(values, dtype)
    first = next(i for i, v in enumerate(values) if not 0 <= v < classes)
    with pytest.raises(
        DomainError,
        match=rf"^cross_entropy: label {values[first]} at index "
        rf"\({first},\) is out of range for {classes} classes",
    ):
        check_labels(labels, what="cross_entropy", classes=classes)


def test_float_labels_get_their_own_message():
    p = np.full((3, 2), 0.5, np.float32)
    assert refused(nnc.ShapeError, nnc.cross_entropy, p, np.array([0.0, 1.0, 1.0], np.float32)) == (
        "cross_entropy: labels of shape (3,) hold float32 values, but class labels must be "
        "integers\n  hint: labels.astype(int), or pass one-hot rows of shape (3, 2)\n"
        "  see docs/errors.md#shapeerror"
    )


# ----------------------------------------------------------------------------- empty batches


@pytest.mark.parametrize(
    "loss, target",
    [
        (nnc.mse, np.ones((0, 3))),
        (nnc.cross_entropy, np.ones(0, np.int64)),
        (nnc.cross_entropy, np.ones((0, 3))),
    ],
)
def test_a_loss_on_zero_rows_is_an_error_eagerly_and_traced(loss, target):
    name = loss.__name__
    expected = (
        f"{name}: the prediction of shape (0, 3) holds no values, and the mean of an empty "
        "batch is undefined (nnc raises rather than return nan)\n  hint: skip empty "
        "batches; fit never makes one\n  see docs/errors.md#shapeerror"
    )
    prediction = np.full((0, 3), 1 / 3)
    assert refused(nnc.ShapeError, loss, prediction, target) == expected
    assert refused(nnc.ShapeError, nnc.grad(lambda p: loss(p, target)), prediction) == expected


def test_the_mse_metric_on_zero_rows_is_an_error_too():
    assert refused(nnc.ShapeError, mse_metric, np.ones((0, 1)), np.ones((0, 1))) == (
        "mse: the prediction of shape (0, 1) holds no values, and the mean of an empty set is "
        "undefined (nnc raises rather than return nan)\n  see docs/errors.md#shapeerror"
    )


# ----------------------------------------------------------------------------- on another array backend


def test_the_loss_checks_give_the_numpy_messages_on_a_strict_device():
    import array_api_strict as xp

    device = xp.Device("device1")
    loss_grad = nnc.grad(lambda p, y: nnc.cross_entropy(p, y))
    cases = [
        (np.array([[0.2, 0.3, 0.5], [1.5, -0.25, 0.5]]), np.array([0, 1])),  # not probabilities
        (np.array([[0.2, 0.3, 0.5], [0.5, 0.25, 0.25]]), np.array([0, 3])),
    ]  # a label out of range
    for p, labels in cases:
        on_numpy = refused(DomainError, loss_grad, p, labels)
        on_device = refused(
            DomainError, loss_grad, xp.asarray(p, device=device), xp.asarray(labels, device=device)
        )
        assert on_device == on_numpy and on_numpy.startswith("cross_entropy")
    good = np.array([[0.2, 0.3, 0.5], [0.5, 0.25, 0.25]])
    g = loss_grad(xp.asarray(good, device=device), xp.asarray(np.array([0, 1]), device=device))
    np.testing.assert_allclose(
        np.asarray(xp.asarray(g, device=xp.Device("CPU_DEVICE"))), [[-2.5, 0, 0], [0, -2, 0]]
    )
