"""Checks on values that only exist at run time, as primitives, so every path runs them.

A model's boundary checks types when it is called, but inside ``nnc.grad``, ``train_step``
or ``nnc.compile`` the arrays are traced and their values unknown: a NaN in the data
would flow on silently. A check primitive is the identity that raises when its input is
bad. It is recorded in the graph like any other operation, so the interpreted graph runs
it, the compiled code runs it (``numba_codegen`` emits it as a loop that raises; the
compiled function then reruns the interpreter for the message), and its gradient is the
incoming one.

>>> import numpy as np
>>> float(check_finite(np.ones(3), what="input of Linear(3 -> 1)").sum())
3.0
>>> check_finite(np.array([1.0, np.nan]), what="input of Linear(2 -> 1)")
Traceback (most recent call last):
...
nnc.NonFiniteError: input of Linear(2 -> 1) holds nan at index (1,); nnc refuses NaN and infinite inputs
  see docs/errors.md#nonfiniteerror
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .array_api import numpy_dtype
from .core import bind, defgeneric, defprim, defvjp
from .errors import NonFiniteError


def non_finite_message(what: str, x: np.ndarray) -> str:
    """The message for a non-finite ``x``: its first bad entry and where it is."""
    bad = np.argwhere(~np.isfinite(x))[0] if np.ndim(x) else ()
    value = np.asarray(x)[tuple(bad)]
    return (f"{what} holds {value} at index {tuple(int(i) for i in bad)}; "
            "nnc refuses NaN and infinite inputs")


def _check_finite_impl(x: np.ndarray, what: str) -> np.ndarray:
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise NonFiniteError(non_finite_message(what, x))
    return x


def _check_finite_generic(xp: Any, x: Any, what: str) -> Any:
    if numpy_dtype(x.dtype).kind == "f" and not bool(xp.all(xp.isfinite(x))):
        raise NonFiniteError(f"{what} holds NaN or infinite values; nnc refuses NaN and infinite inputs")
    return x


check_finite_p = defprim("check_finite", _check_finite_impl,
                         abstract=lambda aval, what: aval)
defvjp(check_finite_p, lambda g, out, x, what: (g,))
defgeneric(check_finite_p, _check_finite_generic)


def check_finite(x: Any, *, what: str) -> Any:
    """``x`` itself, after raising :class:`nnc.NonFiniteError` (naming ``what``, the first bad
    value and its index) if it holds a NaN or an infinity; recorded when ``x`` is traced."""
    return bind(check_finite_p, x, what=what)
