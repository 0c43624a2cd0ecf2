"""nnc.OptunaPruning: reports to a real Optuna study after each epoch and prunes bad trials."""

import sys

import numpy as np
import optuna
import pytest

import nnc
from nnc.sklearn import NNCRegressor

optuna.logging.set_verbosity(optuna.logging.WARNING)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 2))
Y = X @ np.array([[2.0], [-1.0]])
EPOCHS = 6


def train(trial, **pruning):
    lr = trial.suggest_categorical("lr", [0.1, 1e-6])
    model = nnc.Linear(2, 1)
    _, history = nnc.fit(
        model,
        model.init(seed=0),
        (X, Y),
        loss=nnc.mse,
        opt=nnc.sgd(lr),
        epochs=EPOCHS,
        batch_size=16,
        validation=(X, Y),
        callbacks=[nnc.OptunaPruning(trial, **pruning)],
        progress=False,
    )
    return history


def study_of(objective, lrs):
    study = optuna.create_study(
        storage=optuna.storages.InMemoryStorage(),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2),
    )
    for lr in lrs:
        study.enqueue_trial({"lr": lr})
    study.optimize(objective, n_trials=len(lrs))
    return study


def test_a_study_gets_every_epoch_and_prunes_the_bad_configuration():
    study = study_of(lambda trial: train(trial)["val_loss"][-1], [0.1, 0.1, 0.1, 1e-6])
    good, bad = study.trials[:3], study.trials[3]
    assert [t.state for t in good] == [optuna.trial.TrialState.COMPLETE] * 3
    assert all(sorted(t.intermediate_values) == list(range(1, EPOCHS + 1)) for t in good)
    assert good[0].value == good[0].intermediate_values[EPOCHS] < 0.01
    assert bad.state == optuna.trial.TrialState.PRUNED
    assert sorted(bad.intermediate_values) == [1, 2]  # epochs below 2 are warm-up steps: pruned at epoch 2
    assert bad.intermediate_values[2] > 1.0


def test_without_raising_fit_stops_and_returns_for_the_objective_to_decide():
    histories = []

    def objective(trial):
        history = train(trial, monitor="loss", raise_pruned=False)
        histories.append(history)
        if history.stopped_at is not None:
            raise optuna.TrialPruned()
        return history["loss"][-1]

    study = study_of(objective, [0.1, 0.1, 1e-6])
    assert study.trials[-1].state == optuna.trial.TrialState.PRUNED
    stopped = histories[-1]
    assert stopped.stopped_at == 2 and len(stopped) == 2
    assert stopped.events[-1] == (2, f"pruned by optuna (trial 2) at epoch 2: loss {stopped['loss'][-1]:.6g}")
    assert [h.stopped_at for h in histories[:2]] == [None, None]
    assert study.trials[-1].intermediate_values[2] == stopped["loss"][-1]


def test_it_prunes_an_nnc_sklearn_estimator_too():
    def objective(trial):
        lr = trial.suggest_categorical("lr", [0.1, 1e-6])
        reg = NNCRegressor(
            nnc.Linear(2, 1), learning_rate=lr, epochs=EPOCHS, callbacks=(nnc.OptunaPruning(trial),)
        )
        return -reg.fit(X, Y[:, 0]).score(X, Y[:, 0])

    study = study_of(objective, [0.1, 0.1, 1e-6])
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert len(study.trials[0].intermediate_values) == EPOCHS  # no validation data: monitors loss


def test_errors_name_what_is_missing(monkeypatch):
    trial = optuna.create_study().ask()
    model = nnc.Linear(2, 1)
    with pytest.raises(nnc.ConfigError, match="monitor 'val_acc' is not recorded; this fit records loss"):
        nnc.fit(model, model.init(seed=0), (X, Y), loss=nnc.mse, opt=nnc.sgd(0.1),
                callbacks=[nnc.OptunaPruning(trial, monitor="val_acc")], progress=False)  # fmt: skip
    with pytest.raises(nnc.ConfigError, match="trial must be an optuna.Trial, got 'trial'"):
        nnc.OptunaPruning("trial")
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if optuna were not installed
    with pytest.raises(nnc.ConfigError, match=r"OptunaPruning needs optuna: pip install optuna"):
        nnc.OptunaPruning(trial)
