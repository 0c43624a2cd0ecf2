"""Matrix multiplication and its gradient, for vectors, matrices and batches."""
from __future__ import annotations

from typing import Any

import numpy as np

from . import elementwise as E
from . import reductions as R
from . import structural as S
from .core import bind, defprim, defvjp
from .errors import ShapeError


matmul_p = defprim("matmul", np.matmul)
# Matrix times matrix binds np.dot directly: measurably cheaper per call than np.matmul on
# small matrices, and the hot case of every dense layer.
dot_p = defprim("dot", np.dot)


def matmul(a, b) -> Any:
    """``a @ b`` with numpy's rules for 1-D operands and batch axes; inner sizes must agree.

    >>> import numpy as np
    >>> matmul(np.ones((2, 3)), np.ones(3))
    array([3., 3.])
    """
    sa, sb = E.shape_of(a), E.shape_of(b)
    if not sa or not sb:
        raise ShapeError(f"matmul: operands must have at least one axis, got shapes {sa} and {sb}")
    k_a = sa[-1]
    k_b = sb[0] if len(sb) == 1 else sb[-2]
    if k_a != k_b:
        raise ShapeError(f"matmul: inner sizes differ: shapes {sa} and {sb} "
                         f"({k_a} columns against {k_b} rows)")
    if len(sa) > 2 and len(sb) > 2:
        E.check_broadcast("matmul (batch axes)", sa[:-2], sb[:-2])
    da, db = E.dtype_of(a), E.dtype_of(b)
    if da != db:
        if da.kind != "f":
            a = E.cast(a, db)
        elif db.kind != "f":
            b = E.cast(b, da)
    return bind(dot_p if len(sa) == 2 and len(sb) == 2 else matmul_p, a, b)


def _matmul_vjp(g, out, a, b):
    sa, sb = E.shape_of(a), E.shape_of(b)
    if len(sa) == 1 and len(sb) == 1:
        return E.unbroadcast(E.mul(g, b), a), E.unbroadcast(E.mul(g, a), b)
    if len(sb) == 1:  # (..., m, n) @ (n,) -> (..., m)
        gs = E.shape_of(g)
        ga = E.mul(S.reshape(g, gs + (1,)), S.reshape(b, (1,) * len(gs) + sb))
        gb = matmul(S.reshape(g, (-1,)), S.reshape(a, (-1, sa[-1])))
        return E.unbroadcast(ga, a), E.unbroadcast(gb, b)
    if len(sa) == 1:  # (n,) @ (..., n, m) -> (..., m)
        ga = matmul(b, S.reshape(g, E.shape_of(g) + (1,)))
        ga = S.reshape(ga, E.shape_of(ga)[:-1])
        gb = E.mul(S.reshape(a, (sa[0], 1)), S.reshape(g, E.shape_of(g)[:-1] + (1, sb[-1])))
        return E.unbroadcast(R.sum_to(ga, sa), a), E.unbroadcast(gb, b)
    if len(sb) == 2 and len(sa) > 2:  # batch of rows against one matrix: fold the batch
        g2 = S.reshape(g, (-1, sb[-1]))
        a2 = S.reshape(a, (-1, sa[-1]))
        ga = matmul(g, S.transpose(b))
        gb = matmul(S.transpose(a2), g2)
        return E.unbroadcast(ga, a), E.unbroadcast(gb, b)
    ga = matmul(g, S.swap_last(b))
    gb = matmul(S.swap_last(a), g)
    return E.unbroadcast(ga, a), E.unbroadcast(gb, b)


defvjp(matmul_p, _matmul_vjp)
defvjp(dot_p, _matmul_vjp)
