"""Models learn with a plain SGD loop, and a seed reproduces a run bit for bit."""

import numpy as np

import nnc
from nnc import Linear, logistic, softmax, tanh

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
XOR_T = np.array([[0], [1], [1], [0]], dtype=np.float32)


def train(model, params, loss, data, lr, steps):
    value_and_grad = nnc.value_and_grad(loss)
    opt = nnc.sgd(lr)
    state = opt.init(params)
    curve = []
    for _ in range(steps):
        value, grads = value_and_grad(params, *data)
        params, state = opt.update(params, grads, state)
        curve.append(float(value))
    return params, curve


def test_xor_learns():
    model = Linear(2, 4) >> logistic >> Linear(4, 1) >> logistic
    loss = lambda p, x, t: nnc.mse(model(p, x), t)  # noqa: E731
    params, curve = train(model, model.init(seed=0), loss, (XOR_X, XOR_T), lr=2.0, steps=2000)
    prediction = model(params, XOR_X)
    assert curve[-1] < 0.01 < curve[0]
    np.testing.assert_array_equal(prediction > 0.5, XOR_T > 0.5)


def test_linear_regression_recovers_its_coefficients():
    rng = np.random.default_rng(1)
    W, b = rng.standard_normal((4, 2)), rng.standard_normal(2)
    x = rng.standard_normal((256, 4))
    y = x @ W + b + 0.001 * rng.standard_normal((256, 2))
    model = Linear(4, 2)
    loss = lambda p, x, y: nnc.mse(model(p, x), y)  # noqa: E731
    params, _ = train(model, model.init(seed=0, dtype=np.float64), loss, (x, y), lr=0.2, steps=400)
    np.testing.assert_allclose(params["W"], W, atol=2e-3)
    np.testing.assert_allclose(params["b"], b, atol=2e-3)


def test_softmax_classifier_with_integer_labels_learns():
    rng = np.random.default_rng(2)
    centers = rng.standard_normal((3, 5)) * 3
    labels = rng.integers(0, 3, 300)
    x = centers[labels] + rng.standard_normal((300, 5))
    model = Linear(5, 16) >> tanh >> Linear(16, 3) >> softmax
    loss = lambda p, x, y: nnc.cross_entropy(model(p, x), y)  # noqa: E731
    params, curve = train(model, model.init(seed=0), loss, (x, labels), lr=0.5, steps=200)
    accuracy = np.mean(model(params, x).argmax(axis=1) == labels)
    assert accuracy > 0.95 and curve[-1] < 0.2


def test_cross_entropy_through_softmax_is_computed_from_logits():
    """With logits this large, log(softmax) would be log(0) = -inf; log_softmax is exact."""
    model = Linear(2, 2, init="zeros") >> softmax
    params = {"linear_0": {"W": np.zeros((2, 2), np.float64), "b": np.array([0.0, 800.0])}}
    value, grads = nnc.value_and_grad(lambda p, x, y: nnc.cross_entropy(model(p, x), y))(
        params, np.zeros((1, 2)), np.array([0])
    )
    assert value == 800.0
    np.testing.assert_allclose(grads["linear_0"]["b"], [-1.0, 1.0])


def test_same_seed_same_parameters_and_curve_bit_for_bit():
    def run():
        model = Linear(2, 8) >> tanh >> Linear(8, 1) >> logistic
        loss = lambda p, x, t: nnc.mse(model(p, x), t)  # noqa: E731
        return train(model, model.init(seed=42), loss, (XOR_X, XOR_T), lr=1.0, steps=50)

    (p1, c1), (p2, c2) = run(), run()
    assert c1 == c2
    assert all(np.array_equal(a, b) for a, b in zip(nnc.tree_leaves(p1), nnc.tree_leaves(p2)))
