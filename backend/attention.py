"""Scaled dot-product attention as primitives: the whole of it, its gradients, and its parts.

``attention(q, k, v, *keep, causal, scale)`` is ``softmax(scale * q @ k^T) @ v``, the scores of
masked keys (above the diagonal when ``causal``; where the boolean ``keep`` is false) set to
``MASKED`` first. Its gradient is one primitive too, ``attention_grads(q, k, v, p, g, *keep)``
(``p`` the probabilities, saved by the forward pass; ``g`` the gradient of the result), which
gives the gradients of ``q``, ``k`` and ``v`` at once. Its parts are primitives of their own:
``attention_probs(q, k, *keep, causal, scale)``, the probabilities, and ``scores_grad(g, p,
*keep, causal, scale)``, the gradient with respect to the scaled scores, ``scale * p * (g -
sum(g * p))`` on the kept entries, 0 elsewhere.

They exist for speed. Written as a chain of operations, each of them passes over every
``(steps, steps)`` matrix of scores of every head before the next begins, so the scores go to
memory and back several times; the compiled forms here take one head at a time, its scores
staying in cache from the product that makes them to the product that consumes them (in the
backward pass: from ``g v^T`` through the softmax's gradient to the products with ``q`` and
``k``). Every VJP is written with nnc operations, so second derivatives work as for any other
primitive.

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
from .elementwise import add, exp32, mul, sub, where
from .linalg import batch_rows, matmul
from .numba_codegen import TRANS_A, TRANS_B, FunctionWriter, literal
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


# ----------------------------------------------------------------------------- the whole attention


def _attention_impl(q, k, v, *keep, causal, scale):
    return np.matmul(_probs_impl(q, k, *keep, causal=causal, scale=scale), v)


def _attention_generic(xp, q, k, v, *keep, causal, scale):
    return xp.matmul(_probs_generic(xp, q, k, *keep, causal=causal, scale=scale), v)


def _grads_impl(q, k, v, p, g, *keep, causal, scale):
    ds = _scores_grad_impl(np.matmul(g, np.swapaxes(v, -1, -2)), p, *keep, causal=causal, scale=scale)
    return np.matmul(ds, k), np.matmul(np.swapaxes(ds, -1, -2), q), np.matmul(np.swapaxes(p, -1, -2), g)


def _grads_generic(xp, q, k, v, p, g, *keep, causal, scale):
    ds = _scores_grad_generic(xp, xp.matmul(g, xp.matrix_transpose(v)), p, *keep, causal=causal, scale=scale)
    return xp.matmul(ds, k), xp.matmul(xp.matrix_transpose(ds), q), xp.matmul(xp.matrix_transpose(p), g)


def _attention_abstract(q, k, v, *keep, causal, scale):
    (q_shape, dtype), (v_shape, _) = q, v
    return (*q_shape[:-1], v_shape[-1]), dtype


attention_p = defprim("attention", _attention_impl, abstract=_attention_abstract)
attention_grads_p = defprim(
    "attention_grads",
    _grads_impl,
    abstract=lambda q, k, v, p, g, *keep, causal, scale: [q, k, v],
    multiple_results=True,
)
defgeneric(attention_p, _attention_generic)
defgeneric(attention_grads_p, _grads_generic)


def attention(q: Any, k: Any, v: Any, *keep: Any, causal: bool, scale: float) -> Any:
    """``attention_probs(q, k, *keep, ...) @ v`` for ``q``, ``k``, ``v`` of the same leading
    axes (heads, batch), as one primitive: its gradient is :func:`attention_grads`.

    >>> import numpy as np
    >>> q = k = np.eye(2)[None]
    >>> attention(q, k, np.array([[[1.0], [3.0]]]), causal=True, scale=1.0).round(3).tolist()
    [[[1.0], [2.462]]]
    """
    return bind(attention_p, q, k, v, *keep, causal=bool(causal), scale=float(scale))


def attention_grads(q: Any, k: Any, v: Any, p: Any, g: Any, *keep: Any, causal: bool, scale: float) -> tuple:
    """The gradients ``(dq, dk, dv)`` of :func:`attention` at ``q``, ``k``, ``v``, given its
    probabilities ``p`` and ``g``, the gradient with respect to its result."""
    return tuple(bind(attention_grads_p, q, k, v, p, g, *keep, causal=bool(causal), scale=float(scale)))


def _attention_fwd(q, k, v, *keep, needed, causal, scale):
    """On the gradient path: the probabilities, then their product with ``v``, saving the
    probabilities for the gradient (the backward pass does not compute them again)."""
    p = attention_probs(q, k, *keep, causal=causal, scale=scale)
    return matmul(p, v), p


def _attention_vjp(g, out, q, k, v, *keep, causal, scale, saved=None):
    p = saved if saved is not None else attention_probs(q, k, *keep, causal=causal, scale=scale)
    return (*attention_grads(q, k, v, p, g, *keep, causal=causal, scale=scale), *(None for _ in keep))


def _plus(a: Any, b: Any) -> Any:
    """``a + b`` where ``None`` stands for zero."""
    return b if a is None else a if b is None else add(a, b)


def _product(a: Any, b: Any) -> Any:
    return None if a is None or b is None else matmul(a, b)


def _grads_vjp(h, outs, q, k, v, p, g, *keep, causal, scale):
    # With gp = g v^T and ds = scores_grad(gp, p): dq = ds k, dk = ds^T q, dv = p^T g. The
    # cotangents hq, hk, hv of those reach ds as hq k^T + q hk^T, which scores_grad's own rule
    # takes back to gp and p; the rest is the products' rules.
    hq, hk, hv = h
    vt = swap_last(v)
    gp = matmul(g, vt)
    ds = scores_grad(gp, p, *keep, causal=causal, scale=scale)
    hds = _plus(_product(hq, swap_last(k)), _product(q, None if hk is None else swap_last(hk)))
    dgp = dp = None
    if hds is not None:
        dgp, dp = _scores_grad_vjp(hds, ds, gp, p, *keep, causal=causal, scale=scale)[:2]
    dq = _product(ds, hk)
    dk = _product(swap_last(ds), hq)
    dv = None if dgp is None else matmul(swap_last(dgp), g)
    dp = _plus(dp, None if hv is None else matmul(g, swap_last(hv)))
    dg = _plus(_product(dgp, v), _product(p, hv))
    return (dq, dk, dv, dp, dg, *(None for _ in keep))


defvjp(attention_p, _attention_vjp)
attention_p.vjp_fwd = _attention_fwd
defvjp(attention_grads_p, _grads_vjp)


# ----------------------------------------------------------------------------- compiled forms


@dataclass(frozen=True)
class _Heads:
    """What every compiled form starts with: ``count`` heads of ``steps`` queries and ``keys``
    keys, the operands viewed as stacks of matrices (one per head), and the keep mask's rows."""

    dtype: np.dtype
    steps: int
    keys: int
    count: int
    operands: tuple
    rows: tuple | None


def _heads(writer: FunctionWriter, e: Eqn, operands: int, steps: int, keys: int) -> _Heads | None:
    """View ``e``'s first ``operands`` inputs head by head; ``None`` (left to the generic call)
    for dtypes, leading axes or a keep mask these loops do not take."""
    dtype = np.dtype(e.out.dtype)
    values = e.inputs[:operands]
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        return None
    if any(v.dtype != dtype for v in (*values, *e.outs)):
        return None
    leads = {tuple(int(d) for d in v.shape[:-2]) for v in values}
    if len(leads) != 1:  # broadcasting leading axes
        return None
    (lead,) = leads
    count = int(np.prod(lead, dtype=np.int64))
    rows: tuple | None = None
    if len(e.inputs) > operands:  # the keep mask, (..., 1, keys): which of its rows each head reads
        keep = e.inputs[operands]
        own = tuple(int(d) for d in keep.shape[:-2])
        if keep.shape[-2] != 1 or len(own) > len(lead):
            return None
        view, table = writer.fresh("keep"), writer.fresh("const")
        writer.emit(
            f"{view} = {writer.contiguous(keep)}.reshape({(int(np.prod(own, dtype=np.int64)), keys)!r})"
        )
        writer.module.globals[table] = np.ascontiguousarray(batch_rows(own, lead))
        rows = (view, table)
    stacks = []
    for v in values:
        view = writer.fresh("stack")
        writer.emit(f"{view} = {writer.contiguous(v)}.reshape({(count, *map(int, v.shape[-2:]))!r})")
        stacks.append(view)
    return _Heads(dtype, steps, keys, count, tuple(stacks), rows)


def _result_stack(writer: FunctionWriter, v: Any, count: int) -> str:
    """Allocate the result ``v`` and view it as a stack of ``count`` matrices."""
    o, stack = writer.name(v), writer.fresh("stack")
    writer.alloc(o, v.shape, v.dtype)
    writer.emit(f"{stack} = {o}.reshape({(count, *map(int, v.shape[-2:]))!r})")
    return stack


def _masked_entry(value: str, causal: bool, rows: tuple | None, fill: str) -> str:
    """``value``, or ``fill`` where the mask drops key ``j`` of query ``i`` of head ``h``."""
    tests = (["j <= i"] if causal else []) + ([f"{rows[0]}[{rows[1]}[h], j]"] if rows else [])
    return f"({value} if {' and '.join(tests)} else {fill})" if tests else value


def _exp_lines(s: str, dtype: np.dtype, last: str) -> list[str]:
    """Lines that set ``s[i, j]`` to ``exp(s[i, j] - m)`` for ``j < last``, adding them to ``t``."""
    lines = [f"for j in range({last}):"]
    if dtype == np.float32:
        *steps, value = exp32(f"({s}[i, j] - m)")
        lines += [f"    {line}" for line in steps] + [f"    {s}[i, j] = {value}"]
    else:
        lines.append(f"    {s}[i, j] = np.exp({s}[i, j] - m)")
    return lines + [f"    t += {s}[i, j]"]


def _softmax_lines(s: str, heads: _Heads, causal: bool, scale: float) -> list[str]:
    """Lines, inside the loop over heads ``h``, that turn the products ``s`` (a ``steps`` by
    ``keys`` matrix of ``q k^T``) into the probabilities of head ``h``, in place."""
    dtype, keys = heads.dtype, heads.keys
    masked, zero, one, c = literal(MASKED, dtype), literal(0, dtype), literal(1, dtype), literal(scale, dtype)
    last = "i + 1" if causal else str(keys)  # the keys a row may keep
    lines = [
        f"for i in range({heads.steps}):",
        f"    m = np.{dtype.name}(-np.inf)",
        f"    for j in range({last}):",
        f"        x = {_masked_entry(f'{s}[i, j] * {c}', False, heads.rows, masked)}",
        f"        {s}[i, j] = x",
        "        m = max(m, x)",
        f"    t = {zero}",
    ]
    indent = ["    " + line for line in _exp_lines(s, dtype, last)]
    normalise = [f"    r = {one} / t", f"    for j in range({last}):", f"        {s}[i, j] = {s}[i, j] * r"]
    if not causal:
        return [f"    {line}" for line in lines + indent + normalise]
    # Causal: the keys after step i are masked, their MASKED scores part of numpy's maximum.
    # Where a kept score exceeds MASKED / 2, exp(MASKED - m) is exactly 0, so those keys weigh
    # 0 * r (NaN where the row's sum is) and take no exponential; otherwise (every kept score
    # -inf, or near MASKED) the row goes the long way, as numpy's does.
    lines += [f"    if m > {literal(MASKED / 2, dtype)}:"]
    lines += ["    " + line for line in indent + normalise]
    lines += [f"        for j in range(i + 1, {keys}):", f"            {s}[i, j] = {zero} * r", "    else:"]
    lines += [f"        for j in range(i + 1, {keys}):", f"            {s}[i, j] = {masked}"]
    lines += [f"        m = max(m, {masked}) if i + 1 < {keys} else m"]
    lines += ["    " + line for line in ["    " + x for x in _exp_lines(s, dtype, str(keys))]]
    lines += [
        f"        r = {one} / t",
        f"        for j in range({keys}):",
        f"            {s}[i, j] = {s}[i, j] * r",
    ]
    return [f"    {line}" for line in lines]


def _scores_grad_lines(out: str, g: str, p: str, heads: _Heads, causal: bool, scale: float) -> list[str]:
    """Lines, inside the loop over heads ``h``, that write ``scores_grad`` of head ``h`` to the
    matrix ``out``, from the matrices ``g`` and ``p`` (``out`` may be ``g``: each row's sum is
    taken before the row is written)."""
    dtype, keys = heads.dtype, heads.keys
    zero, c = literal(0, dtype), literal(scale, dtype)
    value = _masked_entry(f"{p}[i, j] * ({g}[i, j] - t) * {c}", False, heads.rows, zero)
    # the sum runs over every key, as numpy's does (the probabilities of masked keys are 0,
    # but scores_grad does not assume that its p came from attention_probs)
    lines = [
        f"for i in range({heads.steps}):",
        f"    t = {zero}",
        f"    for j in range({keys}):",
        f"        t += {g}[i, j] * {p}[i, j]",
        f"    for j in range({'i + 1' if causal else keys}):",
        f"        {out}[i, j] = {value}",
    ]
    if causal:
        lines += [f"    for j in range(i + 1, {keys}):", f"        {out}[i, j] = {zero}"]
    return [f"    {line}" for line in lines]


def _gemm_line(a: str, b: str, trans: int, out: str) -> str:
    """The call, inside the loop over heads, of ``out = op(a) @ op(b)``."""
    return f"    matmul({a}, {b}, np.int64({trans}), {out})"


def _emit_probs(writer: FunctionWriter, e: Eqn) -> bool:
    q, k = e.inputs[:2]
    heads = _heads(writer, e, 2, int(q.shape[-2]), int(k.shape[-2]))
    if heads is None:
        return False
    writer.module.products = True
    (qs, ks), stack = heads.operands, _result_stack(writer, e.out, heads.count)
    writer.emit(f"for h in range({heads.count}):")
    writer.emit(f"    s_ = {stack}[h]")
    writer.emit(_gemm_line(f"{qs}[h]", f"{ks}[h]", TRANS_B, "s_"))
    for line in _softmax_lines("s_", heads, e.attrs["causal"], e.attrs["scale"]):
        writer.emit(line)
    return True


def _emit_scores_grad(writer: FunctionWriter, e: Eqn) -> bool:
    g = e.inputs[0]
    heads = _heads(writer, e, 2, int(g.shape[-2]), int(g.shape[-1]))
    if heads is None:
        return False
    (gs, ps), stack = heads.operands, _result_stack(writer, e.out, heads.count)
    writer.emit(f"for h in range({heads.count}):")
    lines = _scores_grad_lines(
        f"{stack}[h]", f"{gs}[h]", f"{ps}[h]", heads, e.attrs["causal"], e.attrs["scale"]
    )
    for line in lines:
        writer.emit(line)
    return True


def _emit_attention(writer: FunctionWriter, e: Eqn) -> bool:
    q, k = e.inputs[:2]
    heads = _heads(writer, e, 3, int(q.shape[-2]), int(k.shape[-2]))
    if heads is None:
        return False
    writer.module.products = True
    (qs, ks, vs), stack = heads.operands, _result_stack(writer, e.out, heads.count)
    # one head's probabilities at a time, in a matrix that stays in cache
    s = writer.fresh("scores")
    writer.alloc(s, (heads.steps, heads.keys), heads.dtype)
    writer.emit(f"for h in range({heads.count}):")
    writer.emit(_gemm_line(f"{qs}[h]", f"{ks}[h]", TRANS_B, s))
    for line in _softmax_lines(s, heads, e.attrs["causal"], e.attrs["scale"]):
        writer.emit(line)
    writer.emit(_gemm_line(s, f"{vs}[h]", 0, f"{stack}[h]"))
    return True


def _emit_attention_grads(writer: FunctionWriter, e: Eqn) -> bool:
    q, k = e.inputs[:2]
    heads = _heads(writer, e, 5, int(q.shape[-2]), int(k.shape[-2]))
    if heads is None:
        return False
    writer.module.products = True
    qs, ks, vs, ps, gs = heads.operands
    dq, dk, dv = (_result_stack(writer, v, heads.count) for v in e.outs)
    # g v^T becomes the gradient of the scores in place, then meets k and q while in cache
    d = writer.fresh("dscores")
    writer.alloc(d, (heads.steps, heads.keys), heads.dtype)
    writer.emit(f"for h in range({heads.count}):")
    writer.emit(_gemm_line(f"{gs}[h]", f"{vs}[h]", TRANS_B, d))
    for line in _scores_grad_lines(d, d, f"{ps}[h]", heads, e.attrs["causal"], e.attrs["scale"]):
        writer.emit(line)
    writer.emit(_gemm_line(d, f"{ks}[h]", 0, f"{dq}[h]"))
    writer.emit(_gemm_line(d, f"{qs}[h]", TRANS_A, f"{dk}[h]"))
    writer.emit(_gemm_line(f"{ps}[h]", f"{gs}[h]", TRANS_A, f"{dv}[h]"))
    return True


defemit(attention_probs_p, _emit_probs)
defemit(scores_grad_p, _emit_scores_grad)
defemit(attention_p, _emit_attention)
defemit(attention_grads_p, _emit_attention_grads)
