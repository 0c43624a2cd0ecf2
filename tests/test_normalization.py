"""Dropout, BatchNorm, LayerNorm and RMSNorm: gradients against central finite differences
(float64, shapes and values drawn by hypothesis), second derivatives of the norms,
BatchNorm's running statistics against PyTorch's update formulas written out in numpy,
inference mode, constructor and composition errors, summary, rendering and checkpoints.

The reference formulas (PyTorch's ``BatchNorm1d/2d``, ``LayerNorm``, ``RMSNorm``):

    y            = (x - batch_mean) / sqrt(batch_var_biased + eps) * scale + bias
    running_mean = (1 - momentum) * running_mean + momentum * batch_mean
    running_var  = (1 - momentum) * running_var  + momentum * batch_var_unbiased
"""

import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnc
from nnc import (
    BatchNorm,
    Conv2d,
    Dropout,
    Input,
    LayerNorm,
    Linear,
    Mat,
    RMSNorm,
    Tensor,
    Vec,
    flatten,
    max_pool,
    relu,
    softmax,
    tanh,
)
from nnc.draw import to_dot
from nnc.testing import check_grads

HERE = Path(__file__).name
FEW = settings(max_examples=25, deadline=None)
small = st.floats(-1, 1, width=64)
away_from_zero = st.floats(0.3, 2, width=64).flatmap(lambda v: st.sampled_from([v, -v]))
EPS = st.sampled_from([1e-5, 1e-3, 0.1])


def line_here():
    """The line of the caller: where a layer made on that line says it was created."""
    return sys._getframe(1).f_lineno


def created_at(line):
    """How a message names a line of this file: relative to the current folder when inside it."""
    relative = os.path.relpath(__file__)
    return f"{__file__ if relative.startswith('..') else relative}:{line}"


def spread(draw, shape, axis):
    """Values ``i - (n - 1) / 2 + u`` along ``axis`` (``u`` in [-0.4, 0.4] drawn by hypothesis):
    any two entries on that axis differ by at least 0.2, so no variance taken over it is
    near zero, where normalisation's derivatives blow up and finite differences mislead."""
    n = shape[axis]
    base = (np.arange(n) - (n - 1) / 2).reshape([n if i == axis else 1 for i in range(len(shape))])
    return base + draw(hnp.arrays(np.float64, shape, elements=st.floats(-0.4, 0.4, width=64)))


def weights_of(draw, c, elements=away_from_zero):
    return draw(hnp.arrays(np.float64, (c,), elements=elements))


# ----------------------------------------------------------------------------- references


def batch_norm_reference(x, scale, bias, running_mean, running_var, momentum, eps):
    """PyTorch's BatchNorm1d/2d in training mode, in numpy: output and new running statistics."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    batch_mean = x.mean(axis=axes)
    biased = x.var(axis=axes)
    unbiased = x.var(axis=axes, ddof=1)
    y = (x - batch_mean.reshape(shape)) / np.sqrt(biased.reshape(shape) + eps)
    y = y * scale.reshape(shape) + bias.reshape(shape)
    new_mean = (1 - momentum) * running_mean + momentum * batch_mean
    new_var = (1 - momentum) * running_var + momentum * unbiased
    return y, new_mean, new_var


def batch_norm_inference_reference(x, scale, bias, running_mean, running_var, eps, batched=True):
    """PyTorch's BatchNorm in eval mode: the running statistics in place of the batch's."""
    rank = x.ndim - (1 if batched else 0)  # the rank of one example
    shape = (-1,) + (1,) * (rank - 1)
    y = (x - running_mean.reshape(shape)) / np.sqrt(running_var.reshape(shape) + eps)
    return y * scale.reshape(shape) + bias.reshape(shape)


def layer_norm_reference(x, scale, bias, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def rms_norm_reference(x, scale, eps):
    return x / np.sqrt((x**2).mean(axis=-1, keepdims=True) + eps) * scale


def assert_trees_equal(a, b):
    paths_a, paths_b = nnc.tree_paths(a), nnc.tree_paths(b)
    assert [p for p, _ in paths_a] == [p for p, _ in paths_b]
    for (path, x), (_, y) in zip(paths_a, paths_b):
        assert x.dtype == y.dtype and x.shape == y.shape, path
        np.testing.assert_array_equal(x, y, err_msg=path)


# ----------------------------------------------------------------------------- Dropout gradients


@FEW
@given(data=st.data())
def test_dropout_gradient_matches_finite_differences_with_a_fixed_key(data):
    draw = data.draw
    n_in, n_out, batch = draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
    rate = draw(st.sampled_from([0.1, 0.3, 0.5, 0.8]))
    model = Linear(n_in, n_out) >> tanh >> Dropout(rate) >> Linear(n_out, 2)
    key = nnc.key(draw(st.integers(0, 2**32)))
    params = model.init(seed=draw(st.integers(0, 5)), dtype=np.float64)
    x = draw(hnp.arrays(np.float64, (batch, n_in), elements=small))
    check_grads(lambda p, x: model(p, x, key=key), params, x)


@FEW
@given(data=st.data())
def test_dropout_gradient_is_exactly_the_mask_over_the_keep_probability(data):
    draw = data.draw
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5))
    rate = draw(st.sampled_from([0.0, 0.2, 0.5, 0.9]))
    key = nnc.key(draw(st.integers(0, 2**32)))
    x = draw(hnp.arrays(np.float64, shape, elements=small))
    w = draw(hnp.arrays(np.float64, shape, elements=small))
    layer = Dropout(rate)
    got = nnc.grad(lambda x: nnc.sum(layer(x, key=key) * w))(x)
    # the mask, read off the forward pass: an entry is kept where ones come out nonzero
    kept = layer(np.ones(shape), key=key) != 0
    np.testing.assert_array_equal(got, np.where(kept, w * (1.0 / (1.0 - rate)), 0.0))
    np.testing.assert_array_equal(layer(x, key=key), np.where(kept, x * (1.0 / (1.0 - rate)), 0.0))


def test_dropout_drops_the_rate_of_entries_and_keeps_the_mean():
    x = np.ones((400, 500))
    for rate in (0.1, 0.5, 0.75):
        y = Dropout(rate)(x, key=nnc.key(3))
        dropped = float(np.mean(y == 0))
        sigma = np.sqrt(rate * (1 - rate) / x.size)  # binomial: 4 sigma is a 1-in-15000 miss
        assert abs(dropped - rate) < 4 * sigma, (rate, dropped)
        assert set(np.unique(y).tolist()) == {0.0, 1.0 / (1.0 - rate)}
        assert abs(float(y.mean()) - 1.0) < 4 * sigma / (1 - rate)


def test_dropout_with_rate_zero_is_the_identity_in_training_too():
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    np.testing.assert_array_equal(Dropout(0.0)(x, key=nnc.key(0)), x)


# ----------------------------------------------------------------------------- BatchNorm gradients


def batch_norm_case(draw):
    """A BatchNorm over Vec[c] or Tensor[c, h, w] (behind an Input fixing the type), its
    parameters (scale, bias), a batch whose channels are well spread, and fresh statistics."""
    c, n = draw(st.integers(1, 3)), draw(st.integers(2, 4))
    if draw(st.booleans()):
        example = (c,)
    else:
        example = (c, draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    momentum, eps = draw(st.sampled_from([0.1, 0.3, 1.0])), draw(EPS)
    model = Input(Vec[c] if len(example) == 1 else Tensor[example]) >> BatchNorm(
        c, momentum=momentum, eps=eps
    )
    x = spread(draw, (n,) + example, 0)
    scale, bias = weights_of(draw, c), weights_of(draw, c, small)
    return model, x, scale, bias, model.init_stats(np.float64)


def _batch_norm_params(scale, bias):
    return {"batchnorm_0": {"scale": scale, "bias": bias}}


@FEW
@given(data=st.data())
def test_batch_norm_training_gradient_through_the_batch_statistics(data):
    model, x, scale, bias, stats = batch_norm_case(data.draw)
    check_grads(lambda x, s, b: model(_batch_norm_params(s, b), x, stats=stats)[0], x, scale, bias)


@FEW
@given(data=st.data())
def test_batch_norm_training_second_derivative_matches_finite_differences(data):
    model, x, scale, bias, stats = batch_norm_case(data.draw)
    w = np.cos(np.arange(x.size)).reshape(x.shape)  # a fixed projection of the output

    def f(x, s, b):
        return nnc.sum(model(_batch_norm_params(s, b), x, stats=stats)[0] * w)

    grad_f = nnc.grad(f, (0, 1))
    check_grads(
        lambda x, s, b: nnc.sum(grad_f(x, s, b)[0] ** 2) + nnc.sum(grad_f(x, s, b)[1] ** 2),
        x,
        scale,
        bias,
        rtol=1e-4,
        atol=1e-6,
    )


@FEW
@given(data=st.data())
def test_batch_norm_inference_gradient_matches_finite_differences_and_the_formula(data):
    model, x, scale, bias, _ = batch_norm_case(data.draw)
    c = scale.shape[0]
    stats = {
        "batchnorm_0": {
            "mean": data.draw(hnp.arrays(np.float64, (c,), elements=small)),
            "var": data.draw(hnp.arrays(np.float64, (c,), elements=st.floats(0.2, 3, width=64))),
        }
    }
    evaluate = nnc.inference(model)
    check_grads(lambda x, s, b: evaluate(_batch_norm_params(s, b), x, stats=stats), x, scale, bias)
    # on running statistics the layer is affine in x: dy/dx = scale / sqrt(var + eps) per channel
    eps = model.children[-1].attr("eps")
    got = nnc.grad(lambda x: nnc.sum(evaluate(_batch_norm_params(scale, bias), x, stats=stats)))(x)
    per_channel = scale / np.sqrt(stats["batchnorm_0"]["var"] + eps)
    expected = np.broadcast_to(per_channel.reshape((1, c) + (1,) * (x.ndim - 2)), x.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-13)


@FEW
@given(data=st.data())
def test_batch_norm_training_output_and_statistics_follow_pytorch(data):
    model, x, scale, bias, _ = batch_norm_case(data.draw)
    layer = model.children[-1]
    c = scale.shape[0]
    mean = data.draw(hnp.arrays(np.float64, (c,), elements=small))
    var = data.draw(hnp.arrays(np.float64, (c,), elements=st.floats(0.2, 3, width=64)))
    stats = {"batchnorm_0": {"mean": mean, "var": var}}
    y, new = model(_batch_norm_params(scale, bias), x, stats=stats)
    y_ref, mean_ref, var_ref = batch_norm_reference(
        x, scale, bias, mean, var, layer.attr("momentum"), layer.attr("eps")
    )
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(new["batchnorm_0"]["mean"], mean_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(new["batchnorm_0"]["var"], var_ref, rtol=1e-12, atol=1e-14)
    # the statistics given in are values: the call did not change them
    assert stats["batchnorm_0"]["mean"] is mean and np.array_equal(mean, stats["batchnorm_0"]["mean"])


def test_batch_norm_without_scale_and_bias_has_no_parameters_and_only_normalises():
    model = Input(Vec[3]) >> BatchNorm(3, scale=False, bias=False)
    assert model.init(seed=0) == {} and not model.has_params
    x = np.array([[1.0, 2.0, -1.0], [3.0, 0.0, 1.0], [2.0, 7.0, 0.0]])
    y, _ = model({}, x, stats=model.init_stats(np.float64))
    y_ref, _, _ = batch_norm_reference(x, np.ones(3), np.zeros(3), np.zeros(3), np.ones(3), 0.1, 1e-5)
    np.testing.assert_allclose(y, y_ref, rtol=1e-13)


# ----------------------------------------------------------------------------- LayerNorm, RMSNorm


def feature_norm_case(draw, kind):
    """A LayerNorm or RMSNorm over Vec[n], one example or a batch, its parameters and input."""
    n = draw(st.integers(2, 5))
    lead = draw(st.sampled_from([(), (1,), (3,)]))
    scale = draw(st.booleans())
    if kind == "LayerNorm":
        bias = draw(st.booleans())
        eps = draw(EPS)
        model = LayerNorm(n, eps=eps, scale=scale, bias=bias)
        x = spread(draw, lead + (n,), len(lead))
    else:
        bias = False
        eps = draw(st.sampled_from([None, 1e-5, 0.1]))
        model = RMSNorm(n, eps=eps, scale=scale)
        x = draw(hnp.arrays(np.float64, lead + (n,), elements=away_from_zero))
    params = {}
    if scale:
        params["scale"] = weights_of(draw, n)
    if bias:
        params["bias"] = weights_of(draw, n, small)
    return model, params, x


NORMS = ["LayerNorm", "RMSNorm"]


@pytest.mark.parametrize("kind", NORMS)
@FEW
@given(data=st.data())
def test_feature_norm_matches_pytorchs_formula(kind, data):
    model, params, x = feature_norm_case(data.draw, kind)
    n = x.shape[-1]
    scale, bias = params.get("scale", np.ones(n)), params.get("bias", np.zeros(n))
    assert nnc.tree_map(np.shape, model.init(seed=0)) == nnc.tree_map(np.shape, params)
    eps = model.attr("eps")
    if kind == "LayerNorm":
        expected = layer_norm_reference(x, scale, bias, eps)
    else:  # eps=None is the machine epsilon of the input's dtype, as torch.nn.RMSNorm's
        expected = rms_norm_reference(x, scale, np.finfo(np.float64).eps if eps is None else eps)
    np.testing.assert_allclose(model(params, x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", NORMS)
@FEW
@given(data=st.data())
def test_feature_norm_gradient_matches_finite_differences(kind, data):
    model, params, x = feature_norm_case(data.draw, kind)
    check_grads(lambda p, x: model(p, x), params, x)


@pytest.mark.parametrize("kind", NORMS)
@FEW
@given(data=st.data())
def test_feature_norm_second_derivative_matches_finite_differences(kind, data):
    """The gradient of a function of the gradient (w.r.t. input and parameters) against
    finite differences: second derivatives in every mixed direction."""
    model, params, x = feature_norm_case(data.draw, kind)
    w = np.sin(1.0 + np.arange(x.size)).reshape(x.shape)
    grad_f = nnc.grad(lambda p, x: nnc.sum(model(p, x) * w), (0, 1))

    def g(p, x):
        gp, gx = grad_f(p, x)
        return nnc.sum(gx**2) + sum(nnc.sum(v**2) for v in gp.values())

    check_grads(g, params, x, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", NORMS)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_feature_norm_hessian_matches_finite_differences_of_the_gradient(kind, data):
    model, params, x = feature_norm_case(data.draw, kind)
    w = np.sin(1.0 + np.arange(x.size)).reshape(x.shape)

    def f(x):
        return nnc.sum(model(params, x) * w)

    hessian = nnc.hessian(f)(x)
    assert hessian.shape == x.shape + x.shape
    gradient, h = nnc.grad(f), 1e-5
    flat = x.reshape(-1)
    columns = []
    for i in range(flat.size):
        step = np.zeros_like(flat)
        step[i] = h
        up, down = (flat + step).reshape(x.shape), (flat - step).reshape(x.shape)
        columns.append(((gradient(up) - gradient(down)) / (2 * h)).reshape(-1))
    numeric = np.stack(columns, axis=1)
    analytic = hessian.reshape(flat.size, flat.size)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(analytic, analytic.T, rtol=1e-10, atol=1e-12)  # a Hessian is symmetric


# ----------------------------------------------------------------------------- running statistics


def _batches(rng, sizes, example):
    return [rng.standard_normal((n,) + example) * 2 + 0.5 for n in sizes]


@pytest.mark.parametrize("momentum, eps", [(0.1, 1e-5), (0.3, 1e-2), (0.9, 0.5)])
def test_running_statistics_after_train_steps_follow_pytorchs_update(momentum, eps):
    """A Linear before the BatchNorm: its input each step is computed here, from the
    parameters that step was given, so the statistics must come from the current ones."""
    model = Linear(3, 4) >> BatchNorm(4, momentum=momentum, eps=eps) >> tanh >> Linear(4, 2)
    step = nnc.train_step(model, loss=nnc.mse, opt=nnc.sgd(0.2))
    params = model.init(seed=1, dtype=np.float64)
    opt_state = step.opt.init(params)
    stats = model.init_stats()  # float32: taken in the parameters' dtype
    rng = np.random.default_rng(0)
    running_mean, running_var = np.zeros(4), np.ones(4)
    for x in _batches(rng, [5, 3, 2, 6, 4], (3,)):
        target = rng.standard_normal((x.shape[0], 2))
        first, bn, last = params["linear_0"], params["batchnorm_0"], params["linear_1"]
        hidden = x @ first["W"] + first["b"]
        normalised, running_mean, running_var = batch_norm_reference(
            hidden, bn["scale"], bn["bias"], running_mean, running_var, momentum, eps
        )
        expected_loss = np.mean((np.tanh(normalised) @ last["W"] + last["b"] - target) ** 2)
        params, opt_state, loss, stats = step(params, opt_state, x, target, stats, None)
        np.testing.assert_allclose(loss, expected_loss, rtol=1e-12)
        assert stats["batchnorm_0"]["mean"].dtype == np.float64
        np.testing.assert_allclose(stats["batchnorm_0"]["mean"], running_mean, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(stats["batchnorm_0"]["var"], running_var, rtol=1e-12, atol=1e-15)
    assert sorted(params) == ["batchnorm_0", "linear_0", "linear_1"]  # no statistics among them
    assert sorted(params["batchnorm_0"]) == ["bias", "scale"]


def _fit_reference(x, batch_size, epochs, momentum, start_mean, start_var):
    mean, var = start_mean, start_var
    for _ in range(epochs):
        for s in range(0, len(x), batch_size):
            zeros = np.zeros(x.shape[1])
            _, mean, var = batch_norm_reference(
                x[s : s + batch_size], zeros, zeros, mean, var, momentum, 1e-5
            )
    return mean, var


@pytest.mark.parametrize(
    "example, momentum, eps",
    [((3,), 0.1, 1e-5), ((3,), 0.25, 1e-3), ((2, 3, 3), 0.1, 1e-5), ((2, 3, 3), 0.6, 0.2)],
)
def test_fit_threads_running_statistics_as_pytorch_updates_them(example, momentum, eps):
    """BatchNorm first, so its inputs are the data: 10 examples in batches of 4, 4 and 2
    (shuffle=False), two epochs, six updates."""
    c = example[0]
    model = Input(Vec[c] if len(example) == 1 else Tensor[example]) >> BatchNorm(
        c, momentum=momentum, eps=eps
    )
    model = model >> (flatten >> Linear(None, 2) if len(example) == 3 else Linear(c, 2))
    rng = np.random.default_rng(4)
    x = rng.standard_normal((10,) + example) * 3 - 1
    y = rng.standard_normal((10, 2))
    params = model.init(seed=0, dtype=np.float64)
    kwargs = dict(loss=nnc.mse, opt=nnc.adam(0.05), epochs=2, batch_size=4, shuffle=False, progress=False)
    trained, stats, history = nnc.fit(model, params, (x, y), **kwargs)
    mean, var = _fit_reference(x, 4, 2, momentum, np.zeros(c), np.ones(c))
    np.testing.assert_allclose(stats["batchnorm_0"]["mean"], mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(stats["batchnorm_0"]["var"], var, rtol=1e-12, atol=1e-15)
    assert len(history["loss"]) == 2
    # from given statistics, on the same trajectory of parameters
    start = {"batchnorm_0": {"mean": np.full(c, 2.0), "var": np.full(c, 5.0)}}
    trained_2, stats_2, history_2 = nnc.fit(model, params, (x, y), stats=start, **kwargs)
    mean, var = _fit_reference(x, 4, 2, momentum, np.full(c, 2.0), np.full(c, 5.0))
    np.testing.assert_allclose(stats_2["batchnorm_0"]["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(stats_2["batchnorm_0"]["var"], var, rtol=1e-12)
    assert history_2["loss"] == history["loss"]  # training normalises with batch statistics only
    assert_trees_equal(trained_2, trained)
    np.testing.assert_array_equal(start["batchnorm_0"]["mean"], np.full(c, 2.0))  # not mutated


def test_fit_validates_in_inference_mode_on_the_running_statistics():
    model = Linear(3, 4) >> BatchNorm(4) >> tanh >> Dropout(0.5) >> Linear(4, 2)
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((12, 3)), rng.standard_normal((12, 2))
    xv, yv = rng.standard_normal((7, 3)), rng.standard_normal((7, 2))
    params = model.init(seed=0, dtype=np.float64)
    trained, stats, history = nnc.fit(
        model,
        params,
        (x, y),
        loss=nnc.mse,
        opt=nnc.sgd(0.1),
        epochs=1,
        batch_size=6,
        validation=(xv, yv),
        progress=False,
    )
    # by hand: dropout the identity, the batch norm on the statistics fit returned
    first, bn, last = trained["linear_0"], trained["batchnorm_0"], trained["linear_1"]
    hidden = batch_norm_inference_reference(
        xv @ first["W"] + first["b"], bn["scale"], bn["bias"], stats["batchnorm_0"]["mean"],
        stats["batchnorm_0"]["var"], 1e-5,
    )  # fmt: skip
    expected = np.mean((np.tanh(hidden) @ last["W"] + last["b"] - yv) ** 2)
    np.testing.assert_allclose(history["val_loss"][-1], expected, rtol=1e-12)
    np.testing.assert_allclose(
        nnc.mse(nnc.inference(model)(trained, xv, stats=stats), yv), expected, rtol=1e-12
    )


def test_running_statistics_match_torch_batchnorm_directly():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    for example, module in [((3,), torch.nn.BatchNorm1d), ((2, 4, 3), torch.nn.BatchNorm2d)]:
        c = example[0]
        reference = module(c, momentum=0.3, eps=1e-3).double()
        with torch.no_grad():
            reference.weight.copy_(torch.tensor(rng.uniform(0.5, 2, c)))
            reference.bias.copy_(torch.tensor(rng.uniform(-1, 1, c)))
        reference.train()
        model = Input(Vec[c] if len(example) == 1 else Tensor[example]) >> BatchNorm(
            c, momentum=0.3, eps=1e-3
        )
        params = {
            "batchnorm_0": {
                "scale": reference.weight.detach().numpy().copy(),
                "bias": reference.bias.detach().numpy().copy(),
            }
        }
        stats = model.init_stats(np.float64)
        for n in (5, 2, 7):
            x = rng.standard_normal((n,) + example)
            y, stats = model(params, x, stats=stats)
            np.testing.assert_allclose(y, reference(torch.tensor(x)).detach().numpy(), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(
                stats["batchnorm_0"]["mean"], reference.running_mean.numpy(), rtol=1e-12
            )
            np.testing.assert_allclose(stats["batchnorm_0"]["var"], reference.running_var.numpy(), rtol=1e-12)
        reference.eval()
        x = rng.standard_normal((3,) + example)
        np.testing.assert_allclose(
            nnc.inference(model)(params, x, stats=stats),
            reference(torch.tensor(x)).detach().numpy(),
            rtol=1e-10,
            atol=1e-12,
        )


def test_feature_norms_match_torch_directly():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 6))
    scale, bias = rng.uniform(0.5, 2, 6), rng.uniform(-1, 1, 6)
    expected = torch.nn.functional.layer_norm(
        torch.tensor(x), (6,), torch.tensor(scale), torch.tensor(bias), eps=1e-3
    ).numpy()
    got = LayerNorm(6, eps=1e-3)({"scale": scale, "bias": bias}, x)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    if not hasattr(torch.nn, "RMSNorm"):  # PyTorch 2.4 and later
        return
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-6)):
        reference = torch.nn.RMSNorm(
            6, eps=None, dtype=torch.float64 if dtype == np.float64 else torch.float32
        )
        with torch.no_grad():
            reference.weight.copy_(torch.tensor(scale))
        got = RMSNorm(6)({"scale": scale.astype(dtype)}, x.astype(dtype))
        np.testing.assert_allclose(got, reference(torch.tensor(x.astype(dtype))).detach().numpy(), rtol=tol)


def test_rms_norm_default_eps_is_the_machine_epsilon_of_the_input():
    """Small inputs show eps: float32's (1.19e-07) and float64's (2.2e-16) differ by far."""
    x = np.array([[3e-4, -4e-4]])
    for dtype in (np.float32, np.float64):
        got = RMSNorm(2)({"scale": np.ones(2, dtype)}, x.astype(dtype))
        expected = rms_norm_reference(x, np.ones(2), float(np.finfo(dtype).eps))
        np.testing.assert_allclose(got, expected, rtol=1e-6 if dtype == np.float32 else 1e-13)
    got32 = float(RMSNorm(2)({"scale": np.ones(2, np.float32)}, x.astype(np.float32))[0, 0])
    got64 = float(RMSNorm(2)({"scale": np.ones(2)}, x)[0, 0])
    assert abs(got64 - 3 / np.sqrt(12.5)) < 1e-8  # 0.8485: float64's eps moves it by 1e-9 only
    assert abs(got32 - 3e-4 / np.sqrt(12.5e-8 + 2.0**-23)) < 1e-6  # 0.6071: float32's is not


# ----------------------------------------------------------------------------- inference mode


@pytest.mark.parametrize("example", [(3,), (3, 2, 4)])
def test_inference_batch_norm_uses_the_running_statistics(example):
    c = example[0]
    model = Input(Vec[c] if len(example) == 1 else Tensor[example]) >> BatchNorm(c, eps=1e-3)
    rng = np.random.default_rng(7)
    params = {"batchnorm_0": {"scale": rng.uniform(0.5, 2, c), "bias": rng.uniform(-1, 1, c)}}
    stats = {"batchnorm_0": {"mean": rng.standard_normal(c), "var": rng.uniform(0.5, 2, c)}}
    evaluate = nnc.inference(model)
    x = rng.standard_normal((4,) + example)
    expected = batch_norm_inference_reference(
        x, params["batchnorm_0"]["scale"], params["batchnorm_0"]["bias"], stats["batchnorm_0"]["mean"],
        stats["batchnorm_0"]["var"], 1e-3,
    )  # fmt: skip
    got = evaluate(params, x, stats=stats)
    assert isinstance(got, np.ndarray)  # no new statistics in inference mode
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-14)
    # one example is fine in inference mode, and the same as its row of a batch
    np.testing.assert_allclose(evaluate(params, x[1], stats=stats), expected[1], rtol=1e-13, atol=1e-14)
    # a batch of one too
    np.testing.assert_allclose(evaluate(params, x[:1], stats=stats), expected[:1], rtol=1e-13, atol=1e-14)


def test_inference_makes_dropout_the_identity_and_leaves_the_model_unchanged():
    model = Linear(3, 4) >> Dropout(0.5) >> tanh >> Linear(4, 2) >> Dropout(0.3)
    before = (repr(model), str(model.signature), model.is_random)
    evaluate = nnc.inference(model)
    assert str(model.signature) == "Vec[3] -> Vec[2], key" and str(evaluate.signature) == "Vec[3] -> Vec[2]"
    assert (repr(model), str(model.signature), model.is_random) == before
    assert not evaluate.is_random and not evaluate.has_effects
    assert (
        repr(evaluate)
        == "Linear(3 -> 4) >> Dropout(0.5, inference) >> tanh >> Linear(4 -> 2) >> Dropout(0.3, inference)"
    )
    params = model.init(seed=0, dtype=np.float64)
    x = np.linspace(-1, 1, 15).reshape(5, 3)
    plain = Linear(3, 4) >> tanh >> Linear(4, 2)
    expected = plain({"linear_0": params["linear_0"], "linear_1": params["linear_1"]}, x)
    np.testing.assert_array_equal(evaluate(params, x), expected)
    np.testing.assert_array_equal(evaluate(params, x, key=nnc.key(1)), expected)  # a key is ignored
    with pytest.raises(nnc.NNCError, match=r"Dropout\(0.5\) .*draws random numbers in training"):
        model(params, x)  # the original still needs its key
    assert nnc.inference(evaluate) is evaluate and nnc.inference(plain) is plain


def test_inference_of_batch_norm_still_takes_statistics_and_gives_none_back():
    model = Linear(3, 4) >> BatchNorm(4)
    evaluate = nnc.inference(model)
    assert str(model.signature) == str(evaluate.signature) == "Vec[3] -> Vec[4], stats"
    assert model.updates_stats and not evaluate.updates_stats and evaluate.keeps_stats
    assert model.children[-1].attr("inference") is None  # the original is unchanged
    params = model.init(seed=0)
    with pytest.raises(
        nnc.ArgumentError, match=r"BatchNorm\(4, inference\) .*normalises with running statistics"
    ):
        evaluate(params, np.ones((2, 3), np.float32))


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: Dropout(1.0),
            "rate must be a number in [0, 1), the probability of dropping an entry, got 1.0",
        ),
        (
            lambda: Dropout(-0.1),
            "rate must be a number in [0, 1), the probability of dropping an entry, got -0.1",
        ),
        (
            lambda: Dropout("0.5"),
            "rate must be a number in [0, 1), the probability of dropping an entry, got '0.5'",
        ),
        (
            lambda: Dropout(True),
            "rate must be a number in [0, 1), the probability of dropping an entry, got True",
        ),
        (lambda: BatchNorm(3, momentum=2), "momentum must be a number in [0, 1], got 2"),
        (lambda: BatchNorm(3, momentum=-0.5), "momentum must be a number in [0, 1], got -0.5"),
        (lambda: BatchNorm(3, momentum="0.5"), "momentum must be a number in [0, 1], got '0.5'"),
        (lambda: BatchNorm(3, eps=0), "eps must be a number > 0, got 0"),
        (lambda: BatchNorm(3, eps=-1e-5), "eps must be a number > 0, got -1e-05"),
        (lambda: BatchNorm(0), "channels must be a positive int, got 0"),
        (lambda: BatchNorm(2.5), "channels must be a positive int, got 2.5"),
        (lambda: BatchNorm(3, scale=1), "scale must be True or False, got 1"),
        (lambda: LayerNorm(0), "n must be a positive int, got 0"),
        (lambda: LayerNorm(4, eps=0), "eps must be a number > 0, got 0"),
        (lambda: LayerNorm(4, bias="yes"), "bias must be True or False, got 'yes'"),
        (lambda: RMSNorm(-2), "n must be a positive int, got -2"),
        (lambda: RMSNorm(4, eps=-1), "eps must be a number > 0, got -1"),
    ],
)
def test_bad_constructor_arguments_are_named_with_where_they_were_written(make, message):
    with pytest.raises(nnc.ArgumentError) as err:
        make()
    text = str(err.value)
    assert message in text, text
    layer = text.split(" ")[0]
    assert layer in ("Dropout", "BatchNorm", "LayerNorm", "RMSNorm")
    assert text.startswith(f"{layer} (created at {created_at(make.__code__.co_firstlineno)}): "), text


def test_norm_types_are_checked_at_composition():
    with pytest.raises(
        nnc.TypeMismatch, match=r"BatchNorm\(5\) .*expects Vec\[5\]\n  axis 0: size 4 differs"
    ):
        Linear(3, 4) >> BatchNorm(5)
    with pytest.raises(nnc.TypeMismatch, match=r"BatchNorm\(3\) .*expects Tensor\[3, h, w\]"):
        Input(Tensor[2, 3, 3]) >> BatchNorm(3)
    with pytest.raises(nnc.TypeMismatch, match=r"LayerNorm\(4\) .*expects Vec\[4\]"):
        Linear(3, 5) >> LayerNorm(4)
    with pytest.raises(nnc.TypeMismatch, match=r"RMSNorm\(4\) .*expects Vec\[4\]"):
        Linear(3, 5) >> RMSNorm(4)
    assert str((Linear(3, 4) >> BatchNorm(4)).signature) == "Vec[3] -> Vec[4], stats"
    assert (
        str((Input(Tensor[2, 5, 5]) >> BatchNorm(2)).signature) == "Tensor[2, 5, 5] -> Tensor[2, 5, 5], stats"
    )


def test_batch_norm_after_a_matrix_is_a_type_mismatch_at_composition():
    """BatchNorm's refinement refuses a rank-2 input: that must reach the user as nnc's
    composition error (what and where), as every other layer's does."""
    with pytest.raises(nnc.TypeMismatch) as err:
        line = line_here() + 1
        Input(Mat[2, 3]) >> BatchNorm(2)
    assert "BatchNorm normalises Vec[c] or Tensor[c, h, w], not a rank-2 array" in str(err.value)
    assert str(err.value).startswith(f"cannot compose at {created_at(line)}")


def test_batch_norm_in_training_refuses_one_example_and_a_batch_of_one():
    model, line = Linear(3, 4) >> BatchNorm(4), line_here()
    params, stats = model.init(seed=0), model.init_stats()
    with pytest.raises(nnc.ShapeError) as err:
        model(params, np.ones(3, np.float32), stats=stats)
    assert str(err.value).startswith(
        f"BatchNorm(4) (created at {created_at(line)}) "
        "normalises over a batch in training, but was given one example of shape (4,)"
    )
    assert "hint: give it a batch (a leading batch axis), or evaluate nnc.inference(model)" in str(err.value)
    with pytest.raises(
        nnc.ShapeError,
        match=r"needs more than one value per channel in training, but was given shape \(1, 4\)",
    ):
        model(params, np.ones((1, 3), np.float32), stats=stats)
    # over Tensor[c, h, w] a batch of one has h * w values per channel: PyTorch accepts it too
    conv = Input(Tensor[2, 3, 3]) >> BatchNorm(2)
    y, _ = conv(conv.init(seed=0), np.arange(18.0).reshape(1, 2, 3, 3), stats=conv.init_stats())
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-6)
    with pytest.raises(nnc.ShapeError, match=r"one example of shape \(2, 3, 3\)"):
        conv(conv.init(seed=0), np.ones((2, 3, 3)), stats=conv.init_stats())
    pixel = Input(Tensor[2, 1, 1]) >> BatchNorm(2)
    with pytest.raises(nnc.ShapeError, match=r"needs more than one value per channel"):
        pixel(pixel.init(seed=0), np.ones((1, 2, 1, 1)), stats=pixel.init_stats())


def test_fit_with_batch_norm_on_a_last_batch_of_one_is_a_clear_error():
    model = Linear(3, 4) >> BatchNorm(4) >> Linear(4, 1)
    x, y = np.ones((5, 3), np.float32), np.ones((5, 1), np.float32)
    with pytest.raises(nnc.ShapeError, match=r"BatchNorm\(4\) .*needs more than one value per channel"):
        nnc.fit(
            model,
            model.init(seed=0),
            (x, y),
            loss=nnc.mse,
            opt=nnc.sgd(0.1),
            batch_size=2,
            shuffle=False,
            progress=False,
        )
    # drop_last skips it
    _, stats, _ = nnc.fit(
        model,
        model.init(seed=0),
        (x, y),
        loss=nnc.mse,
        opt=nnc.sgd(0.1),
        batch_size=2,
        drop_last=True,
        progress=False,
    )
    np.testing.assert_allclose(stats["batchnorm_0"]["var"], 0.9**2 * np.ones(4), rtol=1e-6)  # constant data


# ----------------------------------------------------------------------------- summary, render


CNN = (
    Input(Tensor[1, 8, 8]) >> Conv2d(1, 4, 3, padding=1) >> BatchNorm(4) >> relu
    >> max_pool(2) >> flatten >> Linear(None, 10) >> softmax
)  # fmt: skip


def test_summary_counts_running_statistics_apart_from_the_parameters():
    text = str(nnc.summary(CNN))
    lines = text.splitlines()
    row = next(line for line in lines if line.startswith("batchnorm_0"))
    assert row.split()[-1] == "8"  # scale and bias: 2 * 4 trainable numbers
    params = CNN.init(seed=0)
    assert sum(v.size for v in nnc.tree_leaves(params)) == 698
    assert lines[-2] == "total: 698 parameters (2.7 KiB as float32)"
    assert sum(v.size for v in nnc.tree_leaves(CNN.init_stats())) == 8
    assert lines[-1] == "and 8 running statistics, not trained (model.init_stats())"
    model = Linear(3, 5) >> BatchNorm(5, scale=False, bias=False) >> Dropout(0.1) >> LayerNorm(5)
    lines = str(nnc.summary(model)).splitlines()
    assert lines[-2] == "total: 30 parameters (120 B as float32)"  # 3 * 5 + 5 + 5 + 5
    assert lines[-1] == "and 10 running statistics, not trained (model.init_stats())"
    assert "running" not in str(nnc.summary(Linear(3, 5) >> Dropout(0.1) >> LayerNorm(5)))


def test_rendered_nodes_show_the_rate_and_the_statistics_kept():
    model = Linear(3, 4) >> BatchNorm(4) >> Dropout(0.25) >> BatchNorm(4, momentum=0.01)
    source = to_dot(model)
    assert "drops 0.25 (random, key)" in source
    assert "keeps statistics, momentum 0.1<" in source
    assert "keeps statistics, momentum 0.01<" in source
    evaluate = to_dot(nnc.inference(model))
    assert "identity (inference)" in evaluate and "drops" not in evaluate
    assert evaluate.count("on running statistics (inference)") == 2 and "keeps statistics" not in evaluate
    # the same DOT through nnc.render, which needs no Graphviz for format="dot"
    assert "keeps statistics, momentum 0.1" in to_dot(CNN)


def test_render_to_a_dot_file_shows_the_effects(tmp_path):
    path = nnc.render(Linear(3, 4) >> Dropout(0.5) >> BatchNorm(4), tmp_path / "m.gv", format="dot")
    source = Path(path).read_text()
    assert "drops 0.5 (random, key)" in source and "keeps statistics, momentum 0.1" in source


# ----------------------------------------------------------------------------- checkpoints


def _trained_cnn():
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((8, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 8)
    return nnc.fit(
        CNN,
        CNN.init(seed=0),
        (x, y),
        loss=nnc.cross_entropy,
        opt=nnc.adam(1e-2),
        batch_size=4,
        progress=False,
    )


def test_checkpoint_round_trip_keeps_parameters_and_statistics_bit_for_bit(tmp_path):
    params, stats, _ = _trained_cnn()
    assert not np.array_equal(stats["batchnorm_0"]["var"], np.ones(4))  # really trained
    nnc.save(tmp_path / "cnn.npz", CNN, params, stats)
    loaded_params, loaded_stats = nnc.load(tmp_path / "cnn.npz", CNN, stats=True)
    assert_trees_equal(loaded_params, params)
    assert_trees_equal(loaded_stats, stats)
    assert_trees_equal(nnc.load(tmp_path / "cnn.npz", CNN), params)  # stats=False: parameters only
    with np.load(tmp_path / "cnn.npz") as archive:
        meta = json.loads(str(archive["__nnc__"]))
        assert meta["signature"] == "Tensor[1, 8, 8] -> Vec[10], stats"
        assert [s["path"] for s in meta["statistics"]] == ["batchnorm_0/mean", "batchnorm_0/var"]
        assert not any(p["path"].startswith("batchnorm_0/mean") for p in meta["parameters"])


def test_save_refuses_a_model_that_keeps_statistics_without_them(tmp_path):
    model, line = Linear(3, 4) >> BatchNorm(4), line_here()
    with pytest.raises(nnc.CheckpointError) as err:
        nnc.save(tmp_path / "m.npz", model, model.init(seed=0))
    assert "cannot save the checkpoint of Linear(3 -> 4) >> BatchNorm(4)" in str(err.value)
    assert f"{HERE}:{line}): it keeps running statistics" in str(err.value)
    assert "hint: save(path, model, params, stats=stats)" in str(err.value)
    wrong = {"batchnorm_0": {"mean": np.zeros(3, np.float32), "var": np.ones(4, np.float32)}}
    with pytest.raises(
        nnc.ShapeError, match=r"statistic 'batchnorm_0/mean' has shape \(3,\), but .* expects \(4,\)"
    ):
        nnc.save(tmp_path / "m.npz", model, model.init(seed=0), wrong)
    assert not (tmp_path / "m.npz").exists()  # nothing written


def _without_statistics(source, target):
    """A copy of checkpoint ``source`` with its statistics taken out (header and arrays), as an
    nnc from before running statistics, or another program, would have written it."""
    with np.load(source) as archive:
        entries = {name: archive[name] for name in archive.files if not name.startswith("__stats__/")}
    meta = json.loads(str(entries["__nnc__"]))
    meta.pop("statistics")
    entries["__nnc__"] = np.array(json.dumps(meta))
    np.savez(target, **entries)


def test_load_with_stats_of_a_checkpoint_without_them_names_what_is_missing(tmp_path):
    model = Linear(3, 4) >> BatchNorm(4)
    params, stats = model.init(seed=0), model.init_stats()
    nnc.save(tmp_path / "full.npz", model, params, stats)
    _without_statistics(tmp_path / "full.npz", tmp_path / "bare.npz")
    assert_trees_equal(nnc.load(tmp_path / "bare.npz", model), params)  # the parameters still load
    with pytest.raises(nnc.CheckpointError) as err:
        nnc.load(tmp_path / "bare.npz", model, stats=True)
    text = str(err.value)
    assert "does not hold the running statistics of Linear(3 -> 4) >> BatchNorm(4)" in text
    assert "batchnorm_0/mean: the model keeps it (shape (4,)), the file does not" in text
    assert "batchnorm_0/var: the model keeps it (shape (4,)), the file does not" in text
    assert "hint: save them with save(path, model, params, stats=stats)" in text


def test_load_with_stats_of_a_checkpoint_whose_statistics_array_is_gone(tmp_path):
    model = Linear(3, 4) >> BatchNorm(4)
    nnc.save(tmp_path / "full.npz", model, model.init(seed=0), model.init_stats())
    with zipfile.ZipFile(tmp_path / "full.npz") as archive:
        names = archive.namelist()
        contents = {n: archive.read(n) for n in names}
    with zipfile.ZipFile(tmp_path / "broken.npz", "w") as archive:
        for name in names:
            if name != "__stats__/batchnorm_0/var.npy":
                archive.writestr(name, contents[name])
    with pytest.raises(
        nnc.CheckpointError, match=r"batchnorm_0/var: listed in the header but missing \(corrupt file\)"
    ):
        nnc.load(tmp_path / "broken.npz", model, stats=True)
