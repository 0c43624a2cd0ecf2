"""Matrix multiplication and its gradient, for vectors, matrices and batches."""

from __future__ import annotations

from typing import Any

import numpy as np

from .broadcasting import dtype_of, shape_of, sum_to
from .core import Eqn, bind, defemit, defgeneric, defprim, defvjp
from .elementwise import cast, check_broadcast, mul, unbroadcast
from .errors import ShapeError
from .numba_codegen import FunctionWriter
from .structural import reshape, swap_last, transpose

matmul_p = defprim("matmul", np.matmul)
# Matrix times matrix binds np.dot directly: measurably cheaper per call than np.matmul on
# small matrices, and the hot case of every dense layer.
dot_p = defprim("dot", np.dot)
defgeneric(matmul_p, lambda xp, a, b: xp.matmul(a, b))
defgeneric(dot_p, lambda xp, a, b: xp.matmul(a, b))


def matmul(a, b) -> Any:
    """``a @ b`` with numpy's rules for 1-D operands and batch axes; inner sizes must agree.

    >>> import numpy as np
    >>> matmul(np.ones((2, 3)), np.ones(3))
    array([3., 3.])
    """
    sa, sb = shape_of(a), shape_of(b)
    if not sa or not sb:
        raise ShapeError(f"matmul: operands must have at least one axis, got shapes {sa} and {sb}")
    k_a = sa[-1]
    k_b = sb[0] if len(sb) == 1 else sb[-2]
    if k_a != k_b:
        raise ShapeError(
            f"matmul: inner sizes differ: shapes {sa} and {sb} ({k_a} columns against {k_b} rows)"
        )
    if len(sa) > 2 and len(sb) > 2:
        check_broadcast("matmul (batch axes)", sa[:-2], sb[:-2])
    da, db = dtype_of(a), dtype_of(b)
    if da != db:
        if da.kind != "f":
            a = cast(a, db)
        elif db.kind != "f":
            b = cast(b, da)
    return bind(dot_p if len(sa) == 2 and len(sb) == 2 else matmul_p, a, b)


def _matmul_vjp(g, out, a, b):
    sa, sb = shape_of(a), shape_of(b)
    if len(sa) == 1 and len(sb) == 1:
        return unbroadcast(mul(g, b), a), unbroadcast(mul(g, a), b)
    if len(sb) == 1:  # (..., m, n) @ (n,) -> (..., m)
        gs = shape_of(g)
        ga = mul(reshape(g, gs + (1,)), reshape(b, (1,) * len(gs) + sb))
        gb = matmul(reshape(g, (-1,)), reshape(a, (-1, sa[-1])))
        return unbroadcast(ga, a), unbroadcast(gb, b)
    if len(sa) == 1:  # (n,) @ (..., n, m) -> (..., m)
        ga = matmul(b, reshape(g, shape_of(g) + (1,)))
        ga = reshape(ga, shape_of(ga)[:-1])
        gb = mul(reshape(a, (sa[0], 1)), reshape(g, shape_of(g)[:-1] + (1, sb[-1])))
        return unbroadcast(sum_to(ga, sa), a), unbroadcast(gb, b)
    if len(sb) == 2 and len(sa) > 2:  # batch of rows against one matrix: fold the batch
        g2 = reshape(g, (-1, sb[-1]))
        a2 = reshape(a, (-1, sa[-1]))
        ga = matmul(g, transpose(b))
        gb = matmul(transpose(a2), g2)
        return unbroadcast(ga, a), unbroadcast(gb, b)
    ga = matmul(g, swap_last(b))
    gb = matmul(swap_last(a), g)
    return unbroadcast(ga, a), unbroadcast(gb, b)


defvjp(matmul_p, _matmul_vjp)
defvjp(dot_p, _matmul_vjp)


# nnc.backend.numba_blas.matmul: the dtypes it takes
_BLAS_DTYPES = {np.dtype(np.float32), np.dtype(np.float64)}


def _product(writer: FunctionWriter, e: Eqn, a_rows: tuple, b_rows: tuple) -> bool:
    """``e.out = a @ b`` with the operands viewed as matrices of the given shapes."""
    a, b = e.inputs
    (m, _), (_, n) = a_rows, b_rows
    ea, ta = writer.matrix(a, a_rows)
    eb, tb = writer.matrix(b, b_rows)
    out = writer.name(e.out)
    if tuple(e.out.shape) == (m, n):
        writer.gemm(out, ea, eb, m, n, e.out.dtype, ta, tb)
    else:
        writer.gemm(f"{out}_m", ea, eb, m, n, e.out.dtype, ta, tb)
        writer.emit(f"{out} = {out}_m.reshape({tuple(int(d) for d in e.out.shape)!r})")
    return True


def _emit_dot(writer: FunctionWriter, e: Eqn) -> bool:
    a, b = e.inputs
    if (
        a.dtype != b.dtype
        or np.dtype(a.dtype) not in _BLAS_DTYPES
        or not (1 <= len(a.shape) <= 2)
        or not (1 <= len(b.shape) <= 2)
    ):
        return False
    a_rows = tuple(a.shape) if len(a.shape) == 2 else (1, a.shape[0])
    b_rows = tuple(b.shape) if len(b.shape) == 2 else (b.shape[0], 1)
    return _product(writer, e, a_rows, b_rows)


def _emit_matmul(writer: FunctionWriter, e: Eqn) -> bool:
    a, b = e.inputs
    if len(a.shape) <= 2:
        return _emit_dot(writer, e)
    if a.dtype != b.dtype or np.dtype(a.dtype) not in _BLAS_DTYPES or len(b.shape) != 2:
        return False
    return _product(writer, e, (int(np.prod(a.shape[:-1])), a.shape[-1]), tuple(b.shape))


defemit(matmul_p, _emit_matmul)
defemit(dot_p, _emit_dot)
