"""Optimisers follow their published update rules, keep dtypes, stay pure and trace exactly."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnc
from nnc.backend.core import trace_graph
from nnc.backend.execute import compile_graph
from nnc.optim import (
    ConfigError,
    adam,
    adamw,
    clip_by_global_norm,
    clip_by_value,
    cosine_decay,
    exponential_decay,
    piecewise_constant,
    rmsprop,
    sgd,
    warmup,
)

# ----------------------------------------------------------------------------- hand-computed steps


def run(opt, params, grads_seq):
    state = opt.init(params)
    for g in grads_seq:
        params, state = opt.update(params, g, state)
    return params, state


def w(*values):
    return {"w": np.array(values, dtype=np.float64)}


def test_sgd_step_by_hand():
    params, state = run(sgd(0.1), w(1.0, -1.0), [w(2.0, 0.5)])
    np.testing.assert_allclose(params["w"], [0.8, -1.05], rtol=0, atol=1e-15)
    # plain SGD keeps no moments: its state holds only its learning rate, as data
    assert list(state) == ["hyper"] and float(state["hyper"]["lr"]) == 0.1


def test_momentum_steps_by_hand():
    # v1 = 1, p1 = 1 - 0.1 * 1 = 0.9;  v2 = 0.9 * 1 + 2 = 2.9, p2 = 0.9 - 0.29 = 0.61
    params, state = run(sgd(0.1, momentum=0.9), w(1.0), [w(1.0), w(2.0)])
    np.testing.assert_allclose(params["w"], [0.61], atol=1e-15)
    np.testing.assert_allclose(state["velocity"]["w"], [2.9], atol=1e-15)


def test_nesterov_steps_by_hand_pytorch_formulation():
    # v1 = 1, p1 = 1 - 0.1 * (1 + 0.9 * 1) = 0.81
    # v2 = 0.9 + 2 = 2.9, p2 = 0.81 - 0.1 * (2 + 0.9 * 2.9) = 0.81 - 0.461 = 0.349
    params, _ = run(sgd(0.1, momentum=0.9, nesterov=True), w(1.0), [w(1.0), w(2.0)])
    np.testing.assert_allclose(params["w"], [0.349], atol=1e-15)


def test_adam_steps_by_hand():
    # t=1: m = 0.1 g, v = 0.001 g^2, m_hat = g, v_hat = g^2: the step is lr * g / (|g| + eps)
    # t=2 with g2 = -1 after g1 = 2: m = 0.9*0.2 - 0.1 = 0.08, v = 0.999*0.004 + 0.001 = 0.004996
    #   m_hat = 0.08 / 0.19, v_hat = 0.004996 / 0.001999
    params, state = run(adam(0.5, eps=0.0), w(1.0), [w(2.0)])
    np.testing.assert_allclose(params["w"], [0.5], atol=1e-15)
    params, state = run(adam(0.5, eps=0.0), w(1.0), [w(2.0), w(-1.0)])
    expected = 0.5 - 0.5 * (0.08 / 0.19) / math.sqrt(0.004996 / 0.001999)
    np.testing.assert_allclose(params["w"], [expected], rtol=1e-14)
    assert int(state["count"]) == 2


def test_adamw_decays_the_weights_outside_the_moments():
    # t=1: p = 2 - 0.1 * (g / |g| + 0.5 * 2) = 2 - 0.1 * 2 = 1.8 whatever the size of g
    for g in (1.0, 1e-3, 50.0):
        params, state = run(adamw(0.1, eps=0.0, weight_decay=0.5), w(2.0), [w(g)])
        np.testing.assert_allclose(params["w"], [1.8], rtol=1e-14)
        # the moments hold the gradient alone: no decay term in them (unlike L2 in Adam)
        np.testing.assert_allclose(state["mu"]["w"], [0.1 * g], rtol=1e-14)


def test_rmsprop_steps_by_hand():
    # v1 = 0.1 * 4 = 0.4, p1 = 1 - 0.01 * 2 / sqrt(0.4)
    params, state = run(rmsprop(0.01, decay=0.9, eps=0.0), w(1.0), [w(2.0)])
    np.testing.assert_allclose(params["w"], [1 - 0.02 / math.sqrt(0.4)], rtol=1e-14)
    np.testing.assert_allclose(state["nu"]["w"], [0.4], rtol=1e-14)


# ----------------------------------------------------------------------------- the published equations

# Straight transcriptions of the papers' pseudo-code, one step at a time, in float64.


def ref_momentum(p, gs, lr, mu, nesterov):
    v = np.zeros_like(p)
    for g in gs:
        v = mu * v + g
        p = p - lr * (g + mu * v if nesterov else v)
    return p


def ref_adam(p, gs, lr, b1, b2, eps, wd=0.0):  # Kingma & Ba Alg. 1; Loshchilov & Hutter Alg. 2
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(gs, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        p = p - lr * (m_hat / (np.sqrt(v_hat) + eps) + wd * p)
    return p


def ref_rmsprop(p, gs, lr, rho, eps):
    v = np.zeros_like(p)
    for g in gs:
        v = rho * v + (1 - rho) * g**2
        p = p - lr * g / (np.sqrt(v) + eps)
    return p


finite = st.floats(-10, 10, allow_nan=False, width=64)


@st.composite
def trajectories(draw):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=4))
    steps = draw(st.integers(1, 6))
    p = draw(hnp.arrays(np.float64, shape, elements=finite))
    gs = [draw(hnp.arrays(np.float64, shape, elements=finite)) for _ in range(steps)]
    return p, gs


def nnc_run(opt, p, gs):
    params, _ = run(opt, {"layer": {"W": p}}, [{"layer": {"W": g}} for g in gs])
    return params["layer"]["W"]


@given(trajectories(), st.floats(1e-4, 1.0), st.floats(0.0, 0.99), st.booleans())
def test_sgd_momentum_matches_the_equations(traj, lr, mu, nesterov):
    p, gs = traj
    opt = sgd(lr, momentum=mu, nesterov=nesterov and mu > 0)
    np.testing.assert_allclose(
        nnc_run(opt, p, gs), ref_momentum(p, gs, lr, mu, nesterov and mu > 0), rtol=1e-12, atol=1e-12
    )


@given(
    trajectories(),
    st.floats(1e-4, 1.0),
    st.floats(0.0, 0.99),
    st.floats(0.5, 0.9999),
    st.floats(1e-8, 1e-3),
    st.sampled_from([0.0, 1e-2, 0.3]),
)
def test_adam_and_adamw_match_the_equations(traj, lr, b1, b2, eps, wd):
    p, gs = traj
    opt = adamw(lr, b1, b2, eps, weight_decay=wd) if wd else adam(lr, b1, b2, eps)
    np.testing.assert_allclose(
        nnc_run(opt, p, gs), ref_adam(p, gs, lr, b1, b2, eps, wd), rtol=1e-10, atol=1e-10
    )


@given(trajectories(), st.floats(1e-4, 1.0), st.floats(0.0, 0.99), st.floats(1e-8, 1e-3))
def test_rmsprop_matches_the_equations(traj, lr, rho, eps):
    p, gs = traj
    np.testing.assert_allclose(
        nnc_run(rmsprop(lr, rho, eps), p, gs), ref_rmsprop(p, gs, lr, rho, eps), rtol=1e-10, atol=1e-10
    )


# ----------------------------------------------------------------------------- schedules


def rates_seen(opt, steps):
    """The learning rate of each update, read off SGD steps with a unit gradient."""
    params, state, rates = w(0.0), None, []
    state = opt.init(params)
    for _ in range(steps):
        new, state = opt.update(params, w(1.0), state)
        rates.append(float(params["w"][0] - new["w"][0]))
        params = new
    return rates


def test_sgd_follows_a_schedule_counted_in_updates_from_zero():
    schedule = piecewise_constant(boundaries=(2, 4), values=(1.0, 0.5, 0.25))
    assert rates_seen(sgd(schedule), 6) == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_schedule_values():
    assert [exponential_decay(1.0, 0.5, 2)(t) for t in (0, 1, 2, 4)] == [1.0, 0.5**0.5, 0.5, 0.25]
    assert [exponential_decay(1.0, 0.5, 2, staircase=True)(t) for t in (0, 1, 2, 3)] == [1.0, 1.0, 0.5, 0.5]
    cos = cosine_decay(1.0, steps=4, final_lr=0.2)
    np.testing.assert_allclose(
        [cos(t) for t in range(6)],
        [
            1.0,
            0.2 + 0.8 * (1 + math.cos(math.pi / 4)) / 2,
            0.6,
            0.2 + 0.8 * (1 + math.cos(3 * math.pi / 4)) / 2,
            0.2,
            0.2,
        ],
    )
    ramp = warmup(exponential_decay(1.0, 0.5, 1), steps=2)
    assert [ramp(t) for t in range(5)] == [0.5, 1.0, 1.0, 0.5, 0.25]


def test_adam_with_a_schedule_uses_the_rate_of_each_update():
    schedule = piecewise_constant(boundaries=(1,), values=(0.5, 0.1))
    p, gs = np.array([1.0, -2.0]), [np.array([2.0, 1.0]), np.array([-1.0, 3.0])]
    first = ref_adam(p, gs[:1], 0.5, 0.9, 0.999, 1e-8)
    # the second update alone with rate 0.1, continuing from the same moments
    m = 0.9 * (0.1 * gs[0]) + 0.1 * gs[1]
    v = 0.999 * (0.001 * gs[0] ** 2) + 0.001 * gs[1] ** 2
    second = first - 0.1 * (m / 0.19) / (np.sqrt(v / (1 - 0.999**2)) + 1e-8)
    np.testing.assert_allclose(nnc_run(adam(schedule), p, gs), second, rtol=1e-12)


# ----------------------------------------------------------------------------- clipping


@given(
    st.lists(hnp.arrays(np.float64, st.integers(1, 4), elements=finite), min_size=1, max_size=3),
    st.floats(0.01, 10),
)
def test_global_norm_clipping_caps_the_norm_and_keeps_the_direction(leaves, max_norm):
    grads = {f"g{i}": g for i, g in enumerate(leaves)}
    clipped = clip_by_global_norm(grads, max_norm)
    norm = math.sqrt(sum(float(np.sum(g * g)) for g in leaves))
    new_norm = math.sqrt(sum(float(np.sum(g * g)) for g in clipped.values()))
    if norm <= max_norm:
        assert all(np.array_equal(clipped[k], grads[k]) for k in grads)
    else:
        assert new_norm == pytest.approx(max_norm, rel=1e-12)
        for k in grads:
            np.testing.assert_allclose(clipped[k] * norm / max_norm, grads[k], rtol=1e-12, atol=1e-300)


def test_clipping_inside_an_optimizer_applies_before_the_update():
    params, _ = run(sgd(1.0, clip_norm=1.0), w(0.0, 0.0), [w(3.0, 4.0)])
    np.testing.assert_allclose(params["w"], [-0.6, -0.8], rtol=1e-15)
    params, _ = run(sgd(1.0, clip_value=0.5), w(0.0, 0.0), [w(3.0, -0.25)])
    np.testing.assert_allclose(params["w"], [-0.5, 0.25], rtol=1e-15)
    np.testing.assert_array_equal(clip_by_value(w(-2.0, 0.1), 1.0)["w"], [-1.0, 0.1])


def test_clipping_lets_nan_through_so_it_can_be_noticed():
    clipped = clip_by_global_norm(w(np.nan, 1.0), 1.0)
    assert np.isnan(clipped["w"][0])


# ----------------------------------------------------------------------------- dtypes, purity, tracing

OPTIMIZERS = {
    "sgd": lambda: sgd(0.1),
    "momentum": lambda: sgd(0.1, 0.9),
    "nesterov": lambda: sgd(0.1, 0.9, nesterov=True, clip_norm=1.0),
    "adam": lambda: adam(1e-2, clip_value=0.5),
    "adamw": lambda: adamw(warmup(cosine_decay(1e-2, 10), 3)),
    "rmsprop": lambda: rmsprop(exponential_decay(1e-2, 0.5, 3)),
}


def mlp_tree(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "linear_0": {
            "W": rng.standard_normal((3, 4)).astype(dtype),
            "b": rng.standard_normal(4).astype(dtype),
        },
        "linear_1": {"W": rng.standard_normal((4, 2)).astype(dtype)},
    }


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_updates_keep_the_parameters_dtype_and_leave_their_inputs_alone(name, dtype):
    opt = OPTIMIZERS[name]()
    params, grads = mlp_tree(dtype, 0), mlp_tree(dtype, 1)
    copies = [p.copy() for p in nnc.tree_leaves((params, grads))]
    state = opt.init(params)
    for _ in range(3):
        new, state = opt.update(params, grads, state)
    assert all(leaf.dtype == dtype for leaf in nnc.tree_leaves(new))
    assert all(np.array_equal(a, b) for a, b in zip(copies, nnc.tree_leaves((params, grads))))
    assert not np.array_equal(new["linear_0"]["W"], params["linear_0"]["W"])


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_traced_update_computes_the_same_bits(name):
    """What nnc.compile relies on: the update is nnc operations, so tracing it changes nothing."""
    opt = OPTIMIZERS[name]()
    params, grads = mlp_tree(np.float32, 0), mlp_tree(np.float32, 1)
    state = opt.update(params, grads, opt.init(params))[1]  # a state past the first update
    leaves, treedef = nnc.tree_flatten((params, grads, state))

    def update(tracers):
        p, g, s = nnc.tree_unflatten(treedef, tracers)
        return nnc.tree_leaves(opt.update(p, g, s))

    graph = trace_graph(update, [(np.shape(v), np.asarray(v).dtype) for v in leaves])
    traced = compile_graph(graph)(*leaves)
    eager = nnc.tree_leaves(opt.update(params, grads, state))
    assert len(traced) == len(eager)
    for a, b in zip(traced, eager):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: sgd(-0.1), "sgd: learning_rate must be a positive number, got -0.1"),
        (lambda: sgd(0.1, momentum=1.0), r"sgd: momentum must be in \[0, 1\), got 1.0"),
        (lambda: sgd(0.1, nesterov=True), "sgd: nesterov=True needs a momentum > 0"),
        (lambda: adam(b2=1.5), r"adam: b2 must be in \[0, 1\), got 1.5"),
        (lambda: adamw(weight_decay=-1), "adamw: weight_decay must be a number >= 0, got -1"),
        (lambda: rmsprop(eps=-1e-8), "rmsprop: eps must be a number >= 0, got -1e-08"),
        (lambda: adam(clip_norm=0), "clip_norm must be a positive number, got 0"),
        (lambda: piecewise_constant((1, 2), (0.1,)), "piecewise_constant: 2 boundaries need 3 values, got 1"),
        (lambda: cosine_decay(0.1, steps=0), "cosine_decay: steps must be a positive number, got 0"),
    ],
)
def test_bad_hyperparameters_are_named(make, message):
    with pytest.raises(ConfigError, match=message):
        make()
    assert issubclass(ConfigError, nnc.NNCError)


def test_gradients_of_another_structure_are_refused():
    opt = adam()
    with pytest.raises(ConfigError, match="the gradients' structure differs from the parameters'"):
        opt.update(w(1.0), {"v": np.ones(1)}, opt.init(w(1.0)))
