"""Attention: ``SelfAttention(d, heads, causal=...)``, multi-head scaled dot-product attention.

Each step of a ``Seq[Vec[d]]`` asks (query) every step (key) how much it matters, and takes
the weighted mean of their values: ``softmax(q k^T / sqrt(head_size)) v``, in ``heads``
independent heads of ``d / heads`` numbers each, projected back to ``d`` at the end. With
``causal=True`` a step sees itself and the steps before it only, which is what a language model
predicting the next token needs. The softmax is nnc's stable one (its maximum taken out first).
:func:`padded` runs a model over a batch of sequences of unequal lengths: its attention
layers see each sequence's real steps only.

>>> from nnc import SelfAttention
>>> SelfAttention(64, heads=4, causal=True).signature
Seq[Vec[64]] -> Seq[Vec[64]]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nnc.backend.attention import attention as fused_attention
from nnc.backend.attention import attention_probs
from nnc.backend.broadcasting import shape_of
from nnc.backend.checks import check_index
from nnc.backend.elementwise import add, cast, less
from nnc.backend.errors import TypeMismatch
from nnc.backend.linalg import matmul
from nnc.backend.structural import getitem, reshape, transpose

from .effects import put_at
from .layers import check_flag, check_name
from .model import Model, ParamSpec, non_model_hint, value_in_words
from .show import describer
from .source import short_description, user_location
from .types import Dim, Index, Seq, SeqType, TupleType, Vec, size_argument

# The key, in a SelfAttention's parameter slice during a call of a padded(...) model, of the
# lengths of the batch's sequences.
LENGTHS = "__nnc_lengths__"


def causal_mask(steps: int) -> np.ndarray:
    """``True`` where step ``i`` may attend to step ``j``: ``j <= i``.

    >>> causal_mask(3).astype(int).tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    return np.tril(np.ones((steps, steps), dtype=np.bool_))


def attention(q: Any, k: Any, v: Any, causal: bool = False, keep: Any = None) -> Any:
    """Scaled dot-product attention of ``q``, ``k``, ``v`` of shape ``(..., steps, head_size)``:
    ``softmax(q @ k^T / sqrt(head_size)) @ v``, masked to ``j <= i`` when ``causal``, and to
    the keys where the boolean ``keep`` (broadcasting against the scores, ``(..., 1, steps)``
    for a padding mask) holds."""
    scale = 1.0 / math.sqrt(shape_of(q)[-1])
    keep_ = () if keep is None else (keep,)
    if shape_of(q)[:-2] == shape_of(k)[:-2] == shape_of(v)[:-2]:
        return fused_attention(q, k, v, *keep_, causal=causal, scale=scale)
    # leading axes that broadcast: the product's own rule sums the gradient back over them
    return matmul(attention_probs(q, k, *keep_, causal=causal, scale=scale), v)


def key_mask(lengths: Any, batch: int, steps: int) -> Any:
    """``(batch, 1, 1, steps)`` booleans, ``True`` at the keys ``j < lengths[b]``: what a padded
    batch lets attention see (broadcasting over heads and queries).

    >>> key_mask(np.array([1, 3]), 2, 3).reshape(2, 3).astype(int).tolist()
    [[1, 0, 0], [1, 1, 1]]
    """
    # compared as floats: an integer comparison of a traced value has no compiled form to rely on
    count = reshape(cast(lengths, np.float32), (batch, 1, 1, 1))
    return less(np.arange(steps, dtype=np.float32).reshape(1, 1, 1, steps), count)


def _self_attention_forward(model: Model, params: Any, x: Any) -> Any:
    shape = shape_of(x)
    d, heads = shape[-1], model.attr("heads")
    lead, steps, size = shape[:-2], shape[-2], d // heads
    batch = int(np.prod(lead, dtype=np.int64))
    qkv = add(matmul(reshape(x, (batch, steps, d)), params["W_qkv"]), params["b_qkv"])
    # (batch, steps, 3, heads, size) -> (3, batch, heads, steps, size): q, k and v, head by head
    qkv = transpose(reshape(qkv, (batch, steps, 3, heads, size)), (2, 0, 3, 1, 4))
    q, k, v = (getitem(qkv, i) for i in range(3))
    lengths = params.get(LENGTHS) if isinstance(params, dict) else None
    keep = None if lengths is None else key_mask(lengths, batch, steps)
    mixed = attention(q, k, v, causal=model.attr("causal"), keep=keep)
    mixed = reshape(transpose(mixed, (0, 2, 1, 3)), (batch, steps, d))
    out = add(matmul(mixed, params["W_out"]), params["b_out"])
    return reshape(out, (*lead, steps, d))


def SelfAttention(d: int, heads: int, *, causal: bool = False, name: str | None = None) -> Model:
    """Multi-head self-attention over a sequence: ``Seq[Vec[d]] -> Seq[Vec[d]]``.

    Args:
        d: the size of each step's vector; ``heads`` must divide it.
        heads: the number of heads, each of ``d // heads`` numbers.
        causal: whether step ``i`` sees only steps ``0..i`` (for language models).
        name: the key of its parameters inside a composed model (default ``selfattention_<i>``).

    Parameters: ``W_qkv`` ``(d, 3 d)`` and ``b_qkv`` ``(3 d,)`` make the queries, keys and
    values (in that order, each split into heads), ``W_out`` ``(d, d)`` and ``b_out`` project
    the heads' results back: the layout of PyTorch's ``nn.MultiheadAttention`` (transposed).

    >>> import nnc
    >>> try:
    ...     SelfAttention(64, heads=5)
    ... except nnc.TypeMismatch as err:
    ...     print(str(err).split(": ", 1)[1].splitlines()[0])
    64 is not divisible by 5 heads; each head takes d / heads numbers
    """
    created_at = user_location(2)
    d = size_argument(d, "SelfAttention", "d", created_at, hint="d is the size of each step's vector")
    heads = size_argument(heads, "SelfAttention", "heads", created_at, hint="heads is the number of heads")
    check_flag("SelfAttention", created_at, "causal", causal)
    check_name("SelfAttention", created_at, name)
    if d % heads:
        divisors = [h for h in range(1, d + 1) if d % h == 0 and h != heads]
        near = sorted(divisors, key=lambda h: (abs(h - heads), -h))[:2]
        raise TypeMismatch(
            f"SelfAttention({d}, heads={heads}) at {created_at or 'unknown place'}: {d} is not divisible "
            f"by {heads} heads; each head takes d / heads numbers\n"
            f"  hint: heads={near[0]}" + (f" or heads={near[1]}" if len(near) > 1 else "") + f" divide {d}"
        )
    specs = (
        ("W_qkv", ParamSpec((d, 3 * d), "glorot_uniform", fan=(d, d))),
        ("b_qkv", ParamSpec((3 * d,), "zeros")),
        ("W_out", ParamSpec((d, d), "glorot_uniform", fan=(d, d))),
        ("b_out", ParamSpec((d,), "zeros")),
    )
    return Model(
        "SelfAttention",
        Seq[Vec[d]],
        Seq[Vec[d]],
        _self_attention_forward,
        param_specs=specs,
        attrs=(("heads", heads), ("causal", causal)),
        name=name,
        created_at=created_at,
    )


@describer("SelfAttention")
def _describe_self_attention(model: Model) -> str:
    d = model.param_specs[0][1].shape[0]
    heads = model.attr("heads")
    return f"SelfAttention({d}, heads={heads}, head size {d // heads}" + (
        ", causal)" if model.attr("causal") else ")"
    )


# ----------------------------------------------------------------------------- padded batches


def attention_paths(model: Model, path: str = "") -> list[str]:
    """The parameter paths of the :func:`SelfAttention` layers in ``model``."""
    out = [path] if model.kind == "SelfAttention" else []
    for key, child in zip(model.param_keys, model.children):
        if key is not None:
            out.extend(attention_paths(child, path if key == "" else f"{path}/{key}" if path else key))
    return out


def _padded_forward(model: Model, params: Any, x: Any) -> Any:
    (inner,) = model.children
    sequences, lengths = x
    time_axis = len(shape_of(sequences)) - inner.in_type.rank
    steps = shape_of(sequences)[time_axis]
    lengths = check_index(
        lengths,
        what=f"input[1], the lengths, of {short_description(model)}",
        size=steps + 1,
        allowed=f"for sequences of {steps} steps: a length is 0..{steps}",
    )
    for path in attention_paths(inner):
        params = put_at(params, path, {LENGTHS: lengths})
    return inner.forward(inner, params, sequences)


def padded(model: Model) -> Model:
    """``model`` over a batch of sequences of unequal lengths, each padded at its end: it takes
    ``(sequences, lengths)``, and its :func:`SelfAttention` layers attend to the first
    ``lengths[b]`` steps of sequence ``b`` only, so that what the padding holds changes nothing
    at the real steps. ``Seq[a] -> b`` becomes ``(Seq[a], Index[t + 1]) -> b``, ``t`` the number
    of steps; the parameters are ``model``'s.

    The outputs at padded steps are not meaningful: leave them out of the loss by padding the
    targets with a label that :func:`nnc.cross_entropy` ignores (``ignore=-1``). A causal model
    needs no mask for padding at the end (a step never sees the steps after it).

    >>> import numpy as np
    >>> from nnc import SelfAttention
    >>> model = padded(SelfAttention(4, heads=2))
    >>> model.signature
    (Seq[Vec[4]], Index[t + 1]) -> Seq[Vec[4]]
    >>> params, x = model.init(seed=0), np.random.default_rng(0).normal(size=(2, 3, 4))
    >>> garbage = x.copy(); garbage[0, 2] = 99.0   # sequence 0 has 2 steps, then padding
    >>> lengths = np.array([2, 3])
    >>> a, b = model(params, (x, lengths)), model(params, (garbage, lengths))
    >>> bool(np.allclose(a[0, :2], b[0, :2])), bool(np.allclose(a[1], b[1]))
    (True, True)
    """
    created_at = user_location(2)
    if not isinstance(model, Model):
        raise TypeMismatch(
            f"padded takes a model, got {value_in_words(model)}\n  hint: {non_model_hint(model)}"
        )
    where = f"padded({model!r}) at {created_at or 'unknown place'}"
    if not isinstance(model.in_type, SeqType) or model.state_type is not None:
        raise TypeMismatch(
            f"{where}: padded takes a stateless model of sequences, Seq[a] -> b, but the model is "
            f"{model.signature}"
        )
    if not attention_paths(model):
        raise TypeMismatch(
            f"{where}: the model has no SelfAttention, the one layer a padding mask changes\n"
            "  hint: the steps a recurrent or per-step model computes before the padding do not depend on it; "
            "leave padded steps out of the loss with cross_entropy(..., ignore=-1)"
        )
    return Model(
        "padded",
        TupleType((model.in_type, Index[Dim("t + 1")])),
        model.out_type,
        _padded_forward,
        children=(model,),
        attrs=(("transparent", True),),
        created_at=created_at,
    )
