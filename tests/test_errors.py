"""Golden tests of the messages users read when something is wrong."""

import inspect
import os

import numpy as np
import pytest

import nnc
from nnc import Input, Linear, Vec, fanout, logistic, residual, tanh

HERE = os.path.relpath(__file__)


def line() -> int:
    return inspect.currentframe().f_back.f_lineno


def test_composition_mismatch_names_both_layers_types_and_places():
    a_line = line() + 1
    a = Linear(64, 128)
    b_line = line() + 1
    b = Linear(100, 10)
    with pytest.raises(nnc.TypeMismatch) as info:
        at = line() + 1
        a >> b
    assert str(info.value) == (
        f"cannot compose at {HERE}:{at}\n"
        f"  Linear(64 -> 128) (created at {HERE}:{a_line}) outputs Vec[128]\n"
        f"  Linear(100 -> 10) (created at {HERE}:{b_line}) expects Vec[100]\n"
        f"  axis 0: size 128 differs from size 100\n"
        f"  hint: Linear(None, n) infers its input size from what comes before it\n"
        f"  see docs/errors.md#typemismatch"
    )


def test_mismatch_deep_in_a_chain_names_the_meeting_layers():
    left = Linear(2, 4) >> tanh >> Linear(4, 8)
    with pytest.raises(
        nnc.TypeMismatch,
        match=r"Linear\(4 -> 8\) .* outputs Vec\[8\]\n"
        r"  Linear\(3 -> 1\) .* expects Vec\[3\]",
    ):
        left >> (Linear(3, 1) >> logistic)


def test_tuple_against_array_is_a_mismatch():
    with pytest.raises(nnc.TypeMismatch, match="a tuple of arrays cannot meet a single array"):
        fanout(tanh, tanh) >> Linear(3, 1)


def test_residual_needs_a_type_preserving_model():
    with pytest.raises(nnc.TypeMismatch, match=r"residual at .*: x \+ f\(x\) needs f to keep its type"):
        residual(Linear(3, 4))


def test_wrong_input_size_names_the_layer_path_and_the_expected_type():
    model_line = line() + 1
    model = Linear(2, 4) >> logistic >> Linear(4, 1)
    params = model.init(seed=0)
    with pytest.raises(nnc.ShapeError) as info:
        model(params, np.ones((8, 3)))
    assert str(info.value) == (
        f"input of shape (8, 3) does not fit linear_0: Linear(2 -> 4) (created at {HERE}:{model_line}), "
        "which expects Vec[2]: one example of shape (2,) or a batch of shape (batch, 2)\n"
        "  axis -1: expected size 2, got 3\n"
        "  see docs/errors.md#shapeerror"
    )


def test_wrong_rank_is_a_shape_error_not_broadcasting():
    model = Linear(2, 1)
    with pytest.raises(nnc.ShapeError, match="rank 3 fits neither"):
        model(model.init(), np.ones((4, 5, 2)))


def test_wrong_dtype_is_refused():
    model = Linear(2, 1)
    with pytest.raises(nnc.ShapeError, match="has dtype <U1; expected numbers"):
        model(model.init(), np.array(["a", "b"]))


def test_nan_input_is_refused_with_its_position():
    model = Linear(2, 1)
    x = np.ones((3, 2))
    x[1, 0] = np.nan
    with pytest.raises(nnc.NonFiniteError, match=r"holds nan at index \(1, 0\)"):
        model(model.init(), x)


def test_parameters_of_another_model_are_refused_by_path():
    model = Linear(2, 4) >> Linear(4, 1)
    other = (Linear(2, 4) >> Linear(4, 2)).init()
    with pytest.raises(
        nnc.ShapeError, match=r"parameter 'linear_1/W' has shape \(4, 2\), but .* expects \(4, 1\)"
    ):
        model(other, np.ones(2))
    with pytest.raises(nnc.ShapeError, match="missing 'linear_1/W'"):
        model({"linear_0": other["linear_0"]}, np.ones(2))


def test_silent_broadcasting_is_an_error_in_traced_code():
    model = Linear(2, 1)
    params = model.init()
    x, t = np.ones((8, 2)), np.ones(8)
    loss = lambda p, x, t: nnc.mean((model(p, x) - t) ** 2)  # noqa: E731 - the classic bug
    with pytest.raises(nnc.ShapeError) as info:
        nnc.grad(loss)(params, x, t)
    assert str(info.value) == (
        "subtract: operand shapes (8, 1) and (8,) do not match; numpy would broadcast them to (8, 8).\n"
        "  nnc broadcasts only a scalar, matching trailing axes (a bias), or equal ranks with size-1 axes.\n"
        "  hint: reshape one operand so the ranks agree, e.g. t.reshape(-1, 1)\n"
        "  see docs/errors.md#shapeerror"
    )


def test_mse_names_both_shapes_and_the_fix():
    with pytest.raises(
        nnc.ShapeError, match=r"mse: prediction of shape \(8, 1\) and target of shape \(8,\) differ"
    ):
        nnc.mse(np.ones((8, 1)), np.ones(8))


def test_bad_labels_are_refused():
    p = np.full((2, 3), 1 / 3)
    with pytest.raises(
        nnc.DomainError,
        match=r"cross_entropy: label 3 at index \(1,\) is out of range "
        "for 3 classes",
    ):
        nnc.cross_entropy(p, np.array([0, 3]))
    with pytest.raises(nnc.DomainError, match=r"cross_entropy: label -1 at index \(1,\)"):
        nnc.cross_entropy(p, np.array([0, -1]))
    with pytest.raises(nnc.ShapeError, match=r"integer labels of shape \(3,\) do not match"):
        nnc.cross_entropy(p, np.array([0, 1, 2]))


def test_control_flow_on_traced_values_explains_itself():
    def f(x):
        return x.sum() if x.sum() > 0 else -x.sum()

    with pytest.raises(nnc.TraceError, match=r"Python control flow \(if/while/and/or\) needs the value"):
        nnc.grad(f)(np.ones(3))


def test_non_scalar_grad_explains_itself():
    with pytest.raises(nnc.ShapeError, match=r"must return one scalar .* shape \(3,\).*\n  hint: reduce it"):
        nnc.grad(lambda x: x * 2)(np.ones(3))


def test_missing_gradient_rule_names_the_primitive():
    from nnc.backend.core import bind, defprim

    floor = defprim("test_floor_without_rule", np.floor)
    try:
        with pytest.raises(
            nnc.MissingGradient, match="primitive 'test_floor_without_rule' has no gradient rule"
        ):
            nnc.grad(lambda x: bind(floor, x).sum())(np.ones(2))
    finally:
        from nnc.backend.core import PRIMITIVES

        del PRIMITIVES["test_floor_without_rule"]


def test_errors_share_one_base_class_and_read_as_nnc_errors():
    for cls in (
        nnc.TypeMismatch,
        nnc.ShapeError,
        nnc.NonFiniteError,
        nnc.MissingGradient,
        nnc.TraceError,
        nnc.InitError,
    ):
        assert issubclass(cls, nnc.NNCError)
        assert cls.__module__ == "nnc"


def test_input_declared_type_catches_a_wrong_first_layer():
    with pytest.raises(nnc.TypeMismatch, match=r"Input\(Vec\[3\]\) .* outputs Vec\[3\]"):
        Input(Vec[3]) >> Linear(4, 2)
