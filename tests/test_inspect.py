"""Looking inside a model (issue 19): nnc.inspect's numbers, where a NaN was born, GradientStats."""

import os

import numpy as np
import pytest

import nnc
from nnc.probes import gradients, watch

HERE = os.path.relpath(__file__)  # as created_at_note shows it


def line() -> int:
    import inspect as stdlib_inspect

    return stdlib_inspect.currentframe().f_back.f_lineno


# ----------------------------------------------------------------------------- inspect


def small():
    """Linear(2, 2) >> relu >> Linear(2, 1) with weights chosen so that the numbers can be
    worked out by hand."""
    model = nnc.Linear(2, 2) >> nnc.relu >> nnc.Linear(2, 1)
    params = {
        "linear_0": {"W": np.array([[1.0, -1.0], [2.0, 1.0]]), "b": np.array([0.0, -3.0])},
        "linear_1": {"W": np.array([[2.0], [1.0]]), "b": np.array([0.5])},
    }
    x = np.array([[1.0, 1.0], [0.0, 2.0]])
    y = np.array([[1.0], [0.0]])
    return model, params, x, y


def test_inspect_numbers_are_those_worked_out_by_hand():
    model, params, x, y = small()
    report = nnc.inspect(model, params, x, y, loss=nnc.mse, learning_rate=0.1)
    # h = x W + b = [[3, -3], [4, -1]]; relu -> [[3, 0], [4, 0]]; out = 2 r0 + r1 + 0.5 = [[6.5], [8.5]]
    h, r, out = (
        np.array([[3.0, -3.0], [4.0, -1.0]]),
        np.array([[3.0, 0.0], [4.0, 0.0]]),
        np.array([[6.5], [8.5]]),
    )
    assert [row.path for row in report.layers] == ["linear_0", "relu_0", "linear_1"]
    first = report["linear_0"].output
    assert (first.shape, first.mean, first.min, first.max) == ((2, 2), 0.75, -3.0, 4.0)
    assert first.std == pytest.approx(h.std()) and first.zeros is None and first.non_finite == 0
    assert report["relu_0"].output.zeros == 0.5 and report["relu_0"].output.mean == pytest.approx(r.mean())
    assert report["linear_1"].output.mean == 7.5
    # mse = mean((out - y)^2) = (5.5^2 + 8.5^2) / 2; d/d out = (out - y) = [[5.5], [8.5]]
    assert report.loss == pytest.approx((5.5**2 + 8.5**2) / 2)
    assert report["linear_1"].gradient is None  # the loss reads the last output itself
    # reaching relu's output: d/d r = (out - y) W1^T = [[11, 5.5], [17, 8.5]]
    g_r = np.array([[11.0, 5.5], [17.0, 8.5]])
    assert report["relu_0"].gradient.mean == pytest.approx(g_r.mean())
    assert report["relu_0"].gradient.max == 17.0
    # reaching linear_0's output: through relu's mask [[1, 0], [1, 0]]
    g_h = g_r * (h > 0)
    assert report["linear_0"].gradient.mean == pytest.approx(g_h.mean())
    rows = {p.path: p for p in report.params}
    g_w0 = x.T @ g_h
    assert rows["linear_0/W"].grad_norm == pytest.approx(np.linalg.norm(g_w0))
    assert rows["linear_0/W"].norm == pytest.approx(np.linalg.norm(params["linear_0"]["W"]))
    ratio = 0.1 * np.linalg.norm(g_w0) / np.linalg.norm(params["linear_0"]["W"])
    assert rows["linear_0/W"].update_ratio == pytest.approx(ratio)
    g_w1 = r.T @ (out - y)
    assert rows["linear_1/W"].grad_norm == pytest.approx(np.linalg.norm(g_w1))
    text = repr(report)
    assert "relu_0    relu" in text and "50% zero" in text and "update = 0.1 x gradient" in text


def test_inspect_gradients_agree_with_nnc_grad():
    model = nnc.Linear(3, 4) >> nnc.tanh >> nnc.residual(nnc.Linear(4, 4) >> nnc.relu) >> nnc.Linear(4, 2)
    model = model >> nnc.softmax
    params = model.init(seed=1)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 3)), np.array([0, 1, 1, 0, 1])
    seen = watch(model, params, x)
    g = gradients(model, params, x, y, nnc.cross_entropy, seen)
    want = nnc.grad(lambda p: nnc.cross_entropy(model(p, x), y))(params)
    for path, leaf in nnc.tree_paths(want):
        got = g.params
        for part in path.split("/"):
            got = got[part]
        np.testing.assert_allclose(got, leaf, rtol=1e-12)
    # the gradient reaching tanh's output is that of the loss with respect to it
    tanh_out = seen.outputs["tanh_0"]
    rest = model.children[2] >> model.children[3] >> model.children[4]
    rest_params = {"residual_0": params["residual_0"], "linear_0": params["linear_1"]}
    want_out = nnc.grad(lambda h: nnc.cross_entropy(rest(rest_params, h), y))(tanh_out)
    np.testing.assert_allclose(g.outputs["tanh_0"], want_out, rtol=1e-10)
    # and the gradient its step hands on to its input is the one reaching linear_0's output
    np.testing.assert_allclose(g.inputs["tanh_0"], g.outputs["linear_0"], rtol=1e-12)


def test_inspect_marks_saturated_tanh_units_and_summarises_sequences_per_step():
    model = nnc.Linear(1, 2) >> nnc.tanh
    params = {"W": np.array([[10.0, 0.01]]), "b": np.zeros(2)}
    report = nnc.inspect(model, {"linear_0": params}, np.ones((4, 1)))
    assert report["tanh_0"].output.saturated == 0.5  # tanh(10) > 0.99, tanh(0.01) is not
    lstm = nnc.zero_state(nnc.unroll(nnc.LSTM(3, 4))) >> nnc.Linear(4, 2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 3))
    seq = nnc.inspect(lstm, lstm.init(seed=0), x, rng.standard_normal((2, 5, 2)), loss=nnc.mse)
    assert [row.path for row in seq.layers] == ["lstm_0", "linear_0"]
    steps = seq["lstm_0"].steps
    assert len(steps) == 5 and steps[0].shape == (2, 4)
    out = lstm.children[0](seq_params := lstm.init(seed=0)["lstm_0"], x)
    assert steps[3].mean == pytest.approx(out[:, 3].mean())
    assert seq_params is not None
    assert seq.per_step("lstm_0").splitlines()[2].startswith("0")
    assert "report.per_step(path) for lstm_0, linear_0" in repr(seq)


@pytest.mark.parametrize(
    "family",
    ["cnn", "norm", "dropout", "attention"],
)
def test_inspect_works_on_every_family(family):
    rng = np.random.default_rng(0)
    key = None
    if family == "cnn":
        model = nnc.Input(nnc.Tensor[1, 6, 6]) >> nnc.Conv2d(1, 2, 3) >> nnc.relu >> nnc.max_pool(2)
        model = model >> nnc.flatten >> nnc.Linear(None, 3) >> nnc.softmax
        x, y = rng.standard_normal((4, 1, 6, 6)), np.array([0, 1, 2, 0])
        params, loss, layers = model.init(seed=0), nnc.cross_entropy, 7
    elif family == "norm":
        model = nnc.Linear(3, 4) >> nnc.BatchNorm(4) >> nnc.relu >> nnc.LayerNorm(4) >> nnc.Linear(4, 1)
        x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 1))
        params, loss, layers = model.init(seed=0), nnc.mse, 5
    elif family == "dropout":
        model = nnc.Linear(3, 8) >> nnc.Dropout(0.5) >> nnc.Linear(8, 1)
        x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 1))
        params, loss, layers, key = model.init(seed=0), nnc.mse, 3, nnc.key(0)
    else:
        model = (
            nnc.Embedding(7, 8)
            >> nnc.SelfAttention(8, heads=2, causal=True)
            >> nnc.Linear(8, 7)
            >> nnc.softmax
        )
        x, y = rng.integers(0, 7, (2, 5)), rng.integers(0, 7, (2, 5))
        params, loss, layers = model.init(seed=0), nnc.cross_entropy, 4
    report = nnc.inspect(model, params, x, y, loss=loss, key=key)
    assert len(report.layers) == layers
    assert all(row.output.non_finite == 0 for row in report.layers)

    def run(p):  # as in training: BatchNorm on the batch's statistics
        if model.keeps_stats:
            return model(p, x, stats=model.init_stats(np.float32))[0]
        return model(p, x, key=key)

    assert report.loss == pytest.approx(float(loss(run(params), y)))
    if family == "dropout":  # trained form, with the key: about half the units dropped
        assert 0.25 < float(np.mean(report.arrays["dropout_0"][0] == 0)) < 0.75
    grads = nnc.grad(lambda p: loss(run(p), y))(params)
    norms = {p.path: p.grad_norm for p in report.params}
    for path, leaf in nnc.tree_paths(grads):
        assert norms[path] == pytest.approx(float(np.linalg.norm(leaf)), rel=1e-6)


def test_inspect_refuses_half_a_loss_and_stateful_models():
    model, params, x, y = small()
    with pytest.raises(nnc.ShapeError, match="inspect: give both y and loss"):
        nnc.inspect(model, params, x, y)
    with pytest.raises(
        nnc.ShapeError, match=r"(?s)inspect takes a stateless model, but LSTM\(3 -> 4\).*zero_state\(model\)"
    ):
        nnc.inspect(nnc.LSTM(3, 4), nnc.LSTM(3, 4).init(seed=0), np.ones((1, 3)))


def test_report_plot_draws_a_histogram_per_layer(tmp_path):
    model, params, x, y = small()
    figure = nnc.inspect(model, params, x, y, loss=nnc.mse).plot(tmp_path / "layers.png")
    panels = {ax.get_title(): ax.get_subplotspec().get_geometry()[2] for ax in figure.axes}
    assert panels == {  # outputs in the top row, the gradients reaching them below
        "linear_0\noutput": 0,
        "relu_0\noutput": 1,
        "linear_1\noutput": 2,
        "linear_0\ngradient": 3,
        "relu_0\ngradient": 4,
        "linear_1\ngradient": 5,
    }
    heights = sum(patch.get_height() for patch in figure.axes[2].patches)  # relu_0's output
    assert heights == 4  # every entry of relu_0's (2, 2) output in the histogram
    assert (tmp_path / "layers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- where a NaN was born


def test_find_nan_names_the_layer_of_the_forward_pass():
    model_line = line() + 1
    model = nnc.Linear(1, 1) >> nnc.residual(nnc.Linear(1, 1) >> nnc.lift(nnc.log)) >> nnc.Linear(1, 1)
    params = model.init(seed=0)
    params["residual_0"]["serial_0"]["linear_0"] = {
        "W": np.array([[-1.0]], np.float32),
        "b": np.zeros(1, np.float32),
    }
    params["linear_0"] = {"W": np.array([[1.0]], np.float32), "b": np.zeros(1, np.float32)}
    origin = nnc.find_nan(model, params, np.ones((3, 1)))
    assert (origin.path, origin.where) == ("residual_0/serial_0/lift_0", "forward")
    assert origin.message == (
        f"the forward pass of residual_0/serial_0/lift_0: lift(log) (created at {HERE}:{model_line}) "
        "made NaN or infinity from a finite input (3 of 3 entries)"
    )
    params["residual_0"]["serial_0"]["linear_0"]["W"][:] = 1.0  # log of positive numbers
    assert nnc.find_nan(model, params, np.ones((3, 1))) is None


def test_find_nan_names_the_layer_whose_gradient_step_made_it():
    model_line = line() + 1
    model = nnc.Linear(1, 1) >> nnc.relu >> nnc.lift(nnc.sqrt) >> nnc.Linear(1, 1)
    params = {
        "linear_0": {"W": np.array([[-1.0]]), "b": np.array([0.0])},
        "linear_1": {"W": np.array([[1.0]]), "b": np.array([0.0])},
    }
    x, y = np.ones((2, 1)), np.ones((2, 1))
    assert nnc.find_nan(model, params, x) is None  # sqrt(0) = 0: the forward pass is finite
    origin = nnc.find_nan(model, params, x, y, loss=nnc.mse)
    assert (origin.path, origin.where) == ("lift_0", "backward")
    assert origin.message == (
        f"the gradient step of lift_0: lift(sqrt) (created at {HERE}:{model_line}) received a finite "
        "gradient and gave its input NaN or infinity (2 entries)"
    )


def test_stop_on_nan_names_the_gradient_step_that_made_the_parameters_non_finite():
    model_line = line() + 1
    model = nnc.Linear(1, 1) >> nnc.relu >> nnc.lift(nnc.sqrt) >> nnc.Linear(1, 1)
    params = {
        "linear_0": {"W": np.array([[-1.0]]), "b": np.array([0.0])},
        "linear_1": {"W": np.array([[1.0]]), "b": np.array([0.0])},
    }
    data = (np.ones((4, 1)), np.ones((4, 1)))
    with pytest.raises(nnc.NonFiniteError) as info, np.errstate(all="ignore"):
        nnc.fit(model, params, data, loss=nnc.mse, opt=nnc.sgd(0.1), epochs=1, batch_size=2, progress=False)
    message = str(info.value)
    assert (
        f"went non-finite in the update before it: the gradient step of lift_0: lift(sqrt) (created at "
        f"{HERE}:{model_line}) received a finite gradient and gave its input NaN or infinity" in message
    )
    assert "the first is linear_0/W" in message


# ----------------------------------------------------------------------------- GradientStats


def test_gradient_stats_records_each_layers_gradient_norm_every_epoch():
    model = nnc.Linear(1, 8) >> nnc.tanh >> nnc.Linear(8, 1)
    x = np.linspace(-1, 1, 32).reshape(-1, 1)
    data = (x, x**2)
    kwargs = dict(loss=nnc.mse, opt=nnc.sgd(0.1), batch_size=8, shuffle=False, progress=False)
    params, history = nnc.fit(
        model, model.init(seed=0), data, epochs=3, callbacks=[nnc.GradientStats()], **kwargs
    )
    assert history.keys() == ["loss", "grad_norm/linear_0", "grad_norm/linear_1"]
    assert len(history["grad_norm/linear_0"]) == 3
    # the last epoch's value: the gradient on the last batch with the final parameters
    last_x, last_y = x[24:], (x**2)[24:]
    g = nnc.grad(lambda p: nnc.mse(model(p, last_x), last_y))(params)
    want = np.sqrt(sum(np.sum(v**2) for v in nnc.tree_leaves(g["linear_1"])))
    assert history["grad_norm/linear_1"][-1] == pytest.approx(want)
    plain, _ = nnc.fit(model, model.init(seed=0), data, epochs=3, **kwargs)
    assert all((a == b).all() for a, b in zip(nnc.tree_leaves(plain), nnc.tree_leaves(params)))
    figure = history.plot()
    assert [ax.get_title() for ax in figure.axes] == ["loss", "gradient norm per layer"]
    assert [ln.get_label() for ln in figure.axes[1].lines] == ["linear_0", "linear_1"]
