"""The Numba kernels against their numpy references, over shapes drawn by hypothesis
(odd sizes, stride > 1, padding, dilation, batches of one); and how kernels compile
(lazily, cached, without a writable cache)."""

import doctest
import importlib
import itertools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnc.kernels import dispatch, im2col, pool, reference
from nnc.kernels.jit import Kernel, jit_enabled, kernel

dtypes = st.sampled_from([np.float32, np.float64])


def tolerance(dtype):
    return dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)


@st.composite
def conv_problems(draw, same_width=False):
    """Images, filters and an output cotangent for a valid convolution geometry.

    ``same_width``: stride 1 and the output as wide as the input (the kernels' shifted-copy
    path), with any height padding, small images and padding wider than the image."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    if same_width:
        stride = (1, 1)
        kw = draw(st.sampled_from([1, 3, 5]))
        padding = (draw(st.integers(0, 6)), dilation[1] * (kw - 1) // 2)
    low_h = max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0])
    low_w = max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1])
    h, w = draw(st.integers(low_h, low_h + 6)), draw(st.integers(low_w, low_w + 6))
    b, c, o = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 5))
    dtype = draw(dtypes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((b, c, h, w)).astype(dtype)
    f = rng.standard_normal((o, c, kh, kw)).astype(dtype)
    ho = reference.output_size(h, kh, stride[0], padding[0], dilation[0])
    wo = reference.output_size(w, kw, stride[1], padding[1], dilation[1])
    g = rng.standard_normal((b, o, ho, wo)).astype(dtype)
    # A budget that fits one image, a few, or all: exercises whole, partial and single chunks.
    chunk = draw(st.sampled_from([1, c * kh * kw * ho * wo * x.itemsize * 2, im2col.CHUNK_BYTES]))
    return x, f, g, (stride, padding, dilation), chunk


@given(st.one_of(conv_problems(), conv_problems(same_width=True)))
def test_conv_kernels_match_the_numpy_im2col_reference(problem):
    x, w, g, geometry, chunk = problem
    saved, im2col.CHUNK_BYTES = im2col.CHUNK_BYTES, chunk
    try:
        y = im2col.conv2d_forward(x, w, *geometry)
        gx = im2col.conv2d_input_grad(g, w, x.shape, *geometry)
        gw = im2col.conv2d_weight_grad(x, g, w.shape, *geometry)
    finally:
        im2col.CHUNK_BYTES = saved
    tol = tolerance(x.dtype)
    assert y.dtype == gx.dtype == gw.dtype == x.dtype
    np.testing.assert_allclose(y, reference.conv2d(x, w, *geometry), **tol)
    np.testing.assert_allclose(gx, reference.conv2d_input_grad(g, w, x.shape, *geometry), **tol)
    np.testing.assert_allclose(gw, reference.conv2d_weight_grad(x, g, w.shape, *geometry), **tol)


@given(st.one_of(conv_problems(), conv_problems(same_width=True)))
def test_the_conv_backward_passes_are_the_adjoints_of_the_forward(problem):
    """<conv(x, w), g> = <x, input_grad(g, w)> = <w, weight_grad(x, g)>: the backward
    passes are the transposes of the forward, checked without any reference."""
    x, w, g, geometry, _ = (a.astype(np.float64) if isinstance(a, np.ndarray) else a for a in problem)
    forward = np.vdot(im2col.conv2d_forward(x, w, *geometry), g)
    assert np.isclose(forward, np.vdot(x, im2col.conv2d_input_grad(g, w, x.shape, *geometry)))
    assert np.isclose(forward, np.vdot(w, im2col.conv2d_weight_grad(x, g, w.shape, *geometry)))


def test_same_width_convolutions_with_rows_all_in_the_padding():
    """The shifted-copy path (stride 1, output as wide as the input) on every small height
    geometry, including filter rows that see only padding (padding taller than the image)."""
    rng = np.random.default_rng(5)
    for kh, dh, ph, h, kw, dw in itertools.product(
        range(1, 4), (1, 3), range(0, 5), (1, 2, 3), (1, 3), (1, 2)
    ):
        if reference.output_size(h, kh, 1, ph, dh) <= 0:
            continue
        geometry = ((1, 1), (ph, dw * (kw - 1) // 2), (dh, dw))
        x, w = rng.standard_normal((2, 2, h, 4)), rng.standard_normal((2, 2, kh, kw))
        g = rng.standard_normal(reference.conv2d(x, w, *geometry).shape)
        np.testing.assert_allclose(
            im2col.conv2d_forward(x, w, *geometry),
            reference.conv2d(x, w, *geometry),
            atol=1e-12,
            err_msg=str(geometry),
        )
        np.testing.assert_allclose(
            im2col.conv2d_input_grad(g, w, x.shape, *geometry),
            reference.conv2d_input_grad(g, w, x.shape, *geometry),
            atol=1e-12,
            err_msg=str(geometry),
        )
        np.testing.assert_allclose(
            im2col.conv2d_weight_grad(x, g, w.shape, *geometry),
            reference.conv2d_weight_grad(x, g, w.shape, *geometry),
            atol=1e-12,
            err_msg=str(geometry),
        )


def test_conv_reference_matches_a_direct_loop():
    """The reference itself, against the definition written as plain loops."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 2, 7, 6)), rng.standard_normal((3, 2, 3, 2))
    stride, padding, dilation = (2, 1), (1, 2), (2, 3)
    y = reference.conv2d(x, w, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (2, 2)))
    expected = np.zeros(y.shape)
    for i in range(y.shape[2]):
        for j in range(y.shape[3]):
            for ki in range(3):
                for kj in range(2):
                    patch = xp[:, :, i * 2 + ki * 2, j * 1 + kj * 3]  # (B, C)
                    expected[:, :, i, j] += patch @ w[:, :, ki, kj].T
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@st.composite
def pool_problems(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    h, w = draw(st.integers(kh, 10)), draw(st.integers(kw, 10))
    b, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dtype = draw(dtypes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(-3, 4, (b, c, h, w)).astype(dtype)  # few values: many ties
    ho, wo = reference.output_size(h, kh, stride[0], 0, 1), reference.output_size(w, kw, stride[1], 0, 1)
    g = rng.standard_normal((b, c, ho, wo)).astype(dtype)
    return x, g, (kh, kw), stride


@given(pool_problems())
def test_pool_kernels_match_the_numpy_reference(problem):
    x, g, k, s = problem
    tol = tolerance(x.dtype)
    c = np.arange(x.size, dtype=x.dtype).reshape(x.shape)
    np.testing.assert_array_equal(pool.max_pool(x, k, s), reference.max_pool(x, k, s))
    # overlapping windows add up in another order: equal up to rounding
    np.testing.assert_allclose(pool.max_pool_grad(x, g, k, s), reference.max_pool_grad(x, g, k, s), **tol)
    np.testing.assert_array_equal(pool.max_pool_gather(x, c, k, s), reference.max_pool_gather(x, c, k, s))
    np.testing.assert_allclose(pool.avg_pool(x, k, s), reference.avg_pool(x, k, s), **tol)
    np.testing.assert_allclose(
        pool.avg_pool_grad(g, x.shape, k, s), reference.avg_pool_grad(g, x.shape, k, s), **tol
    )
    assert pool.max_pool(x, k, s).dtype == pool.avg_pool(x, k, s).dtype == x.dtype


@given(pool_problems(), st.data())
def test_max_pool_kernels_treat_nan_and_infinities_as_numpy_does(problem, data):
    x, g, k, s = problem
    flat = x.reshape(-1).copy()
    for _ in range(data.draw(st.integers(1, 3))):
        flat[data.draw(st.integers(0, flat.size - 1))] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    x = flat.reshape(x.shape)
    c = np.arange(x.size, dtype=x.dtype).reshape(x.shape)
    np.testing.assert_array_equal(pool.max_pool(x, k, s), reference.max_pool(x, k, s))
    np.testing.assert_array_equal(pool.max_pool_gather(x, c, k, s), reference.max_pool_gather(x, c, k, s))
    np.testing.assert_allclose(
        pool.max_pool_grad(x, g, k, s), reference.max_pool_grad(x, g, k, s), **tolerance(x.dtype)
    )


def test_max_pool_routes_a_tie_to_the_first_maximum_row_by_row():
    x = np.array([[[[1.0, 3.0], [3.0, 0.0]]]])
    gx = pool.max_pool_grad(x, np.array([[[[5.0]]]]), (2, 2), (2, 2))
    np.testing.assert_array_equal(gx, [[[[0.0, 5.0], [0.0, 0.0]]]])


def test_dispatch_agrees_with_the_references():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 8, 7)), rng.standard_normal((4, 3, 3, 3))
    geometry = ((1, 2), (1, 1), (1, 1))
    y = dispatch.conv2d(x, w, *geometry)
    g = rng.standard_normal(y.shape)
    np.testing.assert_allclose(y, reference.conv2d(x, w, *geometry))
    np.testing.assert_allclose(
        dispatch.conv2d_input_grad(g, w, x.shape, *geometry),
        reference.conv2d_input_grad(g, w, x.shape, *geometry),
    )
    np.testing.assert_allclose(
        dispatch.conv2d_weight_grad(x[:, :, ::-1], g, w.shape, *geometry),
        reference.conv2d_weight_grad(x[:, :, ::-1], g, w.shape, *geometry),
    )
    np.testing.assert_array_equal(
        dispatch.max_pool(x.transpose(0, 1, 3, 2), (2, 2), (2, 2)),
        reference.max_pool(x.transpose(0, 1, 3, 2), (2, 2), (2, 2)),
    )


# ----------------------------------------------------------------------------- compiling


def run_python(code: str, **env) -> str:
    """Run ``code`` in a fresh interpreter with JIT on (whatever this process runs with)."""
    full_env = {**os.environ, "NUMBA_DISABLE_JIT": "0", **env}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


POOL_CHECK = """
    import numpy as np
    from nnc.kernels import pool, reference
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5))
    assert (pool.max_pool(x, (2, 2), (1, 1)) == reference.max_pool(x, (2, 2), (1, 1))).all()
    print(pool._max_pool.cached)
"""


def test_importing_nnc_does_not_import_numba_until_a_kernel_runs():
    out = run_python("""
        import sys
        import nnc, nnc.conv, nnc.kernels.dispatch
        print("numba" in sys.modules)
        import numpy as np
        nnc.backend.windows.max_pool(np.ones((1, 1, 2, 2)), 2)
        print("numba" in sys.modules)
    """)
    assert out.split() == ["False", "True"]


def test_kernels_are_cached_on_disk_in_a_writable_cache_directory(tmp_path):
    assert run_python(POOL_CHECK, NUMBA_CACHE_DIR=str(tmp_path)).split() == ["True"]
    assert any(p.suffix == ".nbi" for p in tmp_path.rglob("*"))  # Numba's cache index


def test_kernels_work_when_the_cache_directory_cannot_be_written(tmp_path):
    blocker = tmp_path / "a-file"  # a directory inside a file cannot be made, even by root
    blocker.write_text("")
    out = run_python(POOL_CHECK, NUMBA_CACHE_DIR=str(blocker / "cache"))
    assert out.split() in (["True"], ["False"])  # another directory, or none: it still runs
    if os.geteuid() != 0:
        read_only = tmp_path / "read-only"
        read_only.mkdir()
        read_only.chmod(0o555)
        assert run_python(POOL_CHECK, NUMBA_CACHE_DIR=str(read_only)).split() in (["True"], ["False"])
        assert not any(read_only.iterdir())


def test_kernels_compile_in_memory_when_no_directory_at_all_is_writable():
    refuse_every_directory = """
        import numba.core.caching as caching
        def refuse(self):
            raise PermissionError("read-only file system")
        caching._CacheLocator.ensure_cache_path = refuse
    """
    out = run_python(textwrap.dedent(refuse_every_directory) + textwrap.dedent(POOL_CHECK))
    assert out.split() == ["False"]


def test_kernels_run_as_python_and_dispatch_takes_numpy_without_the_jit():
    out = run_python(
        """
        import numpy as np
        from nnc.kernels import dispatch, im2col, jit, reference
        rng = np.random.default_rng(0)
        x, w = rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((3, 2, 2, 3))
        geometry = ((2, 1), (1, 0), (1, 1))
        assert (dispatch.conv2d(x, w, *geometry) == reference.conv2d(x, w, *geometry)).all()
        print(jit.jit_enabled(), im2col.im2col._compiled is None)  # dispatch left the kernel alone
        assert np.allclose(im2col.conv2d_forward(x, w, *geometry), reference.conv2d(x, w, *geometry))
        print(im2col.im2col._compiled is im2col.im2col.py_func)  # Numba handed back the Python
    """,
        NUMBA_DISABLE_JIT="1",
    )
    assert out.split() == ["False", "True", "True"]


def test_a_kernel_says_whether_it_is_compiled_and_cached():
    @kernel
    def add_one(x):
        return x + 1

    assert repr(add_one) == "<nnc kernel add_one: not compiled yet>"
    np.testing.assert_array_equal(add_one(np.zeros(2)), [1.0, 1.0])
    if jit_enabled():  # defined in a test function, its source file is ours: cached
        assert repr(add_one) in (
            "<nnc kernel add_one: compiled, cached on disk>",
            "<nnc kernel add_one: compiled, no disk cache>",
        )
    assert isinstance(add_one, Kernel)


@pytest.mark.parametrize(
    "name",
    [
        "nnc.kernels.jit",
        "nnc.kernels.reference",
        "nnc.kernels.im2col",
        "nnc.kernels.pool",
        "nnc.kernels.dispatch",
        "nnc.backend.windows",
        "nnc.backend.linalg",
    ],
)
def test_docstring_examples(name):
    """tests/test_doctests.py walks the nnc package folder (dsl/) only; these live elsewhere."""
    result = doctest.testmod(
        importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    assert result.failed == 0
