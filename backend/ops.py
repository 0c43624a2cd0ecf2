"""Every array operation nnc offers, on numpy arrays and traced values alike.

This module gathers the primitives' front-ends and gives :class:`Tracer` its operators,
so a loss or a custom layer is ordinary code: ``nnc.mean((y - t) ** 2)``.
"""

from __future__ import annotations

from .activations import log_softmax, logistic, relu, softmax, step, tanh
from .broadcasting import broadcast_to, sum_to
from .core import Tracer
from .elementwise import (
    absolute,
    add,
    cast,
    div,
    equal,
    exp,
    greater,
    less,
    log,
    maximum,
    minimum,
    mul,
    neg,
    power,
    sign,
    sqrt,
    sub,
    where,
)
from .linalg import matmul
from .reductions import max, mean, sum
from .scan import scan
from .structural import concat, getitem, pick, reshape, transpose

__all__ = [
    "absolute",
    "add",
    "broadcast_to",
    "cast",
    "concat",
    "div",
    "equal",
    "exp",
    "getitem",
    "greater",
    "less",
    "log",
    "log_softmax",
    "logistic",
    "matmul",
    "max",
    "maximum",
    "mean",
    "minimum",
    "mul",
    "neg",
    "pick",
    "power",
    "relu",
    "reshape",
    "scan",
    "sign",
    "softmax",
    "sqrt",
    "step",
    "sub",
    "sum",
    "sum_to",
    "tanh",
    "transpose",
    "where",
]


def _install_operators() -> None:
    T = Tracer
    T.__add__ = lambda a, b: add(a, b)
    T.__radd__ = lambda a, b: add(b, a)
    T.__sub__ = lambda a, b: sub(a, b)
    T.__rsub__ = lambda a, b: sub(b, a)
    T.__mul__ = lambda a, b: mul(a, b)
    T.__rmul__ = lambda a, b: mul(b, a)
    T.__truediv__ = lambda a, b: div(a, b)
    T.__rtruediv__ = lambda a, b: div(b, a)
    T.__pow__ = lambda a, b: power(a, b)
    T.__rpow__ = lambda a, b: power(b, a)
    T.__neg__ = lambda a: neg(a)
    T.__pos__ = lambda a: a
    T.__abs__ = lambda a: absolute(a)
    T.__matmul__ = lambda a, b: matmul(a, b)
    T.__rmatmul__ = lambda a, b: matmul(b, a)
    T.__gt__ = lambda a, b: greater(a, b)
    T.__lt__ = lambda a, b: less(a, b)
    T.__getitem__ = lambda a, index: getitem(a, index)
    T.T = property(lambda a: transpose(a))
    T.reshape = lambda a, *shape: reshape(a, shape[0] if len(shape) == 1 else shape)
    T.transpose = lambda a, *axes: transpose(a, axes or None)
    T.sum = lambda a, axis=None, keepdims=False: sum(a, axis, keepdims)
    T.mean = lambda a, axis=None, keepdims=False: mean(a, axis, keepdims)
    T.max = lambda a, axis=None, keepdims=False: max(a, axis, keepdims)
    T.astype = lambda a, dtype: cast(a, dtype)


_install_operators()
