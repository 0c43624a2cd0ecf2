"""Reverse-mode automatic differentiation of traced graphs.

``grad(f)`` traces ``f`` once per input signature (the structure, shapes and dtypes of
its arguments) into a graph, differentiates that graph by emitting each equation's VJP
rule as more primitive calls (so the gradient is itself a graph, and can be
differentiated again), and compiles the result to straight-line numpy code. Later
calls with the same signature only run that code.

``f`` must be pure: it may depend on its arguments and on constants, and the trace is
reused for as long as ``f`` lives. Python numbers among the arguments are constants of
the trace (a new value traces again); arrays are inputs.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import elementwise as E
from . import structural as S
from .array_api import Placement, lift, mixed, numpy_dtype, placement
from .core import Const, Graph, Tracer, eval_graph, missing_gradient, store, trace_graph
from .errors import ShapeError
from .execute import compile_graph, quiet
from .tree import tree_flatten, tree_unflatten, treedef_size


def backward_pass(
    graph: Graph, primals: list, cotangents: list, wrt: Sequence[int], known: dict | None = None
) -> tuple[list, list]:
    """Re-emit ``graph`` on ``primals`` and pull ``cotangents`` of its outputs back to inputs ``wrt``.

    Returns ``(outputs, input_cotangents)``. Works on arrays and tracers alike; with
    tracers every rule is recorded, which is how gradients become graphs. ``known`` maps
    variables of ``graph`` (by id) to values saved earlier, which are used instead of
    recomputing them (a loop's residuals)."""
    env: dict[int, Any] = {id(v): p for v, p in zip(graph.inputs, primals)}
    needs = {id(graph.inputs[i]) for i in wrt}
    saved: dict[int, Any] = {}

    def read(v):
        return v.value if type(v) is Const else env[id(v)]

    from .core import bind  # local: bind is the hot call below

    for eqn in graph.eqns:
        prim = eqn.prim
        on_path = not prim.nondiff and any(id(v) in needs for v in eqn.inputs)
        if known and prim.vjp_fwd is None and all(id(v) in known for v in eqn.outs):
            for v in eqn.outs:
                env[id(v)] = known[id(v)]
        elif on_path and prim.vjp_fwd is not None:
            needed = tuple(type(v) is not Const and id(v) in needs for v in eqn.inputs)
            result, saved[id(eqn)] = prim.vjp_fwd(*[read(v) for v in eqn.inputs], needed=needed, **eqn.attrs)
            store(env, eqn, result)
        else:
            store(env, eqn, bind(prim, *[read(v) for v in eqn.inputs], **eqn.attrs))
        if on_path:
            needs.update(id(v) for v in eqn.outs)
    outputs = [read(v) for v in graph.outputs]

    cts: dict[int, Any] = {}

    def accumulate(v, c):
        key = id(v)
        cts[key] = c if key not in cts else E.add(cts[key], c)

    for v, c in zip(graph.outputs, cotangents):
        if type(v) is not Const and id(v) in needs and c is not None:
            accumulate(v, c)
    for eqn in reversed(graph.eqns):
        if eqn.prim.multiple_results:
            g = tuple(cts.pop(id(v), None) for v in eqn.outs)
            if all(x is None for x in g):
                continue
            out = tuple(env[id(v)] for v in eqn.outs)
        else:
            g = cts.pop(id(eqn.outs[0]), None)
            if g is None:
                continue
            out = env[id(eqn.outs[0])]
        if eqn.prim.vjp is None:
            raise missing_gradient(eqn.prim)
        ins = [read(v) for v in eqn.inputs]
        attrs = eqn.attrs if id(eqn) not in saved else dict(eqn.attrs, saved=saved[id(eqn)])
        for v, c in zip(eqn.inputs, eqn.prim.vjp(g, out, *ins, **attrs)):
            if c is not None and type(v) is not Const and id(v) in needs:
                accumulate(v, c)
    grads = []
    for i in wrt:
        v = graph.inputs[i]
        grads.append(cts.get(id(v), None))
        if grads[-1] is None:
            grads[-1] = np.zeros(v.shape, v.dtype)
    return outputs, grads


# ----------------------------------------------------------------------------- staging


@dataclass
class CallSignature:
    """How a call's arguments split into traced array leaves and constant leaves."""

    treedef: Any  # of the tuple of positional arguments
    dynamic: list  # leaf positions of arrays
    statics: tuple  # (position, value) of constant leaves
    key: tuple
    where: Placement | None = None  # where non-numpy arrays live; None: all numpy

    @property
    def treedefs(self) -> tuple:
        return self.treedef[2]

    @property
    def per_arg(self) -> list[range]:
        """The leaf positions of each positional argument."""
        out, start = [], 0
        for d in self.treedefs:
            n = treedef_size(d)
            out.append(range(start, start + n))
            start += n
        return out


def call_signature(args: tuple) -> tuple[CallSignature, list]:
    """Split the arguments into array values (traced) and constants; ``key`` names the trace.

    Arrays of another namespace than numpy (CuPy, array-api-strict) add their placement to
    the key, so the graph is compiled for them; they may not meet numpy arrays or another
    device in one call (numpy scalars are constants and are moved)."""
    leaves, treedef = tree_flatten(args)
    dynamic, values, statics, avals = [], [], [], []
    foreign = None
    for i, leaf in enumerate(leaves):
        t = type(leaf)
        if t is np.ndarray or t is Tracer:
            dynamic.append(i)
            values.append(leaf)
            avals.append((leaf.shape, leaf.dtype))
        elif isinstance(leaf, np.ndarray):  # a subclass (np.memmap) is numpy's all the same
            dynamic.append(i)
            values.append(np.asarray(leaf))
            avals.append((leaf.shape, leaf.dtype))
        elif isinstance(leaf, np.generic):
            dynamic.append(i)
            values.append(np.asarray(leaf))
            avals.append(((), leaf.dtype))
        elif hasattr(leaf, "__array_namespace__"):
            dynamic.append(i)
            values.append(leaf)
            avals.append((tuple(leaf.shape), numpy_dtype(leaf.dtype)))
            foreign = foreign or []
            foreign.append(i)
        else:
            statics.append((i, leaf))
    statics = tuple(statics)
    key = (treedef, tuple(avals), statics)
    if foreign is None:
        return CallSignature(treedef, dynamic, statics, key), values
    where = _one_placement(treedef, leaves, dynamic, foreign)
    return CallSignature(treedef, dynamic, statics, key + (where.key,), where), lift(values, where)


def _one_placement(treedef: Any, leaves: list, dynamic: list, foreign: list) -> Placement:
    """The placement of the call's device arrays; a clear error when backends or devices mix."""
    sizes = [treedef_size(d) for d in treedef[2]]
    starts = np.cumsum([0] + sizes)

    def name(i: int) -> str:
        return f"argument {int(np.searchsorted(starts, i, side='right')) - 1}"

    first = foreign[0]
    where = placement(leaves[first])
    for i in foreign[1:]:
        other = placement(leaves[i])
        if other != where:
            raise mixed(
                "this call's arguments",
                f"{name(first)} holds {where.describe()}",
                f"{name(i)} holds {other.describe()}",
            )
    for i in dynamic:
        if type(leaves[i]) is np.ndarray and leaves[i].ndim > 0:
            raise mixed(
                "this call's arguments",
                f"{name(first)} holds {where.describe()}",
                f"{name(i)} holds numpy arrays (cpu)",
            )
    return where


def _rebuild(sig: CallSignature, values: list) -> tuple:
    leaves: list = [None] * (len(sig.dynamic) + len(sig.statics))
    for pos, v in zip(sig.dynamic, values):
        leaves[pos] = v
    for pos, v in sig.statics:
        leaves[pos] = v
    return tree_unflatten(sig.treedef, leaves)


class _Staged:
    """A graph with its compiled code; runs compiled on arrays, inlines itself on tracers."""

    __slots__ = ("graph", "run", "meta")

    def __init__(self, graph: Graph, meta: Any = None, where: Placement | None = None):
        self.graph = graph
        self.run = compile_graph(graph, where)
        self.meta = meta

    def __call__(self, values: list) -> list:
        for v in values:
            if type(v) is Tracer:
                return eval_graph(self.graph, values)
        with quiet():  # a diverging step overflows: the checks and fit report it, not numpy
            return self.run(*values)


def trace_call(fn: Callable, sig: CallSignature, values: list) -> tuple[Graph, Any]:
    """The graph of ``fn`` called with ``values`` traced and ``sig``'s constants in place, and
    the tree structure of its result (the graph's outputs are that tree's leaves)."""
    box = {}

    def flat_fn(tracers):
        out = fn(*_rebuild(sig, tracers))
        out_leaves, box["treedef"] = tree_flatten(out)
        return out_leaves

    graph = trace_graph(flat_fn, _avals(values))
    return graph, box["treedef"]


def _avals(values: list) -> list:
    return [(tuple(v.shape), numpy_dtype(v.dtype)) for v in values]


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


_TRANSFORMS: weakref.WeakKeyDictionary[Callable, dict] = weakref.WeakKeyDictionary()


def _cache_for(fn: Callable) -> dict:
    try:
        return _TRANSFORMS.setdefault(fn, {})
    except TypeError:  # not weak-referenceable: cache on the transform object only
        return {}


def _float_check(values: list, wrt: list[int], fname: str) -> None:
    for k in wrt:
        if numpy_dtype(values[k].dtype).kind != "f":
            raise ShapeError(
                f"{fname}: can only differentiate with respect to floating-point "
                f"arrays, got dtype {values[k].dtype}"
            )


# ----------------------------------------------------------------------------- public transforms


def value_and_grad(fn: Callable, argnums: int | tuple[int, ...] = 0) -> Callable:
    """``f -> (lambda *args: (f(*args), df/dargs[argnums]))`` for a scalar-valued ``f``.

    The gradient has the structure of the differentiated argument.

    >>> import numpy as np
    >>> value_and_grad(lambda x: (x ** 2).sum())(np.array([1.0, 2.0]))
    (np.float64(5.0), array([2., 4.]))
    """
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    cache = _cache_for(fn)
    name = getattr(fn, "__name__", "function")

    def build(sig, values):
        fwd, out_def = trace_call(fn, sig, values)
        if len(fwd.outputs) != 1 or fwd.outputs[0].shape != ():
            shapes = [tuple(v.shape) for v in fwd.outputs]
            raise ShapeError(
                f"grad: '{name}' must return one scalar to be differentiated, but it returned "
                f"{'shapes ' + str(shapes) if len(shapes) != 1 else 'shape ' + str(shapes[0])}.\n"
                "  hint: reduce it with nnc.mean or nnc.sum, or use nnc.vjp for non-scalar outputs"
            )
        wrt = _wrt_positions(sig, nums, "grad")
        _float_check(values, wrt, "grad")
        one = np.ones((), fwd.outputs[0].dtype)

        def joint(tracers):
            outs, grads = backward_pass(fwd, tracers, [one], wrt)
            return outs + grads

        graph = trace_graph(joint, _avals(values))
        spans, k = [], 1
        for a in nums:
            n = len(sig.per_arg[a])
            spans.append((sig.treedefs[a], k, k + n))
            k += n
        return _Staged(graph, spans, sig.where)

    def run(*args):
        sig, values = call_signature(args)
        key = (kind, sig.key)
        staged = cache.get(key)
        if staged is None:
            staged = cache[key] = build(sig, values)
        outs = staged(values)
        grads = [tree_unflatten(d, outs[a:b]) for d, a, b in staged.meta]
        return outs[0], grads[0] if single else tuple(grads)

    kind = ("vg", nums)
    single = isinstance(argnums, int)

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
    cache = _cache_for(fn)
    sig, values = call_signature(args)
    key = ("vjp",) + sig.key
    entry = cache.get(key)
    if entry is None:
        fwd, out_def = trace_call(fn, sig, values)
        wrt = [k for k, v in enumerate(values) if numpy_dtype(v.dtype).kind == "f"]
        n_in = len(values)

        def joint(tracers):
            outs, grads = backward_pass(fwd, tracers[:n_in], tracers[n_in:], wrt)
            return grads

        ct_avals = [(v.shape, v.dtype) for v in fwd.outputs]
        back = _Staged(trace_graph(joint, _avals(values) + ct_avals), (wrt, out_def, ct_avals), sig.where)
        entry = cache[key] = (_Staged(fwd, None, sig.where), back)
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
        if sig.where is None:
            ct_leaves = [
                c if type(c) is Tracer else np.asarray(c, dtype=d) for c, (_, d) in zip(ct_leaves, ct_avals)
            ]
        else:
            ct_leaves = lift(
                [
                    c if type(c) is Tracer or placement(c) is not None else np.asarray(c, dtype=d)
                    for c, (_, d) in zip(ct_leaves, ct_avals)
                ],
                sig.where,
            )
        grads = back(values + ct_leaves)
        flat: list = [None] * len(values)
        for k, g in zip(wrt, grads):
            flat[k] = g
        return tuple(_rebuild(sig, flat))

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
        out_shape = E.shape_of(out)
        size = int(np.prod(out_shape, dtype=np.int64))
        dtype = E.dtype_of(out)
        rows = []
        for i in range(size):
            basis = np.zeros(size, dtype)
            basis[i] = 1
            rows.append(pullback(basis.reshape(out_shape))[argnums])
        if any(type(r) is Tracer for r in rows):
            flat = S.concat([S.reshape(r, (1, -1)) for r in rows], axis=0)
            return S.reshape(flat, tuple(out_shape) + tuple(E.shape_of(x)))
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
