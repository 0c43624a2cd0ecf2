"""Reductions: sum, mean and max (their linear partners broadcast_to and sum_to are in
:mod:`nnc.backend.broadcasting`)."""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np

from .broadcasting import broadcast_to, dtype_of, shape_of
from .core import Eqn, bind, defemit, defgeneric, defprim, defvjp
from .elementwise import cast, div, equal, mul
from .errors import ShapeError
from .numba_codegen import FunctionWriter, literal, running_max
from .structural import reshape


def normalize_axis(axis: Any, ndim: int, name: str) -> tuple[int, ...]:
    """``axis`` (None, an int or a tuple) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ShapeError(f"{name}: axis {a} is out of range for an array of rank {ndim}")
        out.append(int(a) % ndim)
    return tuple(sorted(set(out)))


def _kept_shape(shape: tuple, axes: tuple) -> tuple:
    return tuple(1 if i in axes else d for i, d in enumerate(shape))


# --------------------------------------------------------------------------- sum / mean


def _sum_impl(x, axis, keepdims):
    if type(x) is not np.ndarray:
        return np.sum(x, axis=axis, keepdims=keepdims)
    # np.add.reduce is what ndarray.sum calls, less the Python layer in between
    return np.add.reduce(x, axis=axis[0] if len(axis) == 1 else axis, keepdims=keepdims)


sum_p = defprim("sum", _sum_impl)
defgeneric(sum_p, lambda xp, x, axis, keepdims: xp.sum(x, axis=axis, keepdims=keepdims))


def sum(x, axis=None, keepdims: bool = False):  # noqa: A001 - mirrors numpy
    """Sum over ``axis`` (all axes by default)."""
    axes = normalize_axis(axis, len(shape_of(x)), "sum")
    return bind(sum_p, x, axis=axes, keepdims=bool(keepdims))


def _sum_vjp(g, out, x, axis, keepdims):
    shape = shape_of(x)
    if not keepdims:
        g = reshape(g, _kept_shape(shape, axis))
    return (broadcast_to(g, shape),)


defvjp(sum_p, _sum_vjp)


def _emit_sum(writer: FunctionWriter, e: Eqn) -> bool:
    writer.reduce(e, tuple(e.attrs["axis"]), literal(0, e.out.dtype), "{acc} += {x}")
    return True


defemit(sum_p, _emit_sum)


def mean(x, axis=None, keepdims: bool = False):
    """Mean over ``axis`` (all axes by default)."""
    shape = shape_of(x)
    axes = normalize_axis(axis, len(shape), "mean")
    count = int(np.prod([shape[a] for a in axes], dtype=np.int64))
    return mul(sum(x, axes, keepdims), 1.0 / builtins.max(count, 1))


# --------------------------------------------------------------------------- max


def _max_impl(x, axis, keepdims):
    return np.asarray(x).max(axis=axis, keepdims=keepdims)


max_p = defprim("max", _max_impl)
defgeneric(max_p, lambda xp, x, axis, keepdims: xp.max(x, axis=axis, keepdims=keepdims))


def max(x, axis=None, keepdims: bool = False):  # noqa: A001 - mirrors numpy
    """Maximum over ``axis``; at ties the gradient is shared equally."""
    axes = normalize_axis(axis, len(shape_of(x)), "max")
    return bind(max_p, x, axis=axes, keepdims=bool(keepdims))


def _max_vjp(g, out, x, axis, keepdims):
    shape = shape_of(x)
    if not keepdims:
        g = reshape(g, _kept_shape(shape, axis))
        out = reshape(out, _kept_shape(shape, axis))
    mask = cast(equal(x, out), dtype_of(x))
    share = div(mask, sum(mask, axis, keepdims=True))
    return (mul(share, g),)


defvjp(max_p, _max_vjp)


def _emit_max(writer: FunctionWriter, e: Eqn) -> bool:
    writer.reduce(e, tuple(e.attrs["axis"]), "-np.inf", f"{{acc}} = {running_max('{acc}', '{x}')}")
    return True


defemit(max_p, _emit_max)
