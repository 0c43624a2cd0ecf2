"""grad, value_and_grad, vjp, jacobian and hessian: values, structure, caching, nesting."""

import numpy as np
import pytest

import nnc
from nnc import Linear, softmax, tanh
from nnc.backend import autodiff, staging
from nnc.backend.core import trace_graph


def test_grad_has_the_structure_of_the_parameters():
    model = Linear(2, 4) >> nnc.logistic >> Linear(4, 1) >> nnc.logistic
    params = model.init(seed=0)
    x, t = np.ones((8, 2)), np.zeros((8, 1))
    g = nnc.grad(lambda p, x, t: nnc.mean((model(p, x) - t) ** 2))(params, x, t)
    assert nnc.tree_map(lambda a: (a.shape, a.dtype), g) == nnc.tree_map(lambda a: (a.shape, a.dtype), params)


def test_value_and_grad_value_equals_the_function():
    f = lambda x: nnc.sum(nnc.exp(x) * x)  # noqa: E731
    x = np.array([0.5, -1.0, 2.0])
    value, g = nnc.value_and_grad(f)(x)
    assert value == pytest.approx(np.sum(np.exp(x) * x))
    np.testing.assert_allclose(g, np.exp(x) * (1 + x))


def test_broadcast_arguments_have_their_gradients_summed_back():
    b = np.array([1.0, 2.0, 3.0])
    X = np.arange(12.0).reshape(4, 3)
    gb = nnc.grad(lambda b, X: nnc.sum((X + b) ** 2))(b, X)
    np.testing.assert_allclose(gb, (2 * (X + b)).sum(axis=0))
    gs = nnc.grad(lambda s, X: nnc.sum(X * s))(np.array(2.0), X)
    assert gs.shape == () and gs == pytest.approx(X.sum())
    gk = nnc.grad(lambda k, X: nnc.sum((X * k) ** 2))(np.ones((4, 1)), X)
    np.testing.assert_allclose(gk, (2 * X * X).sum(axis=1, keepdims=True))


def test_float32_parameters_get_float32_gradients_against_float64_targets():
    model = Linear(2, 1)
    p = model.init()
    g = nnc.grad(lambda p, x, t: nnc.mean((model(p, x) - t) ** 2))(p, np.ones((3, 2)), np.ones((3, 1)))
    assert g["W"].dtype == np.float32 and g["b"].dtype == np.float32


def test_argnums_tuple_returns_one_gradient_per_argument():
    ga, gb = nnc.grad(lambda a, b: nnc.sum(a * b), argnums=(0, 1))(np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    np.testing.assert_allclose(ga, [3.0, 4.0])
    np.testing.assert_allclose(gb, [1.0, 2.0])


def test_gradient_of_an_unused_argument_is_zero():
    g = nnc.grad(lambda a, b: nnc.sum(a * 2.0), argnums=1)(np.ones(2), np.ones(3))
    np.testing.assert_array_equal(g, np.zeros(3))


def test_vjp_pulls_back_any_cotangent():
    W = np.arange(6.0).reshape(2, 3)
    y, pullback = nnc.vjp(lambda W, x: nnc.tanh(x @ W), W, np.ones((4, 2)))
    ct = np.random.default_rng(0).standard_normal(y.shape)
    gW, gx = pullback(ct)
    dz = ct * (1 - np.tanh(np.ones((4, 2)) @ W) ** 2)
    np.testing.assert_allclose(gW, np.ones((4, 2)).T @ dz)
    np.testing.assert_allclose(gx, dz @ W.T)
    with pytest.raises(nnc.ShapeError, match="cotangent must match"):
        pullback(np.ones(3))


def test_hessian_of_a_quadratic_form_is_its_symmetric_part():
    A = np.array([[2.0, 1.0], [0.0, 3.0]])
    H = nnc.hessian(lambda x: nnc.sum(x * (A @ x)))(np.array([0.3, -0.7]))
    np.testing.assert_allclose(H, A + A.T)


def test_hessian_of_a_network_loss_matches_finite_differences_of_its_gradient():
    model = Linear(3, 2) >> tanh >> Linear(2, 1)
    p = model.init(seed=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((5, 3))
    f = lambda W: nnc.mean(  # noqa: E731 (read as the maths: f of W)
        model(
            {
                "linear_0": {"W": W, "b": p["linear_0"]["b"]},  # noqa: E731
                "linear_1": p["linear_1"],
            },
            x,
        )
        ** 2
    )
    W = p["linear_0"]["W"]
    H = nnc.hessian(f)(W)
    g = nnc.grad(f)
    eps = 1e-6
    for i, j in [(0, 0), (1, 1), (2, 0)]:
        d = np.zeros_like(W)
        d[i, j] = eps
        np.testing.assert_allclose(H[:, :, i, j], (g(W + d) - g(W - d)) / (2 * eps), rtol=1e-5, atol=1e-8)


def test_jacobian_of_softmax():
    x = np.array([0.1, 0.5, -0.3])
    J = nnc.jacobian(lambda x: softmax(x))(x)
    s = np.exp(x) / np.exp(x).sum()
    np.testing.assert_allclose(J, np.diag(s) - np.outer(s, s), atol=1e-12)


def test_trace_is_cached_per_signature_and_retraced_for_new_shapes():
    calls = []

    def f(x):
        calls.append(x.shape)
        return nnc.sum(x * x)

    g = nnc.grad(f)
    g(np.ones(3))
    g(np.full(3, 2.0))
    assert calls == [(3,)]
    np.testing.assert_allclose(g(np.ones(4)), 2 * np.ones(4))
    assert calls == [(3,), (4,)]
    nnc.grad(f)(np.ones(3))  # a new grad of the same function reuses its trace
    assert calls == [(3,), (4,)]


def test_python_numbers_are_constants_of_the_trace():
    g = nnc.grad(lambda x, k: nnc.sum(x**2) * k)
    np.testing.assert_allclose(g(np.ones(2), 3.0), [6.0, 6.0])
    np.testing.assert_allclose(g(np.ones(2), 5.0), [10.0, 10.0])


def test_gradient_graph_is_straight_line_code_without_dead_work():
    f = lambda x, y: nnc.sum(nnc.tanh(x)) + 0.0 * nnc.sum(y)  # noqa: E731
    nnc.grad(f)(np.ones(3), np.ones(3))
    staged = next(iter(staging.cache_for(f).values()))
    names = [e.prim.name for e in staged.graph.eqns]
    assert "tanh" in names and names.count("tanh") == 1  # forward emitted once, reused by the rule


def test_differentiating_an_integer_argument_is_refused():
    with pytest.raises(nnc.ShapeError, match="floating-point"):
        nnc.grad(lambda x: nnc.sum(x * 1.0))(np.array([1, 2]))


def test_escaped_tracer_is_detected():
    leak = []
    nnc.grad(lambda x: (leak.append(x), nnc.sum(x))[1])(np.ones(2))
    with pytest.raises(nnc.TraceError, match="after its trace ended"):
        nnc.exp(leak[0])


def test_a_traced_value_has_numpys_operators_and_methods():
    def every_operator(x, y):
        return [
            x + y, 2.0 + x, x - y, 2.0 - x, x * y, 3.0 * x, x / y, 1.0 / x, x**2, 2.0**x,
            x @ y.T, np.ones((2, 3)) @ y.T, -x, +x, abs(-x), x > y, x < y, x[0], x[:, 1:],
            x.T, x.transpose(1, 0), x.reshape(3, 2), x.reshape((6,)), x.sum(), x.sum(axis=0),
            x.mean(axis=1, keepdims=True), x.max(), x.max(0), x.astype(np.float32), list(x)[1],
        ]  # fmt: skip

    x, y = np.arange(1.0, 7.0).reshape(2, 3), np.full((2, 3), 2.5)
    traced, _ = nnc.vjp(lambda x, y: tuple(every_operator(x, y)), x, y)
    for got, want in zip(traced, every_operator(x, y), strict=True):
        np.testing.assert_allclose(got, want)
        assert np.asarray(got).dtype == np.asarray(want).dtype


def test_unary_plus_on_a_traced_value_records_nothing():
    seen = []
    nnc.grad(lambda x: (seen.append(+x is x), nnc.sum(x))[1])(np.ones(2))
    assert seen == [True]


def test_backward_pass_substitutes_saved_values_instead_of_recomputing_them():
    graph = trace_graph(lambda v: [nnc.sum(nnc.exp(v[0]))], [((3,), np.dtype(np.float64))])
    (exp_eqn,) = [e for e in graph.eqns if e.prim.name == "exp"]
    x, saved = np.zeros(3), np.full(3, 2.0)  # not exp(x): the gradient must read the saved value
    outputs, (g,) = autodiff.backward_pass(graph, [x], [np.ones(())], [0], {id(exp_eqn.out): saved})
    assert outputs[0] == pytest.approx(6.0)
    np.testing.assert_allclose(g, saved)
