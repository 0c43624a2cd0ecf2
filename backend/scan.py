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
from collections.abc import Callable
from typing import Any

import numpy as np

from .array_api import placement
from .autodiff import backward_pass
from .core import (
    Const,
    Eqn,
    Graph,
    bind,
    defemit,
    defgeneric,
    defprim,
    defvjp,
    eval_graph,
    prune,
    trace_graph,
)
from .elementwise import add, dtype_of, shape_of
from .errors import ShapeError
from .execute import compiled
from .numba_codegen import FunctionWriter

Scanned = tuple[list, list]  # (final carry, stacked outputs)

_BODIES: weakref.WeakKeyDictionary[Callable, dict] = weakref.WeakKeyDictionary()


def _is_float(x: Any) -> bool:
    """For arrays, tracers and graph variables alike."""
    dtype = x.dtype if hasattr(x, "dtype") else dtype_of(x)
    return np.dtype(dtype).kind == "f"


def _hoist(body: Graph, n_consts: int) -> tuple[Graph | None, Graph]:
    """Split off the equations that depend on constants alone (a weight's transpose, say):
    they run once before the loop instead of at every step."""
    invariant_ids = {id(v) for v in body.inputs[:n_consts]}
    invariant, varying = [], []
    for eqn in body.eqns:
        if all(type(v) is Const or id(v) in invariant_ids for v in eqn.inputs):
            invariant.append(eqn)
            invariant_ids.update(id(v) for v in eqn.outs)
        else:
            varying.append(eqn)
    if not invariant:
        return None, body
    used = {id(v) for eqn in varying for v in eqn.inputs} | {id(v) for v in body.outputs}
    hoisted = [v for eqn in invariant for v in eqn.outs if id(v) in used]
    before = prune(Graph(body.inputs[:n_consts], invariant, hoisted))
    loop = Graph(body.inputs[:n_consts] + hoisted + body.inputs[n_consts:], varying, body.outputs)
    return before, loop


def _trace_body(
    fn: Callable, consts: list, init: list, xs: list, n_consts: int, n_carry: int
) -> tuple[Graph | None, Graph]:
    def flat(vals: list) -> list:
        carry, ys = fn(vals[:n_consts], vals[n_consts : n_consts + n_carry], vals[n_consts + n_carry :])
        return list(carry) + list(ys)

    avals = [(shape_of(a), dtype_of(a)) for a in list(consts) + list(init)] + [
        (shape_of(x)[1:], dtype_of(x)) for x in xs
    ]
    try:
        cache = _BODIES.setdefault(fn, {})
    except TypeError:
        cache = {}
    key = tuple((tuple(s), np.dtype(d)) for s, d in avals) + (n_consts, n_carry)
    traced = cache.get(key)
    if traced is None:
        body = trace_graph(flat, avals)
        for i, (v, c) in enumerate(zip(body.outputs[:n_carry], init)):
            if tuple(v.shape) != tuple(shape_of(c)) or np.dtype(v.dtype) != np.dtype(dtype_of(c)):
                raise ShapeError(
                    f"scan: the step changes carry {i} from {dtype_of(c)}{list(shape_of(c))} to "
                    f"{v.dtype}{list(v.shape)}; a loop's state must keep its shape and dtype"
                )
        traced = cache[key] = _hoist(body, n_consts)
    return traced


def scan(
    fn: Callable[[list, list, list], tuple[list, list]],
    consts: list,
    init: list,
    xs: list,
    *,
    length: int | None = None,
    reverse: bool = False,
) -> Scanned:
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
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ShapeError(f"scan: length must be an int >= 0 (the number of steps), got {steps!r}")
    before, body = _trace_body(fn, consts, init, xs, len(consts), len(init))
    if before is not None:
        consts = consts + eval_graph(before, consts)
    results = bind(
        scan_p,
        *consts,
        *init,
        *xs,
        body=body,
        n_consts=len(consts),
        n_carry=len(init),
        length=int(steps),
        reverse=bool(reverse),
    )
    n_y = len(body.outputs) - len(init)
    return list(results[: len(init)]), list(results[len(init) : len(init) + n_y])


def _scan_abstract(*avals, body, n_consts, n_carry, length, reverse):
    carry = [(tuple(v.shape), v.dtype) for v in body.outputs[:n_carry]]
    ys = [((length,) + tuple(v.shape), v.dtype) for v in body.outputs[n_carry:]]
    hist = [((length,) + tuple(s), d) for s, d in avals[n_consts : n_consts + n_carry]]
    return carry + ys + hist


def _scan_impl(*args, body, n_consts, n_carry, length, reverse):
    consts = args[:n_consts]
    carry = list(args[n_consts : n_consts + n_carry])
    xs = args[n_consts + n_carry :]
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


def _scan_generic(xp, *args, body, n_consts, n_carry, length, reverse):
    """The loop with array-API namespace ``xp``: steps are collected, then stacked once."""
    place = placement(args[0]) if args else None
    consts = args[:n_consts]
    carry = list(args[n_consts : n_consts + n_carry])
    xs = args[n_consts + n_carry :]
    run = compiled(body, place)
    hist: list = [[] for _ in carry]
    ys: list = [[] for _ in body.outputs[n_carry:]]
    order = range(length - 1, -1, -1) if reverse else range(length)
    for t in order:
        for h, c in zip(hist, carry):
            h.append(c)
        outs = run(*consts, *carry, *[x[t, ...] for x in xs])
        carry = outs[:n_carry]
        for buf, y in zip(ys, outs[n_carry:]):
            buf.append(y)

    def stacked(steps: list, shape: tuple, dtype) -> Any:
        if not steps:
            assert place is not None  # this form runs only on device arrays, so args has one
            return place.put(np.empty((0,) + tuple(shape), dtype))
        return xp.stack(steps[::-1] if reverse else steps, axis=0)

    ins = body.inputs[n_consts : n_consts + n_carry]
    return (
        tuple(carry)
        + tuple(stacked(b, v.shape, v.dtype) for b, v in zip(ys, body.outputs[n_carry:]))
        + tuple(stacked(h, v.shape, v.dtype) for h, v in zip(hist, ins))
    )


scan_p = defprim("scan", _scan_impl, abstract=_scan_abstract, multiple_results=True)
defgeneric(scan_p, _scan_generic)


def _zeros(like_shape, like_dtype):
    return np.zeros(like_shape, like_dtype)


class _Plan:
    """Which inputs and outputs of a scan take part in its gradient."""

    def __init__(self, body: Graph, n_consts: int, n_carry: int, needed: tuple):
        self.body, self.n_consts, self.n_carry = body, n_consts, n_carry
        self.n_x = len(body.inputs) - n_consts - n_carry
        self.n_y = len(body.outputs) - n_carry
        ins = body.inputs
        # only what the caller needs: the cotangent of a data sequence is never computed
        self.f_consts = [i for i in range(n_consts) if _is_float(ins[i]) and needed[i]]
        self.f_carry = [i for i in range(n_carry) if _is_float(ins[n_consts + i])]
        self.f_xs = [
            i
            for i in range(self.n_x)
            if _is_float(ins[n_consts + n_carry + i]) and needed[n_consts + n_carry + i]
        ]
        self.f_ys = [i for i, v in enumerate(body.outputs[n_carry:]) if _is_float(v)]
        self.wrt = (
            self.f_consts + [n_consts + i for i in self.f_carry] + [n_consts + n_carry + i for i in self.f_xs]
        )

    def step(self, residuals: list, with_hist: list) -> Callable:
        """The reverse step: carry (carry cotangents, constant-gradient sums), per-step inputs
        (carry before the step, x, saved residuals, output cotangents, history cotangents)."""
        body, n_carry, n_x, n_y = self.body, self.n_carry, self.n_x, self.n_y
        f_carry, f_ys, f_consts, wrt = self.f_carry, self.f_ys, self.f_consts, self.wrt
        n_r = len(residuals)

        def step(c, carry, x):
            ct_carry, acc = carry[: len(f_carry)], carry[len(f_carry) :]
            h_t, x_t = x[:n_carry], x[n_carry : n_carry + n_x]
            r_t = x[n_carry + n_x : n_carry + n_x + n_r]
            gy_t = x[n_carry + n_x + n_r : n_carry + n_x + n_r + len(f_ys)]
            gh_t = x[n_carry + n_x + n_r + len(f_ys) :]
            cts: list = [None] * (n_carry + n_y)
            for k, i in enumerate(f_carry):
                cts[i] = ct_carry[k]
            for k, i in enumerate(f_ys):
                cts[n_carry + i] = gy_t[k]
            known = {id(v): r for v, r in zip(residuals, r_t)}
            _, grads = backward_pass(body, list(c) + list(h_t) + list(x_t), cts, wrt, known)
            d_consts = grads[: len(f_consts)]
            d_carry = list(grads[len(f_consts) : len(f_consts) + len(f_carry)])
            for k, i in enumerate(with_hist):
                j = f_carry.index(i)
                d_carry[j] = add(d_carry[j], gh_t[k])
            return d_carry + [add(a, d) for a, d in zip(acc, d_consts)], list(
                grads[len(f_consts) + len(f_carry) :]
            )

        return step

    def avals(self, residuals: list) -> tuple[list, list]:
        ins, n_consts, n_carry = self.body.inputs, self.n_consts, self.n_carry
        carry = [(ins[n_consts + i].shape, ins[n_consts + i].dtype) for i in self.f_carry] + [
            (ins[i].shape, ins[i].dtype) for i in self.f_consts
        ]
        per_step = (
            [(v.shape, v.dtype) for v in ins[n_consts:]]
            + [(v.shape, v.dtype) for v in residuals]
            + [
                (self.body.outputs[n_carry + i].shape, self.body.outputs[n_carry + i].dtype)
                for i in self.f_ys
            ]
        )
        return carry, per_step


def _residuals_used(plan: _Plan, candidates: list) -> list:
    """The intermediate values of one step that the reverse step reads (found by tracing it once)."""
    carry, per_step = plan.avals(candidates)
    consts = [(v.shape, v.dtype) for v in plan.body.inputs[: plan.n_consts]]
    step = plan.step(candidates, [])
    n_c, n_carry = len(consts), len(carry)

    def flat(vals):
        new_carry, ys = step(vals[:n_c], vals[n_c : n_c + n_carry], vals[n_c + n_carry :])
        return list(new_carry) + list(ys)

    probe = trace_graph(flat, consts + carry + per_step)
    first = n_c + n_carry + plan.n_carry + plan.n_x
    read = {id(v) for e in probe.eqns for v in e.inputs} | {id(v) for v in probe.outputs}
    return [v for v, inp in zip(candidates, probe.inputs[first : first + len(candidates)]) if id(inp) in read]


def _scan_fwd(*ins, body, n_consts, n_carry, length, reverse, needed):
    """The forward scan of a gradient: it also stacks the step intermediates the reverse step reads."""
    plan = _Plan(body, n_consts, n_carry, needed)
    candidates = [v for e in body.eqns if e.prim.vjp_fwd is None for v in e.outs if _is_float(v)]
    residuals = _residuals_used(plan, candidates)
    augmented = Graph(body.inputs, body.eqns, list(body.outputs) + residuals)
    results = bind(
        scan_p, *ins, body=augmented, n_consts=n_consts, n_carry=n_carry, length=length, reverse=reverse
    )
    n_out = n_carry + plan.n_y
    primal = tuple(results[:n_out]) + tuple(results[n_out + len(residuals) :])
    return primal, (plan, residuals, list(results[n_out : n_out + len(residuals)]))


def _scan_vjp(g, out, *ins, body, n_consts, n_carry, length, reverse, saved=None):
    if saved is None:  # differentiated without a forward that saved residuals: recompute them
        plan, residuals, stacked = _Plan(body, n_consts, n_carry, (True,) * len(ins)), [], []
    else:
        plan, residuals, stacked = saved
    consts, xs = ins[:n_consts], ins[n_consts + n_carry :]
    n_y = plan.n_y
    hist = out[n_carry + n_y : n_carry + n_y + n_carry]
    g_final, g_ys, g_hist = g[:n_carry], g[n_carry : n_carry + n_y], g[n_carry + n_y :]
    with_hist = [i for i in plan.f_carry if g_hist[i] is not None]

    def ct_or_zeros(ct, like):
        return ct if ct is not None else _zeros(shape_of(like), dtype_of(like))

    init_b = [ct_or_zeros(g_final[i], out[i]) for i in plan.f_carry] + [
        _zeros(shape_of(consts[i]), dtype_of(consts[i])) for i in plan.f_consts
    ]
    seqs = (
        list(hist)
        + list(xs)
        + list(stacked)
        + [ct_or_zeros(g_ys[i], out[n_carry + i]) for i in plan.f_ys]
        + [g_hist[i] for i in with_hist]
    )
    final_b, d_xs = scan(
        plan.step(residuals, with_hist), list(consts), init_b, seqs, length=length, reverse=not reverse
    )
    cts_out: list = [None] * len(ins)
    for k, i in enumerate(plan.f_carry):
        cts_out[n_consts + i] = final_b[k]
    for k, i in enumerate(plan.f_consts):
        cts_out[i] = final_b[len(plan.f_carry) + k]
    for k, i in enumerate(plan.f_xs):
        cts_out[n_consts + n_carry + i] = d_xs[k]
    return tuple(cts_out)


defvjp(scan_p, _scan_vjp)
scan_p.vjp_fwd = _scan_fwd


def _emit_scan(writer: FunctionWriter, e: Eqn) -> bool:
    """A loop calling the body, itself a function of the generated module."""
    attrs = e.attrs
    body = attrs["body"]
    fn = writer.function(body, "body")
    n_consts, n_carry, length = attrs["n_consts"], attrs["n_carry"], attrs["length"]
    # the body's arguments are C-ordered, like the main function's (see FunctionWriter.contiguous);
    # views among the constants are copied once, before the loop
    consts = []
    for v in e.inputs[:n_consts]:
        expr = writer.contiguous(v) if v.shape else writer.name(v)
        if expr != writer.name(v):
            copied = writer.fresh("k")
            writer.emit(f"{copied} = {expr}")
            expr = copied
        consts.append(expr)
    carry_vars, x_vars = e.inputs[n_consts : n_consts + n_carry], e.inputs[n_consts + n_carry :]
    n_y = len(body.outputs) - n_carry
    c_names = [writer.fresh("c") for _ in carry_vars]
    for c, v in zip(c_names, carry_vars):
        writer.emit(
            f"{c} = np.ascontiguousarray({writer.name(v)})"
            if v.shape
            else f"{c} = np.asarray({writer.name(v)}).reshape(1)"
        )

    # stacked results nobody reads (a reverse scan's carry history, often) are not stored
    stacked_ys, stacked_hist = e.outs[n_carry : n_carry + n_y], e.outs[n_carry + n_y :]
    ys = [(k, writer.name(v), v) for k, v in enumerate(stacked_ys) if writer.is_read(v)]
    hist = [
        (writer.name(v), c, carry)
        for v, c, carry in zip(stacked_hist, c_names, carry_vars)
        if writer.is_read(v)
    ]
    for v in [v for v in stacked_ys + stacked_hist if writer.is_read(v)]:
        writer.alloc(writer.name(v), v.shape, v.dtype)
    order = f"range({length} - 1, -1, -1)" if attrs["reverse"] else f"range({length})"
    writer.emit(f"for t in {order}:")
    for h, c, v in hist:
        if v.shape:
            writer.copy(f"{h}[t]", c, v.shape, 2)
        else:
            writer.emit(f"{h}[t] = {c}[0]", 2)
    xs = []
    for v in x_vars:
        if len(v.shape) > 1:
            src = writer.contiguous(v)
            xs.append(
                f"{writer.name(v)}[t]"
                if src == writer.name(v)
                else f"np.ascontiguousarray({writer.name(v)}[t])"
            )
        else:
            xt = writer.fresh("xt")
            writer.emit(f"{xt} = np.empty((), np.{np.dtype(v.dtype).name})", 2)
            writer.emit(f"{xt}[()] = {writer.name(v)}[t]", 2)
            xs.append(xt)
    step_args = consts + [c if v.shape else f"{c}.reshape(())" for c, v in zip(c_names, carry_vars)] + xs
    res = writer.fresh("res")
    writer.emit(f"{res} = {fn}({', '.join(step_args)})", 2)
    for k, c in enumerate(c_names):
        writer.emit(f"{c} = {res}[{k}]", 2)
    for j, y, v in ys:
        if len(v.shape) > 1:
            writer.copy(f"{y}[t]", f"{res}[{n_carry + j}]", v.shape[1:], 2)
        else:
            writer.emit(f"{y}[t] = {res}[{n_carry + j}][0]", 2)
    for out, c, v in zip(e.outs[:n_carry], c_names, carry_vars):
        writer.emit(f"{writer.name(out)} = {c}" if v.shape else f"{writer.name(out)} = {c}.reshape(())")
    for out in e.outs:  # the carries are what the body returned: maybe its arguments, passed through
        writer.mark_view(out)
    return True


defemit(scan_p, _emit_scan)
