"""``nnc.compile`` of models with effects equals the interpreted path to rounding: the model
with ``key=``/``stats=``, the training step, and ``fit(compile=True)``, for an MLP with
LayerNorm and Dropout and a CNN with BatchNorm; the errors of a missing or wrong key or
statistics are the interpreter's. Each distinct input signature compiles for seconds, so
every compiled function is built once here and shared between the tests."""

import functools
import inspect
import os
import sys

import numpy as np
import pytest

import nnc
from nnc import (
    BatchNorm,
    Conv2d,
    Dropout,
    Input,
    LayerNorm,
    Linear,
    Tensor,
    flatten,
    max_pool,
    relu,
    softmax,
    tanh,
)
from nnc.backend.random import uniform

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-6)}

MLP = Linear(4, 6) >> LayerNorm(6) >> tanh >> Dropout(0.25) >> Linear(6, 3) >> softmax
CNN = (
    Input(Tensor[1, 8, 8]) >> Conv2d(1, 4, 3, padding=1) >> BatchNorm(4) >> relu
    >> max_pool(2) >> flatten >> Linear(None, 10) >> softmax
)  # fmt: skip


def data(model, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    shape = (4,) if model is MLP else (1, 8, 8)
    return rng.standard_normal((n,) + shape).astype(dtype), rng.integers(0, 3 if model is MLP else 10, n)


def assert_trees_close(a, b, dtype):
    paths_a, paths_b = nnc.tree_paths(a), nnc.tree_paths(b)
    assert [p for p, _ in paths_a] == [p for p, _ in paths_b]
    for (path, x), (_, y) in zip(paths_a, paths_b):
        assert x.dtype == y.dtype and x.shape == y.shape, path
        np.testing.assert_allclose(x, y, err_msg=path, **TOL[dtype])


def refuse_the_interpreter(fast, monkeypatch):
    """From now on, a call of ``fast`` that runs the interpreted function (to build a new
    specialisation, or because the native code failed) fails the test: the native code ran."""
    original = fast.fn

    def refuse(*args, **kwargs):
        raise AssertionError(f"{fast!r} ran the interpreted function")

    refuse.__signature__ = inspect.signature(original)
    monkeypatch.setattr(fast, "fn", refuse)


@functools.cache
def compiled_model(which):
    return nnc.compile({"mlp": MLP, "cnn": CNN, "cnn inference": nnc.inference(CNN)}[which])


@functools.cache
def steps(which):
    """The training step of the MLP or the CNN, and its compiled form."""
    # sgd for the CNN: the gradient of a bias just before a BatchNorm is zero up to rounding,
    # and Adam's normalised step would turn that rounding into a step of its learning rate
    model, opt = (MLP, nnc.adam(1e-2)) if which == "mlp" else (CNN, nnc.sgd(0.1))
    step = nnc.train_step(model, loss=nnc.cross_entropy, opt=opt)
    return step, nnc.compile(step)


# ----------------------------------------------------------------------------- the model


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_mlp_with_a_key_equals_the_interpreted_one(dtype, monkeypatch):
    params = MLP.init(seed=0, dtype=dtype)
    x, _ = data(MLP, 5, dtype)
    predict = compiled_model("mlp")
    for seed in (0, 1, 2):
        k = nnc.key(seed)
        expected = MLP(params, x, key=k)
        got = predict(params, x, key=k)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, expected, **TOL[dtype])  # so the same masks
        refuse_the_interpreter(predict, monkeypatch)
    assert not np.allclose(predict(params, x, key=nnc.key(0)), predict(params, x, key=nnc.key(1)))


def test_compiled_cnn_in_training_gives_the_same_output_and_statistics(monkeypatch):
    params, stats = CNN.init(seed=0), CNN.init_stats()
    x, _ = data(CNN, 4, np.float32)
    predict = compiled_model("cnn")
    expected_y, expected_stats = CNN(params, x, stats=stats)
    got_y, got_stats = predict(params, x, stats=stats)
    refuse_the_interpreter(predict, monkeypatch)
    np.testing.assert_allclose(got_y, expected_y, **TOL[np.float32])
    assert_trees_close(got_stats, expected_stats, np.float32)
    # and chained: the statistics the compiled call returned go into the next one
    again_y, again_stats = predict(params, x[::-1].copy(), stats=got_stats)
    ref_y, ref_stats = CNN(params, x[::-1].copy(), stats=expected_stats)
    np.testing.assert_allclose(again_y, ref_y, **TOL[np.float32])
    assert_trees_close(again_stats, ref_stats, np.float32)


def test_compiled_cnn_in_inference_mode_uses_the_statistics_given():
    params = CNN.init(seed=0)
    rng = np.random.default_rng(1)
    stats = {
        "batchnorm_0": {
            "mean": rng.standard_normal(4).astype(np.float32),
            "var": rng.uniform(0.5, 2, 4).astype(np.float32),
        }
    }
    x, _ = data(CNN, 4, np.float32)
    expected = nnc.inference(CNN)(params, x, stats=stats)
    got = compiled_model("cnn inference")(params, x, stats=stats)
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, expected, **TOL[np.float32])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_keys_and_masks_equal_the_interpreted_ones_bit_for_bit(dtype):
    def draw(k, number):
        layer = nnc.fold_in(nnc.fold_in(k, number), 1234567)
        return layer, uniform(layer, (5, 7), dtype)

    fast = nnc.compile(draw)
    for seed, number in ((0, 0), (1, 5), (2**63 + 3, 2**40)):
        k, n = nnc.key(seed), np.asarray(number, np.uint64)
        (key_fast, u_fast), (key_slow, u_slow) = fast(k, n), draw(k, n)
        assert key_fast.dtype == np.uint64 and int(key_fast) == int(key_slow)
        assert u_fast.dtype == dtype
        np.testing.assert_array_equal(u_fast, u_slow)
    dropout = nnc.compile(Dropout(0.5))
    ones = np.ones((6, 9), dtype)
    np.testing.assert_array_equal(dropout({}, ones, key=nnc.key(4)), Dropout(0.5)(ones, key=nnc.key(4)))


# ----------------------------------------------------------------------------- the training step


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_compiled_train_step_equals_the_interpreted_one(which, monkeypatch):
    model = MLP if which == "mlp" else CNN
    step, fast = steps(which)
    params = model.init(seed=0)
    x, y = data(model, 4, np.float32)
    stats = model.init_stats() if model.keeps_stats else None
    p_ref = p_fast = params
    s_ref = s_fast = stats
    o_ref = o_fast = step.opt.init(params)
    for number in range(3):
        k = nnc.fold_in(nnc.key(0), number)
        ref = step(p_ref, o_ref, x, y, s_ref, k)
        got = fast(p_fast, o_fast, x, y, s_fast, k)
        refuse_the_interpreter(fast, monkeypatch)  # steps 2 and 3 run native code only
        assert len(got) == len(ref) == (4 if model.keeps_stats else 3)
        np.testing.assert_allclose(got[2], ref[2], **TOL[np.float32])
        p_ref, o_ref, p_fast, o_fast = ref[0], ref[1], got[0], got[1]
        if model.keeps_stats:
            s_ref, s_fast = ref[3], got[3]
            assert_trees_close(s_fast, s_ref, np.float32)
    assert_trees_close(p_fast, p_ref, np.float32)


def test_compiled_train_step_draws_its_masks_in_native_code():
    """The issue asks for the key derivation inside the one compiled step: no part of it
    falls back to numpy (object mode), so the step is also cached on disk."""
    step, fast = steps("mlp")
    params = MLP.init(seed=0)
    x, y = data(MLP, 4, np.float32)
    fast(params, step.opt.init(params), x, y, None, nnc.key(0))
    assert fast.specialisations
    for entry in fast.specialisations.values():
        assert entry.fallbacks == (), entry.fallbacks


# ----------------------------------------------------------------------------- fit


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_fit_compiled_equals_fit_interpreted(which):
    model = MLP if which == "mlp" else CNN
    x, y = data(model, 8, np.float32, seed=2)
    xv, yv = data(model, 6, np.float32, seed=3)
    kwargs = dict(
        loss=nnc.cross_entropy,
        opt=nnc.sgd(0.1),
        epochs=2,
        batch_size=4,
        seed=3,
        validation=(xv, yv),
        progress=False,
    )
    params = model.init(seed=1)
    slow = nnc.fit(model, params, (x, y), **kwargs)
    fast = nnc.fit(model, params, (x, y), compile=True, **kwargs)
    assert len(slow) == len(fast) == (3 if model.keeps_stats else 2)
    for name in ("loss", "val_loss"):
        np.testing.assert_allclose(fast[-1][name], slow[-1][name], rtol=1e-5)
    assert_trees_close(fast[0], slow[0], np.float32)
    if model.keeps_stats:
        assert_trees_close(fast[1], slow[1], np.float32)
    # the compiled run is reproducible bit for bit too
    again = nnc.fit(model, params, (x, y), compile=True, **kwargs)
    assert again[-1]["loss"] == fast[-1]["loss"]


# ----------------------------------------------------------------------------- errors


def created_at(line):
    relative = os.path.relpath(__file__)
    return f"{__file__ if relative.startswith('..') else relative}:{line}"


def test_compiled_and_interpreted_calls_raise_the_same_errors():
    line = sys._getframe().f_lineno + 1
    mlp, cnn = Linear(3, 4) >> Dropout(0.5), Linear(3, 4) >> BatchNorm(4)
    x = np.ones((2, 3), np.float32)
    p_mlp, p_cnn, stats = mlp.init(seed=0), cnn.init(seed=0), cnn.init_stats()
    fast_mlp, fast_cnn = nnc.compile(mlp), nnc.compile(cnn)
    cases = [
        (mlp, fast_mlp, p_mlp, x, {}, nnc.ArgumentError, f"Dropout(0.5) (created at {created_at(line)}) draws random numbers in training, but the call gave no key"),
        (mlp, fast_mlp, p_mlp, x, {"key": 3}, nnc.ArgumentError, "key must be a key (a 0-d uint64 array), got 3 (int)"),
        (mlp, fast_mlp, p_mlp, x, {"key": np.ones(())}, nnc.ArgumentError, "got an array of dtype float64 and shape ()"),
        (cnn, fast_cnn, p_cnn, x, {}, nnc.ArgumentError, "normalises with running statistics, but the call gave none"),
        (cnn, fast_cnn, p_cnn, x[0], {"stats": stats}, nnc.ShapeError, "normalises over a batch in training, but was given one example of shape (4,)"),
        (cnn, fast_cnn, p_cnn, x[:1], {"stats": stats}, nnc.ShapeError, "needs more than one value per channel in training, but was given shape (1, 4)"),
        (cnn, fast_cnn, p_cnn, x, {"stats": {"batchnorm_0": {"mean": np.zeros(3, np.float32), "var": np.ones(4, np.float32)}}}, nnc.ShapeError, "statistic 'batchnorm_0/mean' has shape (3,)"),
        (cnn, fast_cnn, p_cnn, x, {"stats": {"batchnorm_0": {"mean": np.zeros(4, np.float32)}}}, nnc.ShapeError, "missing 'batchnorm_0/var'"),
    ]  # fmt: skip
    for model, fast, params, inputs, kwargs, error, message in cases:
        for fn in (model, fast):
            with pytest.raises(error) as err:
                fn(params, inputs, **kwargs)
            assert message in str(err.value), (fn, str(err.value))


def test_a_compiled_train_step_without_a_key_is_the_interpreters_error():
    model = Linear(3, 4) >> Dropout(0.5)
    step = nnc.train_step(model, loss=nnc.mse, opt=nnc.sgd(0.1))
    params = model.init(seed=0)
    x, y = np.ones((2, 3), np.float32), np.ones((2, 4), np.float32)
    for fn in (step, nnc.compile(step)):
        with pytest.raises(
            nnc.ArgumentError,
            match=r"Dropout\(0.5\) .*draws random numbers in training, but the call gave no key",
        ):
            fn(params, step.opt.init(params), x, y)
