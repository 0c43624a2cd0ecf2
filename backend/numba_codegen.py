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

NaN and infinities propagate exactly as in numpy, which the interpreter runs: every
comparison that picks a value is written so that a NaN operand wins where numpy's
``maximum`` or ``max`` would return it (``0 if x <= 0 else x`` for a ReLU, not
``x if x > 0 else 0``, which turns NaN into 0). tests/test_compile_nonfinite.py holds
every emitted form to that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .core import Const, Graph, Var

ELEMENTWISE = {
    "add": "{0} + {1}",
    "sub": "{0} - {1}",
    "mul": "{0} * {1}",
    "div": "{0} / {1}",
    "neg": "-{0}",
    "exp": "np.exp({0})",
    "log": "np.log({0})",
    "sqrt": "np.sqrt({0})",
    "abs": "np.abs({0})",
    "tanh": "np.tanh({0})",
    "sign": "np.sign({0})",
    "greater": "{0} > {1}",
    "less": "{0} < {1}",
    "equal": "{0} == {1}",
    "where": "({1} if {0} else {2})",
    "pow": "{0} ** {1}",
}
SPECIAL_ELEMENTWISE = {"integer_pow", "logistic", "relu", "step", "cast"}
# Results that may be views of other arrays (not C-contiguous, or aliasing an input).
_VIEWS = {"transpose", "getitem", "reshape", "scan"}
# Check primitives (nnc.backend.checks): the identity that raises on bad values. Their result
# is their input under another name, so it is a view exactly when the input is one.
_CHECKS = {"check_finite", "check_probabilities", "check_labels"}
# nnc.backend.numba_blas.matmul: the dtypes it takes, and its transpose flags
_MATMUL_DTYPES = {np.dtype(np.float32), np.dtype(np.float64)}
_TRANS_A, _TRANS_B = 2, 1


def _numba_type(dtype: np.dtype) -> str:
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


def _literal(value: Any, dtype: np.dtype) -> str:
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return "True" if value else "False"
    if dtype.kind in "iu":
        return f"np.{dtype.name}({int(value)})"
    return f"np.{dtype.name}({float(value)!r})"


@dataclass
class Source:
    """The generated module: functions, and the constants and fallbacks they need as globals."""

    functions: list = field(default_factory=list)
    globals: dict = field(default_factory=dict)
    fallbacks: set = field(default_factory=set)
    counter: int = 0
    products: bool = False  # whether the code calls nnc.backend.numba_blas.matmul

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def text(self) -> str:
        head = "import numpy as np\nimport numba\n"
        if self.products:
            head += "from nnc.backend.numba_blas import matmul\n"
        return head + "\n" + "\n\n".join(self.functions) + "\n"


class FunctionWriter:
    """Writes one function: inputs are arguments, outputs a returned tuple."""

    def __init__(self, graph: Graph, name: str, module: Source):
        self.graph, self.fn_name, self.module = graph, name, module
        self.names: dict[int, str] = {}
        self.lines: list[str] = []
        uses: dict[int, int] = {}
        for e in graph.eqns:
            for v in e.inputs:
                uses[id(v)] = uses.get(id(v), 0) + 1
        self.uses = uses
        self.outputs = {id(v) for v in graph.outputs}
        self.transposed: dict[int, Var] = {}  # a matrix's .T -> the matrix, for the products
        self.c_ordered: set[int] = set()  # results of view primitives that were copied instead

    # -------------------------------------------------------------- names and values

    def name(self, v: Any) -> str:
        key = id(v)
        if key not in self.names:
            if type(v) is Const:
                value = np.asarray(v.value)
                if value.ndim == 0:
                    self.names[key] = _literal(value.item(), value.dtype)
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

    def emit(self, line: str, indent: int = 1) -> None:
        self.lines.append("    " * indent + line)

    def alloc(self, name: str, shape: tuple, dtype: Any, fill: str | None = None, indent: int = 1) -> None:
        """``name = np.empty(shape)``, every entry set to ``fill`` when given (see the module docstring)."""
        shape = tuple(int(d) for d in shape)
        self.emit(f"{name} = np.empty({shape!r}, np.{np.dtype(dtype).name})", indent)
        if fill is not None:
            self.emit(f"{name}.reshape({int(np.prod(shape, dtype=np.int64))})[:] = {fill}", indent)

    def matrix(self, v: Any, shape: tuple) -> tuple[str, bool]:
        """``v`` as a C-ordered matrix of ``shape`` for :meth:`gemm`, and whether it stands
        for its transpose (a ``.T`` is multiplied as the matrix it views, with a flag)."""
        source = self.transposed.get(id(v))
        if source is not None and len(shape) == 2 and tuple(v.shape) == tuple(shape):
            return self.contiguous(source), True
        expr = self.contiguous(v)
        return (expr if tuple(v.shape) == tuple(shape) else f"{expr}.reshape({tuple(shape)!r})"), False

    def contiguous(self, v: Any) -> str:
        """An expression for ``v`` that is C-ordered: arguments are (``nnc.compile`` and the scan
        loops pass them so), as is every array the generated code allocates; views may not be."""
        if (
            _may_be_view(v)
            and id(_unchecked(v)) not in self.c_ordered
            and not any(_unchecked(v) is u for u in self.graph.inputs)
        ):
            return f"np.ascontiguousarray({self.name(v)})"
        return self.name(v)

    def copy(self, dst: str, src: str, shape: tuple, indent: int = 1) -> None:
        """``dst[...] = src`` for C-ordered arrays of ``shape``, as a loop: Numba compiles an
        array assignment's shape check with its error message, which took seconds."""
        if not shape:
            self.emit(f"{dst}[()] = {src}[()]", indent)
            return
        n = int(np.prod(shape, dtype=np.int64))
        d, s_ = self.module.fresh("d"), self.module.fresh("s")
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

    def product(self, e, a_rows: tuple, b_rows: tuple) -> None:
        """``e.out = a @ b`` with the operands viewed as matrices of the given shapes."""
        a, b = e.inputs
        (m, _), (_, n) = a_rows, b_rows
        ea, ta = self.matrix(a, a_rows)
        eb, tb = self.matrix(b, b_rows)
        out = self.name(e.out)
        if tuple(e.out.shape) == (m, n):
            self.gemm(out, ea, eb, m, n, e.out.dtype, ta, tb)
        else:
            self.gemm(f"{out}_m", ea, eb, m, n, e.out.dtype, ta, tb)
            self.emit(f"{out} = {out}_m.reshape({tuple(int(d) for d in e.out.shape)!r})")

    # -------------------------------------------------------------- the function

    def write(self) -> str:
        args = [self.name(v) for v in self.graph.inputs]
        groups = _elementwise_groups(self.graph)
        for item in groups:
            if isinstance(item, list):
                self.fused(item)
            else:
                self.statement(item)
        outs = []
        for v in self.graph.outputs:
            if type(v) is Const:
                value = np.asarray(v.value)
                g = self.module.fresh("const")
                self.module.globals[g] = value.reshape(-1) if value.ndim == 0 else np.ascontiguousarray(value)
                outs.append(f"{g}.copy()")
            elif not v.shape:
                outs.append(f"{self.name(v)}.reshape(1)")  # a 0-d value travels as (1,)
            elif _may_be_view(v) or any(_unchecked(v) is u for u in self.graph.inputs):
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
                        s = self.module.fresh("s")
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
            t = self.module.fresh("t")
            ops = [operand(v) for v in e.inputs]
            if e.prim.name in ("tanh", "logistic") and e.out.dtype == np.float32:
                arg = ops[0] if e.prim.name == "tanh" else f"np.float32(0.5) * {ops[0]}"
                for line in _tanh32_lines(t, arg):
                    self.emit(line, depth)
                if e.prim.name == "logistic":
                    self.emit(f"{t} = np.float32(0.5) + np.float32(0.5) * {t}", depth)
            else:
                self.emit(f"{t} = {self._scalar_expr(e, ops)}", depth)
            temps[id(e.out)] = t
        where = ", ".join(idx) if rank else "()"
        for v in materialise:
            self.emit(f"{self.name(v)}[{where}] = {temps[id(v)]}", depth)

    def _uses_inside(self, v: Var, eqns: list) -> int:
        return sum(1 for e in eqns for u in e.inputs if u is v)

    def _scalar_expr(self, e, ops: list[str]) -> str:
        name, dtype = e.prim.name, e.out.dtype
        one, zero, half = (_literal(x, dtype) for x in (1, 0, 0.5))
        if name in ELEMENTWISE:
            expr = ELEMENTWISE[name].format(*ops)
        elif name == "integer_pow":
            expr = _integer_pow(ops[0], e.attrs["n"], one if dtype.kind == "f" else None)
        elif name == "logistic":
            expr = f"({half} + {half} * np.tanh({half} * {ops[0]}))"
        elif name == "relu":
            expr = f"({_relu(ops[0], zero)})"
        elif name == "step":
            expr = f"({one} if {ops[0]} > {zero} else {zero})"
        elif name == "cast":
            expr = f"np.{np.dtype(e.attrs['dtype']).name}({ops[0]})"
        else:  # pragma: no cover - guarded by _elementwise_groups
            raise KeyError(name)
        # Operands of one dtype keep it; only a power or a cast needs the result type restated
        # (fewer casts is measurably less for Numba to compile)
        if name in ("pow", "integer_pow", "where", "sign") and dtype.kind in "fiu":
            return f"np.{dtype.name}({expr})"
        return expr

    # -------------------------------------------------------------- other statements

    def statement(self, e) -> None:
        method = getattr(self, f"emit_{e.prim.name}", None)
        if method is None or not method(e):
            self.fallback(e)

    def fallback(self, e) -> None:
        """Run the primitive's numpy implementation in object mode."""
        fn = self.module.fresh("impl")
        self.module.globals[fn] = e.prim.impl
        self.module.fallbacks.add(e.prim.name)
        attrs = "".join(f", {k}={self._param(fn, k, v)}" for k, v in e.attrs.items())
        args = ", ".join(self._objmode_arg(v) for v in e.inputs)
        outs = e.outs
        types = ", ".join(f"{self.name(v)}_o='{array_type_string(v.shape, v.dtype)}'" for v in outs)
        self.emit(f"with numba.objmode({types}):")
        call = f"{fn}({args}{attrs})"
        if e.prim.multiple_results:
            res = self.module.fresh("r")
            self.emit(f"{res} = {call}", 2)
            for k, v in enumerate(outs):
                self.emit(f"{self.name(v)}_o = np.ascontiguousarray({res}[{k}]).reshape({_flat(v.shape)})", 2)
        else:
            self.emit(
                f"{self.name(outs[0])}_o = np.ascontiguousarray({call}).reshape({_flat(outs[0].shape)})", 2
            )
        for v in outs:
            self.emit(f"{self.name(v)} = {self.name(v)}_o" + (".reshape(())" if not v.shape else ""))

    def _objmode_arg(self, v) -> str:
        if type(v) is Const and np.asarray(v.value).ndim == 0:
            g = self.module.fresh("const")
            self.module.globals[g] = np.asarray(v.value)
            return g
        return self.name(v)

    def _param(self, fn: str, key: str, value: Any) -> str:
        if isinstance(value, (int, float, bool, str, type(None))) or (
            isinstance(value, tuple) and all(isinstance(x, (int, type(None))) for x in value)
        ):
            return repr(value)
        g = self.module.fresh(f"{fn}_{key}")
        self.module.globals[g] = value
        return g

    def emit_dot(self, e) -> bool:
        a, b = e.inputs
        if (
            a.dtype != b.dtype
            or np.dtype(a.dtype) not in _MATMUL_DTYPES
            or not (1 <= len(a.shape) <= 2)
            or not (1 <= len(b.shape) <= 2)
        ):
            return False
        a_rows = tuple(a.shape) if len(a.shape) == 2 else (1, a.shape[0])
        b_rows = tuple(b.shape) if len(b.shape) == 2 else (b.shape[0], 1)
        self.product(e, a_rows, b_rows)
        return True

    def emit_matmul(self, e) -> bool:
        a, b = e.inputs
        if len(a.shape) <= 2:
            return self.emit_dot(e)
        if a.dtype != b.dtype or np.dtype(a.dtype) not in _MATMUL_DTYPES or len(b.shape) != 2:
            return False
        self.product(e, (int(np.prod(a.shape[:-1])), a.shape[-1]), tuple(b.shape))
        return True

    def _activation_lines(self, t: str, arg: str, activation: str, dtype: np.dtype) -> list[str]:
        zero, half = _literal(0, dtype), _literal(0.5, dtype)
        if activation == "identity":
            return [f"{t} = {arg}"]
        if activation == "relu":
            return [f"{t} = {_relu(arg, zero)}"]
        if dtype == np.float32:
            inner = arg if activation == "tanh" else f"{half} * {arg}"
            lines = _tanh32_lines(t, inner)
        else:
            lines = [f"{t} = np.tanh({arg})" if activation == "tanh" else f"{t} = np.tanh({half} * {arg})"]
        if activation == "logistic":
            lines.append(f"{t} = {half} + {half} * {t}")
        return lines

    def emit_linear(self, e) -> bool:
        x, w, b = e.inputs
        if x.dtype.kind != "f" or len(x.shape) < 1:
            return False
        k, n = w.shape
        rows = int(np.prod(x.shape[:-1], dtype=np.int64)) if len(x.shape) > 1 else 1
        o = self.name(e.out)
        z = self.module.fresh("z")
        x2, _ = self.matrix(x, (rows, k))
        self.gemm(z, x2, self.contiguous(w), rows, n, e.out.dtype)
        self.emit(f"for i in range({rows}):")
        self.emit(f"for j in range({n}):", 2)
        t = self.module.fresh("t")
        self.emit(f"{t}_in = {z}[i, j] + {self.name(b)}[j]", 3)
        for line in self._activation_lines(t, f"{t}_in", e.attrs["activation"], e.out.dtype):
            self.emit(line, 3)
        self.emit(f"{z}[i, j] = {t}", 3)
        self.emit(f"{o} = {z}.reshape({_flat(e.out.shape)})")
        return True

    def emit_activation_grad(self, e) -> bool:
        g, out = e.inputs
        activation, dtype = e.attrs["activation"], e.out.dtype
        one, zero = _literal(1, dtype), _literal(0, dtype)
        expr = {
            "relu": f"gv * ({one} if y > {zero} else {zero})",
            "tanh": f"gv * ({one} - y * y)",
            "logistic": f"gv * (y * ({one} - y))",
            "identity": "gv",
        }.get(activation)
        if expr is None or g.shape != out.shape:
            return False
        o, size = self.name(e.out), int(np.prod(g.shape, dtype=np.int64))
        self.emit(f"{o}_g = np.ascontiguousarray({self.name(g)}).reshape({size})")
        self.emit(f"{o}_y = np.ascontiguousarray({self.name(out)}).reshape({size})")
        self.alloc(f"{o}_f", (size,), dtype)
        self.emit(f"for i in range({size}):")
        self.emit(f"gv = {o}_g[i]", 2)
        self.emit(f"y = {o}_y[i]", 2)
        self.emit(f"{o}_f[i] = {expr}", 2)
        self.emit(f"{o} = {o}_f.reshape({_flat(e.out.shape)})")
        return True

    def _block(self, template: str, **fields) -> None:
        for line in template.format(**fields).splitlines():
            self.emit(line)

    def _im2col(self, x: str, geo: dict, dtype: str) -> str:
        cols = self.module.fresh("cols")
        self.alloc(cols, (geo["R"], geo["K"]), dtype, fill="0")
        self._block(_FIELDS, body=f"{cols}[r, col] = {x}[b, c, ih, iw]", **geo)
        return cols

    def _rows_of(self, g: str, geo: dict, dtype: Any) -> str:
        """(B, O, HO, WO) as the (B*HO*WO, O) matrix the im2col rows line up with."""
        rows = self.module.fresh("grows")
        self.permute(rows, g, (geo["B"], geo["O"], geo["HO"], geo["WO"]), (0, 2, 3, 1), dtype)
        return f"{rows}.reshape(({geo['R']}, {geo['O']}))"

    def emit_conv2d(self, e) -> bool:
        x, w = e.inputs
        geo = _conv_geometry(e, x.shape, w.shape)
        dtype = np.dtype(e.out.dtype).name
        cols = self._im2col(self.name(x), geo, dtype)
        w2, _ = self.matrix(w, (geo["O"], geo["K"]))
        rows = self.module.fresh("rows")
        self.gemm(rows, cols, w2, geo["R"], geo["O"], e.out.dtype, trans_b=True)
        self.permute(
            self.name(e.out),
            f"{rows}.reshape(({geo['B']}, {geo['HO']}, {geo['WO']}, {geo['O']}))",
            (geo["B"], geo["HO"], geo["WO"], geo["O"]),
            (0, 3, 1, 2),
            e.out.dtype,
        )
        return True

    def emit_conv2d_input_grad(self, e) -> bool:
        g, w = e.inputs
        geo = _conv_geometry(e, e.attrs["x_shape"], w.shape)
        dtype = np.dtype(e.out.dtype).name
        dcols, dx = self.module.fresh("dcols"), self.name(e.out)
        w2, _ = self.matrix(w, (geo["O"], geo["K"]))
        self.gemm(
            dcols, self._rows_of(self.contiguous(g), geo, e.out.dtype), w2, geo["R"], geo["K"], e.out.dtype
        )
        self.alloc(dx, e.attrs["x_shape"], dtype, fill="0")
        self._block(_FIELDS, body=f"{dx}[b, c, ih, iw] += {dcols}[r, col]", **geo)
        return True

    def emit_conv2d_weight_grad(self, e) -> bool:
        x, g = e.inputs
        geo = _conv_geometry(e, x.shape, e.attrs["w_shape"])
        dtype = np.dtype(e.out.dtype).name
        cols = self._im2col(self.name(x), geo, dtype)
        gw = self.module.fresh("gw")
        self.gemm(
            gw,
            self._rows_of(self.contiguous(g), geo, e.out.dtype),
            cols,
            geo["O"],
            geo["K"],
            e.out.dtype,
            trans_a=True,
        )
        self.emit(f"{self.name(e.out)} = {gw}.reshape({tuple(e.attrs['w_shape'])!r})")
        return True

    def _pool_geometry(self, e, x_shape) -> dict:
        (b, c, h, w), (kh, kw), (sh, sw) = x_shape, e.attrs["kernel"], e.attrs["stride"]
        return dict(
            B=b, C=c, KH=kh, KW=kw, SH=sh, SW=sw, HO=max((h - kh) // sh + 1, 0), WO=max((w - kw) // sw + 1, 0)
        )

    def _argmax_window(self, x: str, geo: dict) -> dict:
        """Window loops that find the first largest entry (row by row) of ``x`` in each window,
        or its first NaN, as numpy's argmax does. The search starts at the window's first
        entry (a window of -inf still has an argmax) and keeps to ``v > best``; whether the
        window holds a NaN is gathered beside it, off the search's chain of dependent
        comparisons (a NaN test inside that chain cost the CNN step about 15%, this about 7%),
        and only a window holding one is searched again, for its first NaN."""
        sh, sw, kh, kw = geo["SH"], geo["SW"], geo["KH"], geo["KW"]
        at = f"{x}[b, c, oh * {sh} + t // {kw}, ow * {sw} + t % {kw}]"
        return dict(
            init=f"bi = oh * {sh}\n{_I4}bj = ow * {sw}\n{_I4}best = {x}[b, c, bi, bj]\n{_I4}nan = False",
            each=f"v = {x}[b, c, ih, iw]\n{_I6}nan = nan | (v != v)\n{_I6}if v > best:\n"
            f"{_I7}best = v\n{_I7}bi = ih\n{_I7}bj = iw",
            then=f"if nan:\n{_I5}for t in range({kh * kw - 1}, -1, -1):  # the last one found is the first\n"
            f"{_I6}if {at} != {at}:\n{_I7}bi = oh * {sh} + t // {kw}\n{_I7}bj = ow * {sw} + t % {kw}\n"
            f"{_I4}",
        )

    def _max_windows(self, e, allocate: str, done: str) -> bool:
        """A max-pooling form: ``done`` uses the window's argmax (bi, bj); inputs are (x, other)."""
        names = [self.name(v) for v in e.inputs]
        o = self.name(e.out)
        geo = self._pool_geometry(e, e.inputs[0].shape)
        self.alloc(o, e.out.shape, e.out.dtype, fill="0" if allocate == "zeros" else None)
        other = names[1] if len(names) > 1 else names[0]
        search = self._argmax_window(names[0], geo)
        self._block(
            _WINDOWS,
            init=search["init"],
            each=search["each"],
            done=search["then"] + done.format(o=o, other=other),
            **geo,
        )
        return True

    def emit_max_pool(self, e) -> bool:
        return self._max_windows(e, "empty", "{o}[b, c, oh, ow] = {other}[b, c, bi, bj]")

    def emit_max_pool_grad(self, e) -> bool:
        return self._max_windows(e, "zeros", "{o}[b, c, bi, bj] += {other}[b, c, oh, ow]")

    def emit_max_pool_gather(self, e) -> bool:
        return self._max_windows(e, "empty", "{o}[b, c, oh, ow] = {other}[b, c, bi, bj]")

    def emit_avg_pool(self, e) -> bool:
        x, o = self.name(e.inputs[0]), self.name(e.out)
        geo = self._pool_geometry(e, e.inputs[0].shape)
        dtype = e.out.dtype
        self.alloc(o, e.out.shape, dtype)
        scale = _literal(1.0 / (geo["KH"] * geo["KW"]), dtype)
        self._block(
            _WINDOWS,
            init=f"acc = {_literal(0, dtype)}",
            each=f"acc += {x}[b, c, ih, iw]",
            done=f"{o}[b, c, oh, ow] = acc * {scale}",
            **geo,
        )
        return True

    def emit_avg_pool_grad(self, e) -> bool:
        g, o = self.name(e.inputs[0]), self.name(e.out)
        geo = self._pool_geometry(e, e.attrs["x_shape"])
        dtype = e.out.dtype
        scale = _literal(1.0 / (geo["KH"] * geo["KW"]), dtype)
        self.alloc(o, e.out.shape, dtype, fill="0")
        self._block(
            _WINDOWS,
            init=f"share = {g}[b, c, oh, ow] * {scale}",
            each=f"{o}[b, c, ih, iw] += share",
            done="pass",
            **geo,
        )
        return True

    def emit_transpose(self, e) -> bool:
        if tuple(e.attrs["axes"]) == (1, 0):
            self.transposed[id(e.out)] = e.inputs[0]  # a product multiplies the matrix, with a flag
            self.emit(f"{self.name(e.out)} = {self.name(e.inputs[0])}.T")
            return True
        self.permute(
            self.name(e.out), self.name(e.inputs[0]), e.inputs[0].shape, tuple(e.attrs["axes"]), e.out.dtype
        )
        self.c_ordered.add(id(e.out))
        return True

    def emit_reshape(self, e) -> bool:
        x = e.inputs[0]
        if not x.shape:
            self.emit(f"{self.name(e.out)} = np.full({tuple(e.attrs['shape'])!r}, {self.scalar(x)})")
        else:
            self.emit(
                f"{self.name(e.out)} = np.ascontiguousarray({self.name(x)}).reshape({_flat(e.attrs['shape'])})"
            )
        return True

    def _reduce(self, e, axes: tuple, keep_shape: tuple, init: str, update: str) -> None:
        """Loops that accumulate ``x`` straight into an array of the output's shape (no reshape:
        every distinct reshape is one more Numba overload to compile)."""
        x, out = e.inputs[0], e.out
        shape, o = x.shape, self.name(out)
        keepdims = tuple(out.shape) == tuple(keep_shape) and len(out.shape) == len(shape)
        if not out.shape:  # a total: accumulate in a scalar
            acc = self.module.fresh("acc")
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

    def _reduction(self, e, axes: tuple, init: str, update: str) -> bool:
        x = e.inputs[0]
        if not x.shape:
            self.emit(f"{self.name(e.out)} = {self.name(x)}.copy()")
            return True
        keep = tuple(1 if k in axes else d for k, d in enumerate(x.shape))
        self._reduce(e, axes, keep, init, update)
        return True

    def emit_sum(self, e) -> bool:
        return self._reduction(e, tuple(e.attrs["axis"]), _literal(0, e.out.dtype), "{acc} += {x}")

    def emit_sum_to(self, e) -> bool:
        return self._reduction(e, tuple(e.attrs["axes"]), _literal(0, e.out.dtype), "{acc} += {x}")

    def emit_max(self, e) -> bool:
        return self._reduction(e, tuple(e.attrs["axis"]), "-np.inf", f"{{acc}} = {_max('{acc}', '{x}')}")

    def emit_broadcast_to(self, e) -> bool:
        x, out = e.inputs[0], e.out
        shape = tuple(e.attrs["shape"])
        o = self.name(out)
        self.alloc(o, shape, out.dtype)
        if not x.shape:
            self.emit(f"{o}[...] = {self.scalar(x)}")
            return True
        idx = [f"i{k}" for k in range(len(shape))]
        for k in range(len(shape)):
            self.emit(f"for {idx[k]} in range({shape[k]}):", k + 1)
        lead = len(shape) - len(x.shape)
        src = ", ".join(
            "0" if d == 1 and shape[lead + k] != 1 else idx[lead + k] for k, d in enumerate(x.shape)
        )
        self.emit(f"{o}[{', '.join(idx)}] = {self.name(x)}[{src}]", len(shape) + 1)
        return True

    def _each_entry(self, v: Var, body: list[str]) -> None:
        """Loops over every entry of ``v``, in any memory order; ``body`` lines see it as ``{x}``."""
        idx = [f"i{k}" for k in range(len(v.shape))]
        for k, d in enumerate(v.shape):
            self.emit(f"for {idx[k]} in range({int(d)}):", k + 1)
        entry = f"{self.name(v)}[{', '.join(idx) if idx else '()'}]"
        for line in body:
            self.emit(line.format(x=entry), len(idx) + 1)

    def _alias(self, out: Var, x: Var) -> None:
        """``out`` is ``x`` under another name (the result of a check): no copy, and a product
        still multiplies a transposed ``x`` as the matrix it views."""
        self.names[id(out)] = self.name(x)
        if id(x) in self.transposed:
            self.transposed[id(out)] = self.transposed[id(x)]

    def emit_check_finite(self, e) -> bool:
        """Raise at the first NaN or infinity of a float input (as the numpy implementation,
        integers are not checked). Numba raises only constant messages, so this one says no
        more than that: ``nnc.compile`` then reruns the interpreter, whose check names the
        input, the bad value and its index."""
        x = e.inputs[0]
        if np.dtype(x.dtype).kind == "f":
            self._each_entry(x, ["if not np.isfinite({x}):", "    raise ValueError('nnc: non-finite input')"])
        self._alias(e.out, x)
        return True

    def emit_check_probabilities(self, e) -> bool:
        """Raise if a finite row (along the last axis) holds a value outside
        ``[-tol, 1 + tol]`` or sums, in float64, to more than ``tol`` off 1: the numpy
        implementation's condition. Its bounds are in the input's dtype, as numpy compares
        a float32 array with a Python float; rows holding NaN or infinity pass."""
        p, tol = e.inputs[0], e.attrs["tolerance"]
        if p.dtype.kind != "f":
            return False
        lead = [f"i{k}" for k in range(len(p.shape) - 1)]
        for k, d in enumerate(p.shape[:-1]):
            self.emit(f"for {lead[k]} in range({int(d)}):", k + 1)
        depth = len(lead) + 1
        # fresh names: a name reused with another dtype elsewhere in the function is a typing error
        total, outside, v = (self.module.fresh(n) for n in ("total", "outside", "p"))
        self.emit(f"{total} = np.float64(0.0)", depth)
        self.emit(f"{outside} = False", depth)
        if p.shape:
            self.emit(f"for j in range({int(p.shape[-1])}):", depth)
            entry = f"{self.name(p)}[{', '.join(lead + ['j'])}]"
        else:  # one number is one row of one entry
            entry = f"{self.name(p)}[()]"
        inner = depth + bool(p.shape)
        self.emit(f"{v} = {entry}", inner)
        self.emit(f"{total} += np.float64({v})", inner)
        self.emit(f"if {v} < {_literal(-tol, p.dtype)} or {v} > {_literal(1 + tol, p.dtype)}:", inner)
        self.emit(f"{outside} = True", inner + 1)
        self.emit(
            f"if np.isfinite({total}) and ({outside} or np.abs({total} - np.float64(1.0)) > "
            f"np.float64({tol!r})):",
            depth,
        )
        self.emit("raise ValueError('nnc: not probabilities')", depth + 1)
        self._alias(e.out, p)
        return True

    def emit_check_labels(self, e) -> bool:
        """Raise at the first integer label outside ``0..classes-1`` (the numpy implementation's
        condition; it takes integer labels, and so does this form)."""
        labels, classes = e.inputs[0], int(e.attrs["classes"])
        if labels.dtype.kind not in "iu":
            return False
        test = f"{{x}} >= {classes}" if labels.dtype.kind == "u" else f"{{x}} < 0 or {{x}} >= {classes}"
        self._each_entry(labels, [f"if {test}:", "    raise ValueError('nnc: label out of range')"])
        self._alias(e.out, labels)
        return True

    def _along_axis(self, e, body: list[str]) -> None:
        """Loops over every axis but ``axis``; ``body`` lines see ``x``, ``o``, ``n`` and ``{at}``."""
        x, out = e.inputs[0], e.out
        shape, axis = x.shape, e.attrs["axis"]
        o = self.name(out)
        self.alloc(o, shape, out.dtype)
        outer = [k for k in range(len(shape)) if k != axis]
        idx = {k: f"i{k}" for k in outer}
        for depth, k in enumerate(outer):
            self.emit(f"for {idx[k]} in range({shape[k]}):", depth + 1)
        at = ", ".join(idx.get(k, "j") for k in range(len(shape)))
        for line in body:
            self.emit(
                line.format(
                    x=self.name(x), o=o, n=shape[axis], at=at, ninf="-np.inf", zero=_literal(0, out.dtype)
                ),
                len(outer) + 1,
            )

    def emit_log_softmax(self, e) -> bool:
        self._along_axis(
            e,
            [
                "m = {ninf}",
                "for j in range({n}):",
                f"    m = {_max('m', '{x}[{at}]')}",
                "s = {zero}",
                "for j in range({n}):",
                "    s += np.exp({x}[{at}] - m)",
                "ls = np.log(s)",
                "for j in range({n}):",
                "    {o}[{at}] = {x}[{at}] - m - ls",
            ],
        )
        return True

    def emit_softmax(self, e) -> bool:
        self._along_axis(
            e,
            [
                "m = {ninf}",
                "for j in range({n}):",
                f"    m = {_max('m', '{x}[{at}]')}",
                "s = {zero}",
                "for j in range({n}):",
                "    {o}[{at}] = np.exp({x}[{at}] - m)",
                "    s += {o}[{at}]",
                "for j in range({n}):",
                "    {o}[{at}] = {o}[{at}] / s",
            ],
        )
        return True

    def emit_pick(self, e) -> bool:
        x, labels = e.inputs
        if len(x.shape) != 2:
            return False
        o, k = self.name(e.out), x.shape[1]
        self.alloc(o, (x.shape[0],), e.out.dtype)
        self.emit(f"for i in range({x.shape[0]}):")
        self.emit(f"lab = {self.name(labels)}[i]", 2)
        self.emit(f"if lab < 0 or lab >= {k}:", 2)
        self.emit("raise ValueError('nnc: label out of range')", 3)
        self.emit(f"{o}[i] = {self.name(x)}[i, lab]", 2)
        return True

    def emit_unpick(self, e) -> bool:
        g, labels = e.inputs
        if len(g.shape) != 1:
            return False
        o = self.name(e.out)
        self.alloc(o, (g.shape[0], e.attrs["k"]), e.out.dtype, fill="0")
        self.emit(f"for i in range({g.shape[0]}):")
        self.emit(f"{o}[i, {self.name(labels)}[i]] = {self.name(g)}[i]", 2)
        return True

    def emit_getitem(self, e) -> bool:
        index = e.attrs["index"]
        text = _static_index(index)
        if text is None:
            return False
        x = self.name(e.inputs[0])
        if not e.out.shape:
            self.emit(f"{self.name(e.out)} = np.full((), {x}[{text}])")
        else:
            self.emit(f"{self.name(e.out)} = {x}[{text}]")
        return True

    def emit_unindex(self, e) -> bool:
        text = _static_index(e.attrs["index"])
        if text is None:
            return False
        g, o = e.inputs[0], self.name(e.out)
        self.alloc(o, e.attrs["shape"], e.out.dtype, fill="0")
        if not g.shape:
            self.emit(f"{o}[{text}] = {self.scalar(g)}")
            return True
        part = self.module.fresh("part")
        self.emit(f"{part} = {o}[{text}]")
        idx = [f"i{k}" for k in range(len(g.shape))]
        for k, d in enumerate(g.shape):
            self.emit(f"for {idx[k]} in range({d}):", k + 1)
        self.emit(f"{part}[{', '.join(idx)}] = {self.name(g)}[{', '.join(idx)}]", len(g.shape) + 1)
        return True

    def emit_concat(self, e) -> bool:
        parts = ", ".join(f"np.ascontiguousarray({self.name(v)})" for v in e.inputs)
        self.emit(f"{self.name(e.out)} = np.concatenate(({parts},), axis={e.attrs['axis']})")
        return True

    def emit_scan(self, e) -> bool:
        p = e.attrs
        body = p["body"]
        fn = self.module.fresh("body")
        self.module.functions.append(FunctionWriter(body, fn, self.module).write())
        n_consts, n_carry, length = p["n_consts"], p["n_carry"], p["length"]
        # the body's arguments are C-ordered, like the main function's (see contiguous());
        # views among the constants are copied once, before the loop
        consts = []
        for v in e.inputs[:n_consts]:
            expr = self.contiguous(v) if v.shape else self.name(v)
            if expr != self.name(v):
                k = self.module.fresh("k")
                self.emit(f"{k} = {expr}")
                expr = k
            consts.append(expr)
        carry_vars, x_vars = e.inputs[n_consts : n_consts + n_carry], e.inputs[n_consts + n_carry :]
        n_y = len(body.outputs) - n_carry
        c_names = [self.module.fresh("c") for _ in carry_vars]
        for c, v in zip(c_names, carry_vars):
            self.emit(
                f"{c} = np.ascontiguousarray({self.name(v)})"
                if v.shape
                else f"{c} = np.asarray({self.name(v)}).reshape(1)"
            )

        # stacked results nobody reads (a reverse scan's carry history, often) are not stored
        def read(v) -> bool:
            return self.uses.get(id(v), 0) > 0 or id(v) in self.outputs

        stacked_ys, stacked_hist = e.outs[n_carry : n_carry + n_y], e.outs[n_carry + n_y :]
        ys = [(k, self.name(v), v) for k, v in enumerate(stacked_ys) if read(v)]
        hist = [(self.name(v), c, carry) for v, c, carry in zip(stacked_hist, c_names, carry_vars) if read(v)]
        for v in [v for v in stacked_ys + stacked_hist if read(v)]:
            self.alloc(self.name(v), v.shape, v.dtype)
        order = f"range({length} - 1, -1, -1)" if p["reverse"] else f"range({length})"
        self.emit(f"for t in {order}:")
        for h, c, v in hist:
            if v.shape:
                self.copy(f"{h}[t]", c, v.shape, 2)
            else:
                self.emit(f"{h}[t] = {c}[0]", 2)
        xs = []
        for v in x_vars:
            if len(v.shape) > 1:
                src = self.contiguous(v)
                xs.append(
                    f"{self.name(v)}[t]"
                    if src == self.name(v)
                    else f"np.ascontiguousarray({self.name(v)}[t])"
                )
            else:
                xt = self.module.fresh("xt")
                self.emit(f"{xt} = np.empty((), np.{np.dtype(v.dtype).name})", 2)
                self.emit(f"{xt}[()] = {self.name(v)}[t]", 2)
                xs.append(xt)
        step_args = consts + [c if v.shape else f"{c}.reshape(())" for c, v in zip(c_names, carry_vars)] + xs
        res = self.module.fresh("res")
        self.emit(f"{res} = {fn}({', '.join(step_args)})", 2)
        for k, c in enumerate(c_names):
            self.emit(f"{c} = {res}[{k}]", 2)
        for k, y, v in ys:
            if len(v.shape) > 1:
                self.copy(f"{y}[t]", f"{res}[{n_carry + k}]", v.shape[1:], 2)
            else:
                self.emit(f"{y}[t] = {res}[{n_carry + k}][0]", 2)
        for out, c, v in zip(e.outs[:n_carry], c_names, carry_vars):
            self.emit(f"{self.name(out)} = {c}" if v.shape else f"{self.name(out)} = {c}.reshape(())")
        return True


# A rational approximation of tanh for float32 (the minimax fit Eigen uses): within a few
# units in the last place, and unlike a call to libm's tanhf it vectorises, which makes it
# about ten times faster in a fused loop. float64 keeps the exact np.tanh.
_TANH32_P = (
    -2.76076847742355e-16,
    2.00018790482477e-13,
    -8.60467152213735e-11,
    5.12229709037114e-08,
    1.48572235717979e-05,
    6.37261928875436e-04,
    4.89352455891786e-03,
)
_TANH32_Q = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)


def _tanh32_lines(t: str, arg: str) -> list[str]:
    x, x2, p, q = (f"{t}_{s}" for s in "xzpq")
    # a clamp written as conditions (min and max are each one more overload to compile); NaN passes
    lines = [
        f"{x} = np.float32({arg})",
        f"{x} = np.float32(-7.90531110763549805) if {x} < np.float32(-7.90531110763549805) else "
        f"(np.float32(7.90531110763549805) if {x} > np.float32(7.90531110763549805) else {x})",
        f"{x2} = {x} * {x}",
        f"{p} = np.float32({_TANH32_P[0]!r})",
    ]
    lines += [f"{p} = {p} * {x2} + np.float32({c!r})" for c in _TANH32_P[1:]]
    lines += [f"{q} = np.float32({_TANH32_Q[0]!r})"]
    lines += [f"{q} = {q} * {x2} + np.float32({c!r})" for c in _TANH32_Q[1:]]
    lines += [f"{t} = {p} * {x} / {q}"]
    return lines


def _conv_geometry(e, x_shape, w_shape) -> dict:
    (b, c, h, w), (o, _, kh, kw) = x_shape, w_shape
    (sh, sw), (ph, pw), (dh, dw) = e.attrs["stride"], e.attrs["padding"], e.attrs["dilation"]
    ho = max((h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, 0)
    wo = max((w + 2 * pw - dw * (kw - 1) - 1) // sw + 1, 0)
    return dict(
        B=b,
        C=c,
        H=h,
        W=w,
        O=o,
        KH=kh,
        KW=kw,
        SH=sh,
        SW=sw,
        PH=ph,
        PW=pw,
        DH=dh,
        DW=dw,
        HO=ho,
        WO=wo,
        R=b * ho * wo,
        K=c * kh * kw,
    )


# Receptive fields as rows of a matrix (im2col), visited in one loop nest; ``{body}`` moves
# one value between image position (b, c, ih, iw) and matrix entry (r, col).
_FIELDS = """for b in range({B}):
    for oh in range({HO}):
        for ow in range({WO}):
            r = (b * {HO} + oh) * {WO} + ow
            for c in range({C}):
                for ki in range({KH}):
                    ih = oh * {SH} - {PH} + ki * {DH}
                    if ih < 0 or ih >= {H}:
                        continue
                    for kj in range({KW}):
                        iw = ow * {SW} - {PW} + kj * {DW}
                        if iw < 0 or iw >= {W}:
                            continue
                        col = (c * {KH} + ki) * {KW} + kj
                        {body}"""

# Pooling windows (no padding); ``{init}`` runs per window, ``{each}`` per entry, ``{done}`` after.
# Lines of those, after their first, are indented for their place: _I4 is four levels deep.
_I4, _I5, _I6, _I7 = (" " * (4 * k) for k in (4, 5, 6, 7))
_WINDOWS = """for b in range({B}):
    for c in range({C}):
        for oh in range({HO}):
            for ow in range({WO}):
                {init}
                for ki in range({KH}):
                    for kj in range({KW}):
                        ih = oh * {SH} + ki
                        iw = ow * {SW} + kj
                        {each}
                {done}"""


def _integer_pow(x: str, n: int, one: str | None) -> str:
    """``x ** n``; for floats a negative power is the reciprocal of the positive one, since
    Numba's ``0.0 ** -2`` raises ZeroDivisionError where numpy gives inf (as ``1 / 0.0`` does
    under the numpy error model). ``one`` is None for integers: numpy refuses their negative
    powers, and the raise sends ``nnc.compile`` to the interpreter, which says so."""
    if n < 0 and one is not None:
        return f"{one} / ({_integer_pow(x, -n, one)})"
    return f"{x} * {x}" if n == 2 else f"{x} ** {n}"


def _relu(x: str, zero: str) -> str:
    """``np.maximum(x, 0)`` exactly: NaN stays NaN (it is not <= 0), -0.0 becomes 0.0."""
    return f"{zero} if {x} <= {zero} else {x}"


def _max(acc: str, x: str) -> str:
    """The running maximum as ``np.max`` keeps it: the first NaN stays (Python's ``max`` keeps
    or drops a NaN by its position; ``x != x`` is true for NaN alone)."""
    return f"{x} if {x} > {acc} or {x} != {x} else {acc}"


def _unchecked(v: Any) -> Any:
    """The value a check primitive's result aliases (``v`` itself for any other value)."""
    while type(v) is not Const and v.producer is not None and v.producer.prim.name in _CHECKS:
        v = v.producer.inputs[0]
    return v


def _may_be_view(v: Any) -> bool:
    """Whether ``v`` comes from a view primitive (through any checks that pass it on)."""
    v = _unchecked(v)
    return type(v) is not Const and v.producer is not None and v.producer.prim.name in _VIEWS


def _flat(shape: tuple) -> str:
    shape = tuple(int(d) for d in shape)
    return repr(shape) if shape else "1"


def _static_index(index: Any) -> str | None:
    items = index if isinstance(index, tuple) else (index,)
    parts = []
    for i in items:
        if isinstance(i, (int, np.integer)):
            parts.append(str(int(i)))
        elif isinstance(i, slice):
            parts.append(":".join("" if x is None else str(int(x)) for x in (i.start, i.stop, i.step)))
        elif i is Ellipsis:
            parts.append("...")
        else:
            return None
    return ", ".join(parts)


def _elementwise_groups(graph: Graph) -> list:
    """Equations in order, with runs of fusable elementwise equations of one shape as lists."""
    out: list = []
    current: list = []
    for e in graph.eqns:
        fusable = (
            (e.prim.name in ELEMENTWISE or e.prim.name in SPECIAL_ELEMENTWISE)
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


def generate(graph: Graph, name: str = "compiled") -> Source:
    """The module source (and its globals) for ``graph`` as a function called ``name``."""
    module = Source()
    module.functions.append(FunctionWriter(graph, name, module).write())
    return module
