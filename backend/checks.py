"""Checks on values that only exist at run time, as primitives, so every path runs them.

A model's boundary checks types when it is called, but inside ``nnc.grad``, ``train_step``
or ``nnc.compile`` the arrays are traced and their values unknown: a NaN in the data
would flow on silently. A check primitive is the identity that raises when its input is
bad. It is recorded in the graph like any other operation, so the interpreted graph runs
it, the compiled code runs it (its compiled form, below, is a loop that raises; the
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

from .array_api import numpy_dtype, to_numpy
from .core import Const, Eqn, Var, bind, defemit, defgeneric, defprim, defvjp
from .errors import NNCError, NonFiniteError, ShapeError
from .execute import quiet
from .numba_codegen import FunctionWriter, literal


def non_finite_message(what: str, x: np.ndarray) -> str:
    """The message for a non-finite ``x``: its first bad entry and where it is."""
    bad = np.argwhere(~np.isfinite(x))[0] if np.ndim(x) else ()
    value = np.asarray(x)[tuple(bad)]
    return f"{what} holds {value} at index {tuple(int(i) for i in bad)}; nnc refuses NaN and infinite inputs"


def all_finite(x: np.ndarray) -> bool:
    """Whether every entry of the numpy array ``x`` is finite (integers always are)."""
    # (x . x, finite only if every entry is, takes one BLAS pass, but numpy warns when it
    # overflows: that would be a raw RuntimeWarning for large, finite data)
    return x.dtype.kind != "f" or bool(np.isfinite(x).all())


def _check_finite_impl(x: np.ndarray, what: str) -> np.ndarray:
    if not all_finite(x):
        raise NonFiniteError(non_finite_message(what, x))
    return x


def _check_finite_generic(xp: Any, x: Any, what: str) -> Any:
    if numpy_dtype(x.dtype).kind == "f" and not bool(xp.all(xp.isfinite(x))):
        raise NonFiniteError(f"{what} holds NaN or infinite values; nnc refuses NaN and infinite inputs")
    return x


check_finite_p = defprim("check_finite", _check_finite_impl, abstract=lambda aval, what: aval)
defvjp(check_finite_p, lambda g, out, x, what: (g,))
defgeneric(check_finite_p, _check_finite_generic)


# The compiled forms: loops that raise, and the result is the input under another name. Numba
# raises only constant messages, so they say no more than what failed: nnc.compile then reruns
# the interpreter, whose check names the input, the bad value and its index.


def _each_entry(writer: FunctionWriter, v: Var | Const, body: list[str]) -> None:
    """Loops over every entry of ``v``, in any memory order; ``body`` lines see it as ``{x}``."""
    idx = [f"i{k}" for k in range(len(v.shape))]
    for k, d in enumerate(v.shape):
        writer.emit(f"for {idx[k]} in range({int(d)}):", k + 1)
    entry = f"{writer.name(v)}[{', '.join(idx) if idx else '()'}]"
    for line in body:
        writer.emit(line.format(x=entry), len(idx) + 1)


def _emit_check_finite(writer: FunctionWriter, e: Eqn) -> bool:
    """Raise at the first NaN or infinity of a float input (as the numpy implementation,
    integers are not checked)."""
    x = e.inputs[0]
    if np.dtype(x.dtype).kind == "f":
        _each_entry(writer, x, ["if not np.isfinite({x}):", "    raise ValueError('nnc: non-finite input')"])
    writer.alias(e.out, x)
    return True


defemit(check_finite_p, _emit_check_finite)


def check_finite(x: Any, *, what: str) -> Any:
    """``x`` itself, after raising :class:`nnc.NonFiniteError` (naming ``what``, the first bad
    value and its index) if it holds a NaN or an infinity; recorded when ``x`` is traced."""
    return bind(check_finite_p, x, what=what)


# ----------------------------------------------------------------------------- values a loss accepts


class DomainError(NNCError, ValueError):
    """Values outside what an operation accepts: labels out of range, predictions that are not
    probabilities."""


DomainError.__module__ = "nnc"  # shown as nnc.DomainError, like the other errors


def _rows(p: np.ndarray) -> np.ndarray:
    """``p`` as a matrix with one row per position of its leading axes (one row for a vector)."""
    return p.reshape(int(np.prod(p.shape[:-1], dtype=np.int64)), p.shape[-1]) if p.ndim else p.reshape(1, 1)


def _out_of_range(rows: np.ndarray, tolerance: float) -> np.ndarray:
    return (rows < -tolerance) | (rows > 1 + tolerance)


def _improper_rows(rows: np.ndarray, tolerance: float) -> np.ndarray:
    """Which finite rows are not probability distributions. Rows holding NaN or infinity are left
    alone: they come from a diverging model, which the training loop reports as such."""
    with quiet():  # a row holding inf and -inf sums to nan: left alone, as said
        sums = rows.sum(axis=-1, dtype=np.float64)
    return np.isfinite(sums) & (_out_of_range(rows, tolerance).any(axis=-1) | (np.abs(sums - 1) > tolerance))


def improper_probabilities_message(what: str, p: np.ndarray, row: int, tolerance: float) -> str:
    """The message for ``p`` (the input of loss ``what``) whose ``row`` is not a distribution."""
    values = _rows(p)[row]
    index = tuple(int(i) for i in np.unravel_index(row, p.shape[:-1]))
    label = index[0] if len(index) == 1 else index
    shown = [f"{float(v):.4g}" for v in values]
    shown = shown if len(shown) <= 8 else shown[:3] + ["..."] + shown[-3:]
    outside = np.flatnonzero(_out_of_range(values, tolerance))
    detail = f"sums to {float(values.sum(dtype=np.float64)):.4g}"
    if outside.size:
        detail = f"holds {float(values[outside[0]]):.4g} at index {index + (int(outside[0]),)} and " + detail
    return (
        f"{what} expects probabilities (values in [0, 1] that sum to 1 along the last axis), "
        f"but row {label} of its prediction is [{', '.join(shown)}], which {detail}\n"
        f"  hint: end the model with >> softmax, or, if these are logits, use "
        f"{what}(..., from_logits=True) (in fit: loss=functools.partial(nnc.{what}, from_logits=True))"
    )


def _check_probabilities_impl(p: np.ndarray, what: str, tolerance: float) -> np.ndarray:
    bad = _improper_rows(_rows(p), tolerance)
    if bad.any():
        raise DomainError(improper_probabilities_message(what, p, int(np.argmax(bad)), tolerance))
    return p


def _check_probabilities_generic(xp: Any, p: Any, what: str, tolerance: float) -> Any:
    rows = xp.reshape(p, (-1, p.shape[-1])) if p.ndim else xp.reshape(p, (1, 1))
    sums = xp.sum(rows, axis=-1)
    outside = xp.any((rows < -tolerance) | (rows > 1 + tolerance), axis=-1)
    bad = xp.isfinite(sums) & (outside | (xp.abs(sums - 1) > tolerance))
    if bool(xp.any(bad)):  # rare: the detailed message is built from a host copy
        _check_probabilities_impl(to_numpy(p), what, tolerance)
    return p


check_probabilities_p = defprim(
    "check_probabilities", _check_probabilities_impl, abstract=lambda aval, what, tolerance: aval
)
defvjp(check_probabilities_p, lambda g, out, p, what, tolerance: (g,))
defgeneric(check_probabilities_p, _check_probabilities_generic)


def _emit_check_probabilities(writer: FunctionWriter, e: Eqn) -> bool:
    """Raise if a finite row (along the last axis) holds a value outside ``[-tol, 1 + tol]``
    or sums, in float64, to more than ``tol`` off 1: the numpy implementation's condition. Its
    bounds are in the input's dtype, as numpy compares a float32 array with a Python float;
    rows holding NaN or infinity pass."""
    p, tol = e.inputs[0], e.attrs["tolerance"]
    if p.dtype.kind != "f":
        return False
    lead = [f"i{k}" for k in range(len(p.shape) - 1)]
    for k, d in enumerate(p.shape[:-1]):
        writer.emit(f"for {lead[k]} in range({int(d)}):", k + 1)
    depth = len(lead) + 1
    # fresh names: a name reused with another dtype elsewhere in the function is a typing error
    total, outside, v = (writer.fresh(n) for n in ("total", "outside", "p"))
    writer.emit(f"{total} = np.float64(0.0)", depth)
    writer.emit(f"{outside} = False", depth)
    if p.shape:
        writer.emit(f"for j in range({int(p.shape[-1])}):", depth)
        entry = f"{writer.name(p)}[{', '.join(lead + ['j'])}]"
    else:  # one number is one row of one entry
        entry = f"{writer.name(p)}[()]"
    inner = depth + bool(p.shape)
    writer.emit(f"{v} = {entry}", inner)
    writer.emit(f"{total} += np.float64({v})", inner)
    writer.emit(f"if {v} < {literal(-tol, p.dtype)} or {v} > {literal(1 + tol, p.dtype)}:", inner)
    writer.emit(f"{outside} = True", inner + 1)
    writer.emit(
        f"if np.isfinite({total}) and ({outside} or np.abs({total} - np.float64(1.0)) > np.float64({tol!r})):",
        depth,
    )
    writer.emit("raise ValueError('nnc: not probabilities')", depth + 1)
    writer.alias(e.out, p)
    return True


defemit(check_probabilities_p, _emit_check_probabilities)


def check_probabilities(p: Any, *, what: str, tolerance: float = 1e-3) -> Any:
    """``p`` itself, after raising :class:`nnc.DomainError` if a row along its last axis is not a
    probability distribution (a value outside ``[0, 1]``, or a sum off 1 by more than
    ``tolerance``); recorded when ``p`` is traced. Rows holding NaN or infinity pass.

    >>> check_probabilities(np.array([[0.25, 0.75]]), what="cross_entropy").tolist()
    [[0.25, 0.75]]
    >>> check_probabilities(np.array([[0.25, 0.75], [2.0, -1.5]]), what="cross_entropy")
    Traceback (most recent call last):
    ...
    nnc.DomainError: cross_entropy expects probabilities (values in [0, 1] that sum to 1 along the last axis), but row 1 of its prediction is [2, -1.5], which holds 2 at index (1, 0) and sums to 0.5
      hint: end the model with >> softmax, or, if these are logits, use cross_entropy(..., from_logits=True) (in fit: loss=functools.partial(nnc.cross_entropy, from_logits=True))
      see docs/errors.md#domainerror
    """
    return bind(check_probabilities_p, p, what=what, tolerance=float(tolerance))


def labels_message(what: str, labels: np.ndarray, classes: int) -> str:
    """The message for integer ``labels`` of loss ``what`` that are not all in ``0..classes-1``."""
    bad = np.argwhere((labels < 0) | (labels >= classes))[0] if labels.ndim else ()
    value = int(np.asarray(labels)[tuple(bad)])
    if value < 0:
        hint = "labels count classes from 0; shift them so that the smallest is 0"
    else:
        hint = (
            f"the prediction has {classes} columns, one per class; make the model's last layer "
            f"as wide as the number of classes (labels.max() + 1 = {int(labels.max()) + 1})"
        )
    return (
        f"{what}: label {value} at index {tuple(int(i) for i in bad)} is out of range for "
        f"{classes} classes (labels must be 0..{classes - 1})\n  hint: {hint}"
    )


_UNSIGNED = {np.dtype(f"i{n}"): np.dtype(f"u{n}") for n in (1, 2, 4, 8)}


def _check_labels_impl(labels: np.ndarray, what: str, classes: int) -> np.ndarray:
    # one reduction, not two: seen as unsigned, a negative label is a huge one
    if not labels.dtype.isnative:  # big-endian labels, from a file written elsewhere
        labels = labels.astype(labels.dtype.newbyteorder("="))
    unsigned = labels.view(_UNSIGNED[labels.dtype]) if labels.dtype.kind == "i" else labels
    if labels.size and unsigned.max() >= classes:
        raise DomainError(labels_message(what, labels, classes))
    return labels


def _check_labels_generic(xp: Any, labels: Any, what: str, classes: int) -> Any:
    if labels.size and bool(xp.any((labels < 0) | (labels >= classes))):
        _check_labels_impl(to_numpy(labels), what, classes)
    return labels


# integer labels carry no gradient
check_labels_p = defprim(
    "check_labels", _check_labels_impl, nondiff=True, abstract=lambda aval, what, classes: aval
)
defgeneric(check_labels_p, _check_labels_generic)


def _emit_in_range(writer: FunctionWriter, e: Eqn, size: int, what: str) -> bool:
    """Raise at the first integer of ``e``'s input outside ``0..size-1`` (the numpy
    implementation's condition; it takes integers, and so does this form)."""
    x = e.inputs[0]
    if x.dtype.kind not in "iu":
        return False
    test = f"{{x}} >= {size}" if x.dtype.kind == "u" else f"{{x}} < 0 or {{x}} >= {size}"
    _each_entry(writer, x, [f"if {test}:", f"    raise ValueError('nnc: {what} out of range')"])
    writer.alias(e.out, x)
    return True


def _emit_check_labels(writer: FunctionWriter, e: Eqn) -> bool:
    return _emit_in_range(writer, e, int(e.attrs["classes"]), "label")


defemit(check_labels_p, _emit_check_labels)


def check_labels(labels: Any, *, what: str, classes: int) -> Any:
    """Integer ``labels`` themselves, after raising :class:`nnc.DomainError` (naming the first
    label outside ``0..classes-1``, its index and the number of classes); recorded when traced.

    >>> check_labels(np.array([0, 2, 1]), what="cross_entropy", classes=3).tolist()
    [0, 2, 1]
    >>> check_labels(np.array([0, 3, 1]), what="cross_entropy", classes=3)
    Traceback (most recent call last):
    ...
    nnc.DomainError: cross_entropy: label 3 at index (1,) is out of range for 3 classes (labels must be 0..2)
      hint: the prediction has 3 columns, one per class; make the model's last layer as wide as the number of classes (labels.max() + 1 = 4)
      see docs/errors.md#domainerror
    """
    return bind(check_labels_p, labels, what=what, classes=int(classes))


# ----------------------------------------------------------------------------- indices a layer accepts


def index_message(what: str, x: np.ndarray, size: int, allowed: str) -> str:
    """The message for integer ``x`` (the input ``what``) with an entry outside ``0..size-1``."""
    bad = np.argwhere((x < 0) | (x >= size))[0] if x.ndim else ()
    value = int(np.asarray(x)[tuple(bad)])
    return f"{what} holds {value} at index {tuple(int(i) for i in bad)}, out of range {allowed}"


def _check_index_impl(x: np.ndarray, what: str, size: int, allowed: str) -> np.ndarray:
    if x.size and (int(x.min()) < 0 or int(x.max()) >= size):
        raise ShapeError(index_message(what, x, size, allowed))
    return x


def _check_index_generic(xp: Any, x: Any, what: str, size: int, allowed: str) -> Any:
    if x.size and bool(xp.any((x < 0) | (x >= size))):
        _check_index_impl(to_numpy(x), what, size, allowed)
    return x


check_index_p = defprim(
    "check_index", _check_index_impl, nondiff=True, abstract=lambda aval, what, size, allowed: aval
)
defgeneric(check_index_p, _check_index_generic)


def _emit_check_index(writer: FunctionWriter, e: Eqn) -> bool:
    return _emit_in_range(writer, e, int(e.attrs["size"]), "index")


defemit(check_index_p, _emit_check_index)


def check_index(x: Any, *, what: str, size: int, allowed: str) -> Any:
    """Integer ``x`` itself, after raising :class:`nnc.ShapeError` (naming ``what``, the first
    entry outside ``0..size-1`` and its index, then ``allowed``, which says what is allowed);
    recorded when traced, so the interpreted and compiled paths raise the same error.

    >>> check_index(np.array([0, 2]), what="tokens", size=3, allowed="for Index[3]").tolist()
    [0, 2]
    >>> try:
    ...     check_index(np.array([[0, 3]]), what="tokens", size=3, allowed="for Index[3]")
    ... except ShapeError as err:
    ...     print(str(err).splitlines()[0])
    tokens holds 3 at index (0, 1), out of range for Index[3]
    """
    return bind(check_index_p, x, what=what, size=int(size), allowed=allowed)
