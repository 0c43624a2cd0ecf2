"""Losses as ``loss(prediction, target) -> scalar``, averaged over the batch."""
from __future__ import annotations

from typing import Any

import numpy as np

from nnc.backend import elementwise as E
from nnc.backend import reductions as R
from nnc.backend.core import Tracer
from nnc.backend.errors import ShapeError
from nnc.backend.structural import pick


def _as_array(x: Any) -> Any:
    return x if type(x) is Tracer or isinstance(x, np.ndarray) else np.asarray(x)


def mse(prediction: Any, target: Any) -> Any:
    """Mean squared error ``mean((prediction - target) ** 2)``; shapes must be equal.

    >>> import numpy as np
    >>> float(mse(np.array([[1.0], [3.0]]), np.array([[0.0], [1.0]])))
    2.5
    """
    prediction, target = _as_array(prediction), _as_array(target)
    if E.shape_of(prediction) != E.shape_of(target):
        raise ShapeError(
            f"mse: prediction of shape {E.shape_of(prediction)} and target of shape "
            f"{E.shape_of(target)} differ.\n  hint: a target of shape (batch,) for predictions "
            "of shape (batch, 1) needs target.reshape(-1, 1)")
    target = E.cast(target, E.dtype_of(prediction))
    return R.mean(E.power(E.sub(prediction, target), 2))


def cross_entropy(probabilities: Any, target: Any) -> Any:
    """Mean negative log-likelihood of ``target`` under predicted ``probabilities``.

    ``target`` holds integer labels (shape ``(batch,)``) or one-hot rows (the shape of
    ``probabilities``). When the probabilities come from ``softmax`` inside a traced
    function, the loss is computed from the logits as ``log_softmax`` (stable, exact).

    >>> import numpy as np
    >>> p = np.array([[0.25, 0.75], [0.5, 0.5]])
    >>> print(round(float(cross_entropy(p, np.array([1, 0]))), 6))
    0.490415
    """
    probabilities, target = _as_array(probabilities), _as_array(target)
    ps, ts = E.shape_of(probabilities), E.shape_of(target)
    logp = _log_probabilities(probabilities)
    if E.dtype_of(target).kind in "iu":
        if ts != ps[:-1]:
            raise ShapeError(f"cross_entropy: integer labels of shape {ts} do not match "
                             f"probabilities of shape {ps} (expected labels of shape {ps[:-1]})")
        return _negative_mean(pick(logp, target))
    if ts != ps:
        raise ShapeError(f"cross_entropy: one-hot targets of shape {ts} do not match probabilities "
                         f"of shape {ps}; pass integer labels of shape {ps[:-1]} or one-hot rows")
    target = E.cast(target, E.dtype_of(probabilities))
    return _negative_mean(R.sum(E.mul(target, logp), axis=-1))


def _negative_mean(x: Any) -> Any:
    count = max(int(np.prod(E.shape_of(x), dtype=np.int64)), 1)
    return E.mul(R.sum(x), -1.0 / count)


def _log_probabilities(p: Any) -> Any:
    if type(p) is Tracer and p.var.producer is not None and p.var.producer.prim.name == "softmax":
        return E.log(p)  # rewritten to log_softmax of the logits
    tiny = np.finfo(E.dtype_of(p)).tiny if E.dtype_of(p).kind == "f" else 1e-300
    return E.log(E.maximum(p, tiny))
