"""cross_entropy over sequences: labels of shape (batch, time), and ``ignore`` for padding."""

import functools

import numpy as np
import pytest

import nnc
from nnc import Embedding, Index, Input, Linear, Seq, softmax
from nnc.testing import check_grads

RNG = np.random.default_rng(0)
LOGITS = RNG.standard_normal((3, 5, 4))
LABELS = np.array([[1, 2, 0, -1, -1], [3, 3, 1, 2, 0], [0, -1, -1, -1, -1]])
KEPT = LABELS != -1


def probabilities(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_ignored_positions_are_left_out_of_the_mean():
    p = probabilities(LOGITS)
    expected = -np.log(p[KEPT, LABELS[KEPT]]).mean()
    assert float(nnc.cross_entropy(p, LABELS, ignore=-1)) == pytest.approx(expected, rel=1e-12)
    assert float(nnc.cross_entropy(LOGITS, LABELS, from_logits=True, ignore=-1)) == pytest.approx(
        expected, rel=1e-12
    )
    # the kept positions alone, as labels of shape (batch,): the same number
    assert float(nnc.cross_entropy(p[KEPT], LABELS[KEPT])) == pytest.approx(expected, rel=1e-12)


def test_without_ignored_labels_it_is_the_plain_mean():
    p, labels = probabilities(LOGITS), np.where(KEPT, LABELS, 0)
    assert float(nnc.cross_entropy(p, labels, ignore=-1)) == float(nnc.cross_entropy(p, labels))


def test_gradients_match_finite_differences_and_vanish_at_ignored_positions():
    check_grads(lambda z: nnc.cross_entropy(z, LABELS, from_logits=True, ignore=-1), LOGITS)
    g = nnc.grad(lambda z: nnc.cross_entropy(z, LABELS, from_logits=True, ignore=-1))(LOGITS)
    assert np.all(g[~KEPT] == 0) and np.all(np.abs(g[KEPT]).sum(axis=-1) > 0)


def test_traced_value_equals_the_eager_one_through_softmax():
    model = Input(Seq[Index[6]]) >> Embedding(6, 8) >> Linear(8, 4) >> softmax
    params = model.init(seed=0, dtype=np.float64)
    x = RNG.integers(0, 6, (3, 5))
    objective = lambda p: nnc.cross_entropy(model(p, x), LABELS, ignore=-1)  # noqa: E731
    value, _ = nnc.value_and_grad(objective)(params)
    assert float(value) == pytest.approx(float(objective(params)), rel=1e-12)
    check_grads(objective, params)


def test_a_batch_with_every_label_ignored_has_loss_zero_on_every_path():
    p, labels = probabilities(LOGITS), np.full((3, 5), -1)
    assert float(nnc.cross_entropy(p, labels, ignore=-1)) == 0.0
    value, g = nnc.value_and_grad(lambda z: nnc.cross_entropy(z, labels, from_logits=True, ignore=-1))(LOGITS)
    assert float(value) == 0.0 and not np.any(g)


def test_labels_that_are_not_ignored_are_still_checked():
    with pytest.raises(nnc.DomainError, match="label 7 at index"):
        nnc.cross_entropy(probabilities(LOGITS), np.where(KEPT, 7, -1), ignore=-1)
    with pytest.raises(nnc.DomainError, match="label -1"):
        nnc.cross_entropy(probabilities(LOGITS), LABELS)  # without ignore, -1 is a bad label


def test_ignore_takes_an_integer_and_integer_labels():
    p = probabilities(LOGITS)
    with pytest.raises(nnc.ArgumentError, match="ignore must be an integer label or None, got 0.5"):
        nnc.cross_entropy(p, LABELS, ignore=0.5)
    with pytest.raises(nnc.ArgumentError, match="got True"):
        nnc.cross_entropy(p, LABELS, ignore=True)
    with pytest.raises(
        nnc.ShapeError, match="ignore=-1 leaves out integer labels, but the target holds float64"
    ):
        nnc.cross_entropy(p, np.eye(4)[np.where(KEPT, LABELS, 0)], ignore=-1)


def test_fit_trains_a_sequence_model_on_padded_targets():
    # each sequence repeats one token; the model sees it and must predict it, and the
    # padding (-1 after a random length) must neither count nor break the labels' check
    tokens = RNG.integers(1, 5, 64)
    x = np.repeat(tokens[:, None], 6, axis=1)
    y = x.copy()
    for row, length in enumerate(RNG.integers(1, 7, 64)):
        y[row, length:] = -1
    model = Input(Seq[Index[5]]) >> Embedding(5, 8) >> Linear(8, 5) >> softmax
    loss = functools.partial(nnc.cross_entropy, ignore=-1)
    params, history = nnc.fit(
        model,
        model.init(seed=0),
        (x, y),
        loss=loss,
        opt=nnc.adam(0.05),
        epochs=30,
        validation=(x, y),
        progress=False,
    )
    assert history["val_loss"][-1] == pytest.approx(float(loss(model(params, x), y)), rel=1e-6)
    assert history["val_loss"][-1] < 0.05 < history["val_loss"][0]
