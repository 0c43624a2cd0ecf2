"""Every differentiable primitive's gradient against central finite differences (float64),
over shapes and values drawn by hypothesis."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnc
from nnc.backend import ops
from nnc.backend.attention import attention, attention_grads, attention_probs, scores_grad
from nnc.backend.checks import check_finite, check_probabilities
from nnc.backend.core import PRIMITIVES
from nnc.testing import check_grads

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
vectorish = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
small = st.floats(-2, 2, width=64)
positive = st.floats(0.2, 3, width=64)
away_from_zero = st.floats(0.1, 2, width=64).flatmap(lambda v: st.sampled_from([v, -v]))


def arr(draw, shape, elements=small, unique=False):
    return draw(hnp.arrays(np.float64, shape, elements=elements, unique=unique))


def trailing(shape):
    """A shape that broadcasts against ``shape`` under nnc's strict rules."""
    return st.sampled_from([shape, shape[1:], (), tuple(1 if i == 0 else d for i, d in enumerate(shape))])


def unary(fn, elements=small, shape_strategy=shapes, unique=False):
    def make(draw):
        return fn, (arr(draw, draw(shape_strategy), elements, unique),)

    return make


def binary(fn, b_elements=small):
    def make(draw):
        sa = draw(vectorish)
        sb = draw(trailing(sa))
        a, b = arr(draw, sa), arr(draw, sb, b_elements)
        return fn, ((a, b) if draw(st.booleans()) else (b, a)) if b_elements is small else (a, b)

    return make


def matmul_case(draw):
    n, k, m, batch = (draw(st.integers(1, 4)) for _ in range(4))
    kind = draw(st.sampled_from(["mm", "mv", "vm", "vv", "bm", "bb", "mb", "b1", "heads"]))
    shapes = {
        "mm": ((n, k), (k, m)),
        "mv": ((n, k), (k,)),
        "vm": ((k,), (k, m)),
        "vv": ((k,), (k,)),
        "bm": ((batch, n, k), (k, m)),
        "bb": ((batch, n, k), (batch, k, m)),
        "mb": ((n, k), (batch, k, m)),
        "b1": ((batch, n, k), (1, k, m)),  # a size-1 batch axis broadcasts
        "heads": ((batch, 2, n, k), (batch, 2, k, m)),  # (B, H, T, hd) @ (B, H, hd, T), attention's
    }[kind]
    return nnc.matmul, tuple(arr(draw, s) for s in shapes)


# Distinct values at least 0.25 apart: finite differences must not cross a tie of max.
spaced = st.integers(-40, 40).map(lambda i: i / 4)


def reduce_case(fn, elements=small, unique=False):
    def make(draw):
        shape = draw(vectorish)
        axis = draw(st.sampled_from([None, -1, 0] + ([(0, len(shape) - 1)] if len(shape) > 1 else [])))
        keepdims = draw(st.booleans())
        return (lambda x: fn(x, axis=axis, keepdims=keepdims)), (arr(draw, shape, elements, unique),)

    return make


def softmax_case(fn):
    def make(draw):
        shape = draw(vectorish)
        axis = draw(st.integers(-len(shape), len(shape) - 1))
        return (lambda x: fn(x, axis=axis)), (arr(draw, shape),)

    return make


def reshape_case(draw):
    shape = draw(vectorish)
    return (lambda x: ops.reshape(x, (-1,))[::-1].reshape(shape[::-1])), (arr(draw, shape),)


def transpose_case(draw):
    shape = draw(vectorish)
    perm = draw(st.permutations(range(len(shape))))
    return (lambda x: ops.transpose(x, perm)), (arr(draw, shape),)


def getitem_case(draw):
    shape = draw(vectorish)
    index = tuple(draw(st.sampled_from([slice(None), slice(0, 1), 0, slice(None, None, -1)])) for _ in shape)
    return (lambda x: x[index]), (arr(draw, shape),)


def fancy_getitem_case(draw):
    n = draw(st.integers(1, 4))
    idx = np.array(draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=6)))
    return (lambda x: x[idx]), (arr(draw, (n, 2)),)


def concat_case(draw):
    shape = draw(vectorish)
    axis = draw(st.integers(0, len(shape) - 1))
    other = tuple(d + 1 if i == axis else d for i, d in enumerate(shape))
    return (lambda a, b: ops.concat([a, b], axis=axis)), (arr(draw, shape), arr(draw, other))


def pick_case(draw):
    b, k = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    labels = np.array(draw(st.lists(st.integers(0, k - 1), min_size=b, max_size=b)))
    return (lambda x: nnc.pick(x, labels)), (arr(draw, (b, k)),)


def unpick_case(draw):
    b, k = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    labels = np.array(draw(st.lists(st.integers(0, k - 1), min_size=b, max_size=b)))
    # pick's gradient rule is unpick: differentiating the gradient exercises unpick's rule
    inner = nnc.grad(lambda y, w: (nnc.pick(y, labels) * w).sum())
    return (lambda x, w: (inner(x, w) ** 2 * x).sum()), (arr(draw, (b, k)), arr(draw, (b,)))


def take_indices(draw, v):
    """Integer indices of 0 to 2 axes into a table of ``v`` rows, repeats likely."""
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=4))
    return draw(hnp.arrays(np.int64, shape, elements=st.integers(0, v - 1)))


def take_case(draw):
    v = draw(st.integers(1, 4))
    rest = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3))
    # the indices are an argument: traced, as a model's tokens are
    return (lambda table, indices: ops.take(table, indices)), (arr(draw, (v,) + rest), take_indices(draw, v))


def untake_case(draw):
    v = draw(st.integers(1, 4))
    indices = take_indices(draw, v)
    rest = draw(hnp.array_shapes(min_dims=0, max_dims=1, min_side=1, max_side=3))
    # take's gradient rule is untake, whose rule is take: this differentiates untake's
    return (lambda g: ops.untake(g, indices, v=v)), (arr(draw, indices.shape + rest),)


def broadcast_case(draw):
    shape = draw(vectorish)
    return (lambda x: ops.broadcast_to(x, (3,) + shape) * np.arange(3.0).reshape((3,) + (1,) * len(shape))), (
        arr(draw, shape),
    )


def sum_to_case(draw):
    shape = draw(vectorish)
    return (lambda x: ops.sum_to(x, shape[1:] or ())), (arr(draw, shape),)


def cast_case(draw):
    return (lambda x: ops.cast(ops.cast(x, np.float32), np.float64) * x), (arr(draw, draw(shapes)),)


def where_case(draw):
    shape = draw(vectorish)
    cond = draw(hnp.arrays(np.bool_, shape))
    return (lambda a, b: nnc.where(cond, a, b) * a), (arr(draw, shape), arr(draw, shape))


def probabilities_case(draw):
    shape = draw(vectorish)
    p = ops.softmax(arr(draw, shape))
    return (lambda q: check_probabilities(q, what="test") * q), (p,)


def attention_case(part: str):
    """One of the attention primitives over drawn heads, steps and masks (causal, a padding
    mask, both): ``"probs"``, ``"scores_grad"`` (at those probabilities), ``"attention"``, or
    ``"grads"`` (a weighted sum of a drawn, non-empty subset of its three gradients, so that
    the rule also meets cotangents that are zero), its probabilities an input of their own or,
    with ``"grads_at_probs"``, made from ``q`` and ``k``.

    ``"grads_at_probs"`` is the one for second derivatives: with the probabilities free, the
    energy is a polynomial of high degree in them whose slope can be exactly 0 where its third
    derivative is large, and central differences then report that third derivative."""

    def make(draw):
        lead = draw(st.sampled_from([(), (2,), (2, 2)]))
        steps, size = draw(st.integers(1, 4)), draw(st.integers(1, 3))
        causal, scale = draw(st.booleans()), draw(st.sampled_from([1.0, 0.5]))
        keep = ()
        if lead and draw(st.booleans()):
            keep = (draw(hnp.arrays(np.bool_, (*lead[:1], *(1,) * len(lead[1:]), 1, steps))),)
        q, k = arr(draw, (*lead, steps, size)), arr(draw, (*lead, steps, size))
        if part == "probs":
            return (lambda q, k: attention_probs(q, k, *keep, causal=causal, scale=scale)), (q, k)
        p = attention_probs(q, k, *keep, causal=causal, scale=scale)
        if part == "scores_grad":
            return (lambda g, p: scores_grad(g, p, *keep, causal=causal, scale=scale)), (
                arr(draw, p.shape),
                p,
            )
        v = arr(draw, (*lead, steps, draw(st.integers(1, 3))))
        if part == "attention":
            return (lambda q, k, v: attention(q, k, v, *keep, causal=causal, scale=scale)), (q, k, v)
        used = draw(st.lists(st.sampled_from([0, 1, 2]), min_size=1, max_size=3, unique=True))
        weights = [arr(draw, x.shape) for x in (q, k, v)]

        def weighted_grads(q, k, v, p, g):
            grads = attention_grads(q, k, v, p, g, *keep, causal=causal, scale=scale)
            return sum(ops.sum(grads[i] * weights[i]) for i in used)

        def weighted_grads_at_probs(q, k, v, g):
            return weighted_grads(q, k, v, attention_probs(q, k, *keep, causal=causal, scale=scale), g)

        g = arr(draw, (*lead, steps, v.shape[-1]))
        if part == "grads_at_probs":
            return weighted_grads_at_probs, (q, k, v, g)
        return weighted_grads, (q, k, v, p, g)

    return make


CASES = {
    "attention_probs": attention_case("probs"),
    "scores_grad": attention_case("scores_grad"),
    "attention": attention_case("attention"),
    "attention_grads": attention_case("grads"),
    "attention_grads_at_probs": attention_case("grads_at_probs"),
    "check_finite": unary(lambda x: check_finite(x, what="test") * x),
    "check_probabilities": probabilities_case,
    "add": binary(lambda a, b: a + b),
    "sub": binary(lambda a, b: a - b),
    "mul": binary(lambda a, b: a * b),
    "div": binary(lambda a, b: a / b, b_elements=away_from_zero),
    "neg": unary(lambda x: -x),
    "integer_pow": unary(lambda x: x**3),
    "pow": binary(lambda a, b: ops.power(a * a + 0.5, b)),
    "exp": unary(nnc.exp),
    "log": unary(nnc.log, positive),
    "sqrt": unary(nnc.sqrt, positive),
    "abs": unary(nnc.absolute, away_from_zero),
    "tanh": unary(lambda x: nnc.tanh(x)),
    "logistic": unary(lambda x: nnc.logistic(x)),
    "relu": unary(lambda x: nnc.relu(x), away_from_zero),
    "softmax": softmax_case(ops.softmax),
    "log_softmax": softmax_case(ops.log_softmax),
    "dot": matmul_case,
    "matmul": matmul_case,
    "sum": reduce_case(ops.sum),
    "max": reduce_case(ops.max, spaced, unique=True),
    "reshape": reshape_case,
    "transpose": transpose_case,
    "getitem": getitem_case,
    "unindex": fancy_getitem_case,
    "concat": concat_case,
    "pick": pick_case,
    "unpick": unpick_case,
    "take": take_case,
    "untake": untake_case,
    "broadcast_to": broadcast_case,
    "sum_to": sum_to_case,
    "cast": cast_case,
    "where": where_case,
}

# A round trip through float32 is only differentiable numerically with a coarse step;
# the function is quadratic, so central differences stay exact at that step.
TOLERANCES = {"cast": dict(eps=1e-2, rtol=1e-4, atol=1e-5)}


def all_cases() -> dict:
    """These cases and those of every other ``test_*_gradients.py`` (one per feature area)."""
    cases = dict(CASES)
    for path in sorted(Path(__file__).parent.glob("test_*gradients.py")):
        if path.name != Path(__file__).name:
            spec = importlib.util.spec_from_file_location(f"_cases_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            cases.update(getattr(module, "CASES", {}))
    return cases


def test_every_differentiable_primitive_has_a_gradient_test():
    differentiable = {
        name for name, p in PRIMITIVES.items() if not p.nondiff and not name.startswith("test_")
    }
    assert differentiable - set(all_cases()) == set()
    assert all(PRIMITIVES[name].vjp is not None for name in differentiable)


@pytest.mark.parametrize("name", sorted(CASES))
@given(data=st.data())
def test_gradient_matches_finite_differences(name, data):
    fn, args = data.draw(st.composite(lambda d: CASES[name](d))())
    check_grads(fn, *args, **TOLERANCES.get(name, {}))


@pytest.mark.parametrize(
    "name",
    [
        "tanh",
        "logistic",
        "exp",
        "mul",
        "softmax",
        "log_softmax",
        "dot",
        "max",
        "take",
        "untake",
        "attention_probs",
        "scores_grad",
        "attention",  # its gradient graph holds attention_grads, so this differentiates that rule too
    ],
)
@given(data=st.data())
def test_second_derivatives_match_finite_differences(name, data):
    """Gradients of gradients: the gradient graph is itself differentiated."""
    fn, args = data.draw(st.composite(lambda d: CASES[name](d))())

    def gradient_energy(*xs):
        g = nnc.grad(lambda *ys: ops.sum(fn(*ys) * fn(*ys)), 0)(*xs)
        return ops.sum(g * g)

    # a larger step: these energies reach thousands, and rounding noise grows as 1/eps
    check_grads(gradient_energy, *args, eps=1e-5, rtol=1e-4, atol=1e-6)
