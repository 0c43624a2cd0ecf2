"""Every array operation nnc offers, on numpy arrays and traced values alike.

This module gathers the primitives' front ends, and registers those that :class:`Tracer`'s
operators call (``core.OPERATORS``), so a loss or a custom layer is ordinary code:
``nnc.mean((y - t) ** 2)``.
"""

from __future__ import annotations

from .activations import log_softmax, logistic, relu, softmax, step, tanh
from .broadcasting import broadcast_to, sum_to
from .core import OPERATORS
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
from .structural import concat, getitem, pick, reshape, take, transpose, untake

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
    "take",
    "tanh",
    "transpose",
    "untake",
    "where",
]


# Tracer's operators (its class body, in core) call these: ``x + y`` is ``add(x, y)``.
OPERATORS.update(
    add=add,
    sub=sub,
    mul=mul,
    div=div,
    power=power,
    matmul=matmul,
    neg=neg,
    absolute=absolute,
    greater=greater,
    less=less,
    getitem=getitem,
    transpose=transpose,
    reshape=reshape,
    sum=sum,
    mean=mean,
    max=max,
    cast=cast,
)
