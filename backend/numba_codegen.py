"""Turn a traced graph into the source of one Numba function.

Every shape is known when a graph is traced, so the generated code is specialised to
them: elementwise chains become one fused loop nest (intermediates live in registers,
not arrays), reductions and softmaxes become explicit loops, matrix products call BLAS through
:mod:`nnc.backend.numba_blas` (transposes as flags), and a ``scan`` becomes a loop calling
its body, itself generated the same way. Every array is allocated with ``np.empty`` and a
tuple shape: each other numpy form (``np.zeros``, ``np.full``, an integer shape, ``np.dot`` on
a transposed view) is one more Numba overload to compile, and those compilations are most of
the cold compile time. A primitive without a compiled form runs its numpy implementation in
Numba's object mode: correct, slower, and reported once.

The generator knows no primitive: each one's compiled form is registered in its own file,
beside its gradient rule (:func:`nnc.backend.core.defemit` for a statement,
:func:`nnc.backend.core.defscalar` for one entry of a fused loop), and written through the
:class:`FunctionWriter` API.

NaN and infinities propagate exactly as in numpy, which the interpreter runs: every
comparison that picks a value is written so that a NaN operand wins where numpy's
``maximum`` or ``max`` would return it (``0 if x <= 0 else x`` for a ReLU, not
``x if x > 0 else 0``, which turns NaN into 0). tests/test_compile_nonfinite.py holds
every emitted form to that.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .core import Const, Eqn, Graph, Var

# nnc.backend.numba_blas's TRANS_A and TRANS_B, restated: that module imports Numba, and this one
# runs when a graph is written, before Numba is needed
_TRANS_A, _TRANS_B = 2, 1


def _numba_type(dtype: Any) -> str:
    return {
        "f4": "float32",
        "f8": "float64",
        "i8": "int64",
        "i4": "int32",
        "b1": "boolean",
        "u1": "uint8",
    }.get(np.dtype(dtype).str[1:], np.dtype(dtype).name)


def array_type_string(shape: tuple, dtype: Any) -> str:
    """The Numba type of a C-contiguous array, as objmode wants it: ``float32[:, ::1]``."""
    if not shape:
        return f"{_numba_type(dtype)}[::1]"  # 0-d results travel as one-element vectors
    dims = ", ".join([":"] * (len(shape) - 1) + ["::1"])
    return f"{_numba_type(dtype)}[{dims}]"


def literal(value: Any, dtype: Any) -> str:
    """``value`` as a constant of ``dtype`` in generated code: ``np.float32(0.5)``, ``True``."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return "True" if value else "False"
    if dtype.kind in "iu":
        return f"np.{dtype.name}({int(value)})"
    return f"np.{dtype.name}({float(value)!r})"


def running_max(acc: str, x: str) -> str:
    """The running maximum as ``np.max`` keeps it: the first NaN stays (Python's ``max`` keeps
    or drops a NaN by its position; ``x != x`` is true for NaN alone)."""
    return f"{x} if {x} > {acc} or {x} != {x} else {acc}"


def shape_text(shape: tuple) -> str:
    """A shape as generated code writes it to reshape: a tuple, or ``1`` for a 0-d value,
    which travels as a one-element vector."""
    shape = tuple(int(d) for d in shape)
    return repr(shape) if shape else "1"


@functools.cache
def _source_digest(module: str) -> str:
    """A digest of the source of module ``module``, without importing it."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, f"{module} is part of nnc"
    with open(spec.origin, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


@dataclass
class GeneratedModule:
    """The generated module: functions, and the constants and fallbacks they need as globals."""

    functions: list = field(default_factory=list)
    globals: dict = field(default_factory=dict)
    fallbacks: set = field(default_factory=set)
    counter: int = 0
    products: bool = False  # whether the code calls nnc.backend.numba_blas.matmul
    kernels: set = field(default_factory=set)  # (module, name): the nnc.kernels it calls

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def text(self) -> str:
        head = "import math\nimport numpy as np\nimport numba\n"  # math: the scalar erf
        if self.products:
            head += "from nnc.backend.numba_blas import matmul\n"
        for module, name in sorted(self.kernels):
            # Numba's cache of this module holds the kernel's machine code too: the digest of the
            # kernel's source, part of the text, makes a changed kernel a new module.
            source = f"nnc.kernels.{module}"
            head += f"from {source} import {name} as {name}_kernel  # source {_source_digest(source)}\n"
            head += f"{name}_loop = {name}_kernel.compile()\n"
        return head + "\n" + "\n\n".join(self.functions) + "\n"


class FunctionWriter:
    """Writes one function of a :class:`GeneratedModule`: inputs are arguments, outputs a
    returned tuple.

    Each equation is written by its primitive's compiled form, registered beside the primitive:

    - ``defscalar(prim, fn)``: ``fn(*operands, dtype, **attrs) -> str``, the primitive on one
      entry, for the fused elementwise loops. Operands are expressions; ``dtype`` is the
      result's. The string is an expression; lines before it, if any, are statements it needs
      (their names are the form's own, and always of one dtype: Numba types a name once).
    - ``defemit(prim, fn)``: ``fn(writer, eqn) -> bool``, statements for one equation, written
      through the methods below; ``False`` (before anything is written) leaves the equation to
      :meth:`fallback`, its numpy implementation in object mode.

    The API of the compiled forms, by what they need:

    - values: :meth:`name` (an array's variable, a constant's literal or global),
      :meth:`scalar` (the value of a 0-d input), :meth:`fresh` (a new name);
    - lines: :meth:`emit` (one line at an indent), :meth:`alloc` (``np.empty`` of a tuple shape,
      optionally filled), :meth:`copy` and :meth:`permute` (as loops), :meth:`reduce` (loops that
      accumulate along axes);
    - calls: :meth:`matrix` and :meth:`gemm` (BLAS products, transposes as flags), :meth:`kernel`
      (a Numba kernel of ``nnc.kernels``);
    - layouts: :meth:`contiguous` (an expression that is C-ordered); a result that may be a view
      says so with :meth:`mark_view`, a matrix transpose with :meth:`mark_transpose`, and a result
      that is its input under another name with :meth:`alias`;
    - nesting: :meth:`function` (another graph as a function of the module, for a loop body),
      :meth:`is_read` (whether anything reads a value).

    Beside it, :func:`literal`, :func:`running_max` and :func:`shape_text` write constants, a
    NaN-keeping maximum and shapes, for scalar forms and statements alike.
    """

    def __init__(self, graph: Graph, name: str, module: GeneratedModule):
        self.graph, self.fn_name, self.module = graph, name, module
        self.names: dict[int, str] = {}
        self.lines: list[str] = []
        uses: dict[int, int] = {}
        for e in graph.eqns:
            for v in e.inputs:
                uses[id(v)] = uses.get(id(v), 0) + 1
        self.uses = uses
        self.outputs = {id(v) for v in graph.outputs}
        self.transposed: dict[int, Any] = {}  # a matrix's .T -> the matrix, for the products
        self.views: set[int] = set()  # results that may be views of other arrays (not C-ordered)
        self.aliases: dict[int, Any] = {}  # a result that is its input under another name -> that input

    # -------------------------------------------------------------- names and values

    def name(self, v: Any) -> str:
        key = id(v)
        if key not in self.names:
            if type(v) is Const:
                value = np.asarray(v.value)
                if value.ndim == 0:
                    self.names[key] = literal(value.item(), value.dtype)
                else:
                    g = self.module.fresh("const")
                    self.module.globals[g] = np.ascontiguousarray(value)
                    self.names[key] = g
            else:
                self.names[key] = f"v{len(self.names)}"
        return self.names[key]

    def scalar(self, v: Any) -> str:
        """An expression for the value of a 0-d input."""
        if type(v) is Const:
            return self.name(v)
        return f"{self.name(v)}[()]"

    def fresh(self, prefix: str) -> str:
        """A name used nowhere else in the module."""
        return self.module.fresh(prefix)

    def is_read(self, v: Any) -> bool:
        """Whether a later equation or the function's result reads ``v``."""
        return self.uses.get(id(v), 0) > 0 or id(v) in self.outputs

    def emit(self, line: str, indent: int = 1) -> None:
        self.lines.append("    " * indent + line)

    def alloc(self, name: str, shape: tuple, dtype: Any, fill: str | None = None, indent: int = 1) -> None:
        """``name = np.empty(shape)``, every entry set to ``fill`` when given (see the module docstring)."""
        shape = tuple(int(d) for d in shape)
        self.emit(f"{name} = np.empty({shape!r}, np.{np.dtype(dtype).name})", indent)
        if fill is not None:
            self.emit(f"{name}.reshape({int(np.prod(shape, dtype=np.int64))})[:] = {fill}", indent)

    # -------------------------------------------------------------- layouts

    def mark_view(self, v: Var) -> None:
        """``v`` may be a view of another array: not C-ordered, or aliasing it."""
        self.views.add(id(v))

    def mark_transpose(self, out: Var, x: Any) -> None:
        """``out`` is the view ``x.T``: a product multiplies ``x`` itself, with a flag."""
        self.transposed[id(out)] = x
        self.views.add(id(out))

    def alias(self, out: Var, x: Any) -> None:
        """``out`` is ``x`` under another name (the result of a check): no copy, and a product
        still multiplies a transposed ``x`` as the matrix it views."""
        self.names[id(out)] = self.name(x)
        self.aliases[id(out)] = x
        if id(x) in self.transposed:
            self.transposed[id(out)] = self.transposed[id(x)]

    def _unaliased(self, v: Any) -> Any:
        """The value ``v`` is under another name (``v`` itself if none)."""
        while id(v) in self.aliases:
            v = self.aliases[id(v)]
        return v

    def _may_be_view(self, v: Any) -> bool:
        return id(self._unaliased(v)) in self.views

    def _is_argument(self, v: Any) -> bool:
        return any(self._unaliased(v) is u for u in self.graph.inputs)

    def contiguous(self, v: Any) -> str:
        """An expression for ``v`` that is C-ordered: arguments are (``nnc.compile`` and the scan
        loops pass them so), as is every array the generated code allocates; views may not be."""
        if self._may_be_view(v) and not self._is_argument(v):
            return f"np.ascontiguousarray({self.name(v)})"
        return self.name(v)

    def matrix(self, v: Any, shape: tuple) -> tuple[str, bool]:
        """``v`` as a C-ordered matrix of ``shape`` for :meth:`gemm`, and whether it stands
        for its transpose (a ``.T`` is multiplied as the matrix it views, with a flag)."""
        source = self.transposed.get(id(v))
        if source is not None and len(shape) == 2 and tuple(v.shape) == tuple(shape):
            return self.contiguous(source), True
        expr = self.contiguous(v)
        return (expr if tuple(v.shape) == tuple(shape) else f"{expr}.reshape({tuple(shape)!r})"), False

    def gemm(
        self,
        out: str,
        a: str,
        b: str,
        m: int,
        n: int,
        dtype: Any,
        trans_a: bool = False,
        trans_b: bool = False,
    ) -> None:
        """``out = op(a) @ op(b)``, an (m, n) matrix, for C-ordered matrix expressions ``a`` and ``b``."""
        self.module.products = True
        self.alloc(out, (m, n), dtype)
        # np.int64: a literal flag would make Numba compile the product once per value
        self.emit(f"matmul({a}, {b}, np.int64({_TRANS_A * trans_a + _TRANS_B * trans_b}), {out})")

    def kernel(self, module: str, name: str) -> str:
        """The name under which the code calls the Numba kernel ``name`` of ``nnc.kernels.<module>``
        (an ``@kernel`` function): compiled code calls it directly. Pass it integers as
        ``np.int64(...)``: a literal argument would make Numba compile it once per value."""
        self.module.kernels.add((module, name))
        return f"{name}_loop"

    def copy(self, dst: str, src: str, shape: tuple, indent: int = 1) -> None:
        """``dst[...] = src`` for C-ordered arrays of ``shape``, as a loop: Numba compiles an
        array assignment's shape check with its error message, which took seconds."""
        if not shape:
            self.emit(f"{dst}[()] = {src}[()]", indent)
            return
        n = int(np.prod(shape, dtype=np.int64))
        d, s_ = self.fresh("d"), self.fresh("s")
        self.emit(f"{d} = {dst}.reshape({n})", indent)
        self.emit(f"{s_} = {src}.reshape({n})", indent)
        self.emit(f"for j in range({n}):", indent)
        self.emit(f"{d}[j] = {s_}[j]", indent + 1)

    def permute(self, out: str, src: str, shape: tuple, axes: tuple, dtype: Any) -> None:
        """``out = np.transpose(src, axes)`` as a fresh C-ordered array, written as loops
        (``np.transpose`` with axes took seconds to compile)."""
        out_shape = tuple(int(shape[a]) for a in axes)
        self.emit(f"{out}_src = {src}")
        src = f"{out}_src"
        self.alloc(out, out_shape, dtype)
        idx = [f"i{k}" for k in range(len(axes))]
        for k, d in enumerate(out_shape):
            self.emit(f"for {idx[k]} in range({d}):", k + 1)
        src_idx = [""] * len(axes)
        for k, a in enumerate(axes):
            src_idx[a] = idx[k]
        self.emit(f"{out}[{', '.join(idx)}] = {src}[{', '.join(src_idx)}]", len(axes) + 1)

    def reduce(self, e: Eqn, axes: tuple, init: str, update: str) -> None:
        """``e.out``, ``e.inputs[0]`` accumulated along ``axes`` from ``init``: ``update`` is a line
        over ``{acc}`` and ``{x}`` (the entry). Loops write straight into an array of the
        output's shape (no reshape: every distinct reshape is one more overload to compile)."""
        x, out = e.inputs[0], e.out
        shape, o = x.shape, self.name(out)
        if not shape:
            self.emit(f"{o} = {self.name(x)}.copy()")
            return
        keep_shape = tuple(1 if k in axes else d for k, d in enumerate(shape))
        keepdims = tuple(out.shape) == keep_shape and len(out.shape) == len(shape)
        if not out.shape:  # a total: accumulate in a scalar
            acc = self.fresh("acc")
            self.emit(f"{acc} = {init}")
            target = acc
        else:
            self.alloc(o, out.shape, out.dtype, fill=init)
        idx = [f"i{k}" for k in range(len(shape))]
        for k in range(len(shape)):
            self.emit(f"for {idx[k]} in range({shape[k]}):", k + 1)
        if out.shape:
            kept = (
                [("0" if k in axes else idx[k]) for k in range(len(shape))]
                if keepdims
                else [idx[k] for k in range(len(shape)) if k not in axes]
            )
            target = f"{o}[{', '.join(kept)}]"
        self.emit(update.format(acc=target, x=f"{self.name(x)}[{', '.join(idx)}]"), len(shape) + 1)
        if not out.shape:
            self.alloc(o, (), out.dtype)
            self.emit(f"{o}[()] = {acc}")

    def function(self, graph: Graph, prefix: str) -> str:
        """Write ``graph`` as another function of the module; its name."""
        fn = self.fresh(prefix)
        self.module.functions.append(FunctionWriter(graph, fn, self.module).write())
        return fn

    # -------------------------------------------------------------- the function

    def write(self) -> str:
        args = [self.name(v) for v in self.graph.inputs]
        for item in _elementwise_groups(self.graph):
            if isinstance(item, list):
                self.fused(item)
            else:
                self.statement(item)
        outs = []
        for v in self.graph.outputs:
            if type(v) is Const:
                value = np.asarray(v.value)
                g = self.fresh("const")
                self.module.globals[g] = value.reshape(-1) if value.ndim == 0 else np.ascontiguousarray(value)
                outs.append(f"{g}.copy()")
            elif not v.shape:
                outs.append(f"{self.name(v)}.reshape(1)")  # a 0-d value travels as (1,)
            elif self._may_be_view(v) or self._is_argument(v):
                outs.append(f"np.ascontiguousarray({self.name(v)})")
            else:  # freshly allocated and C-ordered already
                outs.append(self.name(v))
        header = f"def {self.fn_name}({', '.join(args)}):"
        body = self.lines or ["    pass"]
        return "\n".join([header] + body + [f"    return ({', '.join(outs)}{',' if len(outs) == 1 else ''})"])

    # -------------------------------------------------------------- fused elementwise loops

    def fused(self, eqns: list) -> None:
        shape = eqns[0].out.shape
        members = {id(e.out) for e in eqns}
        materialise = [
            e.out
            for e in eqns
            if id(e.out) in self.outputs or self.uses.get(id(e.out), 0) > self._uses_inside(e.out, eqns)
        ]
        for v in materialise:
            self.alloc(self.name(v), shape, v.dtype)
        rank = len(shape)
        idx = [f"i{k}" for k in range(rank)]
        # 0-d inputs are read once, outside the loops
        scalars: dict[int, str] = {}
        for e in eqns:
            for v in e.inputs:
                if id(v) not in members and len(v.shape) == 0 and id(v) not in scalars:
                    if type(v) is Const:
                        scalars[id(v)] = self.name(v)
                    else:
                        s = self.fresh("s")
                        self.emit(f"{s} = {self.name(v)}[()]")
                        scalars[id(v)] = s
        depth = 1
        for k in range(rank):
            self.emit(f"for {idx[k]} in range({shape[k]}):", depth)
            depth += 1
        temps: dict[int, str] = {}

        def operand(v) -> str:
            if id(v) in temps:
                return temps[id(v)]
            if id(v) in scalars:
                return scalars[id(v)]
            vs = v.shape
            lead = rank - len(vs)
            sub = [("0" if d == 1 and shape[lead + k] != 1 else idx[lead + k]) for k, d in enumerate(vs)]
            return f"{self.name(v)}[{', '.join(sub)}]"

        for e in eqns:
            t = self.fresh("t")
            # the result's dtype: for a cast, its attribute of that name says the same
            form = e.prim.scalar(*map(operand, e.inputs), **{**e.attrs, "dtype": e.out.dtype})
            *statements, value = form.split("\n")
            for line in statements:
                self.emit(line, depth)
            self.emit(f"{t} = {value}", depth)
            temps[id(e.out)] = t
        entry = ", ".join(idx) if rank else "()"
        for v in materialise:
            self.emit(f"{self.name(v)}[{entry}] = {temps[id(v)]}", depth)

    def _uses_inside(self, v: Var, eqns: list) -> int:
        return sum(1 for e in eqns for u in e.inputs if u is v)

    # -------------------------------------------------------------- other statements

    def statement(self, e: Eqn) -> None:
        emit = e.prim.emit
        if emit is None or not emit(self, e):
            self.fallback(e)

    def fallback(self, e: Eqn) -> None:
        """Run the primitive's numpy implementation in object mode."""
        fn = self.fresh("impl")
        self.module.globals[fn] = e.prim.impl
        self.module.fallbacks.add(e.prim.name)
        attrs = "".join(f", {k}={self._attr(fn, k, v)}" for k, v in e.attrs.items())
        args = ", ".join(self._objmode_arg(v) for v in e.inputs)
        outs = e.outs
        types = ", ".join(f"{self.name(v)}_o='{array_type_string(v.shape, v.dtype)}'" for v in outs)
        self.emit(f"with numba.objmode({types}):")
        call = f"{fn}({args}{attrs})"
        if e.prim.multiple_results:
            res = self.fresh("r")
            self.emit(f"{res} = {call}", 2)
            for k, v in enumerate(outs):
                self.emit(
                    f"{self.name(v)}_o = np.ascontiguousarray({res}[{k}]).reshape({shape_text(v.shape)})", 2
                )
        else:
            self.emit(
                f"{self.name(outs[0])}_o = np.ascontiguousarray({call}).reshape({shape_text(outs[0].shape)})",
                2,
            )
        for v in outs:
            self.emit(f"{self.name(v)} = {self.name(v)}_o" + (".reshape(())" if not v.shape else ""))

    def _objmode_arg(self, v: Any) -> str:
        if type(v) is Const and np.asarray(v.value).ndim == 0:
            g = self.fresh("const")
            self.module.globals[g] = np.asarray(v.value)
            return g
        return self.name(v)

    def _attr(self, fn: str, key: str, value: Any) -> str:
        if isinstance(value, (int, float, bool, str, type(None))) or (
            isinstance(value, tuple) and all(isinstance(x, (int, type(None))) for x in value)
        ):
            return repr(value)
        g = self.fresh(f"{fn}_{key}")
        self.module.globals[g] = value
        return g


def _elementwise_groups(graph: Graph) -> list:
    """Equations in order, with runs of fusable elementwise equations of one shape as lists."""
    out: list = []
    current: list = []
    for e in graph.eqns:
        fusable = (
            e.prim.scalar is not None
            and not e.prim.multiple_results
            and all(len(v.shape) <= len(e.out.shape) for v in e.inputs)
        )
        if fusable and current and current[0].out.shape == e.out.shape:
            current.append(e)
            continue
        if current:
            out.append(current)
            current = []
        if fusable:
            current = [e]
        else:
            out.append(e)
    if current:
        out.append(current)
    return out


def generate(graph: Graph, name: str = "compiled") -> GeneratedModule:
    """The module source (and its globals) for ``graph`` as a function called ``name``."""
    module = GeneratedModule()
    module.functions.append(FunctionWriter(graph, name, module).write())
    return module
