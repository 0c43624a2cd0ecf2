"""Matrix multiplication and its gradient, for vectors, matrices and batches."""

from __future__ import annotations

from typing import Any

import numpy as np

from nnc.kernels import dispatch as K

from . import broadcasting as B
from . import elementwise as E
from . import structural as S
from .activations import logistic_generic
from .core import bind, defgeneric, defprim, defvjp
from .errors import ShapeError

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
    sa, sb = E.shape_of(a), E.shape_of(b)
    if not sa or not sb:
        raise ShapeError(f"matmul: operands must have at least one axis, got shapes {sa} and {sb}")
    k_a = sa[-1]
    k_b = sb[0] if len(sb) == 1 else sb[-2]
    if k_a != k_b:
        raise ShapeError(
            f"matmul: inner sizes differ: shapes {sa} and {sb} ({k_a} columns against {k_b} rows)"
        )
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
        return E.unbroadcast(B.sum_to(ga, sa), a), E.unbroadcast(gb, b)
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


# ----------------------------------------------------------------------------- dense layer

ACTIVATIONS = ("identity", "relu", "tanh", "logistic")


def _linear_abstract(x, w, b, activation):
    return tuple(x[0][:-1]) + (w[0][1],), np.result_type(x[1], w[1])


linear_p = defprim("linear", K.linear, abstract=_linear_abstract)
activation_grad_p = defprim("activation_grad", K.activation_grad, abstract=lambda g, out, activation: g)


def _linear_generic(xp, x, w, b, activation):
    z = xp.matmul(x, w) + b
    if activation == "relu":
        return xp.maximum(z, xp.zeros_like(z))
    if activation == "tanh":
        return xp.tanh(z)
    if activation == "logistic":
        return logistic_generic(xp, z)
    return z


def _activation_grad_generic(xp, g, out, activation):
    if activation == "relu":
        return g * xp.astype(out > 0, g.dtype)
    if activation == "tanh":
        return g * (1 - out * out)
    return g * (out * (1 - out))


defgeneric(linear_p, _linear_generic)
defgeneric(activation_grad_p, _activation_grad_generic)


def linear(x, w, b, activation: str = "identity") -> Any:
    """``activation(x @ w + b)`` as one primitive: the dense layer with its epilogue fused.

    ``x`` is (..., k), ``w`` (k, n), ``b`` (n,); ``activation`` is one of ``"identity"``,
    ``"relu"``, ``"tanh"``, ``"logistic"``. The product runs on BLAS and the bias and
    activation in place after it (:mod:`nnc.kernels.dense`); values and gradients are
    bit for bit those of ``matmul``, ``+`` and the activation applied one by one.

    >>> import numpy as np
    >>> linear(np.ones((2, 3)), np.ones((3, 2)), np.array([-4.0, 1.0]), "relu")
    array([[0., 4.],
           [0., 4.]])
    """
    if activation not in ACTIVATIONS:
        raise ShapeError(f"linear: activation must be one of {ACTIVATIONS}, got {activation!r}")
    sx, sw, sb = E.shape_of(x), E.shape_of(w), E.shape_of(b)
    if len(sw) != 2 or not sx or sx[-1] != sw[0] or sb != sw[1:]:
        raise ShapeError(
            f"linear: expected x (..., k), w (k, n) and b (n,), got shapes "
            f"{tuple(sx)}, {tuple(sw)} and {tuple(sb)}"
        )
    dtype = np.result_type(E.dtype_of(x), E.dtype_of(w), E.dtype_of(b))
    x, w, b = E.cast(x, dtype), E.cast(w, dtype), E.cast(b, dtype)
    return bind(linear_p, x, w, b, activation=activation)


def activation_grad(g, out, activation: str) -> Any:
    """``g`` times the activation's derivative, read from the activation's output ``out``."""
    if activation == "identity":
        return g
    return bind(activation_grad_p, g, out, activation=activation)


def _linear_vjp(g, out, x, w, b, activation):
    gz = activation_grad(g, out, activation)
    sx, sw = E.shape_of(x), E.shape_of(w)
    if len(sx) == 1:
        gx = matmul(w, gz)
        gw = E.mul(S.reshape(x, (sw[0], 1)), S.reshape(gz, (1, sw[1])))
        return gx, gw, gz
    x2, gz2 = S.reshape(x, (-1, sw[0])), S.reshape(gz, (-1, sw[1]))
    return matmul(gz, S.transpose(w)), matmul(S.transpose(x2), gz2), B.sum_to(gz, (sw[1],))


def _activation_grad_vjp(ct, gz, g, out, activation):
    """Second derivatives: ``gz`` is linear in ``g``; its slope in ``out`` is ``g * act''``."""
    d_out = None
    if activation == "tanh":  # d/dy [g (1 - y^2)] = -2 g y
        d_out = E.mul(E.mul(ct, g), E.mul(out, -2.0))
    elif activation == "logistic":  # d/dy [g y (1 - y)] = g (1 - 2 y)
        d_out = E.mul(E.mul(ct, g), E.sub(1.0, E.mul(out, 2.0)))
    return activation_grad(ct, out, activation), d_out


defvjp(linear_p, _linear_vjp)
defvjp(activation_grad_p, _activation_grad_vjp)
