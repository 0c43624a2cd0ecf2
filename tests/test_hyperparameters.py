"""Hyperparameters are data, not code (issues 20 and 21): runs that differ only in a learning
rate, a momentum, a weight decay, Adam's betas and eps or a clipping limit share one compiled
step; only types, shapes and the model's structure select a compiled function."""

import sys

import numpy as np
import pytest

import nnc
from nnc import Linear, tanh, value_and_grad
from nnc.optim import (
    adam,
    adamw,
    cosine_decay,
    exponential_decay,
    hyperparameters,
    piecewise_constant,
    rmsprop,
    sgd,
    warmup,
)
from nnc.train import fit

COMPILE_MODULE = sys.modules["nnc.compile"]


def data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    return x, (x[:, :1] * 0.5 - x[:, 1:2] ** 2).astype(np.float32)


def model():
    return Linear(5, 8) >> tanh >> Linear(8, 1)


@pytest.fixture
def compiled(monkeypatch, tmp_path):
    """The native steps fit builds, in a fresh nnc cache directory, and the compiled modules
    (one per distinct generated step: one Numba compilation each) loaded meanwhile."""
    monkeypatch.setenv("NNC_CACHE_DIR", str(tmp_path))
    made: list = []
    real = COMPILE_MODULE.compile

    def recording(fn, **kwargs):
        native = real(fn, **kwargs)
        made.append(native)
        return native

    monkeypatch.setattr(COMPILE_MODULE, "compile", recording)
    before = {m for m in sys.modules if m.startswith("nnc_compiled_")}

    def modules():
        return {m for m in sys.modules if m.startswith("nnc_compiled_")} - before

    return made, modules


def run(opt, compile, epochs=2, seed=3):  # noqa: A002 - fit's own keyword
    m = model()
    return fit(
        m,
        m.init(seed=0),
        data(),
        loss=nnc.mse,
        opt=opt,
        epochs=epochs,
        batch_size=32,
        seed=seed,
        progress=False,
        compile=compile,
    )


SWEEPS = {
    "learning rate": (sgd(0.05), sgd(0.02)),
    "momentum": (sgd(0.05, momentum=0.5), sgd(0.05, momentum=0.9)),
    "nesterov momentum": (sgd(0.05, momentum=0.5, nesterov=True), sgd(0.01, momentum=0.8, nesterov=True)),
    "adam betas and eps": (adam(0.01), adam(0.02, b1=0.8, b2=0.99, eps=1e-6)),
    "weight decay": (adamw(0.01, weight_decay=0.1), adamw(0.01, weight_decay=0.3)),
    "rmsprop decay": (rmsprop(0.01, decay=0.9), rmsprop(0.005, decay=0.5, eps=1e-5)),
    "clipping": (sgd(0.05, clip_norm=0.5, clip_value=0.1), sgd(0.05, clip_norm=2.0, clip_value=0.3)),
    "piecewise schedule": (
        sgd(piecewise_constant((2,), (0.05, 0.01)), momentum=0.5),
        sgd(piecewise_constant((4,), (0.02, 0.005)), momentum=0.5),
    ),
    "warm-up": (adam(warmup(0.02, steps=3)), adam(warmup(0.05, steps=5))),
    "warm-up then piecewise": (
        adam(warmup(piecewise_constant((3,), (0.05, 0.01)), steps=2)),
        adam(warmup(piecewise_constant((5,), (0.02, 0.004)), steps=4)),
    ),
}


@pytest.mark.parametrize("what", sorted(SWEEPS))
def test_runs_differing_in_a_hyperparameter_compile_once(compiled, what):
    made, modules = compiled
    first, second = SWEEPS[what]
    (p1, h1), (p2, h2) = run(first, True), run(second, True)
    assert len(made) == 2 and all(len(f.specialisations) == 1 for f in made)
    (k1, e1), (k2, e2) = (next(iter(f.specialisations.items())) for f in made)
    assert k1 == k2  # the compile key: structure, shapes and dtypes, no hyperparameter value
    assert e1.source == e2.source  # one generated step: one Numba compilation for both runs
    assert len(modules()) == 1
    values = set(hyperparameters(second.init(None)).values()) - set(
        hyperparameters(first.init(None)).values()
    )
    assert values and not any(v in values for v in _constants(k2))
    # the runs differ as their hyperparameters say, and each equals its interpreted run
    assert not np.allclose(p1["linear_0"]["W"], p2["linear_0"]["W"], rtol=1e-4)
    for opt, params, history in ((first, p1, h1), (second, p2, h2)):
        ref_params, ref_history = run(opt, False)
        np.testing.assert_allclose(history["loss"], ref_history["loss"], rtol=2e-5)
        for a, b in zip(nnc.tree_leaves(params), nnc.tree_leaves(ref_params)):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def _constants(key):
    """The Python numbers among a compile key's constants."""
    _treedef, _avals, statics = key[:3]
    return [v for _, v in statics if isinstance(v, (int, float))]


def test_the_state_holds_the_hyperparameters_as_0d_float64_arrays():
    state = adamw(0.01, b1=0.8, weight_decay=0.2, clip_norm=1.0).init({"w": np.zeros(2, np.float32)})
    assert {k: (v.shape, v.dtype) for k, v in state["hyper"].items()} == dict.fromkeys(
        ["lr", "b1", "b2", "eps", "weight_decay", "clip_norm"], ((), np.dtype(np.float64))
    )
    assert hyperparameters(state) == {
        "lr": 0.01,
        "b1": 0.8,
        "b2": 0.999,
        "eps": 1e-8,
        "weight_decay": 0.2,
        "clip_norm": 1.0,
    }
    # the state's values are the ones used: changing them changes the step
    params, grads = {"w": np.ones(2)}, {"w": np.full(2, 0.5)}
    opt = sgd(0.1)
    state = opt.init(params)
    state["hyper"]["lr"] = np.asarray(0.3)
    np.testing.assert_array_equal(opt.update(params, grads, state)[0]["w"], [0.85, 0.85])
    assert opt.update(params, grads, state)[1]["hyper"] is state["hyper"]


# ----------------------------------------------------------------------------- bit for bit as before

# The updates as they were written before the hyperparameters were data: Python floats (weak
# scalars, rounded to the leaf's dtype at each use) in numpy, beside nnc's gradient.


def _old_step(update):
    def objective(params, x, y):
        return nnc.mse(model()(params, x), y)

    vg = value_and_grad(objective)

    def step(params, state, x, y):
        value, grads = vg(params, x, y)
        flat = {(a, b): (params[a][b], grads[a][b]) for a in params for b in params[a]}
        new, state = update(flat, state)
        return {a: {b: new[(a, b)] for b in params[a]} for a in params}, state, value

    return step


def _old_momentum(lr, mu, nesterov=False):
    def update(flat, state):
        state = dict(state or {})
        out = {}
        for k, (p, g) in flat.items():
            v = mu * state.get(k, np.zeros_like(p)) + g
            state[k] = v
            out[k] = p - lr * (g + mu * v if nesterov else v)
        return out, state

    return update


def _old_adamw(lr, b1, b2, eps, wd):
    def update(flat, state):
        state = dict(state or {"count": np.zeros((), np.int64)})
        t = (state["count"] + 1).astype(np.float64)
        lr_c1, sqrt_c2 = lr / (1.0 - np.power(b1, t)), np.sqrt(1.0 - np.power(b2, t))
        out = {}
        for k, (p, g) in flat.items():
            m, v = state.get(k, (np.zeros_like(p), np.zeros_like(p)))
            m = b1 * m + (1.0 - b1) * g
            v = b2 * v + (1.0 - b2) * (g * g)
            step = lr_c1.astype(p.dtype) * m / (np.sqrt(v) / sqrt_c2.astype(p.dtype) + eps)
            if wd:
                step = step + lr * wd * p
            out[k], state[k] = p - step, (m, v)
        state["count"] = state["count"] + 1
        return out, state

    return update


@pytest.mark.parametrize(
    "opt, old",
    [
        (sgd(0.05), _old_momentum(0.05, 0.0)),
        (sgd(0.05, momentum=0.9), _old_momentum(0.05, 0.9)),
        (sgd(0.03, momentum=0.7, nesterov=True), _old_momentum(0.03, 0.7, nesterov=True)),
        (adam(0.01, b1=0.8), _old_adamw(0.01, 0.8, 0.999, 1e-8, 0.0)),
        (adamw(0.01, weight_decay=0.3), _old_adamw(0.01, 0.9, 0.999, 1e-8, 0.3)),
    ],
    ids=["sgd", "momentum", "nesterov", "adam", "adamw"],
)
def test_the_interpreted_curve_is_the_old_one_bit_for_bit(opt, old):
    m = model()
    params, history = run(opt, False, epochs=3)
    ref_params, ref_history = fit(
        m,
        m.init(seed=0),
        data(),
        loss=nnc.mse,
        opt=opt,
        epochs=3,
        batch_size=32,
        seed=3,
        progress=False,
        step=_wrap_state(_old_step(old)),
    )
    assert history["loss"] == ref_history["loss"]
    for a, b in zip(nnc.tree_leaves(params), nnc.tree_leaves(ref_params)):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(a, b)


def _wrap_state(step):
    """fit hands the step ``opt.init(params)``; the old updates keep their own state instead."""
    box = {"state": None}

    def wrapped(params, opt_state, x, y):
        params, box["state"], value = step(params, box["state"], x, y)
        return params, opt_state, value

    return wrapped


# ----------------------------------------------------------------------------- dropout rates


def dropout_model(rate):
    return Linear(5, 8) >> tanh >> nnc.Dropout(rate) >> Linear(8, 1)


def run_dropout(rate, compile):  # noqa: A002 - fit's own keyword
    m = dropout_model(rate)
    return fit(
        m,
        m.init(seed=0),
        data(),
        loss=nnc.mse,
        opt=sgd(0.05, momentum=0.5),
        epochs=2,
        batch_size=32,
        seed=3,
        progress=False,
        compile=compile,
    )


def test_runs_differing_in_a_dropout_rate_compile_once(compiled):
    made, modules = compiled
    (p1, h1), (p2, h2) = run_dropout(0.1, True), run_dropout(0.4, True)
    assert repr(dropout_model(0.4)).count("Dropout(0.4)") == 1  # the model's value still shows its rate
    assert len(made) == 2 and all(len(f.specialisations) == 1 for f in made)
    (k1, e1), (k2, e2) = (next(iter(f.specialisations.items())) for f in made)
    assert k1 == k2 and e1.source == e2.source and len(modules()) == 1
    assert 0.4 not in _constants(k2)
    assert not np.allclose(h1["loss"], h2["loss"], rtol=1e-3)
    for rate, params, history in ((0.1, p1, h1), (0.4, p2, h2)):
        ref_params, ref_history = run_dropout(rate, False)
        np.testing.assert_allclose(history["loss"], ref_history["loss"], rtol=2e-5)
        for a, b in zip(nnc.tree_leaves(params), nnc.tree_leaves(ref_params)):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_a_rate_given_as_data_drops_as_the_models_own_bit_for_bit():
    m = dropout_model(0.3)
    params, x = m.init(seed=0), data()[0]
    own = m(params, x, key=nnc.key(5))
    with nnc.effects.given_rates(nnc.effects.rates_of(m)):
        given = m(params, x, key=nnc.key(5))
    np.testing.assert_array_equal(own, given)
    assert {k: float(v) for k, v in nnc.effects.rates_of(m).items()} == {"dropout_0": 0.3}
    # a zero rate is structure (no dropout at all): the layer passes its input through
    assert {k: float(v) for k, v in nnc.effects.rates_of(dropout_model(0.0)).items()} == {"dropout_0": 0.0}


# ----------------------------------------------------------------------------- schedules


@pytest.mark.parametrize(
    "schedule",
    [
        piecewise_constant((3, 10, 50), (0.1, 0.01, 0.001, 1e-4)),
        warmup(0.1, steps=5),
        warmup(piecewise_constant((2,), (0.5, 0.25)), steps=3),
    ],
)
def test_a_schedule_computed_inside_the_step_is_the_pythons_bit_for_bit(schedule):
    opt = sgd(schedule)
    state = opt.init({"w": np.zeros(1)})
    numbers = {k[9:]: v for k, v in state["hyper"].items() if k.startswith("schedule/")}
    assert numbers and "lr" not in state["hyper"]
    traced = [float(schedule._at(np.asarray(float(t)), numbers)) for t in range(300)]
    assert traced == [schedule(t) for t in range(300)]
    # and the update uses it: the count selects the rate
    for t in range(12):
        new, state = opt.update({"w": np.zeros(1)}, {"w": np.ones(1)}, state)
        assert float(-new["w"][0]) == schedule(t)


def test_schedules_without_a_traced_form_stay_constants_of_the_step():
    # numpy's float64 power differs from Python's in the last bit, and there is no traced cosine:
    # these stay one opaque node (a change of their values compiles anew), for the same curve
    for schedule in (
        exponential_decay(0.1, 0.5, 10),
        cosine_decay(0.1, 100),
        warmup(cosine_decay(0.1, 9), 2),
    ):
        assert "lr" not in sgd(schedule).init(None)["hyper"]
        assert not any(k.startswith("schedule/") for k in sgd(schedule).init(None)["hyper"])
