"""Matrix products for the code ``nnc.compile`` generates: one BLAS call, transposes as flags.

``np.dot`` inside Numba compiles a fresh implementation for every operand layout (C-ordered,
or a transposed view), and that compilation is most of the cold compile time of a training
step, whose backward pass multiplies by transposes. Here every product goes through
:func:`matmul`, compiled once per dtype for C-ordered operands (an operand's transpose is a
flag, not a view) and kept in Numba's disk cache, so it is compiled once per machine rather
than once per model.

The BLAS call is Numba's own ``numba_xxgemm`` (scipy's BLAS, the one ``np.dot`` uses in
Numba), so results are those of ``np.dot`` inside Numba. This module imports Numba: only
generated code imports it.

>>> import numpy as np
>>> a = np.arange(6, dtype=np.float32).reshape(2, 3)
>>> b = np.ones((2, 4), np.float32)
>>> out = np.empty((3, 4), np.float32)
>>> matmul(a, b, np.int64(TRANS_A), out)  # a.T @ b
array([[3., 3., 3., 3.],
       [5., 5., 5., 5.],
       [7., 7., 7., 7.]], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba import types
from numba.extending import overload
from numba.np.linalg import ensure_blas

ensure_blas()  # a clear ImportError when scipy (Numba's BLAS provider) is missing

TRANS_A, TRANS_B = 2, 1  # bits of ``trans``: multiply by the transpose of a, of b


def _xxgemm(dtype) -> types.ExternalFunction:
    ptr = types.CPointer(dtype)
    return types.ExternalFunction(
        "numba_xxgemm",
        types.intc(
            types.char,
            types.char,
            types.char,
            types.intp,
            types.intp,
            types.intp,  # kind, transa, transb, m, n, k
            ptr,
            ptr,
            types.intp,
            ptr,
            types.intp,
            ptr,
            ptr,
            types.intp,
        ),
    )  # alpha, a, lda, b, ldb, beta, c, ldc


# Any: the functions are called only from compiled code, where they are functions, not Numba types.
_GEMM: dict[types.Type, tuple[Any, int]] = {
    types.float32: (_xxgemm(types.float32), ord("s")),
    types.float64: (_xxgemm(types.float64), ord("d")),
}
_N, _T = ord("n"), ord("t")


def _gemm(transa, transb, m, n, k, coef, a, lda, b, ldb, c):  # pragma: no cover - typed by Numba only
    """BLAS ``gemm`` for the dtype of ``c`` (resolved when Numba compiles a caller)."""
    raise NotImplementedError


@overload(_gemm)
def _gemm_for_dtype(transa, transb, m, n, k, coef, a, lda, b, ldb, c):
    fn, kind = _GEMM[c.dtype]

    def call(transa, transb, m, n, k, coef, a, lda, b, ldb, c):
        fn(
            kind,
            transa,
            transb,
            m,
            n,
            k,
            coef[0:].ctypes,
            a.ctypes,
            lda,
            b.ctypes,
            ldb,
            coef[1:].ctypes,
            c.ctypes,
            m,
        )  # c is column-major m x n

    return call


# BLAS is column-major: a C-ordered (m, n) result is the column-major (n, m) matrix, so the
# call computes out.T = op(b).T @ op(a).T, and a C-ordered operand is its own transpose there.
def _blas_matmul(a, b, trans, out):  # pragma: no cover - compiled; tested through calls
    """``out = op(a) @ op(b)`` for C-ordered float32 or float64 matrices; ``trans`` (an ``np.int64``)
    says which op is a transpose: bits :data:`TRANS_A` and :data:`TRANS_B`."""
    m, n = out.shape
    ta, tb = (trans & TRANS_A) != 0, (trans & TRANS_B) != 0
    k = a.shape[0] if ta else a.shape[1]
    if m == 0 or n == 0:
        return out
    if k == 0:
        out[:] = 0
        return out
    coef = np.empty(2, out.dtype)
    coef[0], coef[1] = 1, 0
    _gemm(_T if tb else _N, _T if ta else _N, n, m, k, coef, b, b.shape[1], a, a.shape[1], out)
    return out


def _numpy_matmul(a, b, trans, out):
    """What the functions above compute, in numpy: the generated code runs as plain Python
    under ``NUMBA_DISABLE_JIT=1``, where Numba's BLAS binding cannot be called."""
    np.dot(a.T if trans & TRANS_A else a, b.T if trans & TRANS_B else b, out=out)
    return out


# numba.config sets its attributes at import, out of the type checker's sight.
_JIT_DISABLED = bool(numba.config.DISABLE_JIT)  # type: ignore[attr-defined]

# The product generated code calls: the BLAS call compiled, or numpy's when nothing is compiled.
matmul: Callable[[np.ndarray, np.ndarray, np.int64, np.ndarray], np.ndarray] = (
    _numpy_matmul if _JIT_DISABLED else numba.njit(cache=True, nogil=True)(_blas_matmul)
)
