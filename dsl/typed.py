"""nnc types as annotations on your own functions, checked by typeguard.

``@nnc.typed`` checks every annotated argument and the return value on each call.
Dimension names bind across one call: in ``f(a: Vec["n"], b: Vec["n"]) -> Vec["n"]``
all three sizes must agree. A leading batch axis is allowed and must agree too.

It is built on :func:`typeguard.check_type` with an nnc checker in
``typeguard.checker_lookup_functions``, registered as a typeguard plugin (an entry point,
so ``typeguard.check_type(x, Vec[3])`` and typeguard's own ``@typechecked`` understand
nnc types as soon as typeguard is imported, while ``import nnc`` does not pay for
importing typeguard). Unlike ``@typechecked`` it does not re-compile the function from its
source, so it works in notebook cells.

>>> import numpy as np
>>> from nnc import Vec, typed
>>> @typed
... def double(x: Vec["n"]) -> Vec["n"]:
...     return 2 * x
>>> double(np.ones(3))
array([2., 2., 2.])
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

import nnc.types
from nnc.backend.core import Tracer
from nnc.backend.errors import ShapeError

from .types import ArrayType, Dim, show

_bindings: contextvars.ContextVar[dict | None] = contextvars.ContextVar("nnc_typed_bindings", default=None)
_BATCH = "batch axis"


def _expected(t: ArrayType) -> str:
    text = show([t])[0]
    inner = text[text.index("[") + 1 : -1]
    single = f"({inner},)" if t.rank == 1 else f"({inner})"
    return f"{text}: an array of shape {single} or (batch, {inner})"


def _check_array(value: Any, origin_type: ArrayType, args: tuple, memo: Any) -> None:
    import typeguard

    t = origin_type
    if type(value) is not Tracer and not isinstance(value, np.ndarray):
        raise typeguard.TypeCheckError(f"is {type(value).__name__}, not an array of type {_expected(t)}")
    shape = tuple(value.shape)
    if len(shape) not in (t.rank, t.rank + 1):
        raise typeguard.TypeCheckError(f"has shape {shape}, expected {_expected(t)}")
    if np.dtype(value.dtype).kind not in "fiub":
        raise typeguard.TypeCheckError(f"has dtype {value.dtype}, expected numbers")
    bindings = _bindings.get()
    bindings = {} if bindings is None else bindings
    names = [(_BATCH, shape[0])] if len(shape) == t.rank + 1 else []
    for d, n in zip(t.dims, shape[len(shape) - t.rank :]):
        if isinstance(d, int):
            if d != n:
                raise typeguard.TypeCheckError(f"has shape {shape}, expected {_expected(t)}")
        elif isinstance(d, Dim) and d.name:
            names.append((d.name, n))
    for name, n in names:
        if bindings.setdefault(name, n) != n:
            raise typeguard.TypeCheckError(
                f"has shape {shape}, but {name} is {bindings[name]} elsewhere in this call "
                f"(expected {_expected(t)})"
            )


def lookup(origin_type: Any, args: tuple, extras: tuple) -> Callable | None:
    """typeguard's checker lookup for nnc types (the ``typeguard.checker_lookup`` entry point)."""
    return _check_array if isinstance(origin_type, ArrayType) else None


def _typeguard():
    """typeguard, with nnc's checker registered even where plugin autoloading is switched off."""
    import typeguard

    if lookup not in typeguard.checker_lookup_functions:
        typeguard.checker_lookup_functions.insert(0, lookup)
    return typeguard


def _annotations(fn: Callable) -> dict:
    out = {}
    for name, ann in getattr(fn, "__annotations__", {}).items():
        if isinstance(ann, str):
            try:
                ann = eval(ann, dict(vars(nnc.types)), fn.__globals__)  # noqa: S307 - the user's own annotation
            except Exception:  # an annotation we cannot read is left to Python
                continue
        out[name] = ann
    return out


def typed(fn: Callable) -> Callable:
    """Check ``fn``'s annotated arguments and return value on every call (see module doc)."""
    signature = inspect.signature(fn)
    annotations = _annotations(fn)
    code = getattr(fn, "__code__", None)
    defined_at = f"{code.co_filename}:{code.co_firstlineno}" if code else "unknown place"
    qualname = getattr(fn, "__qualname__", repr(fn))

    typeguard = _typeguard()

    def check(value: Any, ann: Any, what: str) -> None:
        try:
            typeguard.check_type(value, ann)
        except typeguard.TypeCheckError as err:
            # args[0] is our checker's own words, without typeguard's "numpy.ndarray" prefix
            raise ShapeError(f"{qualname} (defined at {defined_at}): {what} {err.args[0]}") from None

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as err:
            raise TypeError(f"{qualname}: {err}") from None
        token = _bindings.set({})
        try:
            for name, value in bound.arguments.items():
                if name in annotations:
                    check(value, annotations[name], f"argument {name!r}")
            result = fn(*args, **kwargs)
            if "return" in annotations:
                check(result, annotations["return"], "return value")
            return result
        finally:
            _bindings.reset(token)

    return wrapper
