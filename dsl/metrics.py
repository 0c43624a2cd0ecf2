"""Metrics: ``metric(prediction, target) -> float`` over a whole data set, for reports, not gradients.

``fit`` evaluates them on numpy arrays at the end of each epoch and records them under
their function's name (``accuracy``, ``val_accuracy``). Any function of that shape is a
metric, the losses ``nnc.mse`` and ``nnc.cross_entropy`` included.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nnc.backend.errors import ShapeError


def accuracy(prediction: Any, target: Any) -> float:
    """The fraction of examples whose predicted class is the target class.

    Args:
        prediction: scores of shape ``(n, k)`` (probabilities or logits; the largest wins),
            or ``(n, 1)`` / ``(n,)`` probabilities of the positive class (threshold 0.5).
        target: integer labels of shape ``(n,)``, one-hot rows of shape ``(n, k)``, or
            for one output, 0/1 values of the prediction's shape.

    >>> import numpy as np
    >>> accuracy(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), np.array([0, 1, 1]))
    0.6666666666666666
    >>> accuracy(np.array([[0.7], [0.2]]), np.array([[1.0], [0.0]]))
    1.0
    """
    prediction, target = np.asarray(prediction), np.asarray(target)
    ps, ts = prediction.shape, target.shape
    if prediction.ndim == 0 or ps[0] == 0:
        raise ShapeError(f"accuracy: needs a batch of predictions, got shape {ps}")
    if prediction.ndim == 1 or ps[-1] == 1:
        if ts != ps and ts != ps[:1]:
            raise ShapeError(
                f"accuracy: predictions of shape {ps} (one output) need targets "
                f"of shape {ps} or {ps[:1]}, got {ts}"
            )
        predicted = prediction.reshape(ps[0]) > 0.5
        return float(np.mean(predicted == (target.reshape(ps[0]) > 0.5)))
    if target.dtype.kind in "iub" and ts == ps[:-1]:
        labels = target
    elif ts == ps:
        labels = target.argmax(axis=-1)
    else:
        raise ShapeError(
            f"accuracy: predictions of shape {ps} need integer labels of shape "
            f"{ps[:-1]} or one-hot targets of shape {ps}, got {target.dtype} "
            f"targets of shape {ts}"
        )
    return float(np.mean(prediction.argmax(axis=-1) == labels))


def mse(prediction: Any, target: Any) -> float:
    """Mean squared error, accumulated in float64; shapes must be equal.

    >>> import numpy as np
    >>> mse(np.array([[1.0], [3.0]]), np.array([[0.0], [1.0]]))
    2.5
    """
    prediction, target = np.asarray(prediction), np.asarray(target)
    if prediction.shape != target.shape:
        raise ShapeError(
            f"mse: prediction of shape {prediction.shape} and target of shape {target.shape} differ"
        )
    if prediction.size == 0:  # as the loss: the mean of nothing is undefined
        raise ShapeError(
            f"mse: the prediction of shape {prediction.shape} holds no values, and "
            "the mean of an empty set is undefined (nnc raises rather than return nan)"
        )
    diff = prediction.astype(np.float64) - target.astype(np.float64)
    return float(np.mean(diff * diff))
