"""Randomness and running statistics kept explicit: the key primitives against SplitMix64
written out here, keys derived from layer paths, signatures, the errors of a missing or
wrong key or statistics, reproducibility within and across processes, how ``fit`` and
``train_step`` thread keys and statistics, and the array-API (device) path."""

import json
import os
import subprocess
import sys
import textwrap
import zlib
from types import SimpleNamespace

import array_api_strict as xp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnc
from nnc import BatchNorm, Dropout, Input, LayerNorm, Linear, Tensor, flatten, relu, residual, tanh
from nnc.backend.array_api import to_numpy
from nnc.backend.core import impl_for
from nnc.backend.random import fold_in_p, uniform, uniform_p
from nnc.devices import cupy_device, to_device

FEW = settings(max_examples=25, deadline=None)
HERE = os.path.basename(__file__)

# ----------------------------------------------------------------------------- SplitMix64, by hand

MASK = 2**64 - 1
GOLDEN = 0x9E3779B97F4A7C15
# The published first outputs of SplitMix64 (Vigna's splitmix64.c) from states 0 and 42
SEED_0 = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F, 0xF88BB8A8724C81EC]
SEED_42 = [0xBDD732262FEB6E95, 0x28EFE333B266F103, 0x47526757130F9F52, 0x581CE1FF0E4AE394]


def splitmix64(state, n):
    """``n`` outputs of SplitMix64 from ``state``, in Python integers wrapping at 2**64."""
    out = []
    for _ in range(n):
        state = (state + GOLDEN) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        out.append(z ^ (z >> 31))
    return out


def reference_uniform(key, shape, dtype):
    """Numbers in [0, 1): the top 24 (float32) or 53 (float64) bits of each output, scaled."""
    bits = 24 if np.dtype(dtype) == np.float32 else 53
    n = int(np.prod(shape, dtype=np.int64))
    values = [(v >> (64 - bits)) * 2.0**-bits for v in splitmix64(int(key), n)]
    return np.array(values, dtype).reshape(shape)


def layer_key(key, path):
    """A layer's key, as nnc.effects documents it: fold_in(key, crc32(path))."""
    return nnc.fold_in(key, zlib.crc32(path.encode()))


def reference_mask(key, path, shape, rate, dtype=np.float64):
    """Where Dropout at ``path`` keeps an entry: its uniform number is not below the rate."""
    return reference_uniform(layer_key(key, path), shape, dtype) >= rate


# ----------------------------------------------------------------------------- the primitives


def test_key_is_the_first_splitmix64_output_of_the_seed():
    for seed, outputs in ((0, SEED_0), (42, SEED_42)):
        k = nnc.key(seed)
        assert k.dtype == np.uint64 and k.shape == ()
        assert int(k) == outputs[0] == splitmix64(seed, 1)[0]


@pytest.mark.parametrize("dtype, bits", [(np.float64, 53), (np.float32, 24)])
def test_uniform_is_splitmix64_from_the_key_scaled_to_the_unit_interval(dtype, bits):
    for state, outputs in ((0, SEED_0), (42, SEED_42)):
        got = uniform(np.asarray(state, np.uint64), (4,), dtype)
        assert got.dtype == dtype
        np.testing.assert_array_equal(
            got, np.array([(v >> (64 - bits)) * 2.0**-bits for v in outputs], dtype)
        )


@FEW
@given(
    state=st.integers(0, MASK),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=5),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_uniform_equals_the_reference_bit_for_bit_for_any_key_and_shape(state, shape, dtype):
    got = uniform(np.asarray(state, np.uint64), shape, dtype)
    assert got.shape == shape and got.dtype == dtype
    np.testing.assert_array_equal(got, reference_uniform(state, shape, dtype))
    assert ((got >= 0) & (got < 1)).all()


def test_uniform_is_uniform():
    u = uniform(nnc.key(7), (200_000,), np.float64)
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    expected = len(u) / 10
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 27.88  # the 0.999 quantile of chi-squared with 9 degrees of freedom
    assert abs(float(u.mean()) - 0.5) < 4 * np.sqrt(1 / 12 / len(u))


def test_fold_in_gives_independent_keys_for_different_data():
    k = nnc.key(3)
    keys = [int(nnc.fold_in(k, i)) for i in range(1000)]
    assert len(set(keys)) == 1000 and int(k) not in keys
    assert int(nnc.fold_in(k, 5)) == int(nnc.fold_in(k, np.asarray(5, np.uint64)))  # an int or a 0-d array
    assert int(nnc.fold_in(k, 5)) == int(nnc.fold_in(nnc.key(3), 5))  # a pure function
    assert int(nnc.fold_in(k, 5)) != int(nnc.fold_in(nnc.key(4), 5))
    assert nnc.fold_in(k, 2**64 - 1).dtype == np.uint64 and nnc.fold_in(k, 2**64 - 1).shape == ()
    # neighbouring keys give unrelated streams, not shifted copies of each other
    a, b = uniform(nnc.fold_in(k, 0), (64,), np.float64), uniform(nnc.fold_in(k, 1), (64,), np.float64)
    assert len(set(a.tolist()) & set(b.tolist())) == 0


@pytest.mark.parametrize("seed", [-1, 1.5, True, 2**64, "0", None])
def test_key_refuses_what_is_not_a_seed(seed):
    with pytest.raises(nnc.ArgumentError, match=r"nnc.key: seed must be an int in \[0, 2\*\*64\), got "):
        nnc.key(seed)


def test_uniform_refuses_other_dtypes():
    with pytest.raises(nnc.ArgumentError, match="nnc uniform: dtype must be float32 or float64, got float16"):
        uniform(nnc.key(0), (3,), np.float16)


@FEW
@given(x=hnp.arrays(np.float64, st.integers(1, 6), elements=st.floats(-2, 2)), seed=st.integers(0, 99))
def test_fold_in_and_uniform_are_not_differentiated(x, seed):
    """They are nondiff primitives: a gradient goes past them, never into the key."""
    k = nnc.key(seed)

    def f(x, k):
        return nnc.sum(x * uniform(nnc.fold_in(k, 1), x.shape, np.float64))

    np.testing.assert_array_equal(nnc.grad(f)(x, k), uniform(nnc.fold_in(k, 1), x.shape, np.float64))
    with pytest.raises(
        nnc.ShapeError, match="only differentiate with respect to floating-point arrays, got dtype uint64"
    ):
        nnc.grad(f, 1)(x, k)


# ----------------------------------------------------------------------------- generic (array API) forms


@FEW
@given(
    state=st.integers(0, MASK),
    data=st.integers(0, MASK),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=5),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_generic_forms_equal_numpy_bit_for_bit(state, data, shape, dtype):
    placement = SimpleNamespace(xp=xp)  # what impl_for reads of a placement
    k = np.asarray(state, np.uint64)
    generic_uniform = impl_for(uniform_p, placement)(xp.asarray(k), shape=shape, dtype=dtype)
    np.testing.assert_array_equal(np.asarray(generic_uniform), uniform(k, shape, dtype))
    assert generic_uniform.dtype == getattr(xp, dtype)
    generic_fold = impl_for(fold_in_p, placement)(xp.asarray(k), xp.asarray(np.asarray(data, np.uint64)))
    assert int(np.asarray(generic_fold)) == int(nnc.fold_in(k, data))


# ----------------------------------------------------------------------------- the stand-in device

DEVICE = xp.Device("device1")


def stand_in_gpu():
    """The CuPy backend over a stand-in CuPy whose arrays live on array_api_strict's device1,
    which numpy cannot read (as in tests/test_devices.py)."""
    fake = SimpleNamespace(
        cuda=SimpleNamespace(runtime=SimpleNamespace(getDeviceCount=lambda: 1)),
        zeros=lambda shape: xp.zeros(shape, device=DEVICE),
    )
    return cupy_device(fake)


def test_generic_forms_run_on_the_device_of_their_key():
    gpu = stand_in_gpu()
    k = to_device(nnc.key(5), gpu)
    assert k.device == DEVICE
    drawn = impl_for(uniform_p, gpu.placement)(k, shape=(3, 4), dtype="float64")
    assert drawn.device == DEVICE
    np.testing.assert_array_equal(to_numpy(drawn), uniform(nnc.key(5), (3, 4), np.float64))
    folded = impl_for(fold_in_p, gpu.placement)(k, to_device(np.asarray(9, np.uint64), gpu))
    assert folded.device == DEVICE and int(to_numpy(folded)) == int(nnc.fold_in(nnc.key(5), 9))


MIXED = Linear(3, 4) >> BatchNorm(4) >> tanh >> Dropout(0.5) >> Linear(4, 2)


@pytest.mark.parametrize("key_on_device", [False, True])
def test_a_model_with_effects_on_the_device_equals_numpy(key_on_device):
    gpu = stand_in_gpu()
    x = np.linspace(-1, 1, 15).reshape(5, 3)
    params, stats, k = MIXED.init(seed=0, dtype=np.float64), MIXED.init_stats(np.float64), nnc.key(2)
    y_ref, stats_ref = MIXED(params, x, key=k, stats=stats)
    on_device = (to_device(k, gpu), to_device(stats, gpu)) if key_on_device else (k, stats)
    y, new_stats = MIXED(
        MIXED.init(seed=0, dtype=np.float64, device=gpu), x, key=on_device[0], stats=on_device[1]
    )
    assert y.device == DEVICE and all(v.device == DEVICE for v in nnc.tree_leaves(new_stats))
    np.testing.assert_allclose(to_numpy(y), y_ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(to_numpy(y) == 0, y_ref == 0)  # the same mask
    for (path, v), (_, ref) in zip(nnc.tree_paths(new_stats), nnc.tree_paths(stats_ref)):
        np.testing.assert_allclose(to_numpy(v), ref, rtol=1e-12, err_msg=path)


# ----------------------------------------------------------------------------- keys from paths


@FEW
@given(seed=st.integers(0, 2**32), rate=st.sampled_from([0.1, 0.5, 0.9]), batch=st.integers(1, 4))
def test_a_dropout_mask_is_drawn_from_the_key_of_its_path(seed, rate, batch):
    model = Linear(3, 6) >> Dropout(rate)
    params = model.init(seed=1, dtype=np.float64)
    x = np.cos(np.arange(batch * 3.0)).reshape(batch, 3)
    k = nnc.key(seed)
    hidden = Linear(3, 6)(params["linear_0"], x)
    kept = reference_mask(k, "dropout_0", (batch, 6), rate)
    np.testing.assert_array_equal(model(params, x, key=k), np.where(kept, hidden * (1.0 / (1.0 - rate)), 0.0))


def test_adding_a_layer_elsewhere_does_not_change_a_dropout_mask():
    x = np.linspace(-1, 1, 40).reshape(4, 10)
    k = nnc.key(11)
    base = Linear(10, 32) >> Dropout(0.5)
    longer = Linear(10, 32) >> Dropout(0.5) >> tanh
    params = base.init(seed=0, dtype=np.float64)
    assert longer.init(seed=0, dtype=np.float64).keys() == params.keys()
    y = base(params, x, key=k)
    np.testing.assert_allclose(longer(params, x, key=k), np.tanh(y), rtol=1e-15)
    np.testing.assert_array_equal(longer(params, x, key=k) == 0, y == 0)
    # a layer without effects before it neither: the path is still dropout_0
    before = Linear(10, 32) >> relu >> Dropout(0.5)
    ones = np.ones((4, 10))
    only_positive = {"linear_0": {"W": np.full((10, 32), 0.1), "b": np.zeros(32)}}
    np.testing.assert_array_equal(
        before(only_positive, ones, key=k) == 0, base(only_positive, ones, key=k) == 0
    )
    # a named dropout keeps its mask whatever other dropouts are added around it
    named = Linear(10, 32) >> Dropout(0.5, name="keep")
    crowded = Linear(10, 32) >> Dropout(0.2) >> Dropout(0.5, name="keep") >> Dropout(0.3)
    keep = reference_mask(k, "keep", (4, 32), 0.5)
    np.testing.assert_array_equal(named(params, x, key=k) == 0, ~keep)
    h = Linear(10, 32)(params["linear_0"], x)
    masks = keep & reference_mask(k, "dropout_0", h.shape, 0.2) & reference_mask(k, "dropout_1", h.shape, 0.3)
    expected = np.where(masks, h * (1 / 0.8) * (1 / 0.5) * (1 / 0.7), 0.0)
    np.testing.assert_allclose(crowded(params, x, key=k), expected, rtol=1e-14)


def test_two_dropouts_of_one_model_draw_different_masks():
    model = Dropout(0.5, name="a") >> Dropout(0.5, name="b")
    x = np.ones((8, 50))
    k = nnc.key(0)
    a, b = reference_mask(k, "a", x.shape, 0.5), reference_mask(k, "b", x.shape, 0.5)
    assert (a != b).mean() > 0.3
    np.testing.assert_array_equal(model(x, key=k), np.where(a & b, 4.0, 0.0))


def test_a_nested_dropout_is_keyed_by_its_full_path():
    model = Linear(2, 16) >> residual(Dropout(0.5) >> tanh) >> Dropout(0.25)
    params = model.init(seed=0, dtype=np.float64)
    x = np.array([[0.5, -1.0], [2.0, 0.25]])
    k = nnc.key(9)
    h = Linear(2, 16)(params["linear_0"], x)
    inner = reference_mask(k, "residual_0/serial_0/dropout_0", h.shape, 0.5)
    outer = reference_mask(k, "dropout_0", h.shape, 0.25)
    expected = np.where(outer, (h + np.tanh(np.where(inner, h * 2.0, 0.0))) / 0.75, 0.0)
    np.testing.assert_allclose(model(params, x, key=k), expected, rtol=1e-14)


def test_the_same_key_gives_the_same_masks_and_another_key_others():
    model = Linear(5, 64) >> Dropout(0.5)
    params, x = model.init(seed=0), np.ones((3, 5), np.float32)
    first = model(params, x, key=nnc.key(1))
    np.testing.assert_array_equal(model(params, x, key=nnc.key(1)), first)
    np.testing.assert_array_equal(model(params, x, key=np.asarray(int(nnc.key(1)), np.uint64)), first)
    assert ((model(params, x, key=nnc.key(2)) == 0) != (first == 0)).mean() > 0.3
    assert ((model(params, x, key=nnc.fold_in(nnc.key(1), 1)) == 0) != (first == 0)).mean() > 0.3


# ----------------------------------------------------------------------------- signatures


def test_signatures_show_the_key_and_the_statistics():
    assert str((Linear(3, 4) >> Dropout(0.5)).signature) == "Vec[3] -> Vec[4], key"
    assert str((Linear(3, 4) >> BatchNorm(4)).signature) == "Vec[3] -> Vec[4], stats"
    both = Linear(3, 4) >> BatchNorm(4) >> Dropout(0.1)
    assert str(both.signature) == "Vec[3] -> Vec[4], key, stats"
    assert str(nnc.inference(both).signature) == "Vec[3] -> Vec[4], stats"
    assert str(both.signature) == "Vec[3] -> Vec[4], key, stats"  # unchanged by inference
    assert str((Linear(3, 4) >> LayerNorm(4)).signature) == "Vec[3] -> Vec[4]"
    assert str(Dropout(0.3).signature) == "a -> a, key"
    assert (
        str((Input(Tensor[2, 4, 4]) >> BatchNorm(2) >> flatten).signature)
        == "Tensor[2, 4, 4] -> Vec[32], stats"
    )
    flags = [
        (m.is_random, m.keeps_stats, m.updates_stats, m.has_effects) for m in (both, nnc.inference(both))
    ]
    assert flags == [(True, True, True, True), (False, True, False, True)]


# ----------------------------------------------------------------------------- key and statistics errors


def created_at(line):
    relative = os.path.relpath(__file__)
    return f"{__file__ if relative.startswith('..') else relative}:{line}"


def test_dropout_in_training_without_a_key_names_the_layer_and_where_it_was_made():
    line = sys._getframe().f_lineno + 1
    model = Linear(3, 4) >> Dropout(0.5)
    params, x = model.init(seed=0), np.ones((2, 3), np.float32)
    for call in (
        lambda: model(params, x),
        lambda: model(params, x, key=None),
        lambda: nnc.train_step(model, loss=nnc.mse, opt=nnc.sgd(0.1))(
            params, nnc.sgd(0.1).init(params), x, np.ones((2, 4), np.float32)
        ),
    ):
        with pytest.raises(nnc.ArgumentError) as err:
            call()
        assert str(err.value).startswith(
            f"Dropout(0.5) (created at {created_at(line)}) draws random numbers in training, "
            "but the call gave no key\n"
            "  hint: call model(params, x, key=nnc.key(seed)), or evaluate nnc.inference(model)(params, x)"
        ), str(err.value)


@pytest.mark.parametrize(
    "key, got",
    [
        (3, "got 3 (int)"),
        (np.ones(()), "got an array of dtype float64 and shape ()"),
        (np.zeros((2,), np.uint64), "got an array of dtype uint64 and shape (2,)"),
        (np.asarray(3, np.uint32), "got an array of dtype uint32 and shape ()"),
        ("key", "got 'key' (str)"),
    ],
)
def test_a_wrong_key_is_an_error_saying_what_a_key_is(key, got):
    line = sys._getframe().f_lineno + 1
    model = Linear(3, 4) >> Dropout(0.5)
    with pytest.raises(nnc.ArgumentError) as err:
        model(model.init(seed=0), np.ones((2, 3), np.float32), key=key)
    assert str(err.value).startswith(
        f"Linear(3 -> 4) >> Dropout(0.5) (created at {created_at(line)}) draws random numbers: "
        f"key must be a key (a 0-d uint64 array), {got}\n"
        "  hint: make one with nnc.key(seed), and a new one per step with nnc.fold_in(key, step)"
    ), str(err.value)


def test_batch_norm_without_statistics_is_an_error_naming_it():
    line = sys._getframe().f_lineno + 1
    model = Linear(3, 4) >> BatchNorm(4)
    with pytest.raises(nnc.ArgumentError) as err:
        model(model.init(seed=0), np.ones((2, 3), np.float32))
    assert str(err.value).startswith(
        f"BatchNorm(4) (created at {created_at(line)}) normalises with running statistics, "
        "but the call gave none\n"
        "  hint: make them with model.init_stats() and call model(params, x, stats=stats)"
    )


STATS_MODEL = Linear(3, 4) >> BatchNorm(4)


@pytest.mark.parametrize(
    "stats, message",
    [
        (
            {"batchnorm_0": {"mean": np.zeros(3, np.float32), "var": np.ones(4, np.float32)}},
            "statistic 'batchnorm_0/mean' has shape (3,), but Linear(3 -> 4) >> BatchNorm(4)",
        ),
        (
            {"batchnorm_0": {"mean": np.zeros(4, np.float32)}},
            "statistics do not fit Linear(3 -> 4) >> BatchNorm(4) (created at",
        ),
        (
            {"batchnorm_0": {"mean": np.zeros(4), "var": np.ones(4)}, "extra": np.ones(2)},
            "unexpected ['extra']",
        ),
        ({}, "missing 'batchnorm_0/mean'"),
        ([np.zeros(4), np.ones(4)], "statistics of Linear(3 -> 4) >> BatchNorm(4)"),
    ],
)
def test_statistics_that_do_not_fit_the_model_are_an_error_naming_the_entry(stats, message):
    with pytest.raises(nnc.ShapeError) as err:
        STATS_MODEL(STATS_MODEL.init(seed=0), np.ones((2, 3), np.float32), stats=stats)
    assert message in str(err.value), str(err.value)
    assert "hint: make them with model.init_stats() for this very model" in str(err.value)
    if message.startswith("statistics do not"):
        assert "missing 'batchnorm_0/var'" in str(err.value)


def test_a_model_without_effects_ignores_a_key_and_statistics():
    model = Linear(3, 2) >> tanh
    params, x = model.init(seed=0), np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(model(params, x, key=nnc.key(0), stats={}), model(params, x))
    assert model.init_stats() == {}


# ----------------------------------------------------------------------------- train_step and fit


MLP = Linear(4, 8) >> LayerNorm(8) >> tanh >> Dropout(0.25) >> Linear(8, 3) >> nnc.softmax
BN_MLP = Linear(4, 8) >> BatchNorm(8) >> relu >> Dropout(0.25) >> Linear(8, 3) >> nnc.softmax


def _data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)), rng.integers(0, 3, n)


def test_fit_derives_each_steps_key_from_the_seed_and_the_step_number():
    seen = []
    reference = nnc.train_step(MLP, loss=nnc.cross_entropy, opt=nnc.sgd(0.1))

    def step(params, opt_state, x, y, stats, key):
        seen.append(int(key))
        return reference(params, opt_state, x, y, stats, key)

    x, y = _data()
    fit_kwargs = dict(loss=nnc.cross_entropy, opt=nnc.sgd(0.1), epochs=2, batch_size=4, progress=False)
    nnc.fit(MLP, MLP.init(seed=0), (x, y), seed=5, step=step, **fit_kwargs)
    run = nnc.fold_in(nnc.key(5), 1)
    assert seen == [int(nnc.fold_in(run, i)) for i in range(6)]  # counted across epochs
    assert len(set(seen)) == 6


def test_fit_equals_a_loop_of_train_steps_with_the_documented_keys_bit_for_bit():
    x, y = _data(12)
    params = BN_MLP.init(seed=3, dtype=np.float64)
    opt = nnc.adam(1e-2)
    trained, stats, history = nnc.fit(
        BN_MLP, params, (x, y), loss=nnc.cross_entropy, opt=opt, epochs=2, batch_size=4, seed=7,
        shuffle=False, progress=False,
    )  # fmt: skip
    step = nnc.train_step(BN_MLP, loss=nnc.cross_entropy, opt=opt)
    p, o, s = params, opt.init(params), BN_MLP.init_stats(np.float64)
    run, number, losses = nnc.fold_in(nnc.key(7), 1), 0, []
    for _ in range(2):
        epoch = []
        for start in range(0, 12, 4):
            p, o, loss, s = step(
                p, o, x[start : start + 4], y[start : start + 4], s, nnc.fold_in(run, number)
            )
            epoch.append(float(loss))
            number += 1
        losses.append(float(np.mean(epoch)))
    assert history["loss"] == losses
    for tree, ref in ((trained, p), (stats, s)):
        for (path, a), (_, b) in zip(nnc.tree_paths(tree), nnc.tree_paths(ref)):
            np.testing.assert_array_equal(a, b, err_msg=path)


def test_train_step_takes_a_key_and_statistics_and_gives_statistics_back():
    params = BN_MLP.init(seed=0, dtype=np.float64)
    step = nnc.train_step(BN_MLP, loss=nnc.cross_entropy, opt=nnc.sgd(0.1))
    x, y = _data(6)
    out = step(params, step.opt.init(params), x, y, BN_MLP.init_stats(), nnc.key(0))
    assert len(out) == 4
    new_params, _, loss, stats = out
    assert nnc.tree_map(np.shape, new_params) == nnc.tree_map(np.shape, params)  # no statistics in them
    # the statistics of the batch this step saw, through the parameters it was given
    hidden = x @ params["linear_0"]["W"] + params["linear_0"]["b"]
    np.testing.assert_allclose(stats["batchnorm_0"]["mean"], 0.1 * hidden.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(
        stats["batchnorm_0"]["var"], 0.9 + 0.1 * hidden.var(axis=0, ddof=1), rtol=1e-12
    )
    # the loss is the training forward pass: batch statistics, this key's mask
    prediction, _ = BN_MLP(params, x, key=nnc.key(0), stats=BN_MLP.init_stats())
    np.testing.assert_allclose(loss, nnc.cross_entropy(prediction, y), rtol=1e-13)
    # a step of a model with dropout only gives three values back
    mlp_step = nnc.train_step(MLP, loss=nnc.cross_entropy, opt=nnc.sgd(0.1))
    mlp_params = MLP.init(seed=0)
    assert len(mlp_step(mlp_params, mlp_step.opt.init(mlp_params), x, y, None, nnc.key(0))) == 3


def test_callbacks_see_the_statistics_of_each_epoch():
    seen = []

    class Record(nnc.Callback):
        def on_epoch_end(self, state, log):
            seen.append(nnc.tree_map(np.copy, log.stats))
            return state, None

    x, y = _data(8)
    _, stats, _ = nnc.fit(
        BN_MLP, BN_MLP.init(seed=0), (x, y), loss=nnc.cross_entropy, opt=nnc.sgd(0.1), epochs=3,
        batch_size=4, callbacks=[Record()], progress=False,
    )  # fmt: skip
    assert len(seen) == 3
    np.testing.assert_array_equal(seen[-1]["batchnorm_0"]["var"], stats["batchnorm_0"]["var"])
    assert not np.array_equal(seen[0]["batchnorm_0"]["mean"], seen[1]["batchnorm_0"]["mean"])


# ----------------------------------------------------------------------------- two processes

SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    import numpy as np
    import nnc
    from nnc import BatchNorm, Dropout, LayerNorm, Linear, relu, softmax, tanh

    def digest(tree):
        h = hashlib.sha256()
        for path, leaf in nnc.tree_paths(tree):
            h.update(path.encode())
            h.update(np.ascontiguousarray(leaf).tobytes())
        return h.hexdigest()

    def run(seed):
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((24, 4)).astype(np.float32), rng.integers(0, 3, 24)
        mlp = Linear(4, 8) >> LayerNorm(8) >> tanh >> Dropout(0.25) >> Linear(8, 3) >> softmax
        params, history = nnc.fit(
            mlp, mlp.init(seed=0), (x, y), loss=nnc.cross_entropy, opt=nnc.adam(1e-2), epochs=3,
            batch_size=8, seed=seed, progress=False,
        )
        bn = Linear(4, 8) >> BatchNorm(8) >> relu >> Dropout(0.5) >> Linear(8, 3) >> softmax
        bn_params, stats, bn_history = nnc.fit(
            bn, bn.init(seed=0), (x, y), loss=nnc.cross_entropy, opt=nnc.adam(1e-2), epochs=3,
            batch_size=8, seed=seed, progress=False,
        )
        mask = Dropout(0.5)(np.ones((16, 16), np.float32), key=nnc.key(seed)) == 0
        return {
            "losses": [v.hex() for v in history["loss"] + bn_history["loss"]],
            "params": digest(params),
            "bn_params": digest(bn_params),
            "stats": digest(stats),
            "mask": np.packbits(mask).tobytes().hex(),
        }

    if __name__ == "__main__":
        print(json.dumps(run(int(sys.argv[1]))))
    """
)


def test_the_same_seed_gives_the_same_masks_and_curves_in_two_processes(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, str(script), "0"], capture_output=True, text=True, env=env, timeout=300
        )
        assert done.returncode == 0, done.stderr
        outputs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1]
    namespace = {"__name__": "in_process"}
    exec(compile(SCRIPT, "run.py", "exec"), namespace)
    assert namespace["run"](0) == outputs[0]  # and in this process too
    other = namespace["run"](1)
    for field in ("losses", "params", "bn_params", "stats", "mask"):
        assert other[field] != outputs[0][field], field
