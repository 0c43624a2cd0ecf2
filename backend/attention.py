"""The probabilities of scaled dot-product attention, and their gradient, as two primitives.

``attention_probs(q, k, *keep, causal, scale)`` is ``softmax(scale * q @ k^T)`` over the last
axis, the scores of masked keys (above the diagonal when ``causal``; where the boolean
``keep`` is false) set to ``MASKED`` first. ``scores_grad(g, p, *keep, causal, scale)`` is
what its gradient needs: the gradient with respect to the scaled scores, ``scale * p * (g -
sum(g * p))`` on the kept entries, 0 elsewhere.

They exist for speed. Written as a chain of operations, each of them passes over every
``(steps, steps)`` matrix of scores of every head before the next begins, so the scores go to
memory and back several times; the compiled forms here take one head at a time, its scores
staying in cache from the product that makes them to the softmax that ends them. Both VJPs
are written with nnc operations, so second derivatives work as for any other primitive.

>>> import numpy as np
>>> q = k = np.eye(2)[None]
>>> attention_probs(q, k, causal=True, scale=1.0).round(3).tolist()
[[[1.0, 0.0], [0.269, 0.731]]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import reductions
from .activations import _softmax_impl
from .broadcasting import dtype_of, shape_of
from .core import Eqn, bind, defemit, defgeneric, defprim, defvjp
from .elementwise import exp32, mul, sub, where
from .linalg import batch_rows, matmul
from .numba_codegen import TRANS_B, FunctionWriter, literal
from .structural import swap_last

# A masked score: far below any real one, so that its weight is exactly 0 after the softmax,
# yet finite, so that no infinity enters the arithmetic (or the checks for it).
MASKED = -1e30


def _mask(steps: int, causal: bool, keep: tuple, xp: Any = np, device: Any = None) -> Any:
    """The booleans of the kept entries (broadcasting against the scores), or ``None``: all kept."""
    tril = np.tril(np.ones((steps, steps), dtype=np.bool_))
    mask = (tril if xp is np else xp.asarray(tril, device=device)) if causal else None
    if keep:
        mask = keep[0] if mask is None else xp.logical_and(mask, keep[0])
    return mask


def _probs_impl(q, k, *keep, causal, scale):
    scores = np.matmul(q, np.swapaxes(k, -1, -2))
    scores *= scores.dtype.type(scale)
    mask = _mask(q.shape[-2], causal, keep)
    if mask is not None:
        scores = np.where(mask, scores, scores.dtype.type(MASKED))
    return _softmax_impl(scores, -1)


def _probs_generic(xp, q, k, *keep, causal, scale):
    scores = xp.matmul(q, xp.matrix_transpose(k)) * scale
    mask = _mask(q.shape[-2], causal, keep, xp, q.device)
    if mask is not None:
        scores = xp.where(mask, scores, xp.asarray(MASKED, dtype=scores.dtype, device=q.device))
    e = xp.exp(scores - xp.max(scores, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def _scores_grad_impl(g, p, *keep, causal, scale):
    inner = (g * p).sum(axis=-1, keepdims=True)
    out = p * (g - inner)
    out *= out.dtype.type(scale)
    mask = _mask(p.shape[-1], causal, keep)
    return out if mask is None else np.where(mask, out, out.dtype.type(0))


def _scores_grad_generic(xp, g, p, *keep, causal, scale):
    out = p * (g - xp.sum(g * p, axis=-1, keepdims=True)) * scale
    mask = _mask(p.shape[-1], causal, keep, xp, p.device)
    return out if mask is None else xp.where(mask, out, xp.zeros_like(out))


def _probs_abstract(q, k, *keep, causal, scale):
    (q_shape, dtype), (k_shape, _) = q, k
    return (*q_shape[:-1], k_shape[-2]), dtype


attention_probs_p = defprim("attention_probs", _probs_impl, abstract=_probs_abstract)
scores_grad_p = defprim("scores_grad", _scores_grad_impl, abstract=lambda g, p, *keep, causal, scale: p)
defgeneric(attention_probs_p, _probs_generic)
defgeneric(scores_grad_p, _scores_grad_generic)


def attention_probs(q: Any, k: Any, *keep: Any, causal: bool, scale: float) -> Any:
    """``softmax(scale * q @ k^T)`` along the last axis, masked keys weighing exactly 0."""
    return bind(attention_probs_p, q, k, *keep, causal=bool(causal), scale=float(scale))


def scores_grad(g: Any, p: Any, *keep: Any, causal: bool, scale: float) -> Any:
    """The gradient with respect to the scaled scores of :func:`attention_probs`, given ``g``,
    that with respect to its result ``p``."""
    return bind(scores_grad_p, g, p, *keep, causal=bool(causal), scale=float(scale))


def _kept(x: Any, steps: int, causal: bool, keep: tuple) -> Any:
    """``x`` with the masked entries 0, as nnc operations (for the VJPs)."""
    mask = _mask(steps, causal, keep)
    return x if mask is None else where(mask, x, np.zeros((), dtype_of(x)))


def _probs_vjp(g, out, q, k, *keep, causal, scale):
    ds = scores_grad(g, out, *keep, causal=causal, scale=scale)
    return (matmul(ds, k), matmul(swap_last(ds), q), *(None for _ in keep))


def _scores_grad_vjp(h, out, g, p, *keep, causal, scale):
    # out = c * p * (g - s), s = sum(g * p), c the scale on kept entries: with hc = c * h,
    # d/dg = p * (hc - sum(hc * p)) and d/dp = hc * (g - s) - sum(hc * p) * g
    hc = mul(_kept(h, shape_of(p)[-1], causal, keep), scale)
    s = reductions.sum(mul(g, p), -1, keepdims=True)
    t = reductions.sum(mul(hc, p), -1, keepdims=True)
    return (mul(p, sub(hc, t)), sub(mul(hc, sub(g, s)), mul(t, g)), *(None for _ in keep))


defvjp(attention_probs_p, _probs_vjp)
defvjp(scores_grad_p, _scores_grad_vjp)


# ----------------------------------------------------------------------------- compiled forms


@dataclass(frozen=True)
class _Heads:
    """What both compiled forms start with: the result as a stack of ``count`` matrices of
    ``steps`` by ``keys``, the two operands as stacks, and the keep mask's rows."""

    dtype: np.dtype
    steps: int
    keys: int
    count: int
    stack: str
    operands: tuple
    rows: tuple | None


def _heads(writer: FunctionWriter, e: Eqn) -> _Heads | None:
    """Allocate ``e``'s result and view it and its two operands head by head; ``None`` (left to
    the generic call) for dtypes or a keep mask these loops do not take."""
    dtype = np.dtype(e.out.dtype)
    a, b = e.inputs[:2]
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)) or a.dtype != dtype or b.dtype != dtype:
        return None
    steps, keys = int(e.out.shape[-2]), int(e.out.shape[-1])
    lead = tuple(int(d) for d in e.out.shape[:-2])
    count = int(np.prod(lead, dtype=np.int64))
    rows: tuple | None = None
    if len(e.inputs) > 2:  # the keep mask, (..., 1, keys): which of its rows each head reads
        keep = e.inputs[2]
        own = tuple(int(d) for d in keep.shape[:-2])
        if keep.shape[-2] != 1 or len(own) > len(lead):
            return None
        view, table = writer.fresh("keep"), writer.fresh("const")
        writer.emit(
            f"{view} = {writer.contiguous(keep)}.reshape({(int(np.prod(own, dtype=np.int64)), keys)!r})"
        )
        writer.module.globals[table] = np.ascontiguousarray(batch_rows(own, lead))
        rows = (view, table)
    o, stack = writer.name(e.out), writer.fresh("stack")
    writer.alloc(o, e.out.shape, dtype)
    writer.emit(f"{stack} = {o}.reshape({(count, steps, keys)!r})")
    operands = []
    for v in (a, b):
        view = writer.fresh("stack")
        writer.emit(f"{view} = {writer.contiguous(v)}.reshape({(count, *map(int, v.shape[-2:]))!r})")
        operands.append(view)
    return _Heads(dtype, steps, keys, count, stack, tuple(operands), rows)


def _masked_entry(value: str, causal: bool, rows: tuple | None, fill: str) -> str:
    """``value``, or ``fill`` where the mask drops key ``j`` of query ``i`` of head ``h``."""
    tests = (["j <= i"] if causal else []) + ([f"{rows[0]}[{rows[1]}[h], j]"] if rows else [])
    return f"({value} if {' and '.join(tests)} else {fill})" if tests else value


def _emit_probs(writer: FunctionWriter, e: Eqn) -> bool:
    heads = _heads(writer, e)
    if heads is None:
        return False
    dtype, steps, keys, stack = heads.dtype, heads.steps, heads.keys, heads.stack
    (qs, ks), causal, scale = heads.operands, e.attrs["causal"], literal(e.attrs["scale"], dtype)
    writer.module.products = True
    masked, zero, one = literal(MASKED, dtype), literal(0, dtype), literal(1, dtype)
    # every key, masked ones too: their MASKED score takes part in the maximum as in numpy (it
    # decides a row whose kept scores are all -inf)
    body = [
        f"for h in range({heads.count}):",
        f"    s_ = {stack}[h]",
        f"    matmul({qs}[h], {ks}[h], np.int64({TRANS_B}), s_)",
        f"    for i in range({steps}):",
        f"        m = np.{dtype.name}(-np.inf)",
        f"        for j in range({keys}):",
        f"            x = {_masked_entry(f's_[i, j] * {scale}', causal, heads.rows, masked)}",
        "            s_[i, j] = x",
        "            m = max(m, x)",
        f"        t = {zero}",
        f"        for j in range({keys}):",
    ]
    if dtype == np.float32:
        *lines, value = exp32("(s_[i, j] - m)")
        body += [f"            {line}" for line in lines] + [f"            s_[i, j] = {value}"]
    else:
        body.append("            s_[i, j] = np.exp(s_[i, j] - m)")
    body += [
        "            t += s_[i, j]",
        f"        r = {one} / t",
        f"        for j in range({keys}):",
        "            s_[i, j] = s_[i, j] * r",
    ]
    for line in body:
        writer.emit(line)
    return True


def _emit_scores_grad(writer: FunctionWriter, e: Eqn) -> bool:
    heads = _heads(writer, e)
    if heads is None:
        return False
    dtype, steps, keys, stack = heads.dtype, heads.steps, heads.keys, heads.stack
    (gs, ps), causal, scale = heads.operands, e.attrs["causal"], literal(e.attrs["scale"], dtype)
    zero = literal(0, dtype)
    value = _masked_entry(f"{ps}[h, i, j] * ({gs}[h, i, j] - t) * {scale}", False, heads.rows, zero)
    # the sum runs over every key, as numpy's does (the probabilities of masked keys are 0,
    # but this primitive does not assume that its p came from attention_probs)
    body = [
        f"for h in range({heads.count}):",
        f"    for i in range({steps}):",
        f"        t = {zero}",
        f"        for j in range({keys}):",
        f"            t += {gs}[h, i, j] * {ps}[h, i, j]",
        f"        for j in range({'i + 1' if causal else keys}):",
        f"            {stack}[h, i, j] = {value}",
    ]
    if causal:
        body += [f"        for j in range(i + 1, {keys}):", f"            {stack}[h, i, j] = {zero}"]
    for line in body:
        writer.emit(line)
    return True


defemit(attention_probs_p, _emit_probs)
defemit(scores_grad_p, _emit_scores_grad)
