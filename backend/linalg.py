"""Matrix multiplication and its gradient, for vectors, matrices and batches."""

from __future__ import annotations

from typing import Any

import numpy as np

from .broadcasting import dtype_of, shape_of, sum_to
from .core import Eqn, bind, defemit, defgeneric, defprim, defvjp
from .elementwise import cast, check_broadcast, mul, unbroadcast
from .errors import ShapeError
from .numba_codegen import TRANS_A, TRANS_B, FunctionWriter
from .structural import SWAP_READERS, reshape, swap_last, swapped_source, transpose

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


def batch_rows(shape: tuple, batch: tuple) -> np.ndarray:
    """For each matrix of a product's ``batch``, the matrix of an operand with batch axes
    ``shape`` that it reads (broadcasting repeats one)."""
    own = np.arange(int(np.prod(shape, dtype=np.int64))).reshape(shape)
    return np.broadcast_to(own.reshape((1,) * (len(batch) - len(shape)) + shape), batch).reshape(-1)


def _emit_batched(writer: FunctionWriter, e: Eqn) -> None:
    """``e.out = a @ b`` for operands with batch axes: one BLAS product per matrix of the batch,
    each on a C-ordered matrix of the operands viewed as stacks of matrices. An operand that
    swaps the last two axes of another array (``swap_last``) is that array with a transpose flag."""
    a, b = e.inputs
    (m, k), n = a.shape[-2:], b.shape[-1]
    batch = tuple(int(d) for d in e.out.shape[:-2])
    count = int(np.prod(batch, dtype=np.int64))
    o, stack = writer.name(e.out), writer.fresh("stack")
    writer.alloc(o, e.out.shape, e.out.dtype)
    writer.emit(f"{stack} = {o}.reshape({(count, m, n)!r})")
    operands, trans = [], 0
    for v, rows, cols, flag in ((a, m, k, TRANS_A), (b, k, n, TRANS_B)):
        ids = batch_rows(tuple(v.shape[:-2]), batch)
        source = swapped_source(writer, v) if len(v.shape) >= 3 else None
        if source is not None:
            v, rows, cols, trans = source, cols, rows, trans | flag
        view = writer.fresh("stack")
        stacked = (int(np.prod(v.shape[:-2], dtype=np.int64)), rows, cols)
        writer.emit(f"{view} = {writer.contiguous(v)}.reshape({stacked!r})")
        if np.array_equal(ids, np.arange(count)):
            operands.append(f"{view}[i]")
        else:  # a broadcast batch axis: which of its matrices each product reads, as a constant
            table = writer.fresh("const")
            writer.module.globals[table] = np.ascontiguousarray(ids)
            operands.append(f"{view}[{table}[i]]")
    # the writer's gemm allocates its result: here each product writes into its slice of one array
    writer.module.products = True
    writer.emit(f"for i in range({count}):")
    writer.emit(f"matmul({operands[0]}, {operands[1]}, np.int64({trans}), {stack}[i])", 2)


def _batched(e: Eqn) -> bool:
    """Whether ``_emit_matmul`` writes ``e`` with :func:`_emit_batched`."""
    a, b = e.inputs
    return (
        a.dtype == b.dtype and np.dtype(a.dtype) in _BLAS_DTYPES and len(a.shape) >= 2 and len(b.shape) >= 3
    )


def _emit_matmul(writer: FunctionWriter, e: Eqn) -> bool:
    a, b = e.inputs
    if len(a.shape) <= 2 and len(b.shape) <= 2:
        return _emit_dot(writer, e)
    if a.dtype != b.dtype or np.dtype(a.dtype) not in _BLAS_DTYPES:
        return False
    if len(b.shape) <= 2:  # a batch of rows against one matrix (or vector): one product
        b_rows = tuple(b.shape) if len(b.shape) == 2 else (b.shape[0], 1)
        return _product(writer, e, (int(np.prod(a.shape[:-1])), a.shape[-1]), b_rows)
    if not _batched(e):  # a vector against a batch
        return False
    _emit_batched(writer, e)
    return True


# A batched product reads a swap of its operand's last two axes as a flag (when it has batch axes).
SWAP_READERS["matmul"] = lambda e, v: _batched(e) and len(v.shape) >= 3


defemit(matmul_p, _emit_matmul)
defemit(dot_p, _emit_dot)
