"""fit: batching and shuffling from the seed, bit-for-bit runs, data checks, callbacks, history."""

import dataclasses
import inspect
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import nnc
from nnc import Linear, add, parallel, softmax, tanh
from nnc.callbacks import Checkpoint, Decision, EarlyStopping, StopOnNaN
from nnc.checkpoint import load
from nnc.metrics import accuracy, mse
from nnc.optim import ConfigError, adam, sgd
from nnc.train import History, fit, train_step

HERE = os.path.relpath(__file__)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def line() -> int:
    return inspect.currentframe().f_back.f_lineno


def blobs(n=150, seed=0):
    """Three Gaussian classes in 5 dimensions; 150 examples leave a partial batch of 22."""
    centers = np.random.default_rng(0).standard_normal((3, 5)) * 3
    rng = np.random.default_rng([seed, 1])
    labels = rng.integers(0, 3, n)
    return (centers[labels] + rng.standard_normal((n, 5))).astype(np.float32), labels


def classifier():
    return Linear(5, 16) >> tanh >> Linear(16, 3) >> softmax


def same_leaves(a, b):
    la, lb = nnc.tree_leaves(a), nnc.tree_leaves(b)
    return len(la) == len(lb) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(la, lb))


def quiet_fit(*args, **kwargs):
    return fit(*args, progress=False, **kwargs)


# ----------------------------------------------------------------------------- learning, history


def test_fit_learns_and_records_one_value_per_epoch():
    x, y = blobs()
    xv, yv = blobs(60, seed=1)
    model = classifier()
    params, history = quiet_fit(
        model,
        model.init(seed=0),
        (x, y),
        loss=nnc.cross_entropy,
        opt=adam(1e-2),
        epochs=15,
        validation=(xv, yv),
        metrics=[accuracy],
    )
    assert history.keys() == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert len(history) == 15 and history.epochs == list(range(1, 16))
    assert history["loss"][-1] < history["loss"][0] / 3
    # metrics are evaluated with the parameters fit returns
    assert history["val_accuracy"][-1] == accuracy(model(params, xv), yv) > 0.9
    assert history["val_loss"][-1] == pytest.approx(float(nnc.cross_entropy(model(params, xv), yv)), rel=1e-6)
    assert history.stopped_at is None and history.events == ()


def manual_run(model, params, x, y, loss, opt, epochs, batch_size, seed, drop_last=False, shuffle=True):
    """What fit promises to do: train_step over batches of a seeded permutation per epoch."""
    step = train_step(model, loss=loss, opt=opt)
    rng = np.random.default_rng(seed)
    state, curve = opt.init(params), []
    leaves, treedef = nnc.tree_flatten((x, y))
    n = len(leaves[0])
    for _ in range(epochs):
        perm = rng.permutation(n) if shuffle else np.arange(n)
        shuffled = [leaf[perm] for leaf in leaves]
        stop = n - n % batch_size if drop_last else n
        losses, sizes = [], []
        for s in range(0, stop, batch_size):
            xb, yb = nnc.tree_unflatten(treedef, [leaf[s : s + batch_size] for leaf in shuffled])
            params, state, value = step(params, state, xb, yb)
            losses.append(float(value))
            sizes.append(min(batch_size, stop - s))
        curve.append(float(np.dot(losses, sizes) / sum(sizes)))
    return params, curve


@pytest.mark.parametrize("options", [{}, {"drop_last": True}, {"shuffle": False}, {"batch_size": 7}])
def test_fit_is_train_step_over_seeded_shuffles_bit_for_bit(options):
    x, y = blobs()
    model = classifier()
    batch_size = options.get("batch_size", 32)
    kwargs = {k: v for k, v in options.items() if k != "batch_size"}
    params, history = quiet_fit(
        model,
        model.init(seed=0),
        (x, y),
        loss=nnc.cross_entropy,
        opt=adam(1e-2),
        epochs=3,
        batch_size=batch_size,
        seed=5,
        **kwargs,
    )
    expected, curve = manual_run(
        model, model.init(seed=0), x, y, nnc.cross_entropy, adam(1e-2), 3, batch_size, seed=5, **kwargs
    )
    assert same_leaves(params, expected)
    assert history["loss"] == curve


def test_same_seed_same_run_bit_for_bit_and_another_seed_differs():
    x, y = blobs()
    xv, yv = blobs(40, seed=2)

    def run(seed):
        model = classifier()
        return quiet_fit(
            model,
            model.init(seed=0),
            (x, y),
            loss=nnc.cross_entropy,
            opt=adam(1e-2),
            epochs=4,
            seed=seed,
            validation=(xv, yv),
            metrics=[accuracy],
            callbacks=[EarlyStopping(patience=1)],
        )

    (p1, h1), (p2, h2), (p3, h3) = run(7), run(7), run(8)
    assert same_leaves(p1, p2) and h1 == h2
    assert not same_leaves(p1, p3) and h1["loss"] != h3["loss"]


def test_a_given_step_replaces_train_step_with_the_same_signature():
    x, y = blobs()
    model = classifier()
    standard = train_step(model, loss=nnc.cross_entropy, opt=sgd(0.1))
    shapes = []

    def step(params, opt_state, xb, yb):
        shapes.append(xb.shape)
        return standard(params, opt_state, xb, yb)

    params, history = quiet_fit(
        model,
        model.init(seed=0),
        (x, y),
        loss=nnc.cross_entropy,
        opt=sgd(0.1),
        epochs=2,
        batch_size=64,
        step=step,
    )
    assert shapes == [(64, 5), (64, 5), (22, 5)] * 2
    expected, curve = manual_run(model, model.init(seed=0), x, y, nnc.cross_entropy, sgd(0.1), 2, 64, seed=0)
    assert same_leaves(params, expected) and history["loss"] == curve


def test_models_with_tuple_inputs_are_batched_per_array():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((50, 2)).astype(np.float32), rng.standard_normal((50, 4)).astype(np.float32))
    y = (x[0].sum(axis=1, keepdims=True) - x[1][:, :1]).astype(np.float32)
    model = parallel(Linear(2, 3), Linear(4, 3)) >> add >> Linear(3, 1)
    params, history = quiet_fit(
        model, model.init(seed=0), (x, y), loss=nnc.mse, opt=sgd(0.05), epochs=3, batch_size=16, seed=1
    )
    expected, curve = manual_run(model, model.init(seed=0), x, y, nnc.mse, sgd(0.05), 3, 16, seed=1)
    assert same_leaves(params, expected) and history["loss"] == curve


def test_integer_inputs_are_converted_to_the_parameters_dtype_once():
    x, y = blobs()
    model = classifier()
    params64 = model.init(seed=0, dtype=np.float64)
    params, _ = quiet_fit(
        model, params64, (np.round(x).astype(np.int64), y), loss=nnc.cross_entropy, opt=sgd(0.1), epochs=1
    )
    assert all(leaf.dtype == np.float64 for leaf in nnc.tree_leaves(params))


# ----------------------------------------------------------------------------- progress bar


def test_progress_bar_shows_epochs_and_metrics_and_can_be_turned_off(capsys):
    x, y = blobs()
    model = classifier()
    fit(model, model.init(seed=0), (x, y), loss=nnc.cross_entropy, opt=sgd(0.1), epochs=2, progress=True)
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "10/10" in err and re.search(r"loss \d\.\d+", err)
    quiet_fit(model, model.init(seed=0), (x, y), loss=nnc.cross_entropy, opt=sgd(0.1), epochs=2)
    assert capsys.readouterr() == ("", "")


def test_a_notebook_without_widgets_falls_back_to_the_text_bar(capsys, monkeypatch):
    import tqdm.auto

    def no_widgets(*args, **kwargs):
        raise ImportError("IProgress not found. Please update jupyter and ipywidgets.")

    monkeypatch.setattr(tqdm.auto, "tqdm", no_widgets)
    x, y = blobs()
    model = classifier()
    fit(model, model.init(seed=0), (x, y), loss=nnc.cross_entropy, opt=sgd(0.1), epochs=1, progress=True)
    assert "epoch 1/1" in capsys.readouterr().err


def test_plotting_without_matplotlib_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"History.plot needs matplotlib: pip install 'nnc\[plot\]'"):
        History().with_epoch({"loss": 1.0}).plot()


# ----------------------------------------------------------------------------- bad data


def check_refused(error, message, data, validation=None, model=None):
    model = model or classifier()
    with pytest.raises(error) as info:
        quiet_fit(
            model, model.init(seed=0), data, loss=nnc.cross_entropy, opt=sgd(0.1), validation=validation
        )
    assert str(info.value) == f"{message}\n  see docs/errors.md#{error.__name__.lower()}"


def test_lengths_that_differ_are_refused():
    x, y = blobs()
    check_refused(
        nnc.ShapeError,
        "fit: training arrays disagree on the number of examples: "
        "training x has 150, training y has 149 (the leading axes must match)",
        (x, y[:-1]),
    )
    check_refused(
        nnc.ShapeError,
        "fit: validation arrays disagree on the number of examples: "
        "validation x has 150, validation y has 10 (the leading axes must match)",
        (x, y),
        validation=(x, y[:10]),
    )


def test_wrong_dtypes_are_refused():
    x, y = blobs()
    check_refused(
        nnc.ShapeError,
        "fit: training y has dtype <U21; expected numbers (floats for inputs, "
        "integer labels or floats for targets)",
        (x, y.astype(str)),
    )
    check_refused(
        nnc.ShapeError,
        "fit: training x has dtype object; expected numbers (floats for "
        "inputs, integer labels or floats for targets)",
        (x.astype(object), y),
    )
    check_refused(
        nnc.ShapeError,
        "fit: training x has dtype complex64; expected numbers (floats for "
        "inputs, integer labels or floats for targets)",
        (x.astype(np.complex64), y),
    )


def test_nans_in_the_data_are_refused_naming_where():
    x, y = blobs()
    x = x.copy()
    x[17, 3] = np.nan
    model_line = line() + 1
    model = Linear(5, 16) >> tanh >> Linear(16, 3) >> softmax
    check_refused(
        nnc.NonFiniteError,
        "training x of Linear(5 -> 16) >> tanh >> Linear(16 -> 3) >> softmax "
        f"(created at {HERE}:{model_line}) holds nan at index (17, 3); nnc refuses NaN and "
        "infinite inputs",
        (x, y),
        model=model,
    )
    targets = np.zeros((150, 3), np.float32)
    targets[4, 1] = np.inf
    check_refused(
        nnc.NonFiniteError,
        "fit: training y holds inf at index (4, 1); nnc refuses NaN and infinite data",
        (blobs()[0], targets),
    )


def test_an_empty_dataset_is_refused():
    x, y = blobs()
    check_refused(
        nnc.ShapeError, "fit: the training data is empty (training x has 0 examples)", (x[:0], y[:0])
    )


def test_malformed_data_is_refused():
    x, y = blobs()
    check_refused(nnc.ShapeError, "fit: training must be a pair (x, y) of arrays, got ndarray", x)
    check_refused(
        nnc.ShapeError, "fit: training must be a pair (x, y) of arrays, got tuple of length 3", (x, y, y)
    )
    check_refused(
        nnc.ShapeError,
        "fit: training x of shape (5,) is one example of Vec[5]; fit needs a "
        "batch with a leading axis of examples (x[None] for a batch of one)",
        (x[0], y[:5]),
    )
    with pytest.raises(
        nnc.ShapeError,
        match=r"training x of shape \(150, 4\) does not fit linear_0: "
        r"Linear\(5 -> 16\)",
    ):
        quiet_fit(
            classifier(), classifier().init(seed=0), (x[:, :4], y), loss=nnc.cross_entropy, opt=sgd(0.1)
        )


def test_bad_arguments_are_refused():
    x, y = blobs()
    model = classifier()
    args = (model, model.init(seed=0), (x, y))
    for kwargs, message in [
        ({"epochs": 0}, "fit: epochs must be an int >= 1, got 0"),
        ({"batch_size": 2.5}, "fit: batch_size must be an int >= 1, got 2.5"),
        ({"seed": None}, "fit: seed must be an int, got None"),
        ({"metrics": [lambda p, t: 0.0]}, "fit: a metric must be a named function"),
        ({"metrics": {"loss": mse}}, "fit: metric name 'loss' is taken; name it with a dict"),
        ({"callbacks": [42]}, "fit: callbacks must be nnc callbacks or functions of an EpochEnd, got 42"),
        ({"opt": "adam"}, "train_step: opt must be an nnc optimiser such as nnc.adam(1e-3), got 'adam'"),
    ]:
        options = {"loss": nnc.cross_entropy, "opt": sgd(0.1), **kwargs}
        with pytest.raises(ConfigError) as info:
            quiet_fit(*args, **options)
        assert str(info.value).startswith(message)


# ----------------------------------------------------------------------------- callbacks


def scripted_metric(values):
    """A metric that reports ``values`` one epoch after another (to script early stopping)."""
    it = iter(values)

    def score(prediction, target):
        return next(it)

    return score


def recorder(store):
    def record(log):
        store[log.epoch] = log.params

    return record


def small_run(epochs, callbacks, metrics=()):
    x, y = blobs()
    model = classifier()
    return quiet_fit(
        model,
        model.init(seed=0),
        (x, y),
        loss=nnc.cross_entropy,
        opt=sgd(0.1),
        epochs=epochs,
        metrics=metrics,
        callbacks=callbacks,
    )


def test_early_stopping_stops_after_patience_and_restores_the_best_epoch():
    seen = {}
    params, history = small_run(
        10,
        [recorder(seen), EarlyStopping("score", patience=2)],
        metrics=[scripted_metric([0.5, 0.4, 0.45, 0.41, 0.1])],
    )
    assert history.stopped_at == 4 and len(history) == 4
    assert history.events == (
        (
            4,
            "stopped: score did not improve for 2 epochs (best 0.4 at epoch 2); "
            "restored that epoch's parameters",
        ),
    )
    assert same_leaves(params, seen[2])


def test_early_stopping_restores_the_best_epoch_when_training_ends_on_its_own():
    seen = {}
    params, history = small_run(
        3, [recorder(seen), EarlyStopping("score", patience=5)], metrics=[scripted_metric([0.5, 0.4, 0.45])]
    )
    assert history.stopped_at is None
    assert history.events == ((3, "restored the parameters of epoch 2, the best score (0.4)"),)
    assert same_leaves(params, seen[2])


def test_early_stopping_maximises_accuracies_and_can_keep_the_last_parameters():
    seen = {}
    params, history = small_run(
        10,
        [recorder(seen), EarlyStopping("accuracy", patience=1, restore_best=False)],
        metrics={"accuracy": scripted_metric([0.5, 0.9, 0.8])},
    )
    assert history.stopped_at == 3
    assert history.events == ((3, "stopped: accuracy did not improve for 1 epochs (best 0.9 at epoch 2)"),)
    assert same_leaves(params, seen[3])


def test_early_stopping_names_what_can_be_monitored():
    with pytest.raises(
        ConfigError, match="EarlyStopping: monitor 'val_loss' is not recorded; this fit records loss"
    ):
        small_run(2, [EarlyStopping("val_loss")])
    with pytest.raises(ConfigError, match="EarlyStopping: patience must be an int >= 0, got -1"):
        EarlyStopping(patience=-1)


def test_checkpoints_every_n_epochs_hold_that_epochs_parameters(tmp_path):
    seen = {}
    path = str(tmp_path / "run-{epoch:02d}.npz")
    small_run(5, [recorder(seen), Checkpoint(path, every=2)])
    assert sorted(os.listdir(tmp_path)) == ["run-02.npz", "run-04.npz"]
    for epoch in (2, 4):
        assert same_leaves(load(path.format(epoch=epoch), classifier()), seen[epoch])


def test_a_user_callback_sees_each_epoch_and_may_replace_the_parameters_or_stop():
    logs = []

    def user(log):
        logs.append((log.epoch, log.epochs, sorted(log.logs), len(log.history)))
        if log.epoch == 2:
            return Decision(stop=True, params=nnc.tree_map(np.zeros_like, log.params), reason="enough")
        return None

    params, history = small_run(5, [user])
    assert logs == [(1, 5, ["loss"], 1), (2, 5, ["loss"], 2)]
    assert all(not leaf.any() for leaf in nnc.tree_leaves(params))
    assert history.stopped_at == 2 and history.events == ((2, "enough"),)


def test_a_callback_that_returns_something_else_is_named():
    def confused(log):
        return True

    with pytest.raises(
        ConfigError,
        match="callback confused returned True; return None to go on, or "
        r"nnc.Decision\(stop=True, reason=...\) to stop",
    ):
        small_run(1, [confused])


def test_stop_on_nan_names_the_first_parameter_that_went_non_finite():
    x, y = blobs()
    model_line = line() + 1
    model = Linear(5, 16) >> tanh >> Linear(16, 3) >> softmax
    with pytest.raises(nnc.NonFiniteError) as info, np.errstate(all="ignore"):
        quiet_fit(
            model,
            model.init(seed=0),
            (x, y),
            loss=nnc.cross_entropy,
            opt=adam(1e39),
            epochs=2,
            callbacks=[StopOnNaN()],
        )
    message = str(info.value)
    assert message.startswith(
        "the loss of epoch 1, batch 2 is nan: the parameters it was computed from went non-finite in "
        f"the update before it; the first is linear_0/W of linear_0: Linear(5 -> 16) (created at "
        f"{HERE}:{model_line}), which holds "
    )
    assert message.endswith(
        "(4 of 4 parameters hold NaN or infinity)\n  hint: lower the learning "
        "rate, or clip gradients (e.g. nnc.adam(1e-3, clip_norm=1.0))\n"
        "  see docs/errors.md#nonfiniteerror"
    )


def test_stop_on_nan_names_the_layer_when_the_parameters_are_finite():
    model_line = line() + 1
    model = Linear(2, 2) >> Linear(2, 1)
    huge = {"W": np.full((2, 2), 1e20, np.float32), "b": np.zeros(2, np.float32)}
    params = {
        "linear_0": huge,
        "linear_1": {"W": np.full((2, 1), 1e20, np.float32), "b": np.zeros(1, np.float32)},
    }
    with pytest.raises(nnc.NonFiniteError) as info, np.errstate(all="ignore"):
        quiet_fit(
            model,
            params,
            (np.ones((4, 2), np.float32), np.ones((4, 1), np.float32)),
            loss=nnc.mse,
            opt=sgd(0.1),
            callbacks=[StopOnNaN()],
        )
    assert str(info.value).startswith(
        "the loss of epoch 1, batch 1 is inf: every parameter is finite, but linear_1: Linear(2 -> 1) "
        f"(created at {HERE}:{model_line}) produced NaN or infinity on this batch"
    )


def test_stop_on_nan_without_raising_returns_the_last_parameters_with_a_finite_loss():
    x, y = blobs()
    model = classifier()
    with np.errstate(all="ignore"):
        params, history = quiet_fit(
            model,
            model.init(seed=0),
            (x, y),
            loss=nnc.cross_entropy,
            opt=adam(1e39),
            epochs=3,
            callbacks=[StopOnNaN(raise_error=False)],
        )
    assert history.stopped_at == 1 and len(history) == 0
    assert history.events[0][1].startswith("the loss of epoch 1, batch 2 is nan")
    assert same_leaves(params, model.init(seed=0))  # batch 1's loss came from the initial parameters


# ----------------------------------------------------------------------------- history, train_step


def test_history_reads_plots_and_names_missing_keys(tmp_path):
    history = (
        History()
        .with_epoch({"loss": 1.0, "accuracy": 0.5, "val_loss": 1.5})
        .with_epoch({"loss": 0.5, "accuracy": 0.75, "val_loss": 1.0})
    )
    assert history["loss"] == [1.0, 0.5] and len(history) == 2
    assert repr(history) == "History(2 epochs: loss 0.5, accuracy 0.75, val_loss 1)"
    with pytest.raises(
        KeyError, match="'val_accuracy' is not recorded; this history has loss, accuracy, val_loss"
    ):
        history["val_accuracy"]
    figure = history.plot(tmp_path / "curves.png")
    assert [ax.get_title() for ax in figure.axes] == ["loss", "accuracy"]
    assert [line.get_label() for line in figure.axes[0].lines] == ["training", "validation"]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["curves.png"]


def test_train_step_is_a_frozen_value_traced_once_per_input_signature():
    calls = []

    def counting_mse(prediction, target):
        calls.append(prediction.shape)
        return nnc.mse(prediction, target)

    model = Linear(3, 1)
    step = train_step(model, loss=counting_mse, opt=sgd(0.1))
    assert [f.name for f in dataclasses.fields(step)] == ["model", "loss", "opt"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.opt = sgd(1.0)
    params, state = model.init(seed=0), step.opt.init(None)
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 1), np.float32)
    for _ in range(3):
        params, state, value = step(params, state, x, y)
    before = params
    params, state, value = step(before, state, x[:2], y[:2])
    assert calls == [(4, 1), (2, 1)]  # traced for batch 4 once, then once more for batch 2
    expected, grads = nnc.value_and_grad(lambda p: nnc.mse(model(p, x[:2]), y[:2]))(before)
    assert value == expected and value.dtype == np.float32
    assert same_leaves(params, sgd(0.1).update(before, grads, ())[0])


# ----------------------------------------------------------------------------- metrics


def test_accuracy_reads_labels_one_hot_rows_and_single_outputs():
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert accuracy(scores, np.array([1, 0, 0, 0])) == 0.75
    assert accuracy(scores, np.eye(2)[[1, 1, 1, 0]]) == 0.75
    assert accuracy(np.array([[0.9], [0.4], [0.6]]), np.array([1, 0, 0])) == 2 / 3
    with pytest.raises(
        nnc.ShapeError,
        match=r"accuracy: predictions of shape \(4, 2\) need integer labels "
        r"of shape \(4,\) or one-hot targets of shape \(4, 2\), got int64 "
        r"targets of shape \(3,\)",
    ):
        accuracy(scores, np.array([1, 0, 0]))


def test_mse_metric_is_accumulated_in_float64_and_strict_about_shapes():
    big = np.full((4, 1), 3e19, np.float32)
    assert mse(big, np.zeros((4, 1), np.float32)) == pytest.approx(9e38, rel=1e-6)  # > float32 max
    with pytest.raises(
        nnc.ShapeError, match=r"mse: prediction of shape \(4, 1\) and target of shape \(4,\) differ"
    ):
        mse(big, np.zeros(4))


# ----------------------------------------------------------------------------- the example


def test_digits_example_reaches_97_percent_and_writes_its_curves(tmp_path):
    env = dict(os.environ, NNC_EXAMPLE_OUT=str(tmp_path))
    env.pop("NNC_EXAMPLE_FAST", None)
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "digits_mlp.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    accuracy_printed = float(re.search(r"test accuracy: (\d\.\d+)", done.stdout).group(1))
    assert accuracy_printed >= 0.97
    assert (tmp_path / "digits_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "saved from a different model" in done.stdout
