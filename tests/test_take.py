"""``take(table, indices)``, rows of a table (a token embedding), and its transpose ``untake``:
values against numpy's indexing, gradients that add up over repeated indices, errors for bad
indices with one message on every path, and compiled code that equals the interpreter."""

from __future__ import annotations

import re

import array_api_strict as xp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnc
from nnc.backend import ops
from nnc.backend.array_api import to_numpy
from nnc.backend.core import bind
from nnc.backend.staging import call_signature
from nnc.backend.structural import take_p, untake, untake_p
from nnc.testing import check_grads

TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-6)}


@st.composite
def tables_and_indices(draw):
    v = draw(st.integers(1, 6))
    rest = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3))
    ishape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    table = draw(hnp.arrays(dtype, (v,) + rest, elements=st.floats(-4, 4, width=32)))
    index_dtype = draw(st.sampled_from([np.int64, np.int32, np.uint8]))
    indices = draw(hnp.arrays(index_dtype, ishape, elements=st.integers(0, v - 1)))
    return table, indices


@settings(max_examples=40, deadline=None)
@given(tables_and_indices())
def test_values_are_numpys_indexing(case):
    table, indices = case
    got = ops.take(table, indices)
    assert got.dtype == table.dtype
    np.testing.assert_array_equal(got, table[indices])


@settings(max_examples=40, deadline=None)
@given(tables_and_indices())
def test_untake_adds_as_np_add_at(case):
    table, indices = case
    g = np.random.default_rng(0).standard_normal(indices.shape + table.shape[1:]).astype(table.dtype)
    want = np.zeros_like(table)
    np.add.at(want, indices, g)
    np.testing.assert_allclose(untake(g, indices, v=table.shape[0]), want, **TOL[table.dtype.type])


def test_repeated_indices_add_their_gradients():
    table = np.arange(12.0).reshape(4, 3)
    indices = np.array([[1, 1], [3, 1]])  # row 1 three times, row 3 once, rows 0 and 2 never
    w = np.arange(12.0).reshape(2, 2, 3) + 1
    g = nnc.grad(lambda t: nnc.sum(ops.take(t, indices) * w))(table)
    np.testing.assert_array_equal(g, [[0, 0, 0], w[0, 0] + w[0, 1] + w[1, 1], [0, 0, 0], w[1, 0]])


def test_second_derivatives_go_through_untake_and_take():
    table = np.linspace(-1, 1, 8).reshape(4, 2)
    indices = np.array([0, 2, 2])

    def energy(t):
        g = nnc.grad(lambda u: nnc.sum(ops.take(u, indices) ** 3))(t)
        return nnc.sum(g * g)

    check_grads(energy, table)
    # d/dt of sum(take(t)^3) is untake(3 take(t)^2): row 2 counts twice, row 1 and 3 never
    g = nnc.grad(lambda u: nnc.sum(ops.take(u, indices) ** 3))(table)
    np.testing.assert_allclose(g, [3 * table[0] ** 2, [0, 0], 6 * table[2] ** 2, [0, 0]])


# --------------------------------------------------------------------------- bad indices

TABLE = np.random.default_rng(1).standard_normal((27, 4)).astype(np.float32)
OUT_OF_RANGE = "take: index 30 is out of range for a table of 27 rows (indices must be 0..26)"
NEGATIVE = "take: index -2 is negative (indices must be 0..26)"
BAD = [
    (np.array([[3, 30], [0, 1]]), OUT_OF_RANGE),
    (np.array([[3, -2], [0, 1]]), NEGATIVE),
    (np.array([[3, -2], [0, 30]]), NEGATIVE),  # the negative one is named first
    (np.array([[3, 30], [0, 1]], np.uint8), OUT_OF_RANGE),
]


def embed_loss(table, indices):
    return nnc.sum(ops.take(table, indices) ** 2)


@pytest.mark.parametrize("indices, message", BAD, ids=["too-big", "negative", "both", "uint8"])
def test_bad_indices_give_one_shape_error_on_every_path(indices, message):
    exact = "^" + re.escape(message)
    with pytest.raises(nnc.ShapeError, match=exact):
        ops.take(TABLE, indices)
    with pytest.raises(nnc.ShapeError, match=exact):  # the indices traced: the graph's run refuses them
        nnc.grad(embed_loss)(TABLE, indices)
    with pytest.raises(nnc.ShapeError, match=exact):  # the indices known while tracing
        nnc.grad(lambda t: embed_loss(t, indices))(TABLE)
    with pytest.raises(nnc.ShapeError, match=exact):
        untake(np.ones(indices.shape + (4,), np.float32), indices, v=27)
    with pytest.raises(nnc.ShapeError, match=exact):
        ops.take(xp.asarray(TABLE), xp.asarray(indices))  # the array-API form


@pytest.mark.parametrize("indices, message", BAD, ids=["too-big", "negative", "both", "uint8"])
def test_compiled_code_refuses_bad_indices_with_the_interpreters_message(indices, message):
    exact = "^" + re.escape(message)
    for fn in (lambda t, i: ops.take(t, i), nnc.value_and_grad(embed_loss)):
        compiled = nnc.compile(fn)
        compiled.rerun_refused = False  # good indices: the generated code alone answers
        compiled(TABLE, np.array([[0, 26], [26, 5]], indices.dtype))
        compiled.rerun_refused = True
        (entry,) = compiled.specialisations.values()
        assert entry.fallbacks == () and entry.failed is None
        with pytest.raises(nnc.ShapeError, match=exact):
            compiled(TABLE, indices)
        # the generated code finds the index natively; nnc.compile reruns the interpreter for the message
        with pytest.raises(ValueError, match="^nnc: index out of range$"):
            entry.run(*call_signature((TABLE, indices))[1])


def test_compiled_untake_refuses_bad_indices_natively():
    compiled = nnc.compile(lambda g, i: bind(untake_p, g, i, v=27))
    compiled.rerun_refused = False
    compiled(np.ones((3, 4)), np.array([0, 26, 3]))
    compiled.rerun_refused = True
    (entry,) = compiled.specialisations.values()
    assert entry.fallbacks == () and entry.failed is None
    for bad, message in [(np.array([0, 30, 3]), OUT_OF_RANGE), (np.array([0, -2, 3]), NEGATIVE)]:
        with pytest.raises(ValueError, match="^nnc: index out of range$"):
            entry.run(np.ones((3, 4)), bad)
        with pytest.raises(nnc.ShapeError, match="^" + re.escape(message)):
            compiled(np.ones((3, 4)), bad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.bool_])
def test_indices_that_are_not_integers_are_refused_naming_their_dtype(dtype):
    indices = np.array([0.0, 1.0]).astype(dtype)
    message = f"^take: indices must be integers, got dtype {np.dtype(dtype)}"
    with pytest.raises(nnc.ShapeError, match=message):
        ops.take(TABLE, indices)
    with pytest.raises(nnc.ShapeError, match=message):
        nnc.grad(embed_loss)(TABLE, indices)
    with pytest.raises(nnc.ShapeError, match=message):
        nnc.compile(embed_loss)(TABLE, indices)


def test_other_misuse_is_a_shape_error():
    with pytest.raises(nnc.ShapeError, match="^take: the table must have at least one axis"):
        ops.take(np.float32(1.0), np.array([0]))
    with pytest.raises(nnc.ShapeError, match=r"^untake: values of shape \(3, 4\) do not start with"):
        untake(np.ones((3, 4)), np.array([[0, 1]]), v=5)
    with pytest.raises(nnc.ShapeError, match=r"it has no row to take"):
        ops.take(np.ones((0, 3)), np.array([0]))
    with pytest.raises(nnc.ShapeError, match=r"a table of 1 row \(indices must be 0\.\.0\)"):
        ops.take(np.ones((1, 3)), np.array([1]))


# --------------------------------------------------------------------------- compiled = interpreted


@settings(max_examples=15, deadline=None)
@given(tables_and_indices())
def test_compiled_values_and_gradients_equal_the_interpreters(case):
    table, indices = case
    w = np.linspace(-1, 1, int(np.prod(indices.shape + table.shape[1:]))).reshape(
        indices.shape + table.shape[1:]
    )
    w = w.astype(table.dtype)

    def loss(t, i):
        return nnc.sum(ops.take(t, i) * w) + nnc.sum(ops.take(t, i) ** 2)

    step = nnc.value_and_grad(loss)
    compiled = nnc.compile(step)
    compiled.rerun_refused = False  # the generated code alone answers
    got, want = compiled(table, indices), step(table, indices)
    (entry,) = compiled.specialisations.values()
    assert entry.fallbacks == () and entry.failed is None
    for g, e in zip(nnc.tree_leaves(got), nnc.tree_leaves(want)):
        np.testing.assert_allclose(g, e, **TOL[table.dtype.type])


def test_an_embedding_compiles_natively_and_agrees_with_the_interpreter():
    rng = np.random.default_rng(2)
    table = rng.standard_normal((27, 16)).astype(np.float32)
    w = rng.standard_normal((16, 27)).astype(np.float32)
    tokens = rng.integers(0, 27, (8, 5))

    def loss(params, tokens):
        h = ops.take(params["table"], tokens)  # (8, 5, 16)
        return nnc.mean(ops.log_softmax(nnc.matmul(h, params["w"])))

    step = nnc.value_and_grad(loss)
    compiled = nnc.compile(step)
    compiled.rerun_refused = False  # the generated code alone answers
    params = {"table": table, "w": w}
    got, want = compiled(params, tokens), step(params, tokens)
    (entry,) = compiled.specialisations.values()
    assert entry.fallbacks == () and entry.failed is None and "objmode" not in entry.source
    for g, e in zip(nnc.tree_leaves(got), nnc.tree_leaves(want)):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def test_the_primitives_carry_their_shapes_when_traced():
    def fn(t, i):
        y = ops.take(t, i)
        assert y.shape == (2, 3, 5) and y.dtype == np.float32
        z = untake(y, i, v=7)
        assert z.shape == (7, 5)
        return z

    out = nnc.compile(fn)(np.ones((7, 5), np.float32), np.zeros((2, 3), np.int64))
    np.testing.assert_array_equal(out[0], np.full(5, 6.0))
    assert take_p.abstract is not None and untake_p.abstract is not None


def test_the_array_api_scatter_keeps_non_finite_entries_in_their_rows():
    g = np.array([[1.0, np.nan], [2.0, np.inf], [3.0, -np.inf], [4.0, 5.0]])
    indices = np.array([0, 2, 2, 1])
    with np.errstate(invalid="ignore"):  # numpy: nan in row 0, inf - inf = nan in row 2
        want = untake(g, indices, v=4)
        got = to_numpy(untake(xp.asarray(g), xp.asarray(indices), v=4))
    np.testing.assert_array_equal(got, want)
    assert np.isfinite(want[1]).all() and np.isfinite(want[3]).all()
    finite = np.arange(8.0).reshape(4, 2)  # and the one-product path for finite values
    np.testing.assert_array_equal(
        to_numpy(untake(xp.asarray(finite), xp.asarray(indices), v=4)), untake(finite, indices, v=4)
    )
