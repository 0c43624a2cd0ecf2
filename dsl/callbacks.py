"""Callbacks: what ``fit`` asks at the end of each batch or epoch, and what they may decide.

A callback is a value: its settings are fixed when it is made, and the state it keeps
during one ``fit`` (the best loss so far, ...) is created by ``begin()`` and handed back to
it by ``fit`` at every call. The same callback object can therefore serve several runs
and every run starts afresh, which keeps runs reproducible.

A hook returns ``(state, decision)``; the decision is ``None`` (go on) or a
:class:`Decision` that stops training and/or replaces the parameters. A plain function
``fn(log: EpochEnd) -> Decision | None`` is a callback too, called after each epoch.

>>> import numpy as np
>>> from nnc import Linear
>>> from nnc.train import fit
>>> from nnc.optim import sgd
>>> from nnc.losses import mse
>>> x = np.linspace(-1, 1, 32).reshape(-1, 1); y = 3 * x
>>> stop_when_good = lambda log: Decision(stop=True, reason="good enough") if log.logs["loss"] < 0.5 else None
>>> params, history = fit(Linear(1, 1), Linear(1, 1).init(seed=0), (x, y), loss=mse, opt=sgd(0.1),
...                       epochs=100, callbacks=[stop_when_good], progress=False)
>>> history.stopped_at, history.events[-1][1]
(14, 'good enough')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from nnc.backend.tree import tree_leaves, tree_paths

from .layer_report import layer_gradient_norms
from .model import Model, created_at_note
from .nan_origin import find_nan
from .optim import ConfigError


@dataclass(frozen=True)
class Decision:
    """What a callback wants: ``stop`` training, and/or go on with ``params`` instead of the current ones.

    ``reason`` is recorded in ``history.events`` and shown under the progress bar."""

    stop: bool = False
    params: Any = None
    reason: str = ""
    logs: Any = None  # {name: float}, added to this epoch's values in the history (epoch hooks)


class EpochEnd(NamedTuple):
    """What a callback sees after an epoch (``epoch`` counts from 1; ``logs`` are this epoch's values)."""

    epoch: int
    epochs: int
    logs: dict
    history: Any  # nnc.train.History, including this epoch
    params: Any
    opt_state: Any
    model: Model
    stats: Any = None  # the running statistics, for a model that keeps some
    loss_fn: Any = None  # fit's loss(prediction, target)
    batch: Any = None  # the epoch's last batch, (x, y)


# A named tuple, not a dataclass: one is made per batch, and building it must cost next to nothing
class BatchEnd(NamedTuple):
    """What a callback sees after one step: ``loss`` was computed with ``params_before``."""

    epoch: int
    batch: int  # counting from 1 within the epoch
    loss: float
    params_before: Any
    params: Any
    x: Any
    y: Any
    model: Model


class Callback:
    """Base class of nnc's callbacks: override ``begin`` and the hooks you need.

    ``fit`` only calls a hook that a subclass overrides, so a callback without
    ``on_batch_end`` costs nothing per batch."""

    def begin(self) -> Any:
        """The state of one run, before its first epoch."""
        return None

    def on_batch_end(self, state: Any, log: BatchEnd) -> tuple[Any, Decision | None]:
        return state, None

    def on_epoch_end(self, state: Any, log: EpochEnd) -> tuple[Any, Decision | None]:
        return state, None


def overrides(callback: Callback, hook: str) -> bool:
    """Whether ``callback``'s class defines its own ``hook``."""
    return getattr(type(callback), hook) is not getattr(Callback, hook)


@dataclass(frozen=True)
class FunctionCallback(Callback):
    """A plain function ``fn(log: EpochEnd) -> Decision | None`` called after each epoch."""

    fn: Any

    def on_epoch_end(self, state: Any, log: EpochEnd) -> tuple[Any, Decision | None]:
        return state, checked_decision(self.fn(log), self.fn)


def checked_decision(result: Any, source: Any) -> Decision | None:
    if result is None or isinstance(result, Decision):
        return result
    name = getattr(source, "__name__", None) or type(source).__name__
    raise ConfigError(
        f"callback {name} returned {result!r}; return None to go on, or "
        "nnc.Decision(stop=True, reason=...) to stop"
    )


def as_callback(item: Any) -> Callback:
    """A :class:`Callback` for ``item`` (a callback, or a function called after each epoch)."""
    if isinstance(item, Callback):
        return item
    if callable(item):
        return FunctionCallback(item)
    raise ConfigError(f"fit: callbacks must be nnc callbacks or functions of an EpochEnd, got {item!r}")


# ----------------------------------------------------------------------------- early stopping


@dataclass(frozen=True)
class _Best:
    value: float
    epoch: int
    params: Any
    wait: int


@dataclass(frozen=True)
class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs.

    Args:
        monitor: a key of the history (default ``val_loss`` when there is validation
            data, else ``loss``).
        patience: epochs without improvement before stopping.
        min_delta: an improvement smaller than this does not count.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (``max`` for accuracies, ``min`` otherwise).
        restore_best: when training ends (stopped or not), go back to the parameters of
            the best epoch.
    """

    monitor: str | None = None
    patience: int = 5
    min_delta: float = 0.0
    mode: str = "auto"
    restore_best: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 0:
            raise ConfigError(f"EarlyStopping: patience must be an int >= 0, got {self.patience!r}")
        if self.mode not in ("auto", "min", "max"):
            raise ConfigError(f"EarlyStopping: mode must be 'auto', 'min' or 'max', got {self.mode!r}")
        if not self.min_delta >= 0:
            raise ConfigError(f"EarlyStopping: min_delta must be >= 0, got {self.min_delta!r}")

    def begin(self) -> _Best | None:
        return None

    def on_epoch_end(self, state: _Best | None, log: EpochEnd) -> tuple[_Best, Decision | None]:
        key = self.monitor or ("val_loss" if "val_loss" in log.logs else "loss")
        if key not in log.logs:
            raise ConfigError(
                f"EarlyStopping: monitor {key!r} is not recorded; this fit records "
                f"{', '.join(sorted(log.logs))}"
            )
        value = log.logs[key]
        sign = -1.0 if self.mode == "max" or (self.mode == "auto" and "acc" in key) else 1.0
        improved = math.isfinite(value) and (
            state is None or math.isnan(state.value) or sign * value < sign * state.value - self.min_delta
        )
        if state is None or improved:
            state = _Best(
                value if improved else math.nan, log.epoch, log.params if self.restore_best else None, 0
            )
        else:
            state = _Best(state.value, state.epoch, state.params, state.wait + 1)
        restore = self.restore_best and state.epoch != log.epoch and state.params is not None
        if state.wait >= self.patience and state.wait > 0:
            reason = (
                f"stopped: {key} did not improve for {state.wait} epochs "
                f"(best {state.value:.6g} at epoch {state.epoch})"
            )
            return state, Decision(
                stop=True,
                params=state.params if restore else None,
                reason=reason + ("; restored that epoch's parameters" if restore else ""),
            )
        if log.epoch == log.epochs and restore:
            return state, Decision(
                params=state.params,
                reason=f"restored the parameters of epoch {state.epoch}, the best {key} ({state.value:.6g})",
            )
        return state, None


# ----------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint(Callback):
    """Save the parameters every ``every`` epochs with :func:`nnc.save` (atomically).

    ``path`` may name the epoch: ``"run/epoch-{epoch:03d}.npz"``; without ``{epoch}`` each
    save replaces the last one."""

    path: str
    every: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ConfigError(f"Checkpoint: every must be an int >= 1, got {self.every!r}")

    def on_epoch_end(self, state: Any, log: EpochEnd) -> tuple[Any, Decision | None]:
        if log.epoch % self.every == 0:
            from .checkpoint import save

            save(str(self.path).format(epoch=log.epoch), log.model, log.params, log.stats)
        return state, None


# ----------------------------------------------------------------------------- gradient statistics


# The names under which GradientStats records each layer's gradient norm in the history.
GRADIENT_NORM = "grad_norm/"


@dataclass(frozen=True)
class GradientStats(Callback):
    """Record every layer's gradient norm at the end of each epoch, as ``history["grad_norm/<layer
    path>"]``; ``history.plot()`` draws them, one curve per layer.

    The gradient is the loss's on the epoch's last batch with the epoch's final parameters (one
    gradient more per epoch, on the interpreted path), in the model's inference form when it
    draws random numbers. A layer's norm is that of all its parameters' gradients together.
    Vanishing gradients show as curves falling to 0 in the first layers, exploding ones as
    curves that climb.

    >>> import numpy as np
    >>> from nnc import Linear, tanh, mse, sgd
    >>> from nnc.train import fit
    >>> model = Linear(1, 8) >> tanh >> Linear(8, 1)
    >>> x = np.linspace(-1, 1, 32).reshape(-1, 1)
    >>> _, history = fit(model, model.init(seed=0), (x, x ** 2), loss=mse, opt=sgd(0.1), epochs=3,
    ...                  callbacks=[GradientStats()], progress=False)
    >>> [k for k in history.keys() if k.startswith("grad_norm/")]
    ['grad_norm/linear_0', 'grad_norm/linear_1']
    """

    def on_epoch_end(self, state: Any, log: EpochEnd) -> tuple[Any, Decision | None]:
        if log.loss_fn is None or log.batch is None:
            return state, None
        x, y = log.batch
        norms = layer_gradient_norms(log.model, log.params, x, y, log.loss_fn, stats=log.stats)
        return state, Decision(logs={f"{GRADIENT_NORM}{path}": norm for path, norm in norms.items()})


# ----------------------------------------------------------------------------- non-finite values


@dataclass(frozen=True)
class StopOnNaN(Callback):
    """Stop training when a loss or a parameter is NaN or infinite, naming what went non-finite first.

    ``fit`` runs this check by default (``fit(..., stop_on_nan=False)`` turns it off); a
    ``StopOnNaN`` among the callbacks only chooses how it stops. ``fit`` performs it itself,
    for next to nothing per batch: it tests each batch's loss (a float it has anyway) and
    scans the parameters at the end of each epoch; only when something is not finite does it
    rerun that epoch's steps from the epoch's first parameters, to find the update that first
    made a parameter non-finite.

    The message names the epoch and the batch, the first parameter (in model order) that holds
    NaN or infinity, with its layer and where that layer was created; when every parameter is
    finite, the first layer whose output is not. With ``raise_error=True`` (the default)
    ``fit`` raises :class:`nnc.NonFiniteError`, whose ``params`` attribute holds the last
    finite parameters (those the failing batch started from) and ``history`` the epochs
    completed; with ``raise_error=False`` it stops and returns those parameters, the message
    in ``history.events`` and the epoch in ``history.stopped_at``.
    """

    raise_error: bool = True


_HINT = "\n  hint: lower the learning rate, or clip gradients (e.g. nnc.adam(1e-3, clip_norm=1.0))"


def tree_all_finite(params: Any) -> bool:
    """Whether every leaf of ``params`` is free of NaN and infinity (one scan of the tree)."""
    return all(np.isfinite(leaf).all() for leaf in tree_leaves(params))


def non_finite_params_report(model: Model, params: Any, head: str, hint: str = _HINT) -> str:
    """``head``, then the first parameter of ``params`` that holds NaN or infinity: its path,
    layer, value and index, and how many parameters are not finite."""
    bad = [(path, leaf) for path, leaf in tree_paths(params) if not np.isfinite(leaf).all()]
    path, leaf = bad[0]
    index = tuple(int(i) for i in np.argwhere(~np.isfinite(leaf))[0])
    return (
        f"{head}; the first is {path} of {_layer_text(*layer_of(model, path))}, which holds "
        f"{leaf[index]} at index {index} ({len(bad)} of {len(tree_leaves(params))} parameters "
        "hold NaN or infinity)" + hint
    )


def non_finite_loss_report(model: Model, epoch: int, batch: int, loss: float, params: Any, x: Any) -> str:
    """Why the loss of a batch computed from finite ``params`` on ``x`` is not finite: the first
    layer whose output is not, else the loss itself."""
    head = f"the loss of epoch {epoch}, batch {batch} is {loss}"
    culprit = find_nan(model, params, x)
    if culprit is not None:
        return (
            f"{head}: every parameter is finite, but {_layer_text(culprit.path, culprit.layer)} produced NaN "
            "or infinity on this batch from a finite input" + _HINT
        )
    with np.errstate(all="ignore"):
        largest = max(
            float(np.max(np.abs(leaf), initial=0.0)) for leaf in tree_leaves(model.apply(params, x))
        )
    return (
        f"{head}: the parameters and the model's output are finite (largest magnitude "
        f"{largest:.3g}), so the loss itself overflowed or met bad targets in this batch" + _HINT
    )


def layer_of(model: Model, path: str) -> tuple[str, Model]:
    """The layer that owns parameter ``path`` (``linear_1/W``) and that layer's own path."""
    parts = path.split("/")[:-1]
    layer, walked = model, []
    for part in parts:
        if part not in layer.param_keys:
            break
        layer = layer.children[layer.param_keys.index(part)]
        walked.append(part)
    return "/".join(walked), layer


def _layer_text(path: str, layer: Model) -> str:
    return f"{path + ': ' if path else ''}{layer!r}{created_at_note(layer)}"
