"""Optimisers as pure ``(init, update)`` pairs over the parameter structure.

``state = opt.init(params)`` builds the optimiser's state (a tree of arrays: moments with
the structure of ``params``, an update count where one is needed, and ``hyper``: the
hyperparameters as 0-d float64 arrays, so that a traced step takes them as inputs and runs
that differ only in their values share one compiled step, see :func:`hyperparameters`);
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

    # No traced form: numpy's float64 power is not Python's (it differs in the last bit), so
    # the rate stays Python's, one opaque node, for the same curve as ever.


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

    def _numbers(self) -> dict | None:
        numbers = {f"b{i}": b for i, b in enumerate(self.boundaries)}
        return {**numbers, **{f"v{i}": v for i, v in enumerate(self.values)}}

    def _at(self, step: Any, h: dict) -> Any:
        value = h["v0"]
        for i in range(len(self.boundaries)):  # the boundaries increase: the last one passed wins
            value = elementwise.where(elementwise.less(step, h[f"b{i}"]), value, h[f"v{i + 1}"])
        return value


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

    def _numbers(self) -> dict | None:
        if not callable(self.then):
            return {"steps": self.steps, "then": self.then}
        then = _numbers_of(self.then)
        return None if then is None else {"steps": self.steps, **{f"then/{k}": v for k, v in then.items()}}

    def _at(self, step: Any, h: dict) -> Any:
        def then(at: Any) -> Any:
            if not callable(self.then):
                return h["then"]
            then_at: Any = self.then  # a schedule with a traced form: _numbers says so
            return then_at._at(at, {k[5:]: v for k, v in h.items() if k.startswith("then/")})

        steps = h["steps"]
        rising = elementwise.div(
            elementwise.mul(then(np.zeros((), np.float64)), elementwise.add(step, 1.0)), steps
        )
        return elementwise.where(elementwise.less(step, steps), rising, then(elementwise.sub(step, steps)))


def _numbers_of(schedule: Any) -> dict | None:
    """The numbers of a built-in schedule that has a traced form (its values become data), else None."""
    numbers = getattr(schedule, "_numbers", None)
    return numbers() if callable(numbers) and hasattr(schedule, "_at") else None


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


def clip_by_global_norm(grads: Any, max_norm: Any) -> Any:
    """``grads`` scaled by ``min(1, max_norm / norm)``, where ``norm`` is the L2 norm of all leaves together.

    The direction of the whole gradient is kept; NaNs pass through (so they can be noticed).
    ``max_norm`` is a number or a 0-d float64 array (an optimiser's state holds it as one).

    >>> import numpy as np
    >>> clip_by_global_norm({"a": np.array([3.0]), "b": np.array([4.0])}, 1.0)
    {'a': array([0.6]), 'b': array([0.8])}
    """
    leaves, treedef = tree_flatten(grads)
    if not leaves:
        return grads
    squares = [elementwise.cast(reductions.sum(elementwise.mul(g, g)), np.float64) for g in leaves]
    norm = elementwise.sqrt(reduce(elementwise.add, squares))
    limit = float(max_norm) if isinstance(max_norm, (int, float)) else max_norm
    scale = elementwise.minimum(
        1.0, elementwise.div(limit, elementwise.maximum(norm, np.finfo(np.float64).tiny))
    )
    return tree_unflatten(treedef, [elementwise.mul(g, elementwise.cast(scale, dtype_of(g))) for g in leaves])


def clip_by_value(grads: Any, limit: Any) -> Any:
    """Every gradient entry clipped to ``[-limit, limit]``; ``limit`` a number or a 0-d array.

    >>> import numpy as np
    >>> clip_by_value({"w": np.array([-3.0, 0.5, 2.0])}, 1.0)
    {'w': array([-1. ,  0.5,  1. ])}
    """
    leaves, treedef = tree_flatten(grads)
    bounds: dict[Any, tuple[Any, Any]]
    if isinstance(limit, (int, float)):
        bounds = {None: (-float(limit), float(limit))}
    else:  # an array: cast once per gradient dtype, as a Python float would be (a weak scalar)
        bounds = {
            dtype: (elementwise.cast(elementwise.mul(-1.0, limit), dtype), elementwise.cast(limit, dtype))
            for dtype in {dtype_of(g) for g in leaves}
        }
    out = []
    for g in leaves:
        low, high = bounds[None] if None in bounds else bounds[dtype_of(g)]
        out.append(elementwise.minimum(elementwise.maximum(g, low), high))
    return tree_unflatten(treedef, out)


# ----------------------------------------------------------------------------- the common frame

# A per-leaf rule: ``rule(p, g, slots, scalars) -> (new_p, new_slots)``; ``scalars`` holds
# the step's hyperparameters (and the scalars derived from them: bias corrections, ``1 - b1``)
# already cast to the leaf's dtype.
LeafRule = Callable[[Any, Any, tuple, dict], tuple[Any, tuple]]

# The key of the hyperparameters in an optimiser's state.
HYPER = "hyper"


def hyperparameters(state: Any) -> dict:
    """The hyperparameters an optimiser's state holds, as Python floats.

    They are data, not code (issues 20 and 21): ``opt.init`` puts them in the state as 0-d
    float64 arrays, so a compiled training step takes them as inputs, and optimisers that
    differ only in their values share one compiled step.

    >>> from nnc.optim import sgd
    >>> hyperparameters(sgd(0.1, momentum=0.9).init(None))
    {'lr': 0.1, 'momentum': 0.9}
    """
    if not isinstance(state, dict) or HYPER not in state:
        return {}
    return {k: float(v) for k, v in state[HYPER].items()}


def _optimizer(
    rule: LeafRule,
    slots: tuple[str, ...],
    learning_rate: LearningRate,
    clip_norm: float | None,
    clip_value: float | None,
    *,
    hyper: dict | None = None,
    counts: bool = False,
    step_scalars: Callable[[Any, dict], dict] | None = None,
) -> Optimizer:
    """Build an optimiser from a per-leaf ``rule`` with moment ``slots`` (zeros like the params).

    The state is a dict: one tree per slot, ``count`` (updates done) when the rule or a
    schedule needs it, and ``hyper``: the hyperparameters (``hyper``, the learning rate when it
    is a number, the clipping limits) as 0-d float64 arrays, read at every update, so that a
    traced update takes them as inputs rather than constants. ``step_scalars(count, h)`` adds
    scalars of the step (float64 arrays) to the hyperparameters ``h`` (``h["lr"]`` the rate)."""
    scheduled = callable(learning_rate)
    counts = counts or scheduled
    if clip_norm is not None:
        _positive("clip_norm", clip_norm)
    if clip_value is not None:
        _positive("clip_value", clip_value)
    values: dict = {} if callable(learning_rate) else {"lr": float(learning_rate)}
    # a built-in schedule with a traced form is computed from the update count inside the
    # step, from its numbers in the state; any other schedule is one opaque (constant) node
    traced_schedule = _numbers_of(learning_rate) if scheduled else None
    if traced_schedule is not None:
        values.update({f"schedule/{k}": float(v) for k, v in traced_schedule.items()})
    values.update({k: float(v) for k, v in (hyper or {}).items()})
    if clip_norm is not None:
        values["clip_norm"] = float(clip_norm)
    if clip_value is not None:
        values["clip_value"] = float(clip_value)

    def init(params: Any) -> Any:
        leaves, treedef = tree_flatten(params)
        state: dict = {s: tree_unflatten(treedef, [np.zeros_like(p) for p in leaves]) for s in slots}
        if counts:
            state["count"] = np.zeros((), np.int64)
        state[HYPER] = {k: np.asarray(v, np.float64) for k, v in values.items()}
        return state

    def update(params: Any, grads: Any, state: Any) -> tuple[Any, Any]:
        # a state made before the hyperparameters were data (or by hand) uses the built-in values
        h = dict(state[HYPER]) if isinstance(state, dict) and HYPER in state else dict(values)
        if clip_norm is not None:
            grads = clip_by_global_norm(grads, h["clip_norm"])
        if clip_value is not None:
            grads = clip_by_value(grads, h["clip_value"])
        p_leaves, treedef = tree_flatten(params)
        g_leaves, g_def = tree_flatten(grads)
        if g_def != treedef:
            raise ConfigError("optimizer update: the gradients' structure differs from the parameters'")
        count = state["count"] if counts else None
        if traced_schedule is not None:
            numbers = {k[9:]: h.pop(k) for k in [k for k in h if k.startswith("schedule/")]}
            schedule: Any = learning_rate  # a built-in schedule with a traced form
            h["lr"] = schedule._at(elementwise.cast(count, np.float64), numbers)
        elif callable(learning_rate):
            h["lr"] = _learning_rate_at(count, learning_rate)
        scalars = step_scalars(count, h) if step_scalars else h
        # Python floats are weak scalars (a float32 leaf stays float32): an array is cast to
        # each leaf's dtype once, which rounds it as the weak scalar would be, bit for bit
        weak = all(type(v) is float for v in scalars.values())
        by_dtype: dict = {}
        slot_leaves = [tree_flatten(state[s])[0] for s in slots]
        new_p: list = []
        new_slots: list[list] = [[] for _ in slots]
        for i, (p, g) in enumerate(zip(p_leaves, g_leaves)):
            if weak:
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
        if isinstance(state, dict) and HYPER in state:
            new_state[HYPER] = state[HYPER]
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
    if momentum == 0:

        def rule(p, g, slots, s):
            return p - s["lr"] * g, ()

        return _optimizer(rule, (), learning_rate, clip_norm, clip_value)

    def momentum_rule(p, g, slots, s):
        (v,) = slots
        mu = s["momentum"]
        v = mu * v + g
        return p - s["lr"] * (g + mu * v if nesterov else v), (v,)

    return _optimizer(
        momentum_rule, ("velocity",), learning_rate, clip_norm, clip_value, hyper={"momentum": momentum}
    )


def _adam_scalars(count: Any, h: dict) -> dict:
    """The step's scalars in float64, computed once per update; the rule casts them per leaf."""
    t = elementwise.cast(elementwise.add(count, 1), np.float64)  # this update is number t, counting from 1
    lr, b1, b2 = h["lr"], h["b1"], h["b2"]
    return {
        **h,
        "lr_c1": elementwise.div(lr, elementwise.sub(1.0, elementwise.power(b1, t))),
        "sqrt_c2": elementwise.sqrt(elementwise.sub(1.0, elementwise.power(b2, t))),
        "1-b1": elementwise.sub(1.0, b1),
        "1-b2": elementwise.sub(1.0, b2),
    }


def _adam_scalars_fixed_rate(count: Any, h: dict) -> dict:
    """As :func:`_adam_scalars`, with ``lr * weight_decay`` in float64 for a rate that is a number."""
    return {**_adam_scalars(count, h), "lr*wd": elementwise.mul(h["lr"], h["weight_decay"])}


def _adam_rule(decays: bool) -> LeafRule:
    def rule(p, g, slots, s):
        m, v = slots
        m = s["b1"] * m + s["1-b1"] * g
        v = s["b2"] * v + s["1-b2"] * (g * g)
        # lr * m_hat / (sqrt(v_hat) + eps) with the bias corrections folded into scalars
        step = s["lr_c1"] * m / (elementwise.sqrt(v) / s["sqrt_c2"] + s["eps"])
        if decays:  # structure, not a value: a zero decay leaves the term out of the step
            # "lr*wd": a constant rate times the decay in float64, rounded once, as before
            decay = s["lr*wd"] if "lr*wd" in s else s["lr"] * s["weight_decay"]
            step = step + decay * p
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
    ['count', 'hyper', 'mu', 'nu']
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
    return _optimizer(
        _adam_rule(bool(weight_decay)),
        ("mu", "nu"),
        learning_rate,
        clip_norm,
        clip_value,
        hyper={"b1": b1, "b2": b2, "eps": eps, "weight_decay": weight_decay},
        counts=True,
        step_scalars=_adam_scalars
        if callable(learning_rate) or not weight_decay
        else _adam_scalars_fixed_rate,
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

    def rule(p, g, slots, s):
        (v,) = slots
        v = s["decay"] * v + s["1-decay"] * (g * g)
        return p - s["lr"] * g / (elementwise.sqrt(v) + s["eps"]), (v,)

    def scalars(count, h):
        return {**h, "1-decay": elementwise.sub(1.0, h["decay"])}

    return _optimizer(
        rule,
        ("nu",),
        learning_rate,
        clip_norm,
        clip_value,
        hyper={"decay": decay, "eps": eps},
        step_scalars=scalars,
    )
