"""Recurrent cells and the combinators that unroll, seed and feed them back."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nnc
from nnc import (
    GRU,
    LSTM,
    Input,
    Linear,
    Seq,
    Vec,
    concat,
    fcrnn,
    feedback,
    fix_state,
    lagged,
    learned_state,
    prime,
    recurrently,
    tanh,
    unroll,
    unroll_last,
    zero_state,
)
from nnc.backend.staging import cache_for
from nnc.testing import check_grads, inputs


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_signatures_show_the_state():
    cell = fcrnn(1, 30) >> Linear(30, 1)
    assert str(cell.signature) == "Vec[1] -> Vec[1], state Vec[30]"
    assert str(zero_state(unroll_last(cell)).signature) == "Seq[Vec[1]] -> Vec[1]"
    assert str(unroll(cell).signature) == "Seq[Vec[1]] -> Seq[Vec[1]], state Vec[30]"
    assert str((fcrnn(2, 3) >> LSTM(3, 4)).signature) == "Vec[2] -> Vec[4], state (Vec[3], (Vec[4], Vec[4]))"


def test_fcrnn_step_matches_its_equation():
    cell = fcrnn(2, 3, activation="logistic")
    p = cell.init(seed=1, dtype=np.float64)
    x, h = np.array([0.5, -1.0]), np.array([0.1, 0.2, -0.3])
    y, h2 = cell(p, x, h)
    expected = sigmoid(x @ p["Wx"] + h @ p["Wh"] + p["b"])
    np.testing.assert_allclose(y, expected)
    np.testing.assert_allclose(h2, expected)


def test_lstm_step_matches_its_equations():
    cell = LSTM(2, 3)
    p = cell.init(seed=2, dtype=np.float64)
    assert np.array_equal(p["b"], np.r_[np.zeros(3), np.ones(3), np.zeros(6)])
    x, h, c = np.array([0.5, -1.0]), np.array([0.1, 0.2, -0.3]), np.array([1.0, -0.5, 0.2])
    y, (h2, c2) = cell(p, x, (h, c))
    z = x @ p["Wx"] + h @ p["Wh"] + p["b"]
    i, f, g, o = sigmoid(z[:3]), sigmoid(z[3:6]), np.tanh(z[6:9]), sigmoid(z[9:])
    np.testing.assert_allclose(c2, f * c + i * g)
    np.testing.assert_allclose(h2, o * np.tanh(f * c + i * g))
    np.testing.assert_allclose(y, h2)


def test_gru_step_matches_its_equations():
    cell = GRU(2, 3)
    p = cell.init(seed=3, dtype=np.float64)
    x, h = np.array([0.5, -1.0]), np.array([0.1, 0.2, -0.3])
    y, h2 = cell(p, x, h)
    zx, zh = x @ p["Wx"] + p["b"], h @ p["Wh"]
    z, r = sigmoid(zx[:3] + zh[:3]), sigmoid(zx[3:6] + zh[3:6])
    cand = np.tanh(zx[6:] + (r * h) @ p["Uh"])
    np.testing.assert_allclose(h2, z * h + (1 - z) * cand)
    np.testing.assert_allclose(y, h2)


def test_gru_with_the_reset_gate_after_matches_pytorchs_equations():
    cell = GRU(2, 3, reset="after")
    p = nnc.tree_map(lambda a: a + 0.1, cell.init(seed=3, dtype=np.float64))  # bh and b not zero
    assert {k: v.shape for k, v in p.items()} == {"Wx": (2, 9), "Wh": (3, 9), "b": (9,), "bh": (3,)}
    x, h = np.array([0.5, -1.0]), np.array([0.1, 0.2, -0.3])
    y, h2 = cell(p, x, h)
    zx, zh = x @ p["Wx"] + p["b"], h @ p["Wh"]
    z, r = sigmoid(zx[:3] + zh[:3]), sigmoid(zx[3:6] + zh[3:6])
    cand = np.tanh(zx[6:] + r * (zh[6:] + p["bh"]))
    np.testing.assert_allclose(h2, z * h + (1 - z) * cand)
    np.testing.assert_allclose(y, h2)
    before = GRU(2, 3)(GRU(2, 3).init(seed=3, dtype=np.float64), x, h)[0]
    assert not np.allclose(before, y)  # the forms differ


def test_gru_reset_after_is_described_checked_and_kept_apart_in_checkpoints(tmp_path):
    cell = GRU(2, 3, reset="after")
    assert repr(cell) == "GRU(2 -> 3, reset='after')" and repr(GRU(2, 3)) == "GRU(2 -> 3)"
    assert "GRU(2 -> 3, reset='after'), state Vec[3]" in str(nnc.summary(zero_state(unroll_last(cell))))
    with pytest.raises(
        nnc.ArgumentError, match=r"reset must be 'before' \(Cho et al.\) or 'after' \(PyTorch's\), got 'late'"
    ):
        GRU(2, 3, reset="late")
    model = zero_state(unroll_last(cell))
    params = model.init(seed=0)
    nnc.save(tmp_path / "gru.npz", model, params)
    loaded = nnc.load(tmp_path / "gru.npz", model)
    assert all(np.array_equal(loaded[k], params[k]) for k in ("Wx", "Wh", "b", "bh"))
    with pytest.raises(nnc.CheckpointError, match=r"bh: in the file \(shape \(3,\)\), not in the model"):
        nnc.load(tmp_path / "gru.npz", zero_state(unroll_last(GRU(2, 3))))
    from nnc.checkpoint import recorded_layers

    assert recorded_layers(cell) == [["", "GRU(hidden=3, reset='after')"]]
    assert recorded_layers(GRU(2, 3)) == [["", "GRU(hidden=3)"]]  # as before the option


def test_gru_reset_after_compiled_equals_interpreted():
    model = zero_state(unroll(GRU(2, 3, reset="after") >> Linear(3, 2)))
    params = nnc.tree_map(lambda a: a + 0.1, model.init(seed=1, dtype=np.float64))
    xs = np.random.default_rng(0).standard_normal((4, 5, 2))
    loss = lambda p, x: nnc.sum(model(p, x) ** 2)  # noqa: E731
    compiled = nnc.compile(nnc.value_and_grad(loss))
    value, grads = compiled(params, xs)
    expected_value, expected_grads = nnc.value_and_grad(loss)(params, xs)
    np.testing.assert_allclose(value, expected_value, rtol=1e-12)
    for got, want in zip(nnc.tree_leaves(grads), nnc.tree_leaves(expected_grads)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert abs(grads["gru_0"]["bh"]).sum() > 0


def test_unroll_equals_stepping_by_hand_for_single_and_batched_sequences():
    cell = fcrnn(2, 4) >> Linear(4, 1)
    p = cell.init(seed=0, dtype=np.float64)
    rng = np.random.default_rng(0)
    xs, h0 = rng.standard_normal((3, 7, 2)), rng.standard_normal((3, 4))
    ys, final = unroll(cell)(p, xs, h0)
    h, manual = h0, []
    for t in range(7):
        y, h = cell(p, xs[:, t], h)
        manual.append(y)
    np.testing.assert_allclose(ys, np.stack(manual, axis=1))
    np.testing.assert_allclose(final, h)
    ys0, final0 = unroll(cell)(p, xs[0], h0[0])
    np.testing.assert_allclose(ys0, ys[0])
    last, _ = unroll_last(cell)(p, xs, h0)
    np.testing.assert_allclose(last, ys[:, -1])


def test_zero_learned_and_fixed_states():
    cell = fcrnn(1, 3)
    xs = np.random.default_rng(1).standard_normal((2, 5, 1))
    p = cell.init(seed=0, dtype=np.float64)
    zero = zero_state(unroll_last(cell))
    np.testing.assert_allclose(zero(p, xs), unroll_last(cell)(p, xs, np.zeros((2, 3)))[0])
    learned = learned_state(unroll_last(cell))
    pl = learned.init(seed=0, dtype=np.float64)
    pl["initial_state"] = np.array([0.5, -0.5, 1.0])
    np.testing.assert_allclose(
        learned(pl, xs), unroll_last(cell)(p, xs, np.tile(pl["initial_state"], (2, 1)))[0]
    )
    fixed = fix_state(np.array([0.5, -0.5, 1.0]), unroll_last(cell))
    np.testing.assert_allclose(fixed(p, xs), learned(pl, xs))


def test_learned_state_is_trained():
    model = learned_state(unroll_last(fcrnn(1, 3)))
    p = model.init(seed=0, dtype=np.float64)
    g = nnc.grad(lambda p, x: nnc.sum(model(p, x) ** 2))(p, np.ones((2, 4, 1)))
    assert np.abs(g["initial_state"]).sum() > 0


def test_a_thousand_step_unroll_is_one_node_in_the_graph():
    model = zero_state(unroll_last(fcrnn(1, 4) >> Linear(4, 1)))
    loss = lambda p, x, y: nnc.mse(model(p, x), y)  # noqa: E731
    g = nnc.grad(loss)(model.init(seed=0), np.ones((2, 1000, 1)), np.ones((2, 1)))
    assert g["fcrnn_0"]["Wh"].shape == (4, 4)
    graph = next(iter(cache_for(loss).values())).graph
    names = [e.prim.name for e in graph.eqns]
    assert names.count("scan") == 2 and len(names) < 40  # forward scan + its reverse scan


RECURRENT = {
    "fcrnn": lambda: zero_state(unroll_last(fcrnn(2, 3) >> Linear(3, 1))),
    "fcrnn_logistic": lambda: zero_state(unroll(fcrnn(2, 3, activation="logistic"))),
    "lstm": lambda: zero_state(unroll_last(LSTM(2, 3))),
    "gru": lambda: zero_state(unroll(GRU(2, 3) >> Linear(3, 2))),
    "gru_reset_after": lambda: zero_state(unroll(GRU(2, 3, reset="after") >> Linear(3, 2))),
    "stacked": lambda: zero_state(unroll_last(fcrnn(2, 3) >> GRU(3, 2))),
    "learned": lambda: learned_state(unroll_last(LSTM(2, 2))),
    "lagged": lambda: zero_state(unroll(lagged(3, Linear(6, 1)))),
    "recurrently": lambda: zero_state(
        unroll_last(Input(Vec[2]) >> recurrently(concat >> Linear(None, 3) >> tanh))
    ),
}


@pytest.mark.parametrize("name", sorted(RECURRENT))
@given(data=st.data())
def test_unrolled_model_gradients_match_finite_differences(name, data):
    model = RECURRENT[name]()
    xs = data.draw(inputs(model, batch=st.integers(1, 3), max_size=4))
    rng = np.random.default_rng(data.draw(st.integers(0, 5)))
    params = nnc.tree_map(
        lambda p: p + 0.2 * rng.standard_normal(p.shape), model.init(seed=0, dtype=np.float64)
    )
    check_grads(lambda p, x: model(p, x), params, xs, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize(
    "make", [lambda: fcrnn(2, 3), lambda: LSTM(2, 3), lambda: GRU(2, 3), lambda: GRU(2, 3, reset="after")]
)
def test_cell_step_gradients_match_finite_differences(make):
    cell = make()
    p = nnc.tree_map(lambda a: a + 0.1, cell.init(seed=0, dtype=np.float64))
    h = np.full((2, 3), 0.3)
    state = (h, -h) if cell.kind == "LSTM" else h

    def energy(p, x, s):
        y, new = cell(p, x, s)
        return nnc.sum(y**2) + sum(nnc.sum(leaf * 0.5) for leaf in nnc.tree_leaves(new))

    check_grads(energy, p, np.array([[0.5, -0.2], [0.1, 0.9]]), state)


def test_ar2_model_recovers_the_coefficients_of_a_sine():
    omega = 0.3
    wave = np.sin(omega * np.arange(60) + np.array([[0.0], [1.0], [2.0]]))[..., None]  # (3, 60, 1)
    x, target = wave[:, :-1], wave[:, 1:]
    model = zero_state(unroll(lagged(2, Linear(2, 1))))
    loss = lambda p, x, t: nnc.mse(model(p, x)[:, 1:], t[:, 1:])  # noqa: E731 - skip the zero-state step
    params = model.init(seed=0, dtype=np.float64)
    step = nnc.value_and_grad(loss)
    for _ in range(1500):
        value, g = step(params, x, target)
        params = nnc.tree_map(lambda p, g: p - 0.5 * g, params, g)
    # sin(w(t+1)) = 2 cos(w) sin(wt) - sin(w(t-1)); the window is (x[t-1], x[t])
    np.testing.assert_allclose(params["W"].ravel(), [-1.0, 2 * np.cos(omega)], atol=1e-2)
    assert abs(params["b"][0]) < 1e-2 and value < 1e-5


def test_rnn_trained_on_a_sine_generates_a_sine_like_wave():
    t = np.arange(80) * 0.25
    wave = np.sin(t + np.linspace(0, 2, 6)[:, None])[..., None]  # (6, 80, 1)
    cell = fcrnn(1, 16) >> Linear(16, 1)
    model = zero_state(unroll(cell))
    loss = lambda p, x, y: nnc.mse(model(p, x), y)  # noqa: E731
    step = nnc.value_and_grad(loss)
    params = cell.init(seed=0, dtype=np.float64)
    velocity = nnc.tree_map(np.zeros_like, params)
    for _ in range(400):
        value, g = step(params, wave[:, :-1], wave[:, 1:])
        velocity = nnc.tree_map(lambda v, g: 0.9 * v - 0.05 * g, velocity, g)
        params = nnc.tree_map(lambda p, v: p + v, params, velocity)
    assert value < 5e-3
    seed = np.sin(np.arange(40) * 0.25)[:, None]
    last, state = prime(cell, params, np.zeros(16), seed)
    generated = feedback(cell, params, state, last, steps=30)[:, 0]
    truth = np.sin(np.arange(40, 70) * 0.25)
    assert generated.shape == (30,)
    assert np.corrcoef(generated, truth)[0, 1] > 0.9
    assert np.abs(generated - truth).max() < 0.35


def test_wrong_state_types_are_type_mismatches_at_composition():
    with pytest.raises(
        nnc.TypeMismatch, match="recurrently at .* must map \\(input, state\\) to a new state"
    ):
        recurrently(Input((Vec[2], Vec[3])) >> concat >> Linear(5, 4))
    with pytest.raises(nnc.TypeMismatch, match=r"fix_state .* \(shapes \[\(3,\)\]\), got shapes \[\(4,\)\]"):
        fix_state(np.zeros(4), unroll_last(fcrnn(1, 3)))
    with pytest.raises(nnc.TypeMismatch, match="lagged at .* must take Vec\\[2 \\* k\\]"):
        lagged(2, Linear(3, 1))
    with pytest.raises(nnc.TypeMismatch, match="unroll needs a stateful model"):
        unroll(Linear(2, 2))
    with pytest.raises(nnc.TypeMismatch, match="parallel takes stateless models"):
        nnc.parallel(fcrnn(1, 2), Linear(1, 1))
    with pytest.raises(nnc.TypeMismatch, match="a sequence cannot meet a single example"):
        unroll(fcrnn(1, 2)) >> fcrnn(2, 1)  # a cell after a sequence: unroll it
    # a stateless model after a sequence runs at every step
    assert repr((unroll(fcrnn(1, 2)) >> Linear(2, 1)).signature) == "Seq[Vec[1]] -> Seq[Vec[1]], state Vec[2]"


def test_wrong_state_at_call_time_is_a_shape_error():
    cell = fcrnn(1, 3)
    p = cell.init()
    with pytest.raises(nnc.ShapeError, match="state of shape \\(4,\\) does not fit"):
        cell(p, np.ones(1), np.zeros(4))
    with pytest.raises(nnc.ShapeError, match="is stateful .* call it as model\\(params, x, state\\)"):
        cell(p, np.ones(1))
    with pytest.raises(nnc.ShapeError, match="batch size 2 but the input has 3"):
        cell(p, np.ones((3, 1)), np.zeros((2, 3)))


def test_sequence_input_types_are_checked():
    model = zero_state(unroll_last(fcrnn(2, 3)))
    with pytest.raises(nnc.ShapeError, match=r"expects Seq\[Vec\[2\]\]: one example of shape \(time, 2\)"):
        model(model.init(), np.ones((4, 5, 3)))
    assert str(Seq[Vec[2]]) == "Seq[Vec[2]]"
