"""Tokens and sequences: ``Embedding`` (``Index[v] -> Vec[d]``) and ``PositionalEmbedding``.

A token is an integer in ``[0, v)``, of type ``Index[v]``; a sentence of them is
``Seq[Index[v]]`` (one example: an integer array of shape ``(time,)``, a batch
``(batch, time)``). ``Embedding`` maps a token to a learned vector, and ``>>`` runs it at every
step of a sequence (:func:`nnc.each`); ``PositionalEmbedding`` adds to each step a vector
for its position, so that attention, which sees the steps as a set, knows their order.

>>> import numpy as np
>>> from nnc import Embedding, PositionalEmbedding
>>> model = Embedding(27, 8) >> PositionalEmbedding(max_len=16, dim=8)
>>> model.signature
Seq[Index[27]] -> Seq[Vec[8]]
>>> model(model.init(seed=0), np.array([[1, 2, 3], [4, 5, 6]])).shape
(2, 3, 8)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nnc.backend.broadcasting import dtype_of, shape_of
from nnc.backend.elementwise import add
from nnc.backend.errors import ArgumentError, ShapeError, TypeMismatch
from nnc.backend.random import fold_in, uniform
from nnc.backend.structural import getitem, take

from .layers import check_init, check_name
from .model import Model, ParamSpec, created_at_note, each
from .show import describer, dims
from .source import user_location
from .types import ArrayType, Index, Seq, SeqType, Vec, bad_argument, size_argument

# ----------------------------------------------------------------------------- Embedding


def _embedding_forward(model: Model, params: Any, x: Any) -> Any:
    return take(params["W"], x)


def Embedding(vocab: int, dim: int, *, init: Any = "normal", name: str | None = None) -> Model:
    """A learned vector for each of ``vocab`` tokens: ``Index[vocab] -> Vec[dim]``.

    Args:
        vocab: the number of tokens (classes); inputs are integers in ``[0, vocab)``.
        dim: the size of each token's vector.
        init: initialiser of the table ``W`` (shape ``(vocab, dim)``); ``"normal"``, a standard
            normal as in PyTorch's ``nn.Embedding``, by default.
        name: the key of its parameters inside a composed model (default ``embedding_<i>``).

    Over a sequence (``Seq[Index[vocab]]``) it maps every step. A token outside
    ``[0, vocab)``, or a float where a token belongs, is an error that names the layer.

    >>> import numpy as np
    >>> layer = Embedding(5, 3)
    >>> layer.signature
    Index[5] -> Vec[3]
    >>> params = layer.init(seed=0)
    >>> bool((layer(params, np.array([4, 0])) == params["W"][[4, 0]]).all())
    True
    """
    created_at = user_location(2)
    vocab = size_argument(vocab, "Embedding", "vocab", created_at, hint="vocab is the number of tokens")
    dim = size_argument(dim, "Embedding", "dim", created_at, hint="dim is the size of each token's vector")
    check_init(init, "Embedding", created_at)
    check_name("Embedding", created_at, name)
    return Model(
        "Embedding",
        Index[vocab],
        Vec[dim],
        _embedding_forward,
        param_specs=(("W", ParamSpec((vocab, dim), init, fan=(vocab, dim))),),
        name=name,
        created_at=created_at,
    )


@describer("Embedding")
def _describe_embedding(model: Model) -> str:
    vocab, dim = dims(*model.param_specs[0][1].shape)
    return f"Embedding({vocab} -> {dim})"


# ----------------------------------------------------------------------------- positions


def sinusoidal_table(length: int, dim: int) -> np.ndarray:
    """The fixed position vectors of Vaswani et al. (2017): ``sin`` and ``cos`` of the
    position over wavelengths from ``2 pi`` to ``10000 * 2 pi``, interleaved.

    >>> sinusoidal_table(3, 4).round(3).tolist()
    [[0.0, 1.0, 0.0, 1.0], [0.841, 0.54, 0.01, 1.0], [0.909, -0.416, 0.02, 1.0]]
    """
    position = np.arange(length, dtype=np.float64)[:, None]
    rate = np.exp(-np.log(10000.0) * np.arange(0, dim, 2, dtype=np.float64) / dim)
    table = np.zeros((length, dim))
    table[:, 0::2] = np.sin(position * rate)
    table[:, 1::2] = np.cos(position * rate[: dim // 2])
    return table


def _positional_forward(model: Model, params: Any, x: Any) -> Any:
    shape = shape_of(x)
    steps, max_len = shape[-2], model.attr("max_len")
    if steps > max_len:
        raise ShapeError(
            f"{model!r}{created_at_note(model)} was given a sequence of {steps} steps, but it has "
            f"positions for {max_len}\n  hint: give it max_len={steps} or more, or feed shorter "
            "sequences (nnc.generate keeps the last max_len tokens)"
        )
    if model.attr("kind") == "learned":
        positions = getitem(params["P"], slice(0, steps))
    else:
        positions = sinusoidal_table(steps, shape[-1]).astype(dtype_of(x))
    return add(x, positions)


def PositionalEmbedding(max_len: int, dim: int, *, kind: str = "learned", name: str | None = None) -> Model:
    """Adds a vector for each position to a sequence: ``Seq[Vec[dim]] -> Seq[Vec[dim]]``.

    Args:
        max_len: the longest sequence it takes (learned: the number of position vectors).
        dim: the size of each step's vector.
        kind: ``"learned"`` (a parameter ``P`` of shape ``(max_len, dim)``, initialised as a
            standard normal) or ``"sinusoidal"`` (the fixed table of
            :func:`sinusoidal_table`, no parameters).
        name: the key of its parameters inside a composed model.

    A longer sequence than ``max_len`` is an error naming the layer.

    >>> PositionalEmbedding(max_len=16, dim=8, kind="sinusoidal").signature
    Seq[Vec[8]] -> Seq[Vec[8]]
    """
    created_at = user_location(2)
    max_len = size_argument(
        max_len, "PositionalEmbedding", "max_len", created_at, hint="max_len is the longest sequence"
    )
    dim = size_argument(dim, "PositionalEmbedding", "dim", created_at, hint="dim is the size of each step")
    if kind not in ("learned", "sinusoidal"):
        raise bad_argument("PositionalEmbedding", created_at, "kind", "'learned' or 'sinusoidal'", kind)
    check_name("PositionalEmbedding", created_at, name)
    specs = (("P", ParamSpec((max_len, dim), "normal")),) if kind == "learned" else ()
    return Model(
        "PositionalEmbedding",
        Seq[Vec[dim]],
        Seq[Vec[dim]],
        _positional_forward,
        param_specs=specs,
        attrs=(("max_len", max_len), ("kind", kind)),
        name=name,
        created_at=created_at,
    )


@describer("PositionalEmbedding")
def _describe_positional(model: Model) -> str:
    kind = model.attr("kind")
    return f"PositionalEmbedding(max_len={model.attr('max_len')}" + (
        ", sinusoidal)" if kind == "sinusoidal" else ")"
    )


# ----------------------------------------------------------------------------- generation


def _context_length(model: Model) -> int | None:
    """The ``max_len`` of the model's positional embedding: how many tokens it can look at."""
    if model.kind == "PositionalEmbedding":
        return int(model.attr("max_len"))
    lengths = [n for n in (_context_length(c) for c in model.children) if n is not None]
    return min(lengths) if lengths else None


def _ends_in_softmax(model: Model) -> bool:
    """Whether the model's last layer is softmax, looking into chains and wrappers of one
    model (each, zero_state(unroll(...)), ...): its outputs are probabilities, not logits."""
    while model.children and (model.kind in ("serial", "each") or model.transparent):
        model = model.children[-1]
    return model.kind == "softmax"


def generate(
    lm: Model, params: Any, prompt: Any, steps: int, *, temperature: float = 1.0, key: Any = None
) -> np.ndarray:
    """Continue ``prompt`` by ``steps`` tokens, sampled one at a time from ``lm``'s prediction
    for the next token: the stateless counterpart of :func:`nnc.feedback`.

    ``lm`` is a sequence model ``Seq[Index[v]] -> Seq[Vec[v]]`` whose step ``t`` predicts token
    ``t + 1`` (or a model of one token, ``Index[v] -> Vec[v]``, run at every step) (probabilities, ending in ``softmax``, or logits); it runs in inference mode
    (:func:`nnc.inference`: no dropout), on the last ``max_len`` tokens when it has a
    :func:`PositionalEmbedding`. ``temperature`` divides the logits (below 1: surer, above 1:
    more varied; 0: always the most likely token, no key needed). The token of step ``i`` is
    drawn with ``nnc.fold_in(key, i)``, so a key gives the same text every time.

    ``prompt`` is a 1-d integer array (one text) or 2-d ``(batch, time)``; the result is the
    prompt followed by the new tokens.

    >>> import numpy as np, nnc
    >>> from nnc import Embedding, Linear, softmax
    >>> lm = Embedding(5, 4) >> Linear(4, 5) >> softmax
    >>> out = generate(lm, lm.init(seed=0), np.array([1, 2]), steps=3, key=nnc.key(0))
    >>> out.shape, bool((out[:2] == [1, 2]).all())
    ((5,), True)
    """
    from .effects import inference

    called_at = user_location(2)
    if not isinstance(lm, Model):
        raise ArgumentError(
            f"generate at {called_at or 'unknown place'}: lm must be an nnc model, got {lm!r}"
        )
    if lm.kind == "padded":  # one prompt length for the whole batch: nothing to mask
        lm = lm.children[0]
    if isinstance(lm.in_type, ArrayType) and lm.in_type.is_index and lm.state_type is None:
        lm = each(lm)  # a model of one token (a bigram table) predicts the next at every step
    item_in = lm.in_type.item if isinstance(lm.in_type, SeqType) else None
    item_out = lm.out_type.item if isinstance(lm.out_type, SeqType) else None
    if not (isinstance(item_in, ArrayType) and item_in.is_index and isinstance(item_out, ArrayType)):
        raise TypeMismatch(
            f"generate at {called_at or 'unknown place'}: it needs a model of token sequences, "
            f"Seq[Index[v]] -> Seq[Vec[v]], but {lm!r}{created_at_note(lm)} is {lm.signature}"
        )
    steps = size_argument(
        steps,
        "generate",
        "steps",
        called_at,
        minimum=0,
        hint="steps is how many tokens to add",
        at="called at",
    )
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0:
        raise ArgumentError(
            f"generate at {called_at or 'unknown place'}: temperature must be a number >= 0, got {temperature!r}"
        )
    if temperature > 0 and steps and key is None:
        raise ArgumentError(
            f"generate at {called_at or 'unknown place'}: sampling needs a key\n"
            "  hint: generate(..., key=nnc.key(seed)), or temperature=0 for the most likely tokens"
        )
    tokens = np.asarray(prompt)
    if tokens.dtype.kind not in "iu" or tokens.ndim not in (1, 2) or tokens.shape[-1] == 0:
        raise ShapeError(
            f"generate at {called_at or 'unknown place'}: the prompt must be a non-empty integer array "
            f"of shape (time,) or (batch, time), got {tokens.dtype} of shape {tokens.shape}"
        )
    single = tokens.ndim == 1
    tokens = tokens[None] if single else tokens
    model, window = inference(lm), _context_length(lm)
    probabilities = _ends_in_softmax(lm)
    for i in range(steps):
        context = tokens if window is None else tokens[:, -window:]
        last = np.asarray(model(params, context))[:, -1, :].astype(np.float64)
        with np.errstate(divide="ignore"):
            scores = np.log(last) if probabilities else last
        if temperature == 0:
            chosen = np.argmax(scores, axis=-1)
        else:
            scaled = scores / temperature
            weights = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
            cdf = np.cumsum(weights / weights.sum(axis=-1, keepdims=True), axis=-1)
            u = np.asarray(uniform(fold_in(key, i), (tokens.shape[0],), np.float64))
            chosen = np.minimum((cdf < u[:, None]).sum(axis=-1), cdf.shape[-1] - 1)
        tokens = np.concatenate([tokens, chosen[:, None].astype(tokens.dtype)], axis=1)
    return tokens[0] if single else tokens


__all__ = ["Embedding", "PositionalEmbedding", "generate", "sinusoidal_table"]
