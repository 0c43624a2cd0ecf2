"""The shape and dtype of any value, and explicit broadcasting: ``broadcast_to`` and its
transpose ``sum_to``.

The lowest of the primitive families: every gradient rule of a broadcasting operation sums
its cotangent back with ``sum_to`` (through ``elementwise.unbroadcast``), so this module
imports none of the others.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .array_api import namespace_of, numpy_dtype
from .core import Eqn, Tracer, bind, defemit, defgeneric, defprim, defvjp
from .errors import ShapeError
from .numba_codegen import FunctionWriter, literal


def shape_of(x: Any) -> tuple[int, ...]:
    """The shape of an array, a traced value or a Python number."""
    return x.shape if type(x) is Tracer or isinstance(x, np.ndarray) else np.shape(x)


def dtype_of(x: Any) -> np.dtype:
    """The numpy dtype of an array (of any backend), a traced value or a Python number."""
    if type(x) is Tracer or isinstance(x, np.ndarray):
        return x.dtype
    if namespace_of(x) is not None:
        return numpy_dtype(x.dtype)
    return np.asarray(x).dtype


def _broadcast_impl(x, shape):
    # A copy, not numpy's read-only view: a gradient handed to the user must be writable.
    # Filled in place (a fresh array, then numpy's broadcasting copy into it), which skips
    # the Python layer of np.broadcast_to; anything unusual takes np.broadcast_to's path,
    # so its errors are numpy's as before.
    x = np.asarray(x)
    if type(shape) is tuple and x.ndim <= len(shape):
        try:
            out = np.empty(shape, x.dtype)
            np.copyto(out, x)
            return out
        except ValueError:
            pass
    return np.broadcast_to(x, shape).copy()


broadcast_p = defprim("broadcast_to", _broadcast_impl)
defgeneric(broadcast_p, lambda xp, x, shape: xp.asarray(xp.broadcast_to(x, shape), copy=True))


def broadcast_to(x, shape: tuple[int, ...]):
    """``x`` repeated to ``shape`` (explicit broadcasting)."""
    shape = tuple(shape)
    if shape_of(x) == shape:
        return x
    return bind(broadcast_p, x, shape=shape)


def _sum_to_impl(x, shape, axes):
    axis = axes[0] if len(axes) == 1 else axes
    # np.add.reduce is what ndarray.sum calls, less the Python layer in between
    out = np.add.reduce(x, axis=axis) if type(x) is np.ndarray else x.sum(axis=axis)
    return out if out.shape == shape else out.reshape(shape)


sum_to_p = defprim("sum_to", _sum_to_impl)
defgeneric(sum_to_p, lambda xp, x, shape, axes: xp.reshape(xp.sum(x, axis=axes), shape))


def sum_to(x, shape: tuple[int, ...]):
    """Sum ``x`` down to ``shape``: undoes a broadcast (used by every gradient rule that needs it)."""
    shape = tuple(shape)
    xs = shape_of(x)
    if xs == shape:
        return x
    lead = len(xs) - len(shape)
    if lead < 0 or any(d != 1 and d != xs[lead + i] for i, d in enumerate(shape)):
        raise ShapeError(f"sum_to: cannot sum shape {xs} down to {shape}")
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape) if d == 1 and xs[lead + i] != 1)
    return bind(sum_to_p, x, shape=shape, axes=axes)


defvjp(broadcast_p, lambda g, out, x, shape: (sum_to(g, shape_of(x)),))
defvjp(sum_to_p, lambda g, out, x, shape, axes: (broadcast_to(g, shape_of(x)),))


def _emit_broadcast_to(writer: FunctionWriter, e: Eqn) -> bool:
    x, out = e.inputs[0], e.out
    shape = tuple(e.attrs["shape"])
    o = writer.name(out)
    writer.alloc(o, shape, out.dtype)
    if not x.shape:
        writer.emit(f"{o}[...] = {writer.scalar(x)}")
        return True
    idx = [f"i{k}" for k in range(len(shape))]
    for k in range(len(shape)):
        writer.emit(f"for {idx[k]} in range({shape[k]}):", k + 1)
    lead = len(shape) - len(x.shape)
    src = ", ".join("0" if d == 1 and shape[lead + k] != 1 else idx[lead + k] for k, d in enumerate(x.shape))
    writer.emit(f"{o}[{', '.join(idx)}] = {writer.name(x)}[{src}]", len(shape) + 1)
    return True


def _emit_sum_to(writer: FunctionWriter, e: Eqn) -> bool:
    writer.reduce(e, tuple(e.attrs["axes"]), literal(0, e.out.dtype), "{acc} += {x}")
    return True


defemit(broadcast_p, _emit_broadcast_to)
defemit(sum_to_p, _emit_sum_to)
