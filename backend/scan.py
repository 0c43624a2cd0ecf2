"""``scan``: a loop over a sequence as one primitive, so that unrolling never explodes the graph.

``scan(fn, consts, init, xs)`` runs ``carry, y = fn(consts, carry, x_t)`` for every
``x_t`` along the leading axis of ``xs`` and returns the final carry and the stacked
``y``. The step ``fn`` is traced once into a small graph (the *body*) and the whole
loop is a single equation in the enclosing graph, whatever the length.

Its gradient rule is another scan, running backwards: the forward pass stores the carry
before each step (memory linear in the length, as backpropagation through time
needs); the backward pass recomputes one step's internals at a time from it.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable

import numpy as np

from .core import Graph, bind, defprim, defvjp, trace_graph
from .elementwise import add, dtype_of, shape_of
from .errors import ShapeError
from .execute import compiled

Scanned = tuple[list, list]  # (final carry, stacked outputs)

_BODIES: "weakref.WeakKeyDictionary[Callable, dict]" = weakref.WeakKeyDictionary()


def _is_float(x: Any) -> bool:
    return np.dtype(dtype_of(x)).kind == "f"


def _trace_body(fn: Callable, consts: list, init: list, xs: list, n_consts: int, n_carry: int) -> Graph:
    def flat(vals: list) -> list:
        carry, ys = fn(vals[:n_consts], vals[n_consts:n_consts + n_carry], vals[n_consts + n_carry:])
        return list(carry) + list(ys)

    avals = [(shape_of(a), dtype_of(a)) for a in list(consts) + list(init)] + \
            [(shape_of(x)[1:], dtype_of(x)) for x in xs]
    try:
        cache = _BODIES.setdefault(fn, {})
    except TypeError:
        cache = {}
    key = tuple((tuple(s), np.dtype(d)) for s, d in avals) + (n_consts, n_carry)
    body = cache.get(key)
    if body is None:
        body = cache[key] = trace_graph(flat, avals)
        for i, (v, c) in enumerate(zip(body.outputs[:n_carry], init)):
            if tuple(v.shape) != tuple(shape_of(c)) or np.dtype(v.dtype) != np.dtype(dtype_of(c)):
                raise ShapeError(
                    f"scan: the step changes carry {i} from {dtype_of(c)}{list(shape_of(c))} to "
                    f"{v.dtype}{list(v.shape)}; a loop's state must keep its shape and dtype")
    return body


def scan(fn: Callable[[list, list, list], tuple[list, list]], consts: list, init: list, xs: list,
         *, length: int | None = None, reverse: bool = False) -> Scanned:
    """Loop ``carry, y = fn(consts, carry, x_t)`` over the leading axis of every array in ``xs``.

    Args:
        fn: the step, a pure function of three lists of arrays, returning two lists.
        consts: arrays every step sees (parameters); gradients flow to them.
        init: the initial carry (the recurrent state).
        xs: sequences, time along axis 0, all of the same length.
        length: the number of steps when ``xs`` is empty.
        reverse: run from the last step to the first.

    Returns: ``(final_carry, ys)`` with each ``ys[i]`` of shape ``(time,) + y_i.shape``.

    >>> import numpy as np
    >>> final, (sums,) = scan(lambda c, carry, x: ([carry[0] + x[0]], [carry[0] + x[0]]),
    ...                       [], [np.zeros(())], [np.arange(4.0)])
    >>> float(final[0]), sums
    (6.0, array([0., 1., 3., 6.]))
    """
    consts, init, xs = list(consts), list(init), list(xs)
    lengths = {shape_of(x)[0] for x in xs if shape_of(x)}
    if any(not shape_of(x) for x in xs):
        raise ShapeError("scan: every sequence needs a leading time axis")
    if len(lengths) > 1:
        raise ShapeError(f"scan: sequences of different lengths {sorted(lengths)}")
    steps = lengths.pop() if lengths else length
    if steps is None:
        raise ShapeError("scan: give length= when there are no sequences to scan over")
    body = _trace_body(fn, consts, init, xs, len(consts), len(init))
    results = bind(scan_p, *consts, *init, *xs, body=body, n_consts=len(consts),
                   n_carry=len(init), length=int(steps), reverse=bool(reverse))
    n_y = len(body.outputs) - len(init)
    return list(results[:len(init)]), list(results[len(init):len(init) + n_y])


def _scan_abstract(*avals, body, n_consts, n_carry, length, reverse):
    carry = [(tuple(v.shape), v.dtype) for v in body.outputs[:n_carry]]
    ys = [((length,) + tuple(v.shape), v.dtype) for v in body.outputs[n_carry:]]
    hist = [((length,) + tuple(s), d) for s, d in avals[n_consts:n_consts + n_carry]]
    return carry + ys + hist


def _scan_impl(*args, body, n_consts, n_carry, length, reverse):
    consts = args[:n_consts]
    carry = list(args[n_consts:n_consts + n_carry])
    xs = args[n_consts + n_carry:]
    run = compiled(body)
    hist = [np.empty((length,) + np.shape(c), np.asarray(c).dtype) for c in carry]
    ys = [np.empty((length,) + tuple(v.shape), v.dtype) for v in body.outputs[n_carry:]]
    order = range(length - 1, -1, -1) if reverse else range(length)
    for t in order:
        for h, c in zip(hist, carry):
            h[t] = c
        outs = run(*consts, *carry, *[x[t] for x in xs])
        carry = outs[:n_carry]
        for buf, y in zip(ys, outs[n_carry:]):
            buf[t] = y
    return tuple(np.asarray(c) for c in carry) + tuple(ys) + tuple(hist)


scan_p = defprim("scan", _scan_impl, abstract=_scan_abstract, multiple_results=True)


def _zeros(like_shape, like_dtype):
    return np.zeros(like_shape, like_dtype)


def _scan_vjp(g, out, *ins, body, n_consts, n_carry, length, reverse):
    from .autodiff import backward_pass  # autodiff imports scan's users; import at use

    consts, init, xs = ins[:n_consts], ins[n_consts:n_consts + n_carry], ins[n_consts + n_carry:]
    n_x, n_y = len(xs), len(out) - 2 * n_carry
    hist = out[n_carry + n_y:]
    g_final, g_ys, g_hist = g[:n_carry], g[n_carry:n_carry + n_y], g[n_carry + n_y:]
    f_consts = [i for i, c in enumerate(consts) if _is_float(c)]
    f_carry = [i for i, c in enumerate(init) if _is_float(c)]
    f_xs = [i for i, x in enumerate(xs) if _is_float(x)]
    f_ys = [i for i, v in enumerate(body.outputs[n_carry:]) if np.dtype(v.dtype).kind == "f"]
    with_hist = [i for i in f_carry if g_hist[i] is not None]
    wrt = f_consts + [n_consts + i for i in f_carry] + [n_consts + n_carry + i for i in f_xs]

    def ct_or_zeros(ct, like):
        return ct if ct is not None else _zeros(shape_of(like), dtype_of(like))

    init_b = [ct_or_zeros(g_final[i], out[i]) for i in f_carry] + \
             [_zeros(shape_of(consts[i]), dtype_of(consts[i])) for i in f_consts]
    seqs = list(hist) + list(xs) + [ct_or_zeros(g_ys[i], out[n_carry + i]) for i in f_ys] + \
        [g_hist[i] for i in with_hist]

    def step(c, carry, x):
        ct_carry, acc = carry[:len(f_carry)], carry[len(f_carry):]
        h_t, x_t = x[:n_carry], x[n_carry:n_carry + n_x]
        gy_t = x[n_carry + n_x:n_carry + n_x + len(f_ys)]
        gh_t = x[n_carry + n_x + len(f_ys):]
        cts = [None] * (n_carry + n_y)
        for k, i in enumerate(f_carry):
            cts[i] = ct_carry[k]
        for k, i in enumerate(f_ys):
            cts[n_carry + i] = gy_t[k]
        _, grads = backward_pass(body, list(c) + list(h_t) + list(x_t), cts, wrt)
        d_consts = grads[:len(f_consts)]
        d_carry = grads[len(f_consts):len(f_consts) + len(f_carry)]
        d_xs = grads[len(f_consts) + len(f_carry):]
        d_carry = list(d_carry)
        for k, i in enumerate(with_hist):
            d_carry[f_carry.index(i)] = add(d_carry[f_carry.index(i)], gh_t[k])
        return d_carry + [add(a, d) for a, d in zip(acc, d_consts)], list(d_xs)

    final_b, d_xs = scan(step, list(consts), init_b, seqs, length=length, reverse=not reverse)
    cts_out: list = [None] * len(ins)
    for k, i in enumerate(f_carry):
        cts_out[n_consts + i] = final_b[k]
    for k, i in enumerate(f_consts):
        cts_out[i] = final_b[len(f_carry) + k]
    for k, i in enumerate(f_xs):
        cts_out[n_consts + n_carry + i] = d_xs[k]
    return tuple(cts_out)


defvjp(scan_p, _scan_vjp)
