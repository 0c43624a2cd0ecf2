"""padded(...): batches of sequences of unequal lengths. The real steps of a padded batch equal
each sequence run alone, whatever the padding holds; gradients match finite differences; bad
lengths are one nnc error on every path (interpreted, traced, compiled); and a padded model is
trained, compiled, drawn, summarised, checkpointed and generated from like any other.
"""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnc
from nnc import (
    Embedding,
    Index,
    Input,
    LayerNorm,
    Linear,
    PositionalEmbedding,
    SelfAttention,
    Seq,
    padded,
    relu,
    residual,
    softmax,
)
from nnc.attention import key_mask
from nnc.draw import to_dot
from nnc.testing import check_grads

FEW = settings(max_examples=20, deadline=None)


def encoder(d=8, vocab=6, heads=2, causal=False):
    """A classifier-style encoder: attention that sees the whole sequence, so padding matters."""
    return (
        Embedding(vocab, d)
        >> PositionalEmbedding(max_len=7, dim=d)
        >> residual(LayerNorm(d) >> SelfAttention(d, heads=heads, causal=causal))
        >> residual(LayerNorm(d) >> Linear(d, 2 * d) >> relu >> Linear(2 * d, d))
        >> Linear(d, vocab)
        >> softmax
    )


def test_the_padded_type_takes_sequences_and_their_lengths():
    model = padded(encoder())
    assert repr(model.signature) == "(Seq[Index[6]], Index[t + 1]) -> Seq[Vec[6]]"
    assert model.param_count == encoder().param_count


def test_the_key_mask_keeps_the_first_lengths_steps():
    keep = key_mask(np.array([0, 2, 4]), 3, 4).reshape(3, 4)
    assert keep.tolist() == [[False] * 4, [True, True, False, False], [True] * 4]


@FEW
@given(data=st.data(), causal=st.booleans())
def test_real_steps_equal_each_sequence_run_alone_whatever_the_padding_holds(data, causal):
    draw = data.draw
    heads = draw(st.integers(1, 2))
    model = encoder(d=4 * heads, heads=heads, causal=causal)
    params = model.init(seed=draw(st.integers(0, 9)), dtype=np.float64)
    batch, steps = draw(st.integers(1, 4)), draw(st.integers(1, 7))
    lengths = np.array(draw(st.lists(st.integers(1, steps), min_size=batch, max_size=batch)))
    rng = np.random.default_rng(draw(st.integers(0, 99)))
    tokens = rng.integers(0, 6, (batch, steps))
    junk = np.where(np.arange(steps) < lengths[:, None], tokens, rng.integers(0, 6, (batch, steps)))
    out = padded(model)(params, (tokens, lengths))
    other = padded(model)(params, (junk, lengths))
    for b, n in enumerate(lengths):
        alone = model(params, tokens[b : b + 1, :n])[0]
        np.testing.assert_allclose(out[b, :n], alone, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(other[b, :n], alone, rtol=1e-12, atol=1e-14)
    short = [b for b, n in enumerate(lengths) if n < steps]
    if not causal and short and not np.array_equal(junk, tokens):
        # without the mask the padding leaks into the real steps of some shortened sequence
        leaked = model(params, junk)
        unmasked = model(params, tokens)
        changed = [b for b in short if not np.array_equal(junk[b], tokens[b])]
        assert changed and any(
            not np.allclose(leaked[b, : lengths[b]], unmasked[b, : lengths[b]]) for b in changed
        )


@FEW
@given(data=st.data(), causal=st.booleans())
def test_padded_attention_gradients_match_finite_differences(data, causal):
    draw = data.draw
    heads = draw(st.integers(1, 2))
    d = heads * draw(st.integers(1, 2))
    layer = padded(SelfAttention(d, heads=heads, causal=causal))
    params = layer.init(seed=draw(st.integers(0, 9)), dtype=np.float64)
    batch, steps = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    lengths = np.array(draw(st.lists(st.integers(0, steps), min_size=batch, max_size=batch)))
    x = np.random.default_rng(draw(st.integers(0, 99))).uniform(-1, 1, (batch, steps, d))
    real = (np.arange(steps) < lengths[:, None])[..., None]
    check_grads(lambda p, x: nnc.sum(layer(p, (x, lengths)) ** 2 * real), params, x)


def test_second_derivatives_of_padded_attention_match_finite_differences():
    layer = padded(SelfAttention(4, heads=2))
    params = layer.init(seed=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 3, 4)) * 0.5
    lengths = np.array([2, 3])

    def gradient_energy(x):
        g = nnc.grad(lambda y: nnc.sum(layer(params, (y, lengths)) ** 2))(x)
        return nnc.sum(g * g)

    check_grads(gradient_energy, x, eps=1e-5, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- bad input


def test_bad_lengths_are_nnc_errors_naming_the_padded_model():
    model = padded(encoder())
    params, tokens = model.init(seed=0), np.zeros((2, 5), np.int64)
    with pytest.raises(
        nnc.ShapeError,
        match=r"input\[1\], the lengths, of padded\(.* \(created at \S+test_padding.py:\d+\) holds 6 at "
        r"index \(1,\), out of range for sequences of 5 steps: a length is 0..5",
    ):
        model(params, (tokens, np.array([2, 6])))
    with pytest.raises(nnc.ShapeError, match=r"holds -1 at index \(0,\)"):
        model(params, (tokens, np.array([-1, 2])))
    with pytest.raises(nnc.ShapeError, match="has dtype float64, but lengths are integers"):
        model(params, (tokens, np.array([2.0, 3.0])))
    with pytest.raises(nnc.ShapeError, match=r"disagree on the batch axis \(batch sizes \[2, 3\]\)"):
        model(params, (tokens, np.array([1, 2, 3])))
    with pytest.raises(nnc.ShapeError, match="expected a tuple of 2 arrays"):
        model(params, tokens)


def test_padded_refuses_models_it_cannot_mask():
    with pytest.raises(
        nnc.TypeMismatch,
        match=r"padded\(Linear\(3 -> 3\)\) at .*: padded takes a stateless model of sequences",
    ):
        padded(Linear(3, 3))
    with pytest.raises(nnc.TypeMismatch, match="has no SelfAttention, the one layer a padding mask changes"):
        padded(Input(Seq[Index[4]]) >> Embedding(4, 3) >> Linear(3, 4))
    with pytest.raises(nnc.TypeMismatch, match="padded takes a model, got"):
        padded(np.tanh)


# ----------------------------------------------------------------------------- every path


def _data(n=12, steps=7, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 6, (n, steps))
    lengths = rng.integers(1, steps + 1, n)
    targets = np.where(np.arange(steps) < lengths[:, None], np.roll(tokens, -1, axis=1), -1)
    return tokens, lengths, targets


def _loss(p, y):
    return nnc.cross_entropy(p, y, ignore=-1)


def test_a_compiled_padded_step_equals_the_interpreted_one_and_refuses_the_same_lengths():
    model = padded(encoder())
    params = model.init(seed=0)
    tokens, lengths, targets = _data()
    step = nnc.train_step(model, loss=_loss, opt=nnc.sgd(0.1))
    fast = nnc.compile(step)
    fast.rerun_refused = False  # the generated code alone answers: a refusal fails the test
    state = step.opt.init(params)
    want = step(params, state, (tokens, lengths), targets)
    got = fast(params, state, (tokens, lengths), targets)
    for g, w in zip(nnc.tree_leaves(got), nnc.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=2e-5, atol=2e-6)
    (entry,) = fast.specialisations.values()
    assert entry.fallbacks == () and entry.failed is None
    bad = lengths.copy()
    bad[4] = 8
    fast.rerun_refused = True  # now its refusal reruns the interpreter, for the message
    with pytest.raises(nnc.ShapeError) as interpreted:
        model(params, (tokens, bad))
    assert re.search(
        r"holds 8 at index \(4,\), out of range for sequences of 7 steps", str(interpreted.value)
    )
    for run in (step, fast):
        with pytest.raises(nnc.ShapeError) as traced:
            run(params, state, (tokens, bad), targets)
        assert str(traced.value) == str(interpreted.value)


def test_fit_trains_a_padded_model_and_padding_does_not_count_in_the_loss():
    model = padded(encoder())
    params = model.init(seed=0)
    tokens, lengths, targets = _data(n=32)
    probabilities = model(params, (tokens, lengths))
    real = targets >= 0
    by_hand = -np.mean(
        np.log(np.take_along_axis(probabilities, np.maximum(targets, 0)[..., None], -1)[..., 0][real])
    )
    np.testing.assert_allclose(float(_loss(probabilities, targets)), by_hand, rtol=1e-5)
    trained, history = nnc.fit(
        model, params, ((tokens, lengths), targets), loss=_loss, opt=nnc.adam(1e-2), epochs=20, progress=False
    )
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    again, _ = nnc.fit(
        model, params, ((tokens, lengths), targets), loss=_loss, opt=nnc.adam(1e-2), epochs=20, progress=False
    )
    for a, b in zip(nnc.tree_leaves(trained), nnc.tree_leaves(again)):
        np.testing.assert_array_equal(a, b)


def test_a_padded_model_is_drawn_summarised_checkpointed_and_generates(tmp_path):
    model = padded(encoder(causal=True))
    dot = to_dot(model)
    assert re.search(r"input -> n\d+ \[label=<lengths>, style=dashed", dot)
    assert dot.count("label=<lengths>") == 1 and "padded" in dot
    table = str(nnc.summary(model))
    assert table.splitlines()[2].split()[1:3] == ["padded", "(Seq[Index[6]],"]
    params = model.init(seed=0)
    path = tmp_path / "padded.nnc"
    nnc.save(path, model, params)
    loaded = nnc.load(path, model)
    tokens, lengths, _ = _data()
    np.testing.assert_array_equal(model(loaded, (tokens, lengths)), model(params, (tokens, lengths)))
    prompt = np.array([1, 2, 3])
    np.testing.assert_array_equal(
        nnc.generate(model, params, prompt, 3, temperature=0),
        nnc.generate(model.children[0], params, prompt, 3, temperature=0),
    )


def test_padded_attention_runs_on_the_array_api_backend():
    xp = pytest.importorskip("array_api_strict")
    device = xp.Device("device1")
    model = padded(encoder())
    params = model.init(seed=0, dtype=np.float64)
    tokens, lengths, _ = _data()
    expected = model(params, (tokens, lengths))
    on_device = nnc.tree_map(lambda a: xp.asarray(a, device=device), params)
    got = model(on_device, (xp.asarray(tokens, device=device), xp.asarray(lengths, device=device)))
    assert got.device == device
    np.testing.assert_allclose(
        np.asarray(xp.asarray(got, device=xp.Device("CPU_DEVICE"))), expected, rtol=1e-12
    )
    with pytest.raises(nnc.ShapeError, match="out of range for sequences of 7 steps"):
        model(on_device, (xp.asarray(tokens, device=device), xp.asarray(lengths + 7, device=device)))
