"""Neural-network activations as primitives with hand-derived, stable gradient rules."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import elementwise as E
from . import reductions as R
from .core import bind, defgeneric, defprim, defvjp

tanh_p = defprim("tanh", np.tanh)


def tanh(x) -> Any:
    """Elementwise hyperbolic tangent."""
    return bind(tanh_p, x)


defvjp(tanh_p, lambda g, out, x: (E.mul(g, E.sub(1.0, E.mul(out, out))),))
defgeneric(tanh_p, lambda xp, x: xp.tanh(x))


def _logistic_impl(x):
    # 1/(1+exp(-x)) overflows for large -x; the tanh form is exact and never overflows.
    y = np.tanh(np.multiply(x, 0.5, dtype=x.dtype))
    y *= 0.5
    y += 0.5
    return y


def logistic_generic(xp, x):
    """The logistic function in the tanh form, with array-API namespace ``xp``."""
    return xp.tanh(x * 0.5) * 0.5 + 0.5


logistic_p = defprim("logistic", _logistic_impl)
defgeneric(logistic_p, logistic_generic)


def logistic(x) -> Any:
    """Elementwise logistic sigmoid ``1 / (1 + exp(-x))``."""
    return bind(logistic_p, x)


defvjp(logistic_p, lambda g, out, x: (E.mul(g, E.mul(out, E.sub(1.0, out))),))


def _step_impl(x):
    return (x > 0).astype(x.dtype)


step_p = defprim("step", _step_impl, nondiff=True)
defgeneric(step_p, lambda xp, x: xp.astype(x > 0, x.dtype))


def step(x) -> Any:
    """Heaviside step: 1 where ``x > 0``, else 0, in ``x``'s dtype; carries no gradient."""
    return bind(step_p, x)


relu_p = defprim("relu", lambda x: np.maximum(x, 0, dtype=x.dtype))
defgeneric(relu_p, lambda xp, x: xp.maximum(x, xp.zeros_like(x)))


def relu(x) -> Any:
    """Elementwise ``max(x, 0)``; the gradient at 0 is taken as 0."""
    return bind(relu_p, x)


defvjp(relu_p, lambda g, out, x: (E.mul(g, step(x)),))


def _softmax_impl(x, axis):
    # ndarray methods, not np.max/np.sum: the function wrappers cost microseconds on small arrays
    e = x - x.max(axis=axis, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=axis, keepdims=True)
    return e


def _log_softmax_impl(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    total = np.exp(shifted).sum(axis=axis, keepdims=True)
    shifted -= np.log(total, out=total)
    return shifted


def _softmax_generic(xp, x, axis):
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


def _log_softmax_generic(xp, x, axis):
    shifted = x - xp.max(x, axis=axis, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


softmax_p = defprim("softmax", _softmax_impl)
log_softmax_p = defprim("log_softmax", _log_softmax_impl)
defgeneric(softmax_p, _softmax_generic)
defgeneric(log_softmax_p, _log_softmax_generic)


def softmax(x, axis: int = -1) -> Any:
    """``exp(x) / sum(exp(x))`` along ``axis``, computed without overflow."""
    return bind(softmax_p, x, axis=axis % max(len(E.shape_of(x)), 1))


def log_softmax(x, axis: int = -1) -> Any:
    """``log(softmax(x))`` along ``axis``, computed stably."""
    return bind(log_softmax_p, x, axis=axis % max(len(E.shape_of(x)), 1))


# log(softmax(z)), in a loss or a user's function, is traced as the stable log_softmax(z):
# probabilities that underflow to 0 would otherwise give -inf.
E.STABLE_LOG_OF[softmax_p.name] = log_softmax


def _softmax_vjp(g, out, x, axis):
    inner = R.sum(E.mul(g, out), axis, keepdims=True)
    return (E.mul(out, E.sub(g, inner)),)


def _log_softmax_vjp(g, out, x, axis):
    total = R.sum(g, axis, keepdims=True)
    return (E.sub(g, E.mul(E.exp(out), total)),)


defvjp(softmax_p, _softmax_vjp)
defvjp(log_softmax_p, _log_softmax_vjp)
