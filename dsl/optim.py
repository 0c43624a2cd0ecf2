"""Optimisers as pure ``(init, update)`` pairs over the parameter structure."""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

from nnc.backend.tree import tree_map


class Optimizer(NamedTuple):
    """``state = opt.init(params)``; ``params, state = opt.update(params, grads, state)``."""

    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Any], tuple[Any, Any]]


def sgd(learning_rate: float) -> Optimizer:
    """Plain stochastic gradient descent: ``p <- p - learning_rate * g``.

    >>> import numpy as np
    >>> opt = sgd(0.1)
    >>> params, state = opt.update({"w": np.array([1.0])}, {"w": np.array([2.0])}, opt.init(None))
    >>> params
    {'w': array([0.8])}
    """
    lr = float(learning_rate)

    def init(params: Any) -> tuple:
        return ()

    def update(params: Any, grads: Any, state: Any) -> tuple[Any, Any]:
        # lr * g keeps g's dtype: a Python float is a weak scalar for numpy
        return tree_map(lambda p, g: p - lr * g, params, grads), state

    return Optimizer(init, update)
