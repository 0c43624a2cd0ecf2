"""nnc.compile of a sequence model's training step: a small transformer (token and position
embeddings, one block of causal self-attention and a GELU MLP, with dropout) compiled equals
the interpreted step to float rounding, with no part left to numpy (pick and unpick of its
(batch, time, vocab) predictions included), and long generated bodies are cut into parts that
repeated code shares.
"""

import re
import warnings

import numpy as np
import pytest

import nnc
from nnc import (
    Dropout,
    Embedding,
    LayerNorm,
    Linear,
    PositionalEmbedding,
    SelfAttention,
    gelu,
    repeat,
    residual,
    softmax,
)
from nnc.backend import numba_codegen

TOL = dict(rtol=2e-5, atol=2e-6)  # float32: sums in another order, vectorising exp and erf


def _transformer(d: int = 8, heads: int = 2, vocab: int = 5, seq: int = 4, blocks: int = 1):
    block = residual(LayerNorm(d) >> SelfAttention(d, heads=heads, causal=True) >> Dropout(0.1)) >> residual(
        LayerNorm(d) >> Linear(d, 4 * d) >> gelu >> Linear(4 * d, d)
    )
    return (
        Embedding(vocab, d)
        >> PositionalEmbedding(max_len=seq, dim=d)
        >> repeat(block, blocks)
        >> LayerNorm(d)
        >> Linear(d, vocab)
        >> softmax
    )


@pytest.fixture(scope="module")
def step_and_args():
    lm = _transformer()
    params = lm.init(seed=0)
    x = np.random.default_rng(0).integers(0, 5, (2, 4))
    # plain SGD: the key projection's bias has a gradient of exactly 0 in exact arithmetic
    # (softmax ignores a shift of a row of scores), so it is rounding noise in both paths, which
    # Adam's first steps scale up to the learning rate, of either sign; SGD keeps it noise
    step = nnc.train_step(lm, loss=nnc.cross_entropy, opt=nnc.sgd(0.1))
    return step, (params, step.opt.init(params), x, x, {}, nnc.key(0))


def test_a_compiled_transformer_step_equals_the_interpreted_one(step_and_args):
    step, args = step_and_args
    fast = nnc.compile(step)
    fast.rerun_refused = False  # the generated code alone answers: a refusal fails the test
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "no compiled form" warning: nothing falls back
        got = fast(*args)
    (entry,) = fast.specialisations.values()
    assert entry.fallbacks == () and entry.failed is None
    want = step(*args)
    for g, w in zip(nnc.tree_leaves(got), nnc.tree_leaves(want)):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, **TOL)
    # a second step from the first one's parameters
    again = (got[0], got[1], *args[2:])
    for g, w in zip(nnc.tree_leaves(fast(*again)), nnc.tree_leaves(step(*again))):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), **TOL)


def test_a_label_out_of_range_raises_the_interpreters_error(step_and_args):
    step, (params, state, x, _, stats, key) = step_and_args
    fast = nnc.compile(step)
    bad = x.copy()
    bad[1, 2] = 7
    with pytest.raises(
        nnc.DomainError, match=r"^cross_entropy: label 7 at index \(1, 2\) is out of range"
    ) as interpreted:
        step(params, state, x, bad, stats, key)
    with pytest.raises(type(interpreted.value), match=re.escape(str(interpreted.value))):
        fast(params, state, x, bad, stats, key)


def test_a_token_out_of_range_names_the_embedding_in_every_path(step_and_args):
    step, (params, state, x, y, stats, key) = step_and_args
    fast = nnc.compile(step)
    bad = x.copy()
    bad[1, 2] = 9
    want = (
        r"input of embedding_0: Embedding\(5 -> 8\) \(created at \S+test_compile_sequence.py:\d+\) "
        r"holds 9 at index \(1, 2\), out of range for Index\[5\]: indices must be 0..4"
    )
    with pytest.raises(nnc.ShapeError) as interpreted:
        step.model(params, bad, key=key)
    for run in (step, fast):
        with pytest.raises(nnc.ShapeError) as traced:
            run(params, state, bad, y, stats, key)
        assert str(traced.value) == str(interpreted.value)
    assert re.match(want, str(interpreted.value))


def test_long_bodies_are_parts_and_repeated_parts_are_written_once(monkeypatch):
    monkeypatch.setattr(numba_codegen, "_PART_EVERY", 1)  # a part may end before any equation
    lines = [f"    w{k} = np.empty((3,), np.float32)" for k in range(3)]

    def body(k):  # the same code under other names, twice per "layer"
        return [
            f"    t{k} = np.empty((4,), np.float32)",
            "    for i in range(4):",
            f"        t{k}[i] = v0[0] * np.float32({k % 2})",
        ]

    module = numba_codegen.GeneratedModule()
    writer = numba_codegen.FunctionWriter.__new__(numba_codegen.FunctionWriter)
    writer.module, writer.fn_name = module, "compiled"
    writer.lines = lines + [line for k in range(40) for line in body(k)]
    starts = [0, 1, 2] + [3 + 3 * k for k in range(40)]
    calls = writer._split(["v0"], starts, "    return (t39,)")
    assert len(calls) > 1
    assert len(module.functions) < len(calls)  # alike parts share a function
    namespace: dict = {"np": np}
    exec("\n".join(module.functions), namespace)
    exec("def compiled(v0):\n" + "\n".join(calls) + "\n    return (t39,)", namespace)
    np.testing.assert_array_equal(namespace["compiled"](np.ones(3, np.float32))[0], np.ones(4, np.float32))
