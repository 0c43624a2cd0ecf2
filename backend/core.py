"""Primitives, tracing and graphs: the small core everything else is built on.

A *primitive* is an array operation with a numpy implementation and, registered
beside it, a vector-Jacobian product (VJP) rule. Calling :func:`bind` on plain
arrays runs the implementation at once; calling it on :class:`Tracer` values records
an equation in the current :class:`Trace` instead. Tracing a function once gives a
:class:`Graph`: a topologically ordered list of equations that can be differentiated
(``autodiff``) and turned into fast straight-line code (``execute``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np

from .array_api import DeviceError, Placement, lift, namespace_of, numpy_dtype, placement_of
from .errors import MissingGradient, TraceError

# ----------------------------------------------------------------------------- primitives


@dataclass(eq=False)
class Primitive:
    """One array operation: ``impl`` computes it, ``vjp`` differentiates it.

    ``vjp(g, out, *inputs, **attrs)`` returns one cotangent (or ``None`` for zero)
    per input, written with nnc operations so that it can itself be traced and
    differentiated again. ``nondiff`` marks operations whose output carries no
    gradient (comparisons, integer results): they are skipped, not an error.
    """

    name: str
    impl: Callable[..., Any]
    vjp: Callable[..., tuple] | None = None
    abstract: Callable[..., Any] | None = None
    nondiff: bool = False
    multiple_results: bool = False  # impl returns a tuple; vjp gets tuples of g and out
    # Optional split of differentiation for primitives that should save residuals in their
    # forward pass rather than recompute them: when a gradient is taken, the forward is
    # emitted by vjp_fwd(*inputs, needed=(bool per input), **attrs) -> (results, saved),
    # and vjp then receives saved=... as a keyword.
    vjp_fwd: Callable[..., tuple] | None = None
    # The same operation written with the Python array API alone: generic(xp, *inputs, **attrs)
    # runs on arrays of namespace xp (CuPy, array-api-strict); impl stays the numpy fast path.
    generic: Callable[..., Any] | None = None
    # The compiled form, registered with defemit beside the VJP: emit(writer, eqn) writes the Numba
    # source of one equation through the writer's API (numba_codegen.FunctionWriter) and returns
    # False to leave it to the generic object-mode call.
    emit: Callable[..., bool] | None = None
    # The one-entry form for fused elementwise loops, registered with defscalar:
    # scalar(*operands, dtype=..., **attrs) -> a Python expression over operand expressions.
    scalar: Callable[..., str] | None = None

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"


PRIMITIVES: dict[str, Primitive] = {}


def defprim(
    name: str,
    impl: Callable,
    *,
    abstract: Callable | None = None,
    nondiff: bool = False,
    multiple_results: bool = False,
) -> Primitive:
    """Register a primitive; its VJP rule is attached with :func:`defvjp`.

    ``abstract(*avals, **attrs)`` gives the result's ``(shape, dtype)`` (a list of them
    with ``multiple_results``); without it the result is found by running ``impl`` on
    zeros once per trace."""
    prim = Primitive(name, impl, abstract=abstract, nondiff=nondiff, multiple_results=multiple_results)
    PRIMITIVES[name] = prim
    return prim


def defvjp(prim: Primitive, rule: Callable[..., tuple]) -> None:
    prim.vjp = rule


def defgeneric(prim: Primitive, fn: Callable[..., Any]) -> None:
    """Attach ``fn(xp, *inputs, **attrs)``, ``prim`` written with array-API namespace ``xp`` only."""
    prim.generic = fn


def defemit(prim: Primitive, fn: Callable[..., bool]) -> None:
    """Attach ``fn(writer, eqn) -> bool``, the compiled (Numba source) form of ``prim``."""
    prim.emit = fn


def defscalar(prim: Primitive, fn: Callable[..., str]) -> None:
    """Attach ``fn(*operands, dtype, **attrs) -> str``: ``prim`` on one entry, fused into a loop."""
    prim.scalar = fn


def impl_for(prim: Primitive, placement: Placement | None) -> Callable[..., Any]:
    """The implementation of ``prim`` for arrays at ``placement`` (``None``: numpy, the fast path)."""
    if placement is None:
        return prim.impl
    if prim.generic is None:
        raise DeviceError(
            f"primitive '{prim.name}' has no array-API implementation, so it runs on numpy only, "
            f"not on {placement.describe()}.\n"
            f"  hint: move the arrays to numpy with nnc.to_device(tree, 'numpy'), or register one "
            f"with nnc.backend.core.defgeneric"
        )
    generic, xp = prim.generic, placement.xp

    def run(*args, **attrs):
        return generic(xp, *args, **attrs)

    return run


def missing_gradient(prim: Primitive) -> MissingGradient:
    return MissingGradient(
        f"primitive '{prim.name}' has no gradient rule (VJP), so nnc cannot differentiate through it.\n"
        f"  hint: register one with nnc.backend.core.defvjp(PRIMITIVES['{prim.name}'], rule), "
        f"or stop the gradient before it"
    )


# ----------------------------------------------------------------------------- graph values


_ids = itertools.count()


class Var:
    """A value in a graph: its shape and dtype are known, its contents are not."""

    __slots__ = ("shape", "dtype", "producer", "id")

    def __init__(self, shape: tuple[int, ...], dtype: Any, producer: Eqn | None = None):
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.producer = producer
        self.id = next(_ids)

    def __repr__(self) -> str:
        return f"v{self.id}:{self.dtype.name}{list(self.shape)}"


class Const:
    """A constant captured while tracing (a data array, a scalar, a folded result)."""

    __slots__ = ("value", "shape", "dtype", "id")

    def __init__(self, value: Any):
        self.value = value
        if namespace_of(value) is None:
            arr = np.asarray(value)
            self.shape, self.dtype = arr.shape, arr.dtype
        else:  # a device array: read its description, never its contents
            self.shape, self.dtype = tuple(value.shape), numpy_dtype(value.dtype)
        self.id = next(_ids)

    def __repr__(self) -> str:
        return f"c{self.id}:{self.dtype.name}{list(self.shape)}"


@dataclass(eq=False)
class Eqn:
    """One primitive applied in a graph: ``outs = prim(*inputs, **attrs)``."""

    prim: Primitive
    inputs: tuple[Var | Const, ...]
    attrs: dict[str, Any]  # the primitive's static arguments
    outs: tuple[Var, ...]  # one, or several for a primitive with multiple results

    @property
    def out(self) -> Var:
        return self.outs[0]


@dataclass(eq=False)
class Graph:
    """A traced function: inputs, equations in execution order, and outputs.

    ``runs`` holds the graph's straight-line code once made (``execute.compiled``), by
    placement key (``None``: numpy), so a graph is compiled once wherever it is run."""

    inputs: list[Var]
    eqns: list[Eqn]
    outputs: Sequence[Var | Const]
    runs: dict[Any, Callable[..., list]] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        lines = [f"graph({', '.join(map(repr, self.inputs))}):"]
        for e in self.eqns:
            kw = "".join(f", {k}=..." if isinstance(v, Graph) else f", {k}={v!r}" for k, v in e.attrs.items())
            lines.append(
                f"  {', '.join(map(repr, e.outs))} = {e.prim.name}({', '.join(map(repr, e.inputs))}{kw})"
            )
        lines.append(f"  return {', '.join(map(repr, self.outputs))}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- tracing


class Trace:
    """The equations recorded while a function runs on tracers."""

    __slots__ = ("eqns", "closed")

    def __init__(self) -> None:
        self.eqns: list[Eqn] = []
        self.closed = False


# The array functions Tracer's operators call, by name: ``x + y`` on a tracer is
# ``OPERATORS["add"](x, y)``. They are the primitives' front ends, written on top of this
# module, which therefore cannot import them: nnc.backend.ops registers them, on ``import nnc``.
OPERATORS: dict[str, Callable[..., Any]] = {}


class Tracer:
    """Stands for an array while a function is traced; operators record primitives.

    Shape and dtype are known; values are not, so Python control flow on a tracer's
    value (``if x > 0:``) raises :class:`TraceError` with a hint instead of guessing.
    """

    __slots__ = ("trace", "var")
    __array_ufunc__ = None  # numpy defers to our reflected operators
    __array_priority__ = 1000

    def __init__(self, trace: Trace, var: Var):
        self.trace = trace
        self.var = var

    @property
    def shape(self) -> tuple[int, ...]:
        return self.var.shape

    @property
    def dtype(self) -> np.dtype:
        return self.var.dtype

    @property
    def ndim(self) -> int:
        return len(self.var.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.var.shape, dtype=np.int64))

    def __len__(self) -> int:
        if not self.var.shape:
            raise TypeError("len() of a 0-d traced array")
        return self.var.shape[0]

    def __repr__(self) -> str:
        return f"Traced<{self.dtype.name}{list(self.shape)}>"

    # ------------------------------------------------------------------ operators, as numpy's

    def __add__(self, other: Any) -> Tracer:
        return OPERATORS["add"](self, other)

    def __radd__(self, other: Any) -> Tracer:
        return OPERATORS["add"](other, self)

    def __sub__(self, other: Any) -> Tracer:
        return OPERATORS["sub"](self, other)

    def __rsub__(self, other: Any) -> Tracer:
        return OPERATORS["sub"](other, self)

    def __mul__(self, other: Any) -> Tracer:
        return OPERATORS["mul"](self, other)

    def __rmul__(self, other: Any) -> Tracer:
        return OPERATORS["mul"](other, self)

    def __truediv__(self, other: Any) -> Tracer:
        return OPERATORS["div"](self, other)

    def __rtruediv__(self, other: Any) -> Tracer:
        return OPERATORS["div"](other, self)

    def __pow__(self, other: Any) -> Tracer:
        return OPERATORS["power"](self, other)

    def __rpow__(self, other: Any) -> Tracer:
        return OPERATORS["power"](other, self)

    def __matmul__(self, other: Any) -> Tracer:
        return OPERATORS["matmul"](self, other)

    def __rmatmul__(self, other: Any) -> Tracer:
        return OPERATORS["matmul"](other, self)

    def __neg__(self) -> Tracer:
        return OPERATORS["neg"](self)

    def __pos__(self) -> Tracer:
        return self

    def __abs__(self) -> Tracer:
        return OPERATORS["absolute"](self)

    def __gt__(self, other: Any) -> Tracer:
        return OPERATORS["greater"](self, other)

    def __lt__(self, other: Any) -> Tracer:
        return OPERATORS["less"](self, other)

    def __getitem__(self, index: Any) -> Tracer:
        return OPERATORS["getitem"](self, index)

    def __iter__(self) -> Iterator[Tracer]:
        return (self[i] for i in range(len(self)))

    # ------------------------------------------------------------------ methods, as numpy's

    @property
    def T(self) -> Tracer:
        return OPERATORS["transpose"](self)

    def transpose(self, *axes: int) -> Tracer:
        return OPERATORS["transpose"](self, axes or None)

    def reshape(self, *shape: Any) -> Tracer:
        """``x.reshape(2, 3)`` or ``x.reshape((2, 3))``, as numpy takes either."""
        return OPERATORS["reshape"](self, shape[0] if len(shape) == 1 else shape)

    def sum(self, axis: Any = None, keepdims: bool = False) -> Tracer:
        return OPERATORS["sum"](self, axis, keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tracer:
        return OPERATORS["mean"](self, axis, keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Tracer:
        return OPERATORS["max"](self, axis, keepdims)

    def astype(self, dtype: Any) -> Tracer:
        return OPERATORS["cast"](self, dtype)

    # ------------------------------------------------------------------ what needs a value

    def _concrete(self, what: str) -> NoReturn:
        raise TraceError(
            f"{what} needs the value of a traced array ({self.dtype.name}{list(self.shape)}), "
            "but inside nnc.grad and friends only shapes are known while the function is traced.\n"
            "  hint: write the computation with nnc operations (nnc.where, nnc.maximum) instead of "
            "Python control flow, or compute the value outside the differentiated function"
        )

    def __bool__(self) -> bool:
        self._concrete("Python control flow (if/while/and/or)")

    def __float__(self) -> float:
        self._concrete("float()")

    def __int__(self) -> int:
        self._concrete("int()")

    def __index__(self) -> int:
        self._concrete("using an array as an index")

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        self._concrete("converting to a numpy array")


def _abstract_by_running(prim: Primitive, avals: list, attrs: dict) -> Any:
    """Shape and dtype of ``prim``'s result (a list of them with multiple results), found by
    running it on zeros (done once per trace)."""
    dummies = [np.zeros(s, d) for s, d in avals]
    with np.errstate(all="ignore"):
        out = prim.impl(*dummies, **attrs)
    if prim.multiple_results:
        return [(np.shape(o), np.asarray(o).dtype) for o in out]
    out = np.asarray(out)
    return out.shape, out.dtype


def bind(prim: Primitive, *args: Any, **attrs: Any) -> Any:
    """Apply ``prim``: at once on arrays, or recorded in the trace when an argument is a tracer."""
    trace = None
    plain = True
    for a in args:
        t = type(a)
        if t is Tracer:
            if trace is None:
                trace = a.trace
            elif a.trace is not trace:
                raise _mixed_traces(prim)
        elif t is not np.ndarray:
            plain = False
    if trace is None:
        if plain:
            return prim.impl(*args, **attrs)
        return _bind_foreign(prim, args, attrs)
    if trace.closed:
        raise _escaped(prim)
    inputs = tuple(a.var if type(a) is Tracer else Const(a) for a in args)
    avals = [(v.shape, v.dtype) for v in inputs]
    if prim.abstract is not None:
        result = prim.abstract(*avals, **attrs)
    else:
        result = _abstract_by_running(prim, avals, attrs)
    outs = tuple(Var(tuple(s), d) for s, d in (result if prim.multiple_results else [result]))
    eqn = Eqn(prim, inputs, attrs, outs)
    for v in outs:
        v.producer = eqn
    trace.eqns.append(eqn)
    if prim.multiple_results:
        return tuple(Tracer(trace, v) for v in outs)
    return Tracer(trace, outs[0])


def _bind_foreign(prim: Primitive, args: tuple, attrs: dict) -> Any:
    """Run ``prim`` at once where its arguments live: numpy, or one other array namespace."""
    placement = placement_of(args, f"the arguments of '{prim.name}'")
    if placement is None:
        return prim.impl(*args, **attrs)
    return impl_for(prim, placement)(*lift(list(args), placement), **attrs)


def _mixed_traces(prim: Primitive) -> TraceError:
    return TraceError(
        f"'{prim.name}' received traced values from two different traces: an inner nnc.grad "
        "closes over a value traced by an outer one.\n"
        "  hint: pass that value to the inner function as an argument instead of capturing it"
    )


def _escaped(prim: Primitive) -> TraceError:
    return TraceError(
        f"'{prim.name}' was applied to a traced value after its trace ended (a tracer escaped "
        "from a differentiated function, e.g. stored in a global).\n"
        "  hint: return values from the function instead of storing them"
    )


def trace_graph(fn: Callable[[list], list], avals: list[tuple[tuple[int, ...], Any]]) -> Graph:
    """Trace ``fn`` (a function of a list of arrays returning a list) into a :class:`Graph`."""
    trace = Trace()
    in_vars = [Var(tuple(s), d) for s, d in avals]
    try:
        outs = fn([Tracer(trace, v) for v in in_vars])
    finally:
        trace.closed = True
    out_vars: list[Var | Const] = []
    for o in outs:
        if type(o) is Tracer:
            if o.trace is not trace:
                raise _mixed_traces(Primitive("output", lambda: None))
            out_vars.append(o.var)
        else:
            out_vars.append(Const(o))
    return prune(Graph(in_vars, trace.eqns, out_vars))


def prune(graph: Graph) -> Graph:
    """Drop equations whose results no output needs (dead code)."""
    live = {id(v) for v in graph.outputs}
    kept = []
    for eqn in reversed(graph.eqns):
        if any(id(v) in live for v in eqn.outs):
            kept.append(eqn)
            live.update(id(v) for v in eqn.inputs)
    kept.reverse()
    return Graph(graph.inputs, kept, graph.outputs)


def eval_graph(graph: Graph, args: list) -> list:
    """Run ``graph`` by binding each equation: on arrays it computes, on tracers it inlines."""
    env: dict[int, Any] = {id(v): a for v, a in zip(graph.inputs, args)}

    def read(v):
        return v.value if type(v) is Const else env[id(v)]

    for eqn in graph.eqns:
        store(env, eqn, bind(eqn.prim, *[read(v) for v in eqn.inputs], **eqn.attrs))
    return [read(v) for v in graph.outputs]


def store(env: dict, eqn: Eqn, result: Any) -> None:
    """Record an equation's result(s) in ``env`` under its output variables."""
    if eqn.prim.multiple_results:
        for v, r in zip(eqn.outs, result):
            env[id(v)] = r
    else:
        env[id(eqn.outs[0])] = result
