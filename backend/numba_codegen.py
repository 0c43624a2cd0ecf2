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
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .core import Const, Eqn, Graph, Var

# nnc.backend.numba_blas's TRANS_A and TRANS_B, restated: that module imports Numba, and this one
# runs when a graph is written, before Numba is needed
TRANS_A, TRANS_B = 2, 1


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
    python: set = field(default_factory=set)  # functions left to Python: calls of jitted parts
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
        # the functions that stay Python, so that the loader jits the others alone
        head += "".join(f"# nnc: python {name}\n" for name in sorted(self.python))
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
        self.emit(f"matmul({a}, {b}, np.int64({TRANS_A * trans_a + TRANS_B * trans_b}), {out})")

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
        self.alloc(out, out_shape, dtype)
        # axes of size 1 dropped, and adjacent output axes that are adjacent in the source too
        # merged: a (32, 16, 4, 16) -> (32, 4, 16, 16) swap is three loops, not four
        keep = [a for a in axes if shape[a] != 1]
        runs: list = []
        for a in keep:
            if runs and runs[-1][-1] + 1 == a:
                runs[-1].append(a)
            else:
                runs.append([a])
        order = sorted(range(len(runs)), key=lambda r: runs[r][0])  # the runs in source order
        src_shape = tuple(int(np.prod([shape[a] for a in runs[r]], dtype=np.int64)) for r in order)
        merged = tuple(order.index(r) for r in range(len(runs)))  # output run r is source axis merged[r]
        new_shape = tuple(src_shape[m] for m in merged)
        if len(runs) <= 1:
            self.copy(out, src, out_shape)
            return
        s_, o_ = self.fresh("p"), self.fresh("p")
        self.emit(f"{s_} = {src}.reshape({src_shape!r})" if src_shape != tuple(shape) else f"{s_} = {src}")
        self.emit(f"{o_} = {out}.reshape({new_shape!r})" if new_shape != out_shape else f"{o_} = {out}")
        idx = [f"i{k}" for k in range(len(runs))]
        for k, d in enumerate(new_shape):
            self.emit(f"for {idx[k]} in range({d}):", k + 1)
        src_idx = [""] * len(runs)
        for k, m in enumerate(merged):
            src_idx[m] = idx[k]
        self.emit(f"{o_}[{', '.join(idx)}] = {s_}[{', '.join(src_idx)}]", len(runs) + 1)

    def reduce(self, e: Eqn, axes: tuple, init: str, update: str) -> None:
        """``e.out``, ``e.inputs[0]`` accumulated along ``axes`` from ``init``: ``update`` is a line
        over ``{acc}`` and ``{x}`` (the entry). Loops write straight into an array of the
        output's shape (no reshape: every distinct reshape is one more overload to compile)."""
        x, out = e.inputs[0], e.out
        o = self.name(out)
        if not x.shape:
            self.emit(f"{o} = {self.name(x)}.copy()")
            return
        # adjacent axes alike (both summed, or both kept) are one loop: the same order of entries
        kept_axes = tuple(k not in axes for k in range(len(x.shape)))
        groups = _merged_axes(tuple(x.shape), [kept_axes])
        shape = tuple(int(np.prod([x.shape[k] for k in g], dtype=np.int64)) for g in groups)
        kept = [any(kept_axes[k] and x.shape[k] != 1 for k in g) for g in groups]
        src = self.name(x)
        if shape != tuple(x.shape):
            src = self.fresh("c")
            self.emit(f"{src} = {self.contiguous(x)}.reshape({shape!r})")
        out_size = int(np.prod(out.shape, dtype=np.int64))
        idx = [f"i{k}" for k in range(len(shape))]
        if out_size == 1 and not any(kept):  # a total: accumulate in a scalar
            acc = self.fresh("acc")
            self.emit(f"{acc} = {init}")
            target = acc
        else:
            self.alloc(o, out.shape, out.dtype)
            flat = self.fresh("r")
            self.emit(f"{flat} = {o}.reshape({out_size})")
            self.emit(f"for j in range({out_size}):")
            self.emit(f"{flat}[j] = {init}", 2)
            # the entry of the output: the kept indices, in order, as one flat position
            terms, stride = [], 1
            for d, i in reversed([(d, i) for d, i, k in zip(shape, idx, kept) if k]):
                terms.append(i if stride == 1 else f"{i} * {stride}")
                stride *= d
            target = f"{flat}[{' + '.join(reversed(terms)) if terms else '0'}]"
        for k in range(len(shape)):
            self.emit(f"for {idx[k]} in range({shape[k]}):", k + 1)
        self.emit(update.format(acc=target, x=f"{src}[{', '.join(idx)}]"), len(shape) + 1)
        if out_size == 1 and not any(kept):
            self.alloc(o, out.shape, out.dtype)
            self.emit(f"{o}[{', '.join(['0'] * len(out.shape)) if out.shape else '()'}] = {acc}")

    def function(self, graph: Graph, prefix: str) -> str:
        """Write ``graph`` as another function of the module; its name."""
        fn = self.fresh(prefix)
        self.module.functions.append(FunctionWriter(graph, fn, self.module).write())
        return fn

    # -------------------------------------------------------------- the function

    def write(self) -> str:
        args = [self.name(v) for v in self.graph.inputs]
        starts = []  # where each equation's (or fused group's) lines begin: a part never cuts one
        for item in _elementwise_groups(self.graph):
            starts.append(len(self.lines))
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
        ret = f"    return ({', '.join(outs)}{',' if len(outs) == 1 else ''})"
        body = self.lines
        if len(body) > _PART_LINES:
            body = self._split(args, starts, ret)
        header = f"def {self.fn_name}({', '.join(args)}):"
        return "\n".join([header] + (body or ["    pass"]) + [ret])

    def _split(self, args: list, starts: list, ret: str) -> list:
        """The body as calls of parts, each a function of the module, taking the values it reads
        and returning those read after it. Numba's typing and LLVM's optimisation grow faster
        than the length of a function, and a part that another one repeats up to names (a layer
        of a ``repeat``, each parameter's optimiser update) is written once and called again:
        Numba compiles it once. Parts end where an equation's lines look a certain way (their
        digest, names aside), not after a count, so that repeated code is cut alike."""
        ends = starts[1:] + [len(self.lines)]
        bounds = [0]
        for start, end in zip(starts, ends):
            size = start - bounds[-1]
            if size >= _PART_MAX or (
                size >= _PART_MIN and int(_shape_digest(self.lines[start:end]), 16) % _PART_EVERY == 0
            ):
                bounds.append(start)
        if bounds[-1] != len(self.lines):
            bounds.append(len(self.lines))
        bounds = sorted(set(bounds))
        parts = [self.lines[a:b] for a, b in zip(bounds, bounds[1:])]
        reads, writes = zip(*(_reads_and_writes(part) for part in parts))
        final_reads, _ = _reads_and_writes([ret])
        # who defines each name a part reads: the latest part before it that writes it
        definer = {a: -1 for a in args}
        needs: list[list[str]] = []
        outs: list[set] = [set() for _ in parts]
        for k in range(len(parts)):
            ins = [n for n in reads[k] if n in definer]
            needs.append(ins)
            for n in ins:
                if definer[n] >= 0:
                    outs[definer[n]].add(n)
            for n in writes[k]:
                definer[n] = k
        for n in final_reads:
            if definer.get(n, -1) >= 0:
                outs[definer[n]].add(n)
        body = []
        written: dict[str, str] = {}  # a part's text, names canonical -> its function
        for k, part in enumerate(parts):
            order = _first_written(part, writes[k])
            returned = [n for n in order if n in outs[k]]
            text, params = _canonical(part, needs[k], returned, writes[k])
            fn = written.get(text)
            if fn is None:
                fn = written[text] = self.fresh(f"{self.fn_name}_part")
                self.module.functions.append(text.replace("def PART(", f"def {fn}(", 1))
            call = f"{fn}({', '.join(params)})"
            if returned:
                body.append(f"    {', '.join(returned)}{',' if len(returned) == 1 else ''} = {call}")
            else:
                body.append(f"    {call}")
        return body

    # -------------------------------------------------------------- fused elementwise loops

    def fused(self, eqns: list) -> None:
        out_shape = tuple(eqns[0].out.shape)
        members = {id(e.out) for e in eqns}
        materialise = [
            e.out
            for e in eqns
            if id(e.out) in self.outputs or self.uses.get(id(e.out), 0) > self._uses_inside(e.out, eqns)
        ]
        for v in materialise:
            self.alloc(self.name(v), out_shape, v.dtype)
        # 0-d inputs are read once, outside the loops
        scalars: dict[int, str] = {}
        operands: dict[int, Any] = {}
        for e in eqns:
            for v in e.inputs:
                if id(v) in members or id(v) in scalars or id(v) in operands:
                    continue
                if len(v.shape) == 0:
                    if type(v) is Const:
                        scalars[id(v)] = self.name(v)
                    else:
                        s = self.fresh("s")
                        self.emit(f"{s} = {self.name(v)}[()]")
                        scalars[id(v)] = s
                else:
                    operands[id(v)] = v
        # Adjacent axes that every operand reads alike (all of both, or neither) are one loop:
        # fewer loops and index computations for Numba to type and LLVM to optimise, same order.
        reads = {key: _reads_axes(v.shape, out_shape) for key, v in operands.items()}
        groups = _merged_axes(out_shape, list(reads.values()))
        shape = tuple(int(np.prod([out_shape[k] for k in g], dtype=np.int64)) for g in groups)
        if not out_shape:
            shape = ()
        names: dict[int, str] = {}
        sizes: dict[int, tuple] = {}
        targets = {id(v): self.name(v) for v in materialise}
        for key, v in operands.items():
            names[key], sizes[key] = self.name(v), tuple(v.shape)
        if shape != out_shape:
            for key, v in operands.items():
                own = tuple(d if any(reads[key][j] for j in g) else 1 for g, d in zip(groups, shape))
                while len(own) > 1 and own[0] == 1:
                    own = own[1:]  # right-aligned, as broadcasting reads it
                if own != tuple(v.shape):
                    names[key] = self.fresh("c")
                    self.emit(f"{names[key]} = {self.contiguous(v)}.reshape({own!r})")
                sizes[key] = own
            for v in materialise:
                targets[id(v)] = self.fresh("c")
                self.emit(f"{targets[id(v)]} = {self.name(v)}.reshape({shape!r})")
        rank = len(shape)
        idx = [f"i{k}" for k in range(rank)]
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
            vs = sizes[id(v)]
            lead = rank - len(vs)
            sub = [("0" if d == 1 and shape[lead + k] != 1 else idx[lead + k]) for k, d in enumerate(vs)]
            return f"{names[id(v)]}[{', '.join(sub)}]"

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
            self.emit(f"{targets[id(v)]}[{entry}] = {temps[id(v)]}", depth)

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


def _reads_axes(vshape: tuple, shape: tuple) -> tuple:
    """For each axis of ``shape``, whether an operand of shape ``vshape`` broadcast to it varies along it."""
    lead = len(shape) - len(vshape)
    return tuple(k >= lead and vshape[k - lead] != 1 and shape[k] != 1 for k in range(len(shape)))


def _merged_axes(shape: tuple, reads: list) -> list:
    """The axes of ``shape`` as groups of adjacent axes that every operand reads alike
    (``reads``: one tuple per operand, from :func:`_reads_axes`); an axis of size 1 joins any
    group. At least one group, so that a 0-d or all-ones shape is one loop of one entry."""
    groups: list = []
    for k in range(len(shape)):
        kept = [j for j in groups[-1] if shape[j] != 1] if groups else []
        if groups and (shape[k] == 1 or not kept or all(r[k] == r[kept[0]] for r in reads)):
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups or [[]]


# A function's body longer than _PART_LINES is written as calls of parts (FunctionWriter._split):
# each at least _PART_MIN lines, at most about _PART_MAX, and ending before an equation whose
# digest is a multiple of _PART_EVERY
_PART_LINES, _PART_MIN, _PART_MAX, _PART_EVERY = 80, 16, 120, 6

_STRING = re.compile(r"'[^']*'|\"[^\"]*\"")
_IDENT = re.compile(r"(?<![.\w])[A-Za-z_]\w*")
_ASSIGN = re.compile(r"^\s*([A-Za-z_]\w*)\s*=(?!=)(.*)$")
_AUGMENTED = re.compile(r"^\s*([A-Za-z_]\w*)\s*[-+*/|&^%]=(.*)$")
_FOR = re.compile(r"^\s*for\s+([A-Za-z_]\w*)\s+in\s+(.*):\s*$")
_OBJMODE = re.compile(r"^\s*with numba\.objmode\((.*)\):\s*$")


def _renamed(lines: list, names: dict) -> list:
    """``lines`` with the names in ``names`` replaced (string literals left as they are)."""
    out = []
    for line in lines:
        pieces = _STRING.split(line)
        strings = _STRING.findall(line)
        pieces = [_IDENT.sub(lambda m: names.get(m.group(0), m.group(0)), p) for p in pieces]
        out.append("".join(p + (strings[i] if i < len(strings) else "") for i, p in enumerate(pieces)))
    return out


def _first_written(lines: list, writes: set) -> list:
    """The names of ``writes`` in order of their first appearance in ``lines``."""
    seen: dict[str, None] = {}
    for line in lines:
        for n in _IDENT.findall(_STRING.sub("''", line)):
            if n in writes:
                seen.setdefault(n)
    return list(seen)


def _canonical(lines: list, params: list, returned: list, writes: set) -> tuple[str, list]:
    """A part as the text of a function ``PART`` whose own names (parameters, then the names it
    writes, in order) are ``a0, a1, ...``: parts alike but for names have one text. And the
    arguments a call passes."""
    names: dict[str, str] = {}
    for n in list(params) + _first_written(lines, writes):
        names.setdefault(n, f"a{len(names)}")
    body = _renamed(lines, names)
    result = [names[n] for n in returned]
    ret = f"    return ({', '.join(result)}{',' if len(result) == 1 else ''})" if result else "    return 0"
    header = f"def PART({', '.join(names[n] for n in params)}):"
    return "\n".join([header, *body, ret]), list(params)


def _shape_digest(lines: list) -> str:
    """A digest of ``lines`` with every number-suffixed name made alike: equal for the same
    code under other names."""
    text = re.sub(r"\b([A-Za-z_]+?)\d+\b", r"\1", "\n".join(lines))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _reads_and_writes(lines: list) -> tuple[list, set]:
    """The names ``lines`` read before writing them (in order of first reading), and those they
    write: generated code only, whose every name is written by ``name = ...``, ``name op= ...``,
    ``for name in ...`` or an objmode block's ``name=type`` before a later line reads it."""
    reads: dict[str, None] = {}
    writes: set = set()

    def read(text: str) -> None:
        for n in _IDENT.findall(_STRING.sub("''", text)):
            if n not in writes:
                reads.setdefault(n)

    for line in lines:
        m = _ASSIGN.match(line) or _FOR.match(line)
        if m:
            read(m.group(2))
            writes.add(m.group(1))
        elif m := _AUGMENTED.match(line):
            read(line)
            writes.add(m.group(1))
        elif m := _OBJMODE.match(line):
            writes.update(n.strip().split("=")[0] for n in m.group(1).split(","))
        else:
            read(line)
    return list(reads), writes


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
    """The module source (and its globals) for ``graph`` as a function called ``name``.

    A long graph's function is a list of calls of jitted parts (see
    :meth:`FunctionWriter._split`), and stays a Python function: jitted, it would link every
    part into its own machine code, optimising and emitting each a second time, for a saving
    of a microsecond or so per call. Only arrays pass between parts, as between the caller and
    a compiled function: no value changes type on the way."""
    module = GeneratedModule()
    writer = FunctionWriter(graph, name, module)
    module.functions.append(writer.write())
    if len(writer.lines) > _PART_LINES:
        module.python.add(name)
    return module
