"""Training: a pure ``train_step`` for your own loop, and ``fit`` for the usual one.

``fit`` batches the data over its leading axis, shuffles it from ``seed``, runs
``train_step`` on each batch, evaluates metrics and validation data after each epoch,
shows a progress bar and asks the callbacks what to do. The same seed gives the same
parameters and the same history, bit for bit.

>>> import numpy as np
>>> from nnc import Linear, logistic
>>> from nnc.losses import mse
>>> from nnc.optim import adam
>>> x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
>>> y = np.array([[0], [1], [1], [0]], np.float32)
>>> model = Linear(2, 8) >> logistic >> Linear(8, 1) >> logistic
>>> params, history = fit(model, model.init(seed=0), (x, y), loss=mse, opt=adam(0.05),
...                       epochs=300, batch_size=4, progress=False)
>>> history["loss"][-1] < 0.01
True
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from nnc.backend.autodiff import value_and_grad
from nnc.backend.errors import NonFiniteError, ShapeError
from nnc.backend.execute import quiet
from nnc.backend.random import fold_in
from nnc.backend.random import key as make_key
from nnc.backend.tree import tree_flatten, tree_unflatten

from .callbacks import (
    GRADIENT_NORM,
    BatchEnd,
    Callback,
    EpochEnd,
    StopOnNaN,
    as_callback,
    checked_decision,
    non_finite_loss_report,
    non_finite_params_report,
    overrides,
    tree_all_finite,
)
from .effects import checked_stats, given_rates, inference, rates_of, with_calls
from .model import Model, _params_dtype, check_params, match_input
from .nan_origin import find_nan
from .optim import ConfigError, Optimizer
from .types import ArrayType, show

# Rows per forward pass when evaluating metrics, to bound the memory of intermediates
_EVAL_CHUNK = 8192


# ----------------------------------------------------------------------------- one step


@dataclass(frozen=True)
class TrainStep:
    """``step(params, opt_state, x, y) -> (params, opt_state, loss_value)``: one pure training step.

    The gradient of ``loss(model(params, x), y)`` is traced once per input signature
    (shapes and dtypes of params, x and y) and then runs as compiled straight-line code.

    A model with effects (:mod:`nnc.effects`) takes its running statistics and a key too:
    ``step(params, opt_state, x, y, stats, key) -> (params, opt_state, loss_value, stats)``,
    the new statistics last when the model keeps some. Give each step its own key,
    ``nnc.fold_in(nnc.key(seed), step_number)``: ``fit`` does, inside the compiled step."""

    model: Model
    loss: Callable[[Any, Any], Any]
    opt: Optimizer

    def objective(
        self, params: Any, x: Any, y: Any, stats: Any = None, key: Any = None, rates: Any = None
    ) -> Any:
        """The scalar that is minimised, ``loss(model(params, x), y)``; paired with the new
        statistics when the model updates some. ``rates``: the dropout rates by layer path
        (:func:`nnc.effects.rates_of`), as data; ``None``, the model's own."""
        with given_rates(rates):
            if self.model.updates_stats:
                prediction, new_stats = self.model(params, x, key=key, stats=stats)
                return self.loss(prediction, y), new_stats
            return self.loss(self.model(params, x, key=key, stats=stats), y)

    @cached_property
    def _value_and_grad(self) -> Callable:
        return value_and_grad(self.objective, has_aux=self.model.updates_stats)

    def __call__(
        self,
        params: Any,
        opt_state: Any,
        x: Any,
        y: Any,
        stats: Any = None,
        key: Any = None,
        rates: Any = None,
    ) -> Any:
        with quiet():  # the update of a diverging step overflows too; see nnc.backend.execute.quiet
            value, grads = self._value_and_grad(params, x, y, stats, key, rates)
            params, opt_state = self.opt.update(params, grads, opt_state)
        if self.model.updates_stats:
            value, stats = value
            return params, opt_state, value, stats
        return params, opt_state, value


def train_step(model: Model, *, loss: Callable[[Any, Any], Any], opt: Optimizer) -> TrainStep:
    """A pure step ``(params, opt_state, x, y) -> (params, opt_state, loss_value)`` for your own loop.

    >>> import numpy as np
    >>> from nnc import Linear
    >>> from nnc.losses import mse
    >>> from nnc.optim import sgd
    >>> model = Linear(1, 1, init="zeros")
    >>> step = train_step(model, loss=mse, opt=sgd(0.5))
    >>> params, state = model.init(seed=0), step.opt.init(None)
    >>> params, state, value = step(params, state, np.array([[1.0]]), np.array([[2.0]]))
    >>> float(value), params["W"].tolist(), params["b"].tolist()
    (4.0, [[2.0]], [2.0])
    """
    if not isinstance(opt, Optimizer):
        raise ConfigError(f"train_step: opt must be an nnc optimiser such as nnc.adam(1e-3), got {opt!r}")
    if not callable(loss):
        raise ConfigError(f"train_step: loss must be a function loss(prediction, target), got {loss!r}")
    return TrainStep(model, loss, opt)


# ----------------------------------------------------------------------------- history


@dataclass(frozen=True)
class History:
    """Per-epoch values recorded by ``fit``: ``history["loss"]`` is a list with one float per epoch.

    ``loss`` is the mean of the epoch's batch losses (weighted by batch size); a metric
    ``m`` is evaluated on the whole training set with the parameters at the end of the
    epoch; ``val_loss`` and ``val_m`` on the validation set. ``events`` holds
    ``(epoch, message)`` pairs from callbacks; ``stopped_at`` is the epoch a callback (or
    ``StopOnNaN(raise_error=False)``) stopped training at, or None.
    """

    values: Mapping[str, tuple] = field(default_factory=dict)
    events: tuple = ()
    stopped_at: int | None = None

    def __getitem__(self, key: str) -> list[float]:
        if key not in self.values:
            raise KeyError(f"{key!r} is not recorded; this history has {', '.join(self.values) or 'nothing'}")
        return list(self.values[key])

    def keys(self) -> list[str]:
        return list(self.values)

    def __len__(self) -> int:
        return len(next(iter(self.values.values()), ()))

    @property
    def epochs(self) -> list[int]:
        """The recorded epochs, counting from 1."""
        return list(range(1, len(self) + 1))

    def with_epoch(self, logs: Mapping[str, float]) -> History:
        return replace(
            self, values={**self.values, **{k: self.values.get(k, ()) + (v,) for k, v in logs.items()}}
        )

    def with_more(self, logs: Mapping[str, float]) -> History:
        """``logs`` added to the last epoch's values (NaN before, for a name new since then)."""
        n = len(self)
        padded = {k: self.values.get(k, ())[: n - 1] for k in logs}
        padded = {k: v + (math.nan,) * (n - 1 - len(v)) for k, v in padded.items()}
        return replace(self, values={**self.values, **{k: padded[k] + (float(v),) for k, v in logs.items()}})

    def with_event(self, epoch: int, message: str, stopped: bool = False) -> History:
        return replace(
            self, events=self.events + ((epoch, message),), stopped_at=epoch if stopped else self.stopped_at
        )

    def __repr__(self) -> str:
        last = ", ".join(f"{k} {v[-1]:.4g}" for k, v in self.values.items() if v)
        stop = f", stopped at epoch {self.stopped_at}" if self.stopped_at else ""
        return f"History({len(self)} epochs: {last or 'empty'}{stop})"

    def plot(self, path: str | os.PathLike | None = None) -> Any:
        """Curves of the loss and every metric (training and validation), one panel each.

        Returns a matplotlib ``Figure`` (notebooks show it); with ``path`` it is also
        written there (atomically; the format follows the extension, e.g. ``.png``).
        Needs matplotlib: ``pip install 'nnc[plot]'``."""
        try:
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError(
                "History.plot needs matplotlib: pip install 'nnc[plot]' (or pip install matplotlib)"
            ) from None
        per_layer = [k for k in self.values if k.startswith(GRADIENT_NORM)]
        names = [k for k in self.values if not k.startswith("val_") and k not in per_layer]
        names += [k[4:] for k in self.values if k.startswith("val_") and k[4:] not in names]
        panels = len(names) + bool(per_layer)
        fig = Figure(figsize=(4.5 * max(panels, 1), 3.4), layout="constrained")
        for i, name in enumerate(names):
            ax = fig.add_subplot(1, panels, i + 1)
            for key, label in ((name, "training"), (f"val_{name}", "validation")):
                if key in self.values:
                    ax.plot(
                        self.epochs, self.values[key], marker="." if len(self) < 30 else None, label=label
                    )
            _epoch_axes(ax, name)
        if per_layer:  # nnc.GradientStats: one curve per layer, on a log scale (norms span decades)
            ax = fig.add_subplot(1, panels, panels)
            for key in per_layer:
                ax.plot(
                    self.epochs,
                    self.values[key],
                    marker="." if len(self) < 30 else None,
                    label=key[len(GRADIENT_NORM) :],
                )
            ax.set_yscale("log")
            _epoch_axes(ax, "gradient norm per layer")
        if path is not None:
            from .checkpoint import write_atomically

            ext = os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
            write_atomically(path, lambda f: fig.savefig(f, format=ext, dpi=110))
        return fig


def _epoch_axes(ax: Any, title: str) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Dataset:
    """Validated training data: array leaves of ``(x, y)`` sharing the leading axis ``n``."""

    leaves: tuple
    treedef: Any
    n: int

    @cached_property
    def _plain(self) -> bool:  # x and y are single arrays: batches need no tree rebuilding
        return len(self.leaves) == 2 and self.treedef == tree_flatten((0, 0))[1]

    def take(self, rows: Any) -> Dataset:
        return Dataset(tuple(leaf[rows] for leaf in self.leaves), self.treedef, self.n)

    def batch(self, start: int, stop: int) -> tuple[Any, Any]:
        if self._plain:
            return self.leaves[0][start:stop], self.leaves[1][start:stop]
        return tree_unflatten(self.treedef, [leaf[start:stop] for leaf in self.leaves])

    @property
    def xy(self) -> tuple[Any, Any]:
        return tree_unflatten(self.treedef, self.leaves)


def prepare_data(model: Model, params: Any, data: Any, what: str) -> Dataset:
    """Check ``data = (x, y)`` before training and convert it once (x to the parameters' dtype).

    Raises :class:`nnc.ShapeError` for a malformed pair, non-numeric dtypes, mismatched
    lengths, an empty set or ``x`` that does not fit ``model``; :class:`nnc.NonFiniteError`
    for NaN or infinite values."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ShapeError(
            f"fit: {what} must be a pair (x, y) of arrays, got {type(data).__name__}"
            + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else "")
        )
    x, y = data
    dtype = _params_dtype(params) or np.dtype(np.float32)
    named = [(f"{what} x{p}", leaf) for p, leaf in _labelled(x)] + [
        (f"{what} y{p}", leaf) for p, leaf in _labelled(y)
    ]
    lengths = []
    for name, leaf in named:
        arr = np.asarray(leaf) if not isinstance(leaf, np.ndarray) else leaf
        if arr.dtype.kind not in "fiub":
            raise ShapeError(
                f"fit: {name} has dtype {arr.dtype}; expected numbers "
                f"(floats for inputs, integer labels or floats for targets)"
            )
        if arr.ndim == 0:
            raise ShapeError(f"fit: {name} is a single number; it needs a leading axis of examples")
        lengths.append((name, arr.shape[0]))
    x, batch = match_input(model.in_type, x, {}, model, f"{what} x", dtype)
    if batch is None and isinstance(model.in_type, ArrayType):
        raise ShapeError(
            f"fit: {what} x of shape {np.shape(x)} is one example of "
            f"{show([model.in_type])[0]}; fit needs a batch with a leading axis of "
            "examples (x[None] for a batch of one)"
        )
    if len({n for _, n in lengths}) > 1:
        listed = ", ".join(f"{name} has {n}" for name, n in lengths)
        raise ShapeError(
            f"fit: {what} arrays disagree on the number of examples: {listed} (the leading axes must match)"
        )
    n = lengths[0][1] if lengths else 0
    if n == 0:
        raise ShapeError(
            f"fit: the {what} data is empty ({lengths[0][0] if lengths else 'x'} has 0 examples)"
        )
    y_leaves, y_def = tree_flatten(y)
    y_leaves = [
        _checked_target(np.asarray(leaf), f"{what} y{p}", dtype)
        for (p, _), leaf in zip(_labelled(y), y_leaves)
    ]
    leaves, treedef = tree_flatten((x, tree_unflatten(y_def, y_leaves)))
    return Dataset(tuple(leaves), treedef, n)


def _labelled(tree: Any) -> list[tuple[str, Any]]:
    leaves, _ = tree_flatten(tree)
    if len(leaves) == 1 and not isinstance(tree, (tuple, list, dict)):
        return [("", tree)]
    return [(f"[{i}]", leaf) for i, leaf in enumerate(leaves)]


def _checked_target(y: np.ndarray, name: str, dtype: np.dtype) -> np.ndarray:
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(y))[0])
            raise NonFiniteError(
                f"fit: {name} holds {y[bad]} at index {bad}; nnc refuses NaN and infinite data"
            )
        return y.astype(dtype, copy=False)
    return y


def predict(model: Model, params: Any, x: Any, stats: Any = None) -> Any:
    """``model`` on validated inputs ``x`` in chunks of rows (no boundary checks, no trace);
    a model with effects runs in its inference form, on ``stats``."""
    if model.has_effects:
        model = inference(model)
        params = with_calls(model, params, None, stats, {})
    leaves, treedef = tree_flatten(x)
    n = leaves[0].shape[0]
    if n <= _EVAL_CHUNK:
        return model.apply(params, x)
    parts = [
        model.apply(params, tree_unflatten(treedef, [leaf[i : i + _EVAL_CHUNK] for leaf in leaves]))
        for i in range(0, n, _EVAL_CHUNK)
    ]
    out_leaves, out_def = tree_flatten(parts[0])
    joined = [np.concatenate([tree_flatten(p)[0][k] for p in parts]) for k in range(len(out_leaves))]
    return tree_unflatten(out_def, joined)


def _metric_table(metrics: Any) -> list[tuple[str, Callable]]:
    items = (
        metrics.items()
        if isinstance(metrics, Mapping)
        else [(getattr(m, "__name__", None), m) for m in metrics]
    )
    table: list[tuple[str, Callable]] = []
    for name, fn in items:
        if not callable(fn) or not name or name == "<lambda>":
            raise ConfigError(
                f"fit: a metric must be a named function metric(prediction, target), "
                f"got {fn!r}; name lambdas with a dict: metrics={{'name': fn}}"
            )
        if name in ("loss",) or name.startswith("val_") or name in dict(table):
            raise ConfigError(f"fit: metric name {name!r} is taken; name it with a dict")
        table.append((name, fn))
    return table


def _evaluate(model, params, data: Dataset, loss, metrics, prefix: str, with_loss: bool, stats=None) -> dict:
    x, y = data.xy
    with quiet():  # non-finite values are reported, not warned about
        prediction = predict(model, params, x, stats)
        logs = {f"{prefix}loss": float(loss(prediction, y))} if with_loss else {}
        for name, fn in metrics:
            logs[f"{prefix}{name}"] = float(fn(prediction, y))
    return logs


# ----------------------------------------------------------------------------- fit


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"fit: {name} must be an int >= 1, got {value!r}")
    return int(value)


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, unit="batch", dynamic_ncols=True)
    except ImportError:  # a notebook without ipywidgets: fall back to the text bar
        from tqdm.std import tqdm as text_tqdm

        return text_tqdm(total=total, unit="batch", dynamic_ncols=True)


def fit(
    model: Model,
    params: Any,
    data: tuple,
    *,
    loss: Callable[[Any, Any], Any],
    opt: Optimizer,
    epochs: int = 1,
    batch_size: int = 32,
    validation: tuple | None = None,
    seed: int = 0,
    metrics: Sequence[Callable] | Mapping[str, Callable] = (),
    callbacks: Sequence[Any] = (),
    progress: bool = True,
    shuffle: bool = True,
    drop_last: bool = False,
    step: Callable | None = None,
    compile: bool = False,  # noqa: A002
    stop_on_nan: bool = True,
    stats: Any = None,
) -> Any:
    """Train ``model`` from ``params`` on ``data = (x, y)``; returns ``(params, history)``,
    or ``(params, stats, history)`` for a model that keeps running statistics.

    Args:
        data: ``(x, y)``; ``x`` is an array of shape ``(n, ...)`` (a tuple of such arrays for
            a model with tuple input), ``y`` the targets ``loss`` expects, also ``(n, ...)``.
        loss: ``loss(prediction, target) -> scalar`` (``nnc.cross_entropy``, ``nnc.mse``).
        opt: an optimiser (``nnc.adam(1e-3)``); its state starts fresh.
        epochs, batch_size: passes over the data, examples per step.
        validation: ``(x, y)`` evaluated after each epoch (``val_loss``, ``val_<metric>``).
        seed: the seed of the shuffling and of each step's key (``fold_in(fold_in(key(seed), 1),
            step)``, for a model that draws random numbers); the same seed gives the same run,
            bit for bit.
        metrics: functions ``metric(prediction, target)`` (``nnc.accuracy``), or a dict by name.
        callbacks: :class:`nnc.callbacks.Callback` values or functions of an ``EpochEnd``.
        progress: show a tqdm progress bar (terminal or notebook).
        shuffle: reshuffle the examples at every epoch.
        drop_last: skip the last batch when it is smaller than ``batch_size``. By default it
            is kept, so every example is seen each epoch; its shape is traced once more.
        step: what runs each batch, in place of ``train_step(model, loss=loss, opt=opt)``
            (a compiled step, say); same signature ``(params, opt_state, x, y)``, and
            ``(params, opt_state, x, y, stats, key)`` for a model with effects.
        compile: run each batch through ``nnc.compile(train_step(...))``: the forward pass,
            the backward pass and the update as one native function (compiled once per
            batch shape; the results equal the interpreted ones to float rounding).
        stop_on_nan: stop when a batch's loss or a parameter is NaN or infinite (see
            :class:`nnc.callbacks.StopOnNaN`): raise :class:`nnc.NonFiniteError` naming the epoch,
            the batch and the first non-finite parameter with its layer; its ``params`` attribute
            holds the last finite parameters. ``StopOnNaN(raise_error=False)`` among the
            callbacks returns them instead; ``False`` trains on regardless.
        stats: the running statistics to start from (default ``model.init_stats()``), for a
            model that keeps some: each step gives the next, and metrics and validation are
            computed by ``nnc.inference(model)`` on them.

    Data are checked before the first step (lengths, dtypes, NaNs, emptiness, the model's
    input type) and converted once to the parameters' dtype; the initial parameters must be
    finite. Numpy's floating-point warnings are off while ``fit`` runs: a run that overflows
    is reported by the check above, or, with ``stop_on_nan=False``, shows as ``nan`` in the
    history.
    """
    epochs, batch_size = _check_count("epochs", epochs), _check_count("batch_size", batch_size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"fit: seed must be an int, got {seed!r}")
    standard = train_step(model, loss=loss, opt=opt)  # checks loss and opt in any case
    if step is not None and not callable(step):
        raise ConfigError(f"fit: step must be a function (params, opt_state, x, y), got {step!r}")
    if compile and step is not None:
        raise ConfigError("fit: give either step= or compile=True, not both")
    effects = model.has_effects
    # the optimiser's hyperparameters ride in its state and the dropout rates in the carry:
    # runs that differ only in their values share one compiled step (issues 20 and 21)
    if compile:
        from .compile import compile as compile_step

        step = compile_step(_keyed(standard, rates=True) if effects else standard)
    elif step is not None and effects:
        step = _keyed(step)
    step = (_keyed(standard, rates=True) if effects else standard) if step is None else step
    check_params(model, params)
    train = prepare_data(model, params, data, "training")
    valid = prepare_data(model, params, validation, "validation") if validation is not None else None
    metric_fns = _metric_table(metrics)
    hooks = [as_callback(c) for c in callbacks]
    guard = _nan_guard(hooks, stop_on_nan)
    _refuse_non_finite_params(model, params)
    batch_hooks = [(i, c, c.on_batch_end) for i, c in enumerate(hooks) if overrides(c, "on_batch_end")]
    epoch_hooks = [(i, c, c.on_epoch_end) for i, c in enumerate(hooks) if overrides(c, "on_epoch_end")]
    states = [c.begin() for c in hooks]

    stop_at = train.n - train.n % batch_size if drop_last and train.n >= batch_size else train.n
    starts = list(range(0, stop_at, batch_size))
    sizes = np.array([min(batch_size, stop_at - s) for s in starts], np.float64)
    rng = np.random.default_rng(int(seed))
    opt_state = opt.init(params)
    if effects:
        # the step's other inputs ride with the optimiser's state, so that a step (and its
        # replay when a value goes non-finite) stays a pure (params, carry, x, y) -> ...
        if model.keeps_stats:
            start = model.init_stats(_params_dtype(params) or np.float32) if stats is None else stats
            stats = checked_stats(model, start, _params_dtype(params))
        step = _Carrying(step, model.updates_stats)
        opt_state = (opt_state, stats, fold_in(make_key(int(seed)), 1), np.uint64(0), rates_of(model))
    history = History()
    bar = _progress_bar(epochs * len(starts), progress)
    try:
        with quiet():  # one np.errstate for the whole run: see nnc.backend.execute.quiet
            for epoch in range(1, epochs + 1):
                if bar is not None:
                    bar.set_description(f"epoch {epoch}/{epochs}", refresh=False)
                epoch_data = train.take(rng.permutation(train.n)) if shuffle else train
                replay = _Replay(model, step, epoch, params, opt_state, epoch_data, starts, batch_size, loss)
                losses = np.empty(len(starts), np.float64)
                stop = None
                for b, start in enumerate(starts):
                    x, y = epoch_data.batch(start, start + batch_size)
                    before = params
                    params, opt_state, losses[b] = step(params, opt_state, x, y)
                    if guard is not None and not math.isfinite(losses[b]):  # a float test: free
                        params, history = _stopped(guard, *replay.of_loss(b, losses[b], before, x), history)
                        stop = True
                        break
                    if bar is not None:
                        bar.update()
                    if batch_hooks:
                        batch_log = BatchEnd(epoch, b + 1, float(losses[b]), before, params, x, y, model)
                        params, history, stop = _ask(batch_hooks, states, batch_log, params, history, epoch)
                        if stop:
                            break
                if stop:
                    break
                if guard is not None and not tree_all_finite(params):  # one scan per epoch
                    params, history = _stopped(guard, *replay.of_epoch(params), history)
                    break
                logs = {"loss": float(np.dot(losses, sizes) / sizes.sum())}
                stats = opt_state[1] if effects else None
                if metric_fns:
                    logs.update(_evaluate(model, params, train, loss, metric_fns, "", False, stats))
                if valid is not None:
                    logs.update(_evaluate(model, params, valid, loss, metric_fns, "val_", True, stats))
                history = history.with_epoch(logs)
                if bar is not None:
                    bar.set_postfix_str(", ".join(f"{k} {v:.4g}" for k, v in logs.items()), refresh=False)
                if epoch_hooks:
                    optimiser_state = opt_state[0] if effects else opt_state
                    epoch_log = EpochEnd(
                        epoch, epochs, logs, history, params, optimiser_state, model, stats, loss, (x, y)
                    )
                    params, history, stop = _ask(epoch_hooks, states, epoch_log, params, history, epoch)
                    if stop:
                        break
    finally:
        if bar is not None:
            bar.close()
    if progress:
        for epoch, message in history.events:
            print(f"epoch {epoch}: {message}")
    if model.keeps_stats:
        return params, opt_state[1], history
    return params, history


def _keyed(step: Callable, rates: bool = False) -> Callable:
    """``step`` with each call's key derived from the run's key and the step's number, inside
    it: so a compiled step derives it in its own code, from two small inputs. With ``rates``
    (fit's own step) it takes the dropout rates too, as inputs: data, not code."""

    if rates:

        def keyed_with_rates(
            params: Any, opt_state: Any, x: Any, y: Any, stats: Any, run_key: Any, number: Any, rates: Any
        ) -> Any:
            return step(params, opt_state, x, y, stats, fold_in(run_key, number), rates)

        return keyed_with_rates

    def keyed(
        params: Any, opt_state: Any, x: Any, y: Any, stats: Any, run_key: Any, number: Any, rates: Any = None
    ) -> Any:
        return step(params, opt_state, x, y, stats, fold_in(run_key, number))

    return keyed


@dataclass(frozen=True)
class _Carrying:
    """A keyed step as ``(params, carry, x, y) -> (params, carry, loss)``, the carry holding the
    optimiser's state, the statistics, the run's key and the number of the next step."""

    step: Callable
    updates_stats: bool

    def __call__(self, params: Any, carry: tuple, x: Any, y: Any) -> tuple[Any, tuple, Any]:
        opt_state, stats, run_key, number, rates = carry
        out = self.step(params, opt_state, x, y, stats, run_key, number, rates)
        params, opt_state, value = out[:3]
        if self.updates_stats:
            stats = out[3]
        return params, (opt_state, stats, run_key, np.uint64(number + np.uint64(1)), rates), value


# ----------------------------------------------------------------------------- non-finite values


def _nan_guard(hooks: list, stop_on_nan: Any) -> StopOnNaN | None:
    """The StopOnNaN that fit applies itself (the one among the callbacks, else the default)."""
    if not isinstance(stop_on_nan, bool):
        raise ConfigError(f"fit: stop_on_nan must be True or False, got {stop_on_nan!r}")
    given = [h for h in hooks if isinstance(h, StopOnNaN)]
    if len(given) > 1:
        raise ConfigError(f"fit: {len(given)} StopOnNaN callbacks given; give at most one")
    if given and not stop_on_nan:
        raise ConfigError("fit: stop_on_nan=False contradicts the StopOnNaN callback; drop one of them")
    return given[0] if given else StopOnNaN() if stop_on_nan else None


def _refuse_non_finite_params(model: Model, params: Any) -> None:
    if not tree_all_finite(params):
        raise NonFiniteError(
            non_finite_params_report(
                model,
                params,
                "fit: the initial parameters are not finite",
                hint="\n  hint: start from model.init(seed=...), or from the last finite parameters of a "
                "run that diverged (the params attribute of its NonFiniteError)",
            )
        )


@dataclass(frozen=True)
class _Replay:
    """One epoch as fit ran it: its first parameters and optimiser state, and its batches.

    Steps are pure, so rerunning them from there gives the same values: when a loss or a
    parameter turns out not to be finite, this finds the update that first made a parameter
    non-finite, at the cost of at most one epoch's steps, only then."""

    model: Model
    step: Callable
    epoch: int
    params: Any
    opt_state: Any
    data: Dataset
    starts: list
    batch_size: int
    loss: Callable[[Any, Any], Any]

    def _born(self, u: int, params: Any) -> str:
        """``: <which layer's gradient step made the non-finite values>`` for update ``u`` from
        ``params``, or nothing when no layer's can be named (the optimiser made them: a huge
        step, not a non-finite gradient)."""
        x, y = self.data.batch(self.starts[u], self.starts[u] + self.batch_size)
        origin = find_nan(self.model, params, x, y, loss=self.loss)
        return "" if origin is None else f": {origin.message}"

    def _first_bad_update(self, count: int) -> tuple[int, Any, Any, float] | None:
        """Among the first ``count`` steps, the first whose update is not finite, as (its index,
        the parameters before it, those after it, its loss); None if there is none, or if the
        epoch began with non-finite parameters (which no update of it made so)."""
        params, opt_state = self.params, self.opt_state
        if not tree_all_finite(params):
            return None
        for u, start in enumerate(self.starts[:count]):
            x, y = self.data.batch(start, start + self.batch_size)
            updated, opt_state, loss = self.step(params, opt_state, x, y)
            if not tree_all_finite(updated):
                return u, params, updated, float(loss)
            params = updated
        return None

    def of_loss(self, b: int, loss: float, before: Any, x: Any) -> tuple[str, Any, int]:
        """The report, the last finite parameters and the epoch, for the non-finite ``loss`` of
        batch ``b`` (counting from 0), computed from ``before`` on ``x``."""
        if tree_all_finite(before):
            return non_finite_loss_report(self.model, self.epoch, b + 1, loss, before, x), before, self.epoch
        head = f"the loss of epoch {self.epoch}, batch {b + 1} is {loss}: the parameters it was computed from"
        found = self._first_bad_update(b)
        if found is None:
            return self._unexplained(f"{head} are not finite", before)
        u, last, updated, u_loss = found
        when = (
            "in the update before it"
            if u == b - 1
            else f"in the update of batch {u + 1}, whose loss ({u_loss:.4g}) was finite"
        )
        return (
            non_finite_params_report(
                self.model, updated, f"{head} went non-finite {when}{self._born(u, last)}"
            ),
            last,
            self.epoch,
        )

    def of_epoch(self, params: Any) -> tuple[str, Any, int]:
        """The same for non-finite ``params`` at the end of the epoch, every loss having been finite."""
        found = self._first_bad_update(len(self.starts))
        if found is None:
            return self._unexplained(
                f"the parameters are not finite at the end of epoch {self.epoch}", params
            )
        u, last, updated, u_loss = found
        head = (
            f"the parameters went non-finite in the update of epoch {self.epoch}, batch {u + 1}, "
            f"whose loss ({u_loss:.4g}) was finite{self._born(u, last)}"
        )
        return non_finite_params_report(self.model, updated, head), last, self.epoch

    def _unexplained(self, head: str, params: Any) -> tuple[str, Any, int]:
        """No update of this epoch made the parameters non-finite: a callback replaced them (at
        the end of the last epoch, or after a batch), or the step is not deterministic. The
        parameters returned are then those the epoch began with."""
        if not tree_all_finite(self.params):
            head += f"; they were already when epoch {self.epoch} began (did a callback replace them?)"
        else:
            head += ", and rerunning the epoch's steps does not show which update made them so"
        return non_finite_params_report(self.model, params, head), self.params, self.epoch


def _stopped(
    guard: StopOnNaN, message: str, params: Any, epoch: int, history: History
) -> tuple[Any, History]:
    """Stop as ``guard`` says: raise ``message`` (carrying ``params`` and ``history``), or go on to
    return ``params`` with the message recorded."""
    if guard.raise_error:
        error = NonFiniteError(message)
        # fit's own addition to the engine's error (the engine does not declare them)
        error.params, error.history = params, history  # type: ignore[attr-defined]
        raise error
    return params, history.with_event(epoch, message, stopped=True)


def _ask(
    hooks: list[tuple[int, Callback, Callable]],
    states: list,
    log: Any,
    params: Any,
    history: History,
    epoch: int,
) -> tuple[Any, History, bool]:
    """Run the hooks (each with the index of its callback's state) in order; each decision
    may replace the parameters and/or stop."""
    stop = False
    for i, callback, hook in hooks:
        states[i], returned = hook(states[i], log)
        decision = checked_decision(returned, callback)
        if decision is None:
            continue
        if decision.params is not None:
            params = decision.params
            log = log._replace(params=params)
        if decision.logs:
            history = history.with_more(decision.logs)
        if decision.reason:
            history = history.with_event(epoch, decision.reason, stopped=decision.stop)
        elif decision.stop:
            history = replace(history, stopped_at=epoch)
        stop = stop or decision.stop
    return params, history, stop
