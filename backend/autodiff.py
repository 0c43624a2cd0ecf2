"""Reverse-mode automatic differentiation of traced graphs, and the transforms built on it.

``grad(f)`` stages ``f`` (:mod:`nnc.backend.staging`: traced once per call signature into a
graph), differentiates that graph by emitting each equation's VJP rule as more primitive
calls, so that the gradient is itself a graph and can be differentiated again, and compiles
the result to straight-line numpy code. Later calls with the same signature only run that
code.

The differentiation is :func:`backward_pass`, in three steps read top to bottom:
:func:`gradient_path` finds the values a gradient flows through; :func:`replay_forward`
emits the forward again so that the rules can read its values, saving residuals where a
primitive asks to and taking values saved earlier where it is given them
(:func:`substitute_saved`); and :func:`reverse_sweep` pulls the cotangents back from the
outputs to the inputs, one equation at a time.

``f`` must be pure: it may depend on its arguments and on constants, and the trace is
reused for as long as ``f`` lives. Python numbers among the arguments are constants of
the trace (a new value traces again); arrays are inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .array_api import lift, numpy_dtype, placement
from .core import Const, Eqn, Graph, Tracer, Var, bind, missing_gradient, store, trace_graph
from .elementwise import add, dtype_of, shape_of
from .errors import ShapeError
from .staging import CallSignature, Staged, avals_of, cache_for, call_signature, trace_call
from .structural import concat, reshape
from .tree import tree_flatten, tree_unflatten

# Values of a graph being differentiated, by the id of their variable: primals, then cotangents.
Env = dict[int, Any]


def backward_pass(
    graph: Graph, primals: list, cotangents: list, wrt: Sequence[int], known: Env | None = None
) -> tuple[list, list]:
    """Re-emit ``graph`` on ``primals`` and pull ``cotangents`` of its outputs back to inputs ``wrt``.

    Returns ``(outputs, input_cotangents)``; an input no gradient reaches gets zeros. Works
    on arrays and tracers alike; with tracers every rule is recorded, which is how gradients
    become graphs. ``known`` maps variables of ``graph`` (by id) to values saved earlier,
    which are used instead of recomputing them (a loop's residuals)."""
    path = gradient_path(graph, wrt)
    env: Env = {id(v): p for v, p in zip(graph.inputs, primals)}
    residuals = replay_forward(graph, env, path, known or {})
    outputs = [_read(env, v) for v in graph.outputs]
    cts = reverse_sweep(graph, env, residuals, path, cotangents)
    grads = []
    for i in wrt:
        v = graph.inputs[i]
        ct = cts.get(id(v))
        grads.append(np.zeros(v.shape, v.dtype) if ct is None else ct)
    return outputs, grads


def gradient_path(graph: Graph, wrt: Sequence[int]) -> set[int]:
    """The variables (by id) a gradient flows through: the inputs ``wrt`` and the results of
    every differentiable equation that reads one of them.

    Only these get cotangents, and only their equations are differentiated: the rest of the
    forward (a comparison, the labels' one-hot) is replayed but needs no rule."""
    path = {id(graph.inputs[i]) for i in wrt}
    for eqn in graph.eqns:
        if _on_path(eqn, path):
            path.update(id(v) for v in eqn.outs)
    return path


def replay_forward(graph: Graph, env: Env, path: set[int], known: Env) -> dict[int, Any]:
    """Emit ``graph``'s equations again on the values in ``env`` (its inputs), adding their results.

    The rules read the forward's values (a tanh's output, a product's operands); emitted in
    the same trace as the rules, forward and backward become one graph and one piece of
    straight-line code. On the gradient path a primitive with ``vjp_fwd`` runs that instead,
    which also returns what its rule will need (a scan stacks the intermediates of each
    step): the result maps those equations (by id) to their residuals."""
    residuals: dict[int, Any] = {}
    for eqn in graph.eqns:
        if known and substitute_saved(eqn, env, known):
            continue
        args = [_read(env, v) for v in eqn.inputs]
        prim = eqn.prim
        if prim.vjp_fwd is not None and _on_path(eqn, path):
            needed = tuple(type(v) is not Const and id(v) in path for v in eqn.inputs)
            result, residuals[id(eqn)] = prim.vjp_fwd(*args, needed=needed, **eqn.attrs)
        else:
            result = bind(prim, *args, **eqn.attrs)
        store(env, eqn, result)
    return residuals


def substitute_saved(eqn: Eqn, env: Env, known: Env) -> bool:
    """Take ``eqn``'s results from ``known`` instead of recomputing them, when all are there.

    A scan's reverse step differentiates its body one time step at a time, and the forward
    scan stacked that step's intermediates: reading them is cheaper than computing them
    again. A primitive with ``vjp_fwd`` is never substituted: its rule needs the residuals
    only its own replay returns."""
    if eqn.prim.vjp_fwd is not None or not all(id(v) in known for v in eqn.outs):
        return False
    for v in eqn.outs:
        env[id(v)] = known[id(v)]
    return True


def reverse_sweep(graph: Graph, env: Env, residuals: dict[int, Any], path: set[int], cotangents: list) -> Env:
    """Pull ``cotangents`` of ``graph``'s outputs back through its equations, last to first.

    Each equation a cotangent reached emits its VJP rule (on the values replayed into
    ``env``), and what the rule gives each input on the gradient path is added to that
    input's cotangent: a value read twice gets the sum. Every reader of a result comes
    after its equation, so a result's cotangent is complete when the sweep reaches that
    equation, and is taken out of the table then; what is left at the end belongs to the
    graph's inputs. Returns it, by variable id."""
    cts: Env = {}
    for v, ct in zip(graph.outputs, cotangents):
        if ct is not None and type(v) is not Const and id(v) in path:
            _accumulate(cts, v, ct)
    for eqn in reversed(graph.eqns):
        reached = _take_cotangents(eqn, cts, env)
        if reached is None:
            continue
        g, out = reached
        if eqn.prim.vjp is None:
            raise missing_gradient(eqn.prim)
        ins = [_read(env, v) for v in eqn.inputs]
        attrs = eqn.attrs if id(eqn) not in residuals else dict(eqn.attrs, saved=residuals[id(eqn)])
        for v, ct in zip(eqn.inputs, eqn.prim.vjp(g, out, *ins, **attrs)):
            if ct is not None and type(v) is not Const and id(v) in path:
                _accumulate(cts, v, ct)
    return cts


def _on_path(eqn: Eqn, path: set[int]) -> bool:
    return not eqn.prim.nondiff and any(id(v) in path for v in eqn.inputs)


def _read(env: Env, v: Var | Const) -> Any:
    return v.value if type(v) is Const else env[id(v)]


def _accumulate(cts: Env, v: Var | Const, ct: Any) -> None:
    key = id(v)
    cts[key] = ct if key not in cts else add(cts[key], ct)


def _take_cotangents(eqn: Eqn, cts: Env, env: Env) -> tuple[Any, Any] | None:
    """``(g, out)`` for ``eqn``'s rule, its results' cotangents taken out of ``cts`` (tuples of
    them for a primitive with multiple results); ``None`` when no cotangent reached it."""
    if eqn.prim.multiple_results:
        g = tuple(cts.pop(id(v), None) for v in eqn.outs)
        if all(x is None for x in g):
            return None
        return g, tuple(env[id(v)] for v in eqn.outs)
    ct = cts.pop(id(eqn.outs[0]), None)
    if ct is None:
        return None
    return ct, env[id(eqn.outs[0])]


# ----------------------------------------------------------------------------- what to differentiate


def _wrt_positions(sig: CallSignature, argnums: tuple[int, ...], fname: str) -> list[int]:
    """Indices into the dynamic values of the leaves of the differentiated arguments."""
    index = {pos: k for k, pos in enumerate(sig.dynamic)}
    wrt = []
    for a in argnums:
        if a >= len(sig.per_arg):
            raise ShapeError(
                f"{fname}: argnums {a} but the function was called with {len(sig.per_arg)} arguments"
            )
        for pos in sig.per_arg[a]:
            if pos not in index:
                raise ShapeError(
                    f"{fname}: argument {a} holds a Python value, not an array; "
                    "differentiate with respect to numpy arrays"
                )
            wrt.append(index[pos])
    return wrt


def _float_check(values: list, wrt: list[int], fname: str) -> None:
    for k in wrt:
        if numpy_dtype(values[k].dtype).kind != "f":
            raise ShapeError(
                f"{fname}: can only differentiate with respect to floating-point "
                f"arrays, got dtype {values[k].dtype}"
            )


# ----------------------------------------------------------------------------- public transforms


def value_and_grad(fn: Callable, argnums: int | tuple[int, ...] = 0, *, has_aux: bool = False) -> Callable:
    """``f -> (lambda *args: (f(*args), df/dargs[argnums]))`` for a scalar-valued ``f``.

    The gradient has the structure of the differentiated argument. With ``has_aux``, ``f``
    returns ``(scalar, aux)``: ``aux`` (any tree, such as a model's new running statistics)
    is computed in the same pass, returned beside the scalar and not differentiated.

    >>> import numpy as np
    >>> value_and_grad(lambda x: (x ** 2).sum())(np.array([1.0, 2.0]))
    (np.float64(5.0), array([2., 4.]))
    >>> (value, aux), g = value_and_grad(lambda x: ((x ** 2).sum(), x * 3), has_aux=True)(np.array([1.0, 2.0]))
    >>> float(value), aux.tolist(), g.tolist()
    (5.0, [3.0, 6.0], [2.0, 4.0])
    """
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    cache = cache_for(fn)
    name = getattr(fn, "__name__", "function")

    def build(sig, values):
        fwd, out_def = trace_call(fn, sig, values)
        if has_aux and not (isinstance(out_def, tuple) and out_def[0] == "t" and len(out_def[2]) == 2):
            raise ShapeError(f"grad: '{name}' has has_aux=True, so it must return a pair (scalar, aux)")
        if (len(fwd.outputs) != 1 and not has_aux) or fwd.outputs[0].shape != ():
            shapes = [tuple(v.shape) for v in fwd.outputs]
            raise ShapeError(
                f"grad: '{name}' must return one scalar to be differentiated, but it returned "
                f"{'shapes ' + str(shapes) if len(shapes) != 1 else 'shape ' + str(shapes[0])}.\n"
                "  hint: reduce it with nnc.mean or nnc.sum, or use nnc.vjp for non-scalar outputs"
            )
        wrt = _wrt_positions(sig, nums, "grad")
        _float_check(values, wrt, "grad")
        cotangents = [np.ones((), fwd.outputs[0].dtype)] + [None] * (len(fwd.outputs) - 1)

        def joint(tracers):
            outs, grads = backward_pass(fwd, tracers, cotangents, wrt)
            return outs + grads

        graph = trace_graph(joint, avals_of(values))
        spans, k = [], len(fwd.outputs)
        for a in nums:
            n = len(sig.per_arg[a])
            spans.append((sig.treedefs[a], k, k + n))
            k += n
        return Staged(graph, (spans, out_def, len(fwd.outputs)), sig.placement)

    kind = ("vg", nums, has_aux)
    single = isinstance(argnums, int)

    def run(*args):
        sig, values = call_signature(args)
        key = (kind, sig.key)
        staged = cache.get(key)
        if staged is None:
            staged = cache[key] = build(sig, values)
        outs = staged(values)
        spans, out_def, n_out = staged.meta
        grads = [tree_unflatten(d, outs[a:b]) for d, a, b in spans]
        value = tree_unflatten(out_def, outs[:n_out]) if has_aux else outs[0]
        return value, grads[0] if single else tuple(grads)

    run.__name__ = f"value_and_grad({name})"
    run.__doc__ = fn.__doc__
    return run


def grad(fn: Callable, argnums: int | tuple[int, ...] = 0) -> Callable:
    """The gradient of scalar-valued ``fn`` with respect to argument ``argnums``.

    >>> import numpy as np
    >>> grad(lambda x: (x ** 3).sum())(np.array([1.0, 2.0]))
    array([ 3., 12.])
    """
    vg = value_and_grad(fn, argnums)

    def run(*args):
        return vg(*args)[1]

    run.__name__ = f"grad({getattr(fn, '__name__', 'function')})"
    run.__doc__ = fn.__doc__
    return run


def vjp(fn: Callable, *args: Any) -> tuple[Any, Callable]:
    """``(fn(*args), pullback)`` where ``pullback(ct)`` gives ``ct``'s cotangent for every argument.

    >>> import numpy as np
    >>> y, pullback = vjp(lambda a, b: a * b, np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    >>> pullback(np.array([1.0, 1.0]))
    (array([3., 4.]), array([1., 2.]))
    """
    cache = cache_for(fn)
    sig, values = call_signature(args)
    key = ("vjp",) + sig.key
    entry = cache.get(key)
    if entry is None:
        fwd, out_def = trace_call(fn, sig, values)
        wrt = [k for k, v in enumerate(values) if numpy_dtype(v.dtype).kind == "f"]
        n_in = len(values)

        def joint(tracers):
            _, grads = backward_pass(fwd, tracers[:n_in], tracers[n_in:], wrt)
            return grads

        ct_avals = [(v.shape, v.dtype) for v in fwd.outputs]
        back = Staged(
            trace_graph(joint, avals_of(values) + ct_avals), (wrt, out_def, ct_avals), sig.placement
        )
        entry = cache[key] = (Staged(fwd, None, sig.placement), back)
    forward, back = entry
    wrt, out_def, ct_avals = back.meta
    out = tree_unflatten(out_def, forward(values))

    def pullback(ct: Any):
        ct_leaves, ct_def = tree_flatten(ct)
        if ct_def != out_def or [np.shape(c) for c in ct_leaves] != [s for s, _ in ct_avals]:
            raise ShapeError(
                f"vjp: the cotangent must match the output's structure and shapes "
                f"{[s for s, _ in ct_avals]}, got {[np.shape(c) for c in ct_leaves]}"
            )
        if sig.placement is None:
            ct_leaves = [
                c if type(c) is Tracer else np.asarray(c, dtype=d) for c, (_, d) in zip(ct_leaves, ct_avals)
            ]
        else:
            ct_leaves = lift(
                [
                    c if type(c) is Tracer or placement(c) is not None else np.asarray(c, dtype=d)
                    for c, (_, d) in zip(ct_leaves, ct_avals)
                ],
                sig.placement,
            )
        grads = back(values + ct_leaves)
        flat: list = [None] * len(values)
        for k, g in zip(wrt, grads):
            flat[k] = g
        return tuple(sig.rebuild(flat))

    return out, pullback


def jacobian(fn: Callable, argnums: int = 0) -> Callable:
    """The Jacobian of array-valued ``fn`` with respect to array argument ``argnums``.

    The result has shape ``fn(x).shape + x.shape``; it is built one output entry at a time
    by reverse mode, which suits the small problems Jacobians are used for.

    >>> import numpy as np
    >>> jacobian(lambda x: x ** 2)(np.array([1.0, 3.0]))
    array([[2., 0.],
           [0., 6.]])
    """

    def run(*args):
        x = args[argnums]
        if type(x) is not Tracer and not isinstance(x, np.ndarray):
            raise ShapeError("jacobian: differentiate with respect to one numpy array")
        out, pullback = vjp(fn, *args)
        out_shape = shape_of(out)
        size = int(np.prod(out_shape, dtype=np.int64))
        dtype = dtype_of(out)
        rows = []
        for i in range(size):
            basis = np.zeros(size, dtype)
            basis[i] = 1
            rows.append(pullback(basis.reshape(out_shape))[argnums])
        if any(type(r) is Tracer for r in rows):
            flat = concat([reshape(r, (1, -1)) for r in rows], axis=0)
            return reshape(flat, tuple(out_shape) + tuple(shape_of(x)))
        return np.stack(rows).reshape(tuple(out_shape) + tuple(np.shape(x)))

    run.__name__ = f"jacobian({getattr(fn, '__name__', 'function')})"
    return run


def hessian(fn: Callable, argnums: int = 0) -> Callable:
    """The Hessian of scalar-valued ``fn``: the Jacobian of its gradient (a gradient of a gradient).

    >>> import numpy as np
    >>> hessian(lambda x: (x[0] ** 2) * x[1])(np.array([1.0, 2.0]))
    array([[4., 2.],
           [2., 0.]])
    """
    return jacobian(grad(fn, argnums), argnums)
