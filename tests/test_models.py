"""Models as values: forward results, parameters, dtypes, combinators, composed gradients."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nnc
from nnc import (
    Input,
    Linear,
    Vec,
    add,
    concat,
    fanout,
    log_softmax,
    logistic,
    parallel,
    relu,
    residual,
    softmax,
    tanh,
)
from nnc.testing import check_grads, inputs


def np_logistic(x):
    return 1 / (1 + np.exp(-x))


def test_forward_matches_a_numpy_reference():
    model = Linear(2, 4) >> logistic >> Linear(4, 1) >> logistic
    p = model.init(seed=3)
    x = np.random.default_rng(0).standard_normal((8, 2)).astype(np.float32)
    h = np_logistic(x @ p["linear_0"]["W"] + p["linear_0"]["b"])
    expected = np_logistic(h @ p["linear_1"]["W"] + p["linear_1"]["b"])
    np.testing.assert_allclose(model(p, x), expected, rtol=1e-6)


def test_single_example_and_batch_agree():
    model = Linear(2, 4) >> tanh >> Linear(4, 1)
    p = model.init(seed=0)
    x = np.random.default_rng(1).standard_normal((5, 2))
    single = np.stack([model(p, xi) for xi in x])
    assert model(p, x[0]).shape == (1,)
    np.testing.assert_allclose(single, model(p, x), rtol=1e-6)


def test_init_is_reproducible_and_keyed_by_readable_paths():
    model = Linear(2, 4) >> logistic >> Linear(4, 1) >> logistic
    a, b, c = model.init(seed=7), model.init(seed=7), model.init(seed=8)
    assert [path for path, _ in nnc.tree_paths(a)] == ["linear_0/W", "linear_0/b", "linear_1/W", "linear_1/b"]
    assert all(np.array_equal(x, y) for x, y in zip(nnc.tree_leaves(a), nnc.tree_leaves(b)))
    assert not np.array_equal(a["linear_0"]["W"], c["linear_0"]["W"])
    assert all(leaf.dtype == np.float32 for leaf in nnc.tree_leaves(a))


def test_glorot_uniform_bounds_and_zero_bias():
    p = Linear(30, 20).init(seed=0)
    limit = np.sqrt(6 / 50)
    assert np.abs(p["W"]).max() <= limit and np.abs(p["W"]).max() > 0.9 * limit
    assert np.array_equal(p["b"], np.zeros(20, np.float32))


def test_float64_parameters_on_request_and_input_cast_to_them():
    model = Linear(2, 3)
    p64 = model.init(seed=0, dtype=np.float64)
    assert model(p64, np.ones((2, 2), np.float32)).dtype == np.float64
    p32 = model.init(seed=0)
    assert model(p32, np.ones((2, 2), np.float64)).dtype == np.float32
    assert model(p32, np.ones((2, 2), np.int64)).dtype == np.float32  # integer inputs are cast too
    with pytest.raises(nnc.InitError, match="floating point"):
        model.init(dtype=np.int32)


def test_adding_a_layer_leaves_other_parameters_alone():
    a = (Linear(2, 3) >> tanh >> Linear(3, 1)).init(seed=0)
    b = (Linear(2, 3) >> tanh >> Linear(3, 1) >> tanh >> Linear(1, 1)).init(seed=0)
    assert np.array_equal(a["linear_1"]["W"], b["linear_1"]["W"])


def test_named_layers_key_their_parameters():
    model = Linear(2, 3, name="hidden") >> tanh >> Linear(3, 1, name="readout")
    assert list(model.init()) == ["hidden", "readout"]


def test_activations_compute_what_they_say():
    x = np.array([[-2.0, 0.0, 3.0]])
    np.testing.assert_allclose(tanh(x), np.tanh(x))
    np.testing.assert_allclose(logistic(x), np_logistic(x))
    np.testing.assert_allclose(relu(x), np.maximum(x, 0))
    e = np.exp(x - x.max())
    np.testing.assert_allclose(softmax(x), e / e.sum())
    np.testing.assert_allclose(log_softmax(x), np.log(e / e.sum()))


def test_logistic_and_softmax_do_not_overflow():
    x = np.array([-1000.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        np.testing.assert_allclose(logistic(x), [0.0, 1.0])
        np.testing.assert_allclose(softmax(x), [0.0, 1.0])


def test_combinators_compute_what_they_say():
    f, g = Linear(2, 3), Linear(4, 1)
    pf, pg = f.init(seed=1), g.init(seed=2)
    a, c = np.ones((5, 2)), np.ones((5, 4))
    both = parallel(f, g)
    pb = {"linear_0": pf, "linear_1": pg}
    out = both(pb, (a, c))
    np.testing.assert_allclose(out[0], f(pf, a))
    np.testing.assert_allclose(out[1], g(pg, c))

    fan = fanout(f, tanh)
    y1, y2 = fan({"linear_0": pf}, a)
    np.testing.assert_allclose(y1, f(pf, a))
    np.testing.assert_allclose(y2, np.tanh(a))

    res = residual(Linear(2, 2) >> tanh)
    pr = res.init(seed=0)
    np.testing.assert_allclose(res(pr, a), a + np.tanh(a @ pr["serial_0"]["linear_0"]["W"]), rtol=1e-6)

    joined = fanout(f, tanh) >> concat
    np.testing.assert_allclose(
        joined({"fanout_0": {"linear_0": pf}}, a), np.concatenate([f(pf, a), np.tanh(a)], axis=1), rtol=1e-6
    )
    summed = fanout(tanh, relu, tanh) >> add
    np.testing.assert_allclose(summed(a), 2 * np.tanh(a) + np.maximum(a, 0), rtol=1e-6)


def test_tuple_inputs_must_agree_on_the_batch_axis():
    both = parallel(Linear(2, 3), Linear(4, 1))
    with pytest.raises(nnc.ShapeError, match="disagree on the batch axis"):
        both(both.init(), (np.ones((5, 2)), np.ones((6, 4))))


def test_models_are_immutable_values():
    model = Linear(2, 3)
    with pytest.raises(AttributeError):
        model.kind = "other"
    before = repr(model)
    _ = Input(Vec[2]) >> model >> tanh
    assert repr(model) == before


def test_parameter_count():
    model = Linear(64, 128) >> tanh >> Linear(128, 10) >> softmax
    assert model.param_count == 64 * 128 + 128 + 128 * 10 + 10
    assert model.param_count == sum(leaf.size for leaf in nnc.tree_leaves(model.init()))


MODELS = {
    "mlp": Linear(3, 4) >> tanh >> Linear(4, 2) >> logistic,
    "residual": Linear(3, 3) >> residual(Linear(3, 3) >> tanh) >> Linear(3, 1),
    "fanout_concat": fanout(Linear(3, 2) >> tanh, Linear(3, 2) >> logistic) >> concat >> Linear(4, 1),
    "softmax": Linear(3, 5) >> softmax,
    "relu": Linear(3, 4) >> relu >> Linear(4, 2) >> log_softmax,
    "add": fanout(Linear(3, 2), Linear(3, 2)) >> add >> tanh,
}


@pytest.mark.parametrize("name", sorted(MODELS))
@given(data=st.data())
def test_composed_model_gradients_match_finite_differences(name, data):
    model = MODELS[name]
    x = data.draw(inputs(model, batch=st.integers(1, 4)))
    seed = data.draw(st.integers(0, 10))
    rng = np.random.default_rng(seed)
    # generic parameters (no zero biases), so that no ReLU sits exactly on its kink
    params = nnc.tree_map(
        lambda p: p + 0.3 * rng.standard_normal(p.shape), model.init(seed=seed, dtype=np.float64)
    )
    check_grads(lambda p, x: model(p, x), params, x, rtol=1e-4, atol=1e-7)


def test_hypothesis_inputs_follow_the_model_type():
    model = Input(Vec[6]) >> Linear(None, 2)
    x = inputs(model, batch=3).example()
    assert x.shape == (3, 6)
    pair = inputs(parallel(Linear(2, 1), Linear(5, 1))).example()
    assert [a.shape for a in pair] == [(2,), (5,)]
