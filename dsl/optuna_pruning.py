"""``OptunaPruning``: a callback that reports to an Optuna trial after each epoch and prunes it.

Optuna is optional: this module imports it only when a callback is made, and without it
says ``pip install optuna``.

>>> import numpy as np, nnc, optuna
>>> optuna.logging.set_verbosity(optuna.logging.WARNING)
>>> x = np.linspace(-1, 1, 32).reshape(-1, 1); y = 3 * x
>>> def objective(trial):
...     model = nnc.Linear(1, 1)
...     _, history = nnc.fit(model, model.init(seed=0), (x, y), loss=nnc.mse,
...                          opt=nnc.sgd(trial.suggest_float("lr", 1e-3, 0.1, log=True)), epochs=5,
...                          validation=(x, y), callbacks=[nnc.OptunaPruning(trial)], progress=False)
...     return history["val_loss"][-1]
>>> study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
>>> study.optimize(objective, n_trials=4)
>>> len(study.trials[0].intermediate_values)
5
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .callbacks import Callback, Decision, EpochEnd
from .optim import ConfigError


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError("nnc.OptunaPruning needs optuna: pip install optuna") from None
    return optuna


@dataclass(frozen=True)
class OptunaPruning(Callback):
    """Report ``monitor`` to an Optuna ``trial`` after each epoch; stop when Optuna prunes it.

    Each epoch, ``trial.report(value, step=epoch)``; when ``trial.should_prune()`` is then
    true, training stops. By default ``fit`` raises ``optuna.TrialPruned`` (Optuna's
    convention: raised out of an objective, the trial is marked pruned), from the end of the
    epoch, after the history has that epoch's values. With ``raise_pruned=False``, ``fit``
    returns instead (a ``Decision(stop=True)``: ``history.stopped_at`` is the epoch, and the
    reason is in ``history.events``), and the objective decides: ``raise optuna.TrialPruned()``
    after looking at the result, say.

    Args:
        trial: an ``optuna.Trial``.
        monitor: a key of the history (default ``val_loss`` when there is validation data,
            else ``loss``). A value that is not finite is reported as it is (Optuna's pruners
            prune it).
        raise_pruned: raise ``optuna.TrialPruned`` (default), or stop and return.
    """

    trial: Any
    monitor: str | None = None
    raise_pruned: bool = True

    def __post_init__(self) -> None:
        _optuna()
        if not (
            callable(getattr(self.trial, "report", None))
            and callable(getattr(self.trial, "should_prune", None))
        ):
            raise ConfigError(f"OptunaPruning: trial must be an optuna.Trial, got {self.trial!r}")

    def on_epoch_end(self, state: Any, log: EpochEnd) -> tuple[Any, Decision | None]:
        key = self.monitor or ("val_loss" if "val_loss" in log.logs else "loss")
        if key not in log.logs:
            raise ConfigError(
                f"OptunaPruning: monitor {key!r} is not recorded; this fit records {', '.join(sorted(log.logs))}"
            )
        value = float(log.logs[key])
        self.trial.report(value, log.epoch)
        if not self.trial.should_prune():
            return state, None
        shown = f"{value:.6g}" if math.isfinite(value) else str(value)
        reason = f"pruned by optuna (trial {self.trial.number}) at epoch {log.epoch}: {key} {shown}"
        if self.raise_pruned:
            raise _optuna().TrialPruned(reason)
        return state, Decision(stop=True, reason=reason)
