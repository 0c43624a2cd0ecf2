"""Optimisers as pure ``(init, update)`` pairs over the parameter structure.

``state = opt.init(params)`` builds the optimiser's state (a tree of arrays: moments with
the structure of ``params``, and an update count where one is needed);
``params, state = opt.update(params, grads, state)`` returns new parameters and state and
changes nothing it was given. Updates are written with nnc operations, so they run on
numpy arrays and can also be traced (a later ``nnc.compile`` fuses them into the step).

Every optimiser takes a learning rate that is a number or a *schedule* (a function of the
number of updates done so far, see :func:`exponential_decay`), and optional gradient
clipping: ``clip_norm`` rescales all gradients together so their global L2 norm is at most
``clip_norm``; ``clip_value`` clips each gradient entry to ``[-clip_value, clip_value]``.

>>> import numpy as np
>>> opt = adam(0.1)
>>> params = {"w": np.array([1.0, -2.0])}
>>> state = opt.init(params)
>>> params, state = opt.update(params, {"w": np.array([0.5, -0.5])}, state)
>>> params["w"]      # Adam's first step moves every entry by the learning rate
array([ 0.9, -1.9])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from typing import Any, NamedTuple

import numpy as np

from nnc.backend import elementwise, reductions
from nnc.backend.broadcasting import dtype_of
from nnc.backend.core import bind, defprim
from nnc.backend.errors import NNCError
from nnc.backend.tree import tree_flatten, tree_unflatten

Schedule = Callable[[int], float]
LearningRate = float | Schedule


class ConfigError(NNCError, ValueError):
    """An argument that configures training (a learning rate, a batch size, a callback) is invalid."""


ConfigError.__module__ = "nnc"


class Optimizer(NamedTuple):
    """``state = opt.init(params)``; ``params, state = opt.update(params, grads, state)``."""

    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Any], tuple[Any, Any]]


# ----------------------------------------------------------------------------- schedules


def _schedule_impl(count: Any, schedule: Schedule) -> np.ndarray:
    return np.asarray(float(schedule(int(count))), np.float64)


# A schedule is ordinary Python on an int; as a primitive it stays one opaque node when an
# update is traced (its value is needed at run time, never its gradient).
_schedule_p = defprim(
    "learning_rate_schedule",
    _schedule_impl,
    nondiff=True,
    abstract=lambda count, schedule: ((), np.dtype(np.float64)),
)


@dataclass(frozen=True)
class exponential_decay:
    """``lr * rate ** (step / steps)``: the rate is multiplied by ``rate`` every ``steps`` updates.

    With ``staircase=True`` it drops in steps (``step // steps``). ``step`` counts the updates
    done before this one (0 for the first update).

    >>> s = exponential_decay(0.1, rate=0.5, steps=10)
    >>> s(0), s(10), round(s(5), 6)
    (0.1, 0.05, 0.070711)
    """

    lr: float
    rate: float
    steps: int
    staircase: bool = False

    def __post_init__(self) -> None:
        _positive("exponential_decay: lr", self.lr)
        _positive("exponential_decay: rate", self.rate)
        _positive("exponential_decay: steps", self.steps)

    def __call__(self, step: int) -> float:
        exponent = step // self.steps if self.staircase else step / self.steps
        return self.lr * self.rate**exponent


@dataclass(frozen=True)
class piecewise_constant:
    """``values[i]`` from update ``boundaries[i - 1]`` on: ``values`` has one more entry than ``boundaries``.

    >>> s = piecewise_constant(boundaries=(100, 200), values=(0.1, 0.01, 0.001))
    >>> s(0), s(99), s(100), s(250)
    (0.1, 0.1, 0.01, 0.001)
    """

    boundaries: tuple
    values: tuple

    def __post_init__(self) -> None:
        if len(self.values) != len(self.boundaries) + 1:
            raise ConfigError(
                f"piecewise_constant: {len(self.boundaries)} boundaries need "
                f"{len(self.boundaries) + 1} values, got {len(self.values)}"
            )
        if list(self.boundaries) != sorted(self.boundaries):
            raise ConfigError(f"piecewise_constant: boundaries must increase, got {self.boundaries}")

    def __call__(self, step: int) -> float:
        i = 0
        while i < len(self.boundaries) and step >= self.boundaries[i]:
            i += 1
        return float(self.values[i])


@dataclass(frozen=True)
class cosine_decay:
    """Half a cosine from ``lr`` down to ``final_lr`` over ``steps`` updates, then ``final_lr``.

    >>> s = cosine_decay(0.1, steps=100)
    >>> s(0), round(s(50), 6), s(100), s(500)
    (0.1, 0.05, 0.0, 0.0)
    """

    lr: float
    steps: int
    final_lr: float = 0.0

    def __post_init__(self) -> None:
        _positive("cosine_decay: lr", self.lr)
        _positive("cosine_decay: steps", self.steps)

    def __call__(self, step: int) -> float:
        progress = min(step, self.steps) / self.steps
        return self.final_lr + (self.lr - self.final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class warmup:
    """Rise linearly from ``lr(0) / steps`` to the rate of ``then`` over ``steps`` updates, then follow it.

    ``then`` is a number or a schedule, which starts counting when the warm-up ends.

    >>> s = warmup(0.1, steps=4)
    >>> [round(s(i), 3) for i in range(6)]
    [0.025, 0.05, 0.075, 0.1, 0.1, 0.1]
    """

    then: LearningRate
    steps: int

    def __post_init__(self) -> None:
        _positive("warmup: steps", self.steps)
        _check_learning_rate(self.then, "warmup")

    def __call__(self, step: int) -> float:
        if step < self.steps:
            return _value_at(self.then, 0) * (step + 1) / self.steps
        return _value_at(self.then, step - self.steps)


def _value_at(lr: LearningRate, step: int) -> float:
    return float(lr(step)) if callable(lr) else float(lr)


def _positive(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{what} must be a positive number, got {value!r}")


def _non_negative(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError(f"{what} must be a number >= 0, got {value!r}")


def _unit_interval(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"{what} must be in [0, 1), got {value!r}")


def _check_learning_rate(lr: Any, name: str) -> None:
    if not callable(lr):
        _positive(f"{name}: learning_rate", lr)


# ----------------------------------------------------------------------------- gradient clipping


def clip_by_global_norm(grads: Any, max_norm: float) -> Any:
    """``grads`` scaled by ``min(1, max_norm / norm)``, where ``norm`` is the L2 norm of all leaves together.

    The direction of the whole gradient is kept; NaNs pass through (so they can be noticed).

    >>> import numpy as np
    >>> clip_by_global_norm({"a": np.array([3.0]), "b": np.array([4.0])}, 1.0)
    {'a': array([0.6]), 'b': array([0.8])}
    """
    leaves, treedef = tree_flatten(grads)
    if not leaves:
        return grads
    squares = [elementwise.cast(reductions.sum(elementwise.mul(g, g)), np.float64) for g in leaves]
    norm = elementwise.sqrt(reduce(elementwise.add, squares))
    scale = elementwise.minimum(
        1.0, elementwise.div(float(max_norm), elementwise.maximum(norm, np.finfo(np.float64).tiny))
    )
    return tree_unflatten(treedef, [elementwise.mul(g, elementwise.cast(scale, dtype_of(g))) for g in leaves])


def clip_by_value(grads: Any, limit: float) -> Any:
    """Every gradient entry clipped to ``[-limit, limit]``.

    >>> import numpy as np
    >>> clip_by_value({"w": np.array([-3.0, 0.5, 2.0])}, 1.0)
    {'w': array([-1. ,  0.5,  1. ])}
    """
    leaves, treedef = tree_flatten(grads)
    return tree_unflatten(
        treedef, [elementwise.minimum(elementwise.maximum(g, -float(limit)), float(limit)) for g in leaves]
    )


# ----------------------------------------------------------------------------- the common frame

# A per-leaf rule: ``rule(p, g, slots, scalars) -> (new_p, new_slots)``; ``scalars`` holds
# the step's learning rate (and bias corrections) already cast to the leaf's dtype.
LeafRule = Callable[[Any, Any, tuple, dict], tuple[Any, tuple]]


def _optimizer(
    rule: LeafRule,
    slots: tuple[str, ...],
    learning_rate: LearningRate,
    clip_norm: float | None,
    clip_value: float | None,
    *,
    counts: bool = False,
    step_scalars: Callable[[Any, Any], dict] | None = None,
) -> Optimizer:
    """Build an optimiser from a per-leaf ``rule`` with moment ``slots`` (zeros like the params).

    The state is a dict: one tree per slot, and ``count`` (updates done) when the rule or a
    schedule needs it. ``step_scalars(count, lr)`` gives scalars of the step (float64 arrays)."""
    scheduled = callable(learning_rate)
    counts = counts or scheduled
    if clip_norm is not None:
        _positive("clip_norm", clip_norm)
    if clip_value is not None:
        _positive("clip_value", clip_value)

    def init(params: Any) -> Any:
        leaves, treedef = tree_flatten(params)
        state: dict = {s: tree_unflatten(treedef, [np.zeros_like(p) for p in leaves]) for s in slots}
        if counts:
            state["count"] = np.zeros((), np.int64)
        return state if state else ()

    # A constant rate and no other step scalars: the same Python float at every update (a
    # weak scalar, so a float32 leaf stays float32), made once rather than per update.
    fixed: dict | None = None
    if not (counts or step_scalars or callable(learning_rate)):
        fixed = {"lr": float(learning_rate)}

    def update(params: Any, grads: Any, state: Any) -> tuple[Any, Any]:
        if clip_norm is not None:
            grads = clip_by_global_norm(grads, clip_norm)
        if clip_value is not None:
            grads = clip_by_value(grads, clip_value)
        p_leaves, treedef = tree_flatten(params)
        g_leaves, g_def = tree_flatten(grads)
        if g_def != treedef:
            raise ConfigError("optimizer update: the gradients' structure differs from the parameters'")
        if fixed is not None and not slots:  # plain SGD: no state, the rule leaf by leaf
            return tree_unflatten(
                treedef, [rule(p, g, (), fixed)[0] for p, g in zip(p_leaves, g_leaves)]
            ), state
        count = state["count"] if counts else None
        if fixed is not None:
            scalars, weak = fixed, True
        else:
            lr = _learning_rate_at(count, learning_rate) if callable(learning_rate) else float(learning_rate)
            scalars = step_scalars(count, lr) if step_scalars else {"lr": lr}
            weak = all(type(v) is float for v in scalars.values())
        by_dtype: dict = {}  # the step's scalars cast once per parameter dtype
        slot_leaves = [tree_flatten(state[s])[0] for s in slots]
        new_p: list = []
        new_slots: list[list] = [[] for _ in slots]
        for i, (p, g) in enumerate(zip(p_leaves, g_leaves)):
            if weak:  # Python floats are weak scalars: they keep a float32 leaf float32
                cast = scalars
            else:
                dtype = dtype_of(p)
                if dtype not in by_dtype:
                    by_dtype[dtype] = {
                        k: v if type(v) is float else elementwise.cast(v, dtype) for k, v in scalars.items()
                    }
                cast = by_dtype[dtype]
            p, moments = rule(p, g, tuple([s[i] for s in slot_leaves]), cast)
            new_p.append(p)
            for acc, m in zip(new_slots, moments):
                acc.append(m)
        new_state: dict = {s: tree_unflatten(treedef, leaves) for s, leaves in zip(slots, new_slots)}
        if counts:
            new_state["count"] = elementwise.add(count, 1)
        return tree_unflatten(treedef, new_p), new_state if new_state else state

    return Optimizer(init, update)


def _learning_rate_at(count: Any, schedule: Schedule) -> Any:
    """The schedule's value at ``count`` (a float64 scalar; a traced one inside a trace)."""
    return bind(_schedule_p, count, schedule=schedule)


# ----------------------------------------------------------------------------- the optimisers


def sgd(
    learning_rate: LearningRate,
    momentum: float = 0.0,
    *,
    nesterov: bool = False,
    clip_norm: float | None = None,
    clip_value: float | None = None,
) -> Optimizer:
    """Stochastic gradient descent, with optional (Nesterov) momentum.

    PyTorch's formulation (Sutskever et al. 2013 rewritten for the parameters themselves):
    ``v <- momentum * v + g``; then ``p <- p - lr * v``, or with ``nesterov=True``
    ``p <- p - lr * (g + momentum * v)``. Without momentum: ``p <- p - lr * g``.

    Args:
        learning_rate: a positive number or a schedule ``step -> rate``.
        momentum: in ``[0, 1)``; 0 is plain SGD (and keeps no state).
        nesterov: use Nesterov's look-ahead form (needs ``momentum > 0``).

    >>> import numpy as np
    >>> opt = sgd(0.1)
    >>> params, state = opt.update({"w": np.array([1.0])}, {"w": np.array([2.0])}, opt.init(None))
    >>> params
    {'w': array([0.8])}
    """
    _check_learning_rate(learning_rate, "sgd")
    _unit_interval("sgd: momentum", momentum)
    if nesterov and momentum == 0:
        raise ConfigError("sgd: nesterov=True needs a momentum > 0")
    mu = float(momentum)

    if mu == 0:

        def rule(p, g, slots, s):
            return p - s["lr"] * g, ()

        return _optimizer(rule, (), learning_rate, clip_norm, clip_value)

    def momentum_rule(p, g, slots, s):
        (v,) = slots
        v = mu * v + g
        return p - s["lr"] * (g + mu * v if nesterov else v), (v,)

    return _optimizer(momentum_rule, ("velocity",), learning_rate, clip_norm, clip_value)


def _adam_scalars(b1: float, b2: float) -> Callable[[Any, Any], dict]:
    def scalars(count, lr):
        t = elementwise.cast(
            elementwise.add(count, 1), np.float64
        )  # this update is number t, counting from 1
        return {
            "lr_c1": elementwise.div(lr, elementwise.sub(1.0, elementwise.power(b1, t))),
            "sqrt_c2": elementwise.sqrt(elementwise.sub(1.0, elementwise.power(b2, t))),
            "lr": lr,
        }

    return scalars


def _adam_rule(b1: float, b2: float, eps: float, weight_decay: float) -> LeafRule:
    def rule(p, g, slots, s):
        m, v = slots
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * (g * g)
        # lr * m_hat / (sqrt(v_hat) + eps) with the bias corrections folded into scalars
        step = s["lr_c1"] * m / (elementwise.sqrt(v) / s["sqrt_c2"] + eps)
        if weight_decay:
            step = step + s["lr"] * weight_decay * p
        return p - step, (m, v)

    return rule


def adam(
    learning_rate: LearningRate = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    clip_norm: float | None = None,
    clip_value: float | None = None,
) -> Optimizer:
    """Adam (Kingma & Ba 2015, Algorithm 1, with bias correction).

    ``m <- b1 m + (1 - b1) g``; ``v <- b2 v + (1 - b2) g^2``;
    ``p <- p - lr * m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - b1^t)``,
    ``v_hat = v / (1 - b2^t)`` and ``t`` the update's number, counting from 1.

    >>> import numpy as np
    >>> opt = adam(0.01)
    >>> state = opt.init({"w": np.zeros(2)})
    >>> sorted(state)
    ['count', 'mu', 'nu']
    """
    return adamw(
        learning_rate, b1, b2, eps, weight_decay=0.0, clip_norm=clip_norm, clip_value=clip_value, _name="adam"
    )


def adamw(
    learning_rate: LearningRate = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    *,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    _name: str = "adamw",
) -> Optimizer:
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019, Algorithm 2).

    ``p <- p - lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * p)``: the decay shrinks the
    parameters directly instead of entering the moments. As in PyTorch and optax, the
    paper's schedule multiplier is the learning rate (a schedule scales both terms).

    >>> import numpy as np
    >>> opt = adamw(0.1, weight_decay=0.5)
    >>> params = {"w": np.array([2.0])}
    >>> params, _ = opt.update(params, {"w": np.array([1.0])}, opt.init(params))
    >>> params["w"]       # 2 - 0.1 * (1 + 0.5 * 2)
    array([1.8])
    """
    _check_learning_rate(learning_rate, _name)
    _unit_interval(f"{_name}: b1", b1)
    _unit_interval(f"{_name}: b2", b2)
    _non_negative(f"{_name}: eps", eps)
    _non_negative(f"{_name}: weight_decay", weight_decay)
    b1, b2, eps = float(b1), float(b2), float(eps)
    return _optimizer(
        _adam_rule(b1, b2, eps, float(weight_decay)),
        ("mu", "nu"),
        learning_rate,
        clip_norm,
        clip_value,
        counts=True,
        step_scalars=_adam_scalars(b1, b2),
    )


def rmsprop(
    learning_rate: LearningRate = 1e-3,
    decay: float = 0.9,
    eps: float = 1e-8,
    *,
    clip_norm: float | None = None,
    clip_value: float | None = None,
) -> Optimizer:
    """RMSprop (Hinton's lecture 6e; PyTorch's non-centred form).

    ``v <- decay v + (1 - decay) g^2``; ``p <- p - lr * g / (sqrt(v) + eps)``.

    >>> import numpy as np
    >>> opt = rmsprop(0.01, decay=0.0)
    >>> params, _ = opt.update({"w": np.array([1.0])}, {"w": np.array([-4.0])}, opt.init({"w": np.zeros(1)}))
    >>> params["w"]       # with decay 0 the step is lr * sign(g)
    array([1.01])
    """
    _check_learning_rate(learning_rate, "rmsprop")
    _unit_interval("rmsprop: decay", decay)
    _non_negative("rmsprop: eps", eps)
    rho, eps = float(decay), float(eps)

    def rule(p, g, slots, s):
        (v,) = slots
        v = rho * v + (1.0 - rho) * (g * g)
        return p - s["lr"] * g / (elementwise.sqrt(v) + eps), (v,)

    return _optimizer(rule, ("nu",), learning_rate, clip_norm, clip_value)
