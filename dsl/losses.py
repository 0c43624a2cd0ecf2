"""Losses as ``loss(prediction, target) -> scalar``, averaged over the batch.

A loss checks what it is given, on every path (eagerly on arrays, and at run time inside
``grad``, ``train_step`` and ``nnc.compile``, through check primitives): NaN or infinite
float targets raise :class:`nnc.NonFiniteError`; labels out of range and predictions that
are not probabilities raise :class:`nnc.DomainError`. An empty batch raises
:class:`nnc.ShapeError`: its mean is undefined, and nnc refuses it rather than return NaN
(which would look like a diverging run) or 0 (which would look like a perfect one).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from nnc.backend import elementwise, reductions
from nnc.backend.activations import log_softmax
from nnc.backend.broadcasting import dtype_of, shape_of
from nnc.backend.checks import DomainError, check_finite, check_labels, check_probabilities
from nnc.backend.core import Tracer, Var
from nnc.backend.errors import ArgumentError, ShapeError
from nnc.backend.execute import quiet
from nnc.backend.structural import pick, reshape


def _as_array(x: Any) -> Any:
    return x if type(x) is Tracer or isinstance(x, np.ndarray) else np.asarray(x)


def _quietly(loss: Callable) -> Callable:
    """``loss`` without numpy's floating-point warnings when called on arrays: an overflowing
    loss is reported by fit, or is inf, not a RuntimeWarning from nnc's source (see
    :class:`nnc.backend.execute.quiet`)."""

    @functools.wraps(loss)
    def run(prediction: Any, target: Any, **options: Any) -> Any:
        with quiet():
            return loss(prediction, target, **options)

    return run


def _refuse_empty(loss: str, shape: tuple) -> None:
    if int(np.prod(shape, dtype=np.int64)) == 0:
        raise ShapeError(
            f"{loss}: the prediction of shape {shape} holds no values, and the mean "
            "of an empty batch is undefined (nnc raises rather than return nan)\n"
            "  hint: skip empty batches; fit never makes one"
        )


def _finite_target(target: Any, loss: str) -> Any:
    # as at a model's input: on every path alike, once
    if dtype_of(target).kind == "f" and _producer(target) != "check_finite":
        return check_finite(target, what=f"target of {loss}")
    return target


@_quietly
def mse(prediction: Any, target: Any) -> Any:
    """Mean squared error ``mean((prediction - target) ** 2)``; shapes must be equal.

    >>> import numpy as np
    >>> float(mse(np.array([[1.0], [3.0]]), np.array([[0.0], [1.0]])))
    2.5
    """
    prediction, target = _as_array(prediction), _as_array(target)
    if shape_of(prediction) != shape_of(target):
        raise ShapeError(
            f"mse: prediction of shape {shape_of(prediction)} and target of shape "
            f"{shape_of(target)} differ.\n  hint: a target of shape (batch,) for predictions "
            "of shape (batch, 1) needs target.reshape(-1, 1)"
        )
    _refuse_empty("mse", shape_of(prediction))
    target = elementwise.cast(_finite_target(target, "mse"), dtype_of(prediction))
    return reductions.mean(elementwise.power(elementwise.sub(prediction, target), 2))


@_quietly
def cross_entropy(
    prediction: Any, target: Any, *, from_logits: bool = False, ignore: int | None = None
) -> Any:
    """Mean negative log-likelihood of ``target`` under the predicted class probabilities.

    ``prediction`` holds probabilities along its last axis (a model ending in ``softmax``),
    or, with ``from_logits=True``, unnormalised scores (logits), turned into log-probabilities
    by a stable ``log_softmax``. When the probabilities come from ``softmax`` inside a traced
    function, the loss is computed from the logits as ``log_softmax`` (stable, exact).
    ``target`` holds integer labels (shape ``(batch,)``, or ``(batch, time)`` for a sequence
    model's ``(batch, time, classes)``) or one-hot rows (the shape of ``prediction``).

    ``ignore`` names a label that is left out: a position whose label equals it adds nothing,
    and the mean is over the other positions (padding after the end of a sequence, say
    ``ignore=-1``; PyTorch's ``ignore_index``). It applies to integer labels only. A batch in
    which every label is ignored has nothing to learn from: its loss is 0, on every path.

    Raises :class:`nnc.DomainError` for a prediction that is not probabilities (a value outside
    ``[0, 1]`` or a row whose sum is off 1 by more than 1e-3) and for labels outside
    ``0..classes-1``; :class:`nnc.ShapeError` for float labels and mismatched shapes. Inside a
    traced function (``grad``, ``train_step``, ``nnc.compile``), ``from_logits=True`` given the
    output of ``softmax`` is a ``DomainError`` too (softmax would be applied twice); on plain
    arrays nnc cannot see where the values came from, and computes what it was asked.

    >>> import numpy as np
    >>> p = np.array([[0.25, 0.75], [0.5, 0.5]])
    >>> print(round(float(cross_entropy(p, np.array([1, 0]))), 6))
    0.490415
    >>> print(round(float(cross_entropy(np.log(p) + 3.0, np.array([1, 0]), from_logits=True)), 6))
    0.490415
    >>> print(round(float(cross_entropy(p, np.array([1, -1]), ignore=-1)), 6))  # -log(0.75)
    0.287682
    """
    if ignore is not None and (
        isinstance(ignore, (bool, np.bool_)) or not isinstance(ignore, (int, np.integer))
    ):
        raise ArgumentError(f"cross_entropy: ignore must be an integer label or None, got {ignore!r}")
    prediction, target = _as_array(prediction), _as_array(target)
    ps, ts = shape_of(prediction), shape_of(target)
    if not ps:
        raise ShapeError(
            "cross_entropy: the prediction is a single number; it needs a last axis with one entry per class"
        )
    if dtype_of(target).kind in "iu":
        if ts != ps[:-1]:
            raise ShapeError(
                f"cross_entropy: integer labels of shape {ts} do not match "
                f"probabilities of shape {ps} (expected labels of shape {ps[:-1]})"
            )
        _refuse_empty("cross_entropy", ps)
        if ignore is not None:
            return _ignoring(prediction, target, ignore, from_logits)
        labels = check_labels(target, what="cross_entropy", classes=ps[-1])
        return _negative_mean(pick(_log_probabilities(prediction, from_logits), labels))
    if ignore is not None:
        raise ShapeError(
            f"cross_entropy: ignore={ignore!r} leaves out integer labels, but the target holds "
            f"{dtype_of(target)} values of shape {ts}\n  hint: pass integer labels of shape "
            f"{ps[:-1]}, with the ignored label where there is nothing to predict"
        )
    if ts == ps[:-1]:
        raise ShapeError(
            f"cross_entropy: labels of shape {ts} hold {dtype_of(target)} values, but "
            "class labels must be integers\n  hint: labels.astype(int), or pass one-hot "
            f"rows of shape {ps}"
        )
    if ts != ps:
        raise ShapeError(
            f"cross_entropy: one-hot targets of shape {ts} do not match probabilities "
            f"of shape {ps}; pass integer labels of shape {ps[:-1]} or one-hot rows"
        )
    _refuse_empty("cross_entropy", ps)
    target = elementwise.cast(_finite_target(target, "cross_entropy"), dtype_of(prediction))
    return _negative_mean(
        reductions.sum(elementwise.mul(target, _log_probabilities(prediction, from_logits)), axis=-1)
    )


def _ignoring(prediction: Any, target: Any, ignore: Any, from_logits: bool) -> Any:
    """The mean negative log-likelihood over the positions whose label is not ``ignore``."""
    left_out = elementwise.equal(target, int(ignore))
    classes = shape_of(prediction)[-1]
    labels = check_labels(elementwise.where(left_out, 0, target), what="cross_entropy", classes=classes)
    log_p = pick(_log_probabilities(prediction, from_logits), labels)
    dtype = dtype_of(log_p)
    kept = elementwise.where(left_out, np.zeros((), dtype), np.ones((), dtype))
    count = elementwise.maximum(reductions.sum(kept), np.ones((), dtype))  # all left out: 0 / 1
    total = reductions.sum(elementwise.mul(log_p, kept))
    return elementwise.sub(np.zeros((), dtype), elementwise.div(total, count))  # 0 - x: no -0.0


def _negative_mean(x: Any) -> Any:
    count = int(np.prod(shape_of(x), dtype=np.int64))  # >= 1: empty batches are refused
    return elementwise.mul(reductions.sum(x), -1.0 / count)


def _producer(x: Any) -> str | None:
    """The primitive that made traced ``x`` (``None`` for arrays and graph inputs)."""
    if type(x) is Tracer and x.var.producer is not None:
        return x.var.producer.prim.name
    return None


def _softmax_logits(p: Any) -> Any:
    """The logits ``z`` of traced ``p = softmax(z)`` over the last axis, looking through a
    reshape that keeps that axis (``each(softmax)`` over a sequence); ``None`` otherwise."""
    if type(p) is not Tracer or p.var.producer is None:
        return None
    eqn = p.var.producer
    if eqn.prim.name == "reshape" and type(eqn.inputs[0]) is Var and eqn.inputs[0].producer is not None:
        inner = eqn.inputs[0].producer
        source = inner.inputs[0]
        if (
            inner.prim.name == "softmax"
            and type(source) is Var
            and inner.attrs["axis"] == len(source.shape) - 1
            and source.shape[-1:] == p.var.shape[-1:]
        ):
            return reshape(Tracer(p.trace, source), p.var.shape)
        return None
    if (
        eqn.prim.name == "softmax"
        and type(eqn.inputs[0]) is Var
        and eqn.attrs["axis"] == len(p.var.shape) - 1
    ):
        return Tracer(p.trace, eqn.inputs[0])
    return None


def _log_probabilities(p: Any, from_logits: bool) -> Any:
    logits = _softmax_logits(p)
    if from_logits:
        if logits is not None or _producer(p) == "softmax":
            raise DomainError(
                "cross_entropy(..., from_logits=True) was given the output of softmax, which is "
                "probabilities, not logits: the loss would apply softmax twice\n  hint: drop "
                "from_logits=True (cross_entropy of softmax's output is computed stably from "
                "its logits anyway), or end the model without softmax"
            )
        return log_softmax(p)
    if logits is not None:
        return log_softmax(logits)  # already probabilities: the log is taken stably from the logits
    if _producer(p) == "softmax":
        return elementwise.log(p)  # softmax over another axis: log rewrites it to log_softmax
    p = check_probabilities(p, what="cross_entropy")
    tiny = np.finfo(dtype_of(p)).tiny if dtype_of(p).kind == "f" else 1e-300
    return elementwise.log(elementwise.maximum(p, tiny))
