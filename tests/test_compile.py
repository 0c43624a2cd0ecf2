"""nnc.compile: the same results as the interpreted path, to float rounding.

Tolerances: float64 to 1e-10 relative; float32 to 2e-5 relative (the compiled code uses a
vectorisable rational approximation of tanh within a few ulps, and sums in another order).
Each distinct input signature compiles for a few seconds, so examples are few and small.
"""

import os
import stat
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnc
from nnc import (
    LSTM,
    Linear,
    concat,
    fanout,
    fcrnn,
    logistic,
    relu,
    residual,
    softmax,
    tanh,
    unroll_last,
    zero_state,
)
from nnc.backend import native
from nnc.compile import compile as ncompile

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-6)}


def sgd_step(model, loss):
    value_and_grad = nnc.value_and_grad(lambda p, x, y: loss(model(p, x), y))
    opt = nnc.sgd(0.1)

    def step(p, x, y):
        value, grads = value_and_grad(p, x, y)
        return opt.update(p, grads, ())[0], value

    return step


def assert_trees_close(a, b, dtype):
    for x, y in zip(nnc.tree_leaves(a), nnc.tree_leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_allclose(x, y, **TOL[dtype])


ACTIVATIONS = {"tanh": tanh, "logistic": logistic, "relu": relu}


@settings(max_examples=4, deadline=None)
@given(
    width=st.integers(1, 6),
    act=st.sampled_from(sorted(ACTIVATIONS)),
    batch=st.integers(1, 5),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 3),
)
def test_compiled_training_steps_equal_interpreted_ones(width, act, batch, dtype, seed):
    model = Linear(3, width) >> ACTIVATIONS[act] >> Linear(width, 4) >> softmax
    step = sgd_step(model, nnc.cross_entropy)
    compiled = ncompile(step)
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((batch, 3)).astype(dtype), rng.integers(0, 4, batch)
    p_ref = p_fast = model.init(seed=seed, dtype=dtype)
    for _ in range(3):
        p_ref, v_ref = step(p_ref, x, y)
        p_fast, v_fast = compiled(p_fast, x, y)
        np.testing.assert_allclose(v_fast, v_ref, **TOL[dtype])
    assert_trees_close(p_fast, p_ref, dtype)


@pytest.mark.parametrize("name", ["residual_fanout", "recurrent", "cnn"])
def test_compiled_combinators_scans_and_convolutions(name):
    rng = np.random.default_rng(0)
    if name == "cnn":
        from nnc import Input, Tensor
        from nnc.conv import Conv2d, avg_pool, flatten, max_pool

        model = (
            Input(Tensor[2, 7, 6])
            >> Conv2d(2, 3, 3, padding=1, stride=2)
            >> relu
            >> max_pool(2)
            >> Conv2d(3, 2, 1, dilation=1)
            >> avg_pool(1)
            >> flatten
            >> Linear(None, 1)
        )
        x = rng.standard_normal((3, 2, 7, 6))
    elif name == "residual_fanout":
        model = (
            Linear(3, 4) >> residual(Linear(4, 4) >> tanh) >> fanout(tanh, logistic) >> concat >> Linear(8, 1)
        )
        x = rng.standard_normal((5, 3))
    else:
        model = zero_state(unroll_last(fcrnn(2, 3) >> LSTM(3, 2))) >> Linear(2, 1)
        x = rng.standard_normal((3, 7, 2))
    y = rng.standard_normal((x.shape[0], 1))
    step = sgd_step(model, nnc.mse)
    p = model.init(seed=1, dtype=np.float64)
    p_ref, v_ref = step(p, x, y)
    p_fast, v_fast = ncompile(step)(p, x, y)
    assert v_fast == pytest.approx(v_ref, rel=1e-10)
    assert_trees_close(p_fast, p_ref, np.float64)


def test_compiled_model_predicts_like_the_model_and_caches_per_shape():
    model = Linear(4, 3) >> tanh >> Linear(3, 2)
    params = model.init(seed=0)
    predict = ncompile(model)
    a, b = np.ones((5, 4), np.float32), np.ones((2, 4), np.float32)
    np.testing.assert_allclose(predict(params, a), model(params, a), **TOL[np.float32])
    predict(params, a * 2)
    assert len(predict.specialisations) == 1
    np.testing.assert_allclose(predict(params, b), model(params, b), **TOL[np.float32])
    assert len(predict.specialisations) == 2


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(1, 9),
    k=st.integers(0, 9),
    n=st.integers(1, 9),
    trans=st.integers(0, 3),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 9),
)
def test_the_generated_codes_products_equal_numpys(m, k, n, trans, dtype, seed):
    from nnc.backend.numba_blas import TRANS_A, TRANS_B, matmul

    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    a_in = np.ascontiguousarray(a.T) if trans & TRANS_A else a
    b_in = np.ascontiguousarray(b.T) if trans & TRANS_B else b
    out = np.full((m, n), np.nan, dtype)
    matmul(a_in, b_in, np.int64(trans), out)
    np.testing.assert_allclose(out, a @ b, **TOL[dtype])


def test_a_training_step_compiles_to_one_product_function_and_one_allocation_form():
    """Each numpy form in generated code is a Numba overload compiled per layout and call form,
    and those compilations were most of the cold compile time: guard against their return."""
    model = Linear(4, 5) >> tanh >> Linear(5, 3) >> softmax
    step = ncompile(nnc.train_step(model, loss=nnc.cross_entropy, opt=nnc.sgd(0.1)))
    params = model.init(seed=0)
    x, y = np.ones((2, 4), np.float32), np.array([0, 2])
    step(params, nnc.sgd(0.1).init(params), x, y)
    (entry,) = step.specialisations.values()
    for form in ("np.dot", "np.zeros", "np.full", "min(", "max(", ".T,"):
        assert form not in entry.source, form
    assert entry.source.count("matmul(") == 5  # two forward, three backward (none for the data)


def test_arrays_in_any_memory_order_compute_the_same():
    model = Linear(4, 3) >> tanh
    params = model.init(seed=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((4, 6)).T  # Fortran-ordered
    expected = model(params, x)
    predict = ncompile(model)
    predict(params, np.ascontiguousarray(x))  # compiled for C-ordered arrays
    predict.fn = lambda *args: pytest.fail("ran the interpreted path")
    np.testing.assert_allclose(predict(params, x), expected, **TOL[np.float64])
    transposed = {k: {n: np.asfortranarray(w) for n, w in v.items()} for k, v in params.items()}
    np.testing.assert_allclose(predict(transposed, x), expected, **TOL[np.float64])


def test_bad_input_gives_the_same_errors_as_the_interpreter():
    model = Linear(2, 3) >> softmax
    step = sgd_step(model, nnc.cross_entropy)
    compiled = ncompile(step)
    p = model.init()
    with pytest.raises(nnc.ShapeError, match=r"input of shape \(4, 5\) does not fit linear_0"):
        compiled(p, np.ones((4, 5), np.float32), np.zeros(4, np.int64))
    compiled(p, np.ones((4, 2), np.float32), np.zeros(4, np.int64))
    with pytest.raises(
        nnc.DomainError,
        match=r"cross_entropy: label 7 at index \(2,\) is out of range "
        "for 3 classes",
    ):
        compiled(p, np.ones((4, 2), np.float32), np.array([0, 1, 7, 2]))


def test_generated_code_that_does_not_run_warns_and_runs_the_interpreter(monkeypatch):
    real = native.generate

    def broken(graph, name="compiled"):
        module = real(graph, name)
        module.functions[-1] = module.functions[-1].replace(
            "    return (", "    nnc_undefined_name\n    return (", 1
        )
        return module

    monkeypatch.setattr(native, "generate", broken)
    fn = ncompile(lambda x: x * 2.0)
    with pytest.warns(
        native.GeneratedCodeWarning, match=r"does not run \((TypingError|NameError): .*\); the interpreter"
    ):
        out = fn(np.arange(3.0))
    np.testing.assert_array_equal(out, [0.0, 2.0, 4.0])
    (entry,) = fn.specialisations.values()
    assert entry.failed.split(":")[0] in ("TypingError", "NameError")
    np.testing.assert_array_equal(fn(np.arange(3.0)), [0.0, 2.0, 4.0])  # no second warning: it is known


def test_a_primitive_without_compiled_form_falls_back_and_says_so_once():
    from nnc.backend.core import PRIMITIVES, bind, defprim, defvjp

    cube = defprim("test_cube", lambda x: x**3)
    defvjp(cube, lambda g, out, x: (g * 3.0 * x * x,))
    try:
        fn = lambda x: nnc.sum(bind(cube, x) * 2.0)  # noqa: E731
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            compiled = ncompile(nnc.value_and_grad(fn))
            value, grad = compiled(np.array([1.0, 2.0]))
            assert value == 18.0
            np.testing.assert_allclose(grad, [6.0, 24.0])
            compiled(np.array([1.0, 2.0, 3.0]))
        notes = [w for w in caught if "no compiled form for test_cube" in str(w.message)]
        assert len(notes) == 1
    finally:
        del PRIMITIVES["test_cube"]


def test_verbose_reports_compile_time(capsys):
    ncompile(Linear(2, 2), verbose=True)(Linear(2, 2).init(), np.ones((1, 2), np.float32))
    assert "nnc.compile: Linear(2 -> 2) compiled for" in capsys.readouterr().err


def test_works_when_the_cache_directory_is_read_only(tmp_path):
    locked = tmp_path / "cache"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    script = (
        "import numpy as np, nnc\nfrom nnc.compile import compile as c\n"
        "m = nnc.Linear(2, 2)\nf = c(m)\ny = f(m.init(), np.ones((1, 2), np.float32))\n"
        "e = next(iter(f.specialisations.values()))\nprint(e.cached_on_disk, y.shape)\n"
    )
    env = dict(os.environ, NNC_CACHE_DIR=str(locked))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    locked.chmod(stat.S_IRWXU)
    assert out.returncode == 0, out.stderr
    if os.geteuid() == 0:  # root writes anywhere: the directory is not really read-only
        assert out.stdout.split()[1:] == ["(1,", "2)"]
    else:
        assert out.stdout.split() == ["False", "(1,", "2)"]


def test_fit_with_compile_equals_fit_without():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3))
    y = (x[:, 0] > 0).astype(np.int64)
    model = Linear(3, 5) >> tanh >> Linear(5, 2) >> softmax
    params = model.init(seed=0, dtype=np.float64)
    kwargs = dict(loss=nnc.cross_entropy, opt=nnc.adam(0.05), epochs=3, batch_size=16, seed=1, progress=False)
    p_ref, h_ref = nnc.fit(model, params, (x, y), **kwargs)
    p_fast, h_fast = nnc.fit(model, params, (x, y), compile=True, **kwargs)
    assert_trees_close(p_fast, p_ref, np.float64)
    np.testing.assert_allclose(h_fast["loss"], h_ref["loss"], rtol=1e-10)
    with pytest.raises(nnc.ConfigError, match="either step= or compile=True"):
        nnc.fit(model, params, (x, y), compile=True, step=lambda *a: a, **kwargs)


def test_arrays_of_another_backend_run_the_interpreted_path():
    import array_api_strict as xp

    model = Linear(2, 3) >> tanh
    params = model.init(seed=0, dtype=np.float64)
    device = xp.Device("device1")
    moved = nnc.tree_map(lambda a: xp.asarray(a, device=device), params)
    x = xp.asarray(np.ones((4, 2)), device=device)
    y = ncompile(model)(moved, x)
    assert y.device == device
    np.testing.assert_allclose(
        np.asarray(xp.asarray(y, device=xp.Device("CPU_DEVICE"))), model(params, np.ones((4, 2))), rtol=1e-12
    )


def test_a_changed_product_function_changes_the_disk_cache_key(monkeypatch):
    """Numba's cache of a generated function holds the product function's machine code too."""
    before = native._digest("def f(): pass", {})
    monkeypatch.setattr(native, "_runtime_fingerprint", lambda: b"another matmul")
    assert native._digest("def f(): pass", {}) != before


def test_the_same_recurrent_model_compiles_twice_in_one_process():
    # the second nnc.compile finds the generated module loaded, its scan body jitted already
    model = zero_state(unroll_last(fcrnn(1, 4))) >> Linear(4, 1)
    params = model.init(seed=0)
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3, 1)
    first, second = ncompile(model)(params, x), ncompile(model)(params, x)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(second, model(params, x), **TOL[np.float32])


def test_a_first_call_on_bad_data_keeps_the_compiled_code():
    model = Linear(3, 2)
    params = model.init(seed=0)
    good = ncompile(model)
    good(params, np.ones((2, 3), np.float32))
    predict = ncompile(model)
    bad = np.ones((2, 3), np.float32)
    bad[0, 1] = np.inf
    with pytest.raises(nnc.NonFiniteError, match=r"holds inf at index \(0, 1\)"):
        predict(params, bad)
    (entry,) = predict.specialisations.values()
    predict.fn = lambda *args: pytest.fail("ran the interpreted path")
    np.testing.assert_allclose(
        predict(params, np.ones((2, 3), np.float32)), model(params, np.ones((2, 3))), **TOL[np.float32]
    )
    # not rebuilt outside the disk cache, as a damaged cache would be
    assert entry.cached_on_disk == next(iter(good.specialisations.values())).cached_on_disk
