"""Attention: ``SelfAttention(d, heads, causal=...)``, multi-head scaled dot-product attention.

Each step of a ``Seq[Vec[d]]`` asks (query) every step (key) how much it matters, and takes
the weighted mean of their values: ``softmax(q k^T / sqrt(head_size)) v``, in ``heads``
independent heads of ``d / heads`` numbers each, projected back to ``d`` at the end. With
``causal=True`` a step sees itself and the steps before it only, which is what a language model
predicting the next token needs. The softmax is nnc's stable one (its maximum taken out first).

>>> from nnc import SelfAttention
>>> SelfAttention(64, heads=4, causal=True).signature
Seq[Vec[64]] -> Seq[Vec[64]]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nnc.backend.activations import softmax
from nnc.backend.broadcasting import shape_of
from nnc.backend.elementwise import add, mul, where
from nnc.backend.errors import TypeMismatch
from nnc.backend.linalg import matmul
from nnc.backend.structural import getitem, reshape, transpose

from .layers import check_flag, check_name
from .model import Model, ParamSpec
from .show import describer
from .source import user_location
from .types import Seq, Vec, size_argument

# A masked score: far below any real one, so its weight is exactly 0 after the softmax, yet
# finite, so that no infinity enters the arithmetic (or the checks for it).
MASKED = -1e30


def causal_mask(steps: int) -> np.ndarray:
    """``True`` where step ``i`` may attend to step ``j``: ``j <= i``.

    >>> causal_mask(3).astype(int).tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    return np.tril(np.ones((steps, steps), dtype=np.bool_))


def attention(q: Any, k: Any, v: Any, causal: bool = False) -> Any:
    """Scaled dot-product attention of ``q``, ``k``, ``v`` of shape ``(..., steps, head_size)``:
    ``softmax(q @ k^T / sqrt(head_size)) @ v``, masked to ``j <= i`` when ``causal``."""
    head_size, steps = shape_of(q)[-1], shape_of(q)[-2]
    scores = mul(matmul(q, transpose(k, _swap_last_axes(len(shape_of(k))))), 1.0 / math.sqrt(head_size))
    if causal:
        scores = where(causal_mask(steps), scores, MASKED)
    return matmul(softmax(scores, axis=-1), v)


def _swap_last_axes(rank: int) -> tuple[int, ...]:
    return (*range(rank - 2), rank - 1, rank - 2)


def _self_attention_forward(model: Model, params: Any, x: Any) -> Any:
    shape = shape_of(x)
    d, heads = shape[-1], model.attr("heads")
    lead, steps, size = shape[:-2], shape[-2], d // heads
    batch = int(np.prod(lead, dtype=np.int64))
    qkv = add(matmul(reshape(x, (batch, steps, d)), params["W_qkv"]), params["b_qkv"])
    # (batch, steps, 3, heads, size) -> (3, batch, heads, steps, size): q, k and v, head by head
    qkv = transpose(reshape(qkv, (batch, steps, 3, heads, size)), (2, 0, 3, 1, 4))
    q, k, v = (getitem(qkv, i) for i in range(3))
    mixed = attention(q, k, v, causal=model.attr("causal"))
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
