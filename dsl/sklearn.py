"""scikit-learn estimators around nnc models: ``NNCClassifier`` and ``NNCRegressor``.

They follow scikit-learn's conventions (``__init__`` stores its arguments unchanged, what
``fit`` learns ends in ``_``), so they work in pipelines, ``cross_val_score`` and
``GridSearchCV``, and they pass ``sklearn.utils.estimator_checks.check_estimator``.
This module imports scikit-learn; ``import nnc`` does not import it.

The ``model`` argument is a *builder*, ``model(n_features, n_outputs) -> nnc.Model``, called
by ``fit`` once the data's widths are known (``n_outputs`` is the number of classes for the
classifier, the number of targets for the regressor). A builder, rather than a model, because
scikit-learn refits clones on data of different widths (``check_estimator`` does, and a
feature selection step in a pipeline can), and because a builder's own arguments can be
searched: ``functools.partial(my_net, hidden=64)``. An ``nnc.Model`` is taken too, as is, for
a fixed width. ``model=None`` builds ``hidden`` (a tuple of widths) as an MLP with ``relu``.

The classifier's model outputs logits (one per class; no ``softmax`` at the end): the
default loss is ``cross_entropy(..., from_logits=True)``, and ``predict_proba`` is their
softmax. The regressor's default loss is ``mse``.

``opt`` is an optimiser factory ``opt(learning_rate) -> nnc.Optimizer`` (``nnc.adam``,
``nnc.sgd``, ``functools.partial(nnc.adamw, weight_decay=1e-4)``), so that the learning rate
is a parameter of its own; an ``nnc.Optimizer`` value is taken too, with
``learning_rate=None``. A fitted estimator pickles (its parameters are numpy arrays; the
model is rebuilt on unpickling) when ``model`` and ``opt`` are module-level functions or
``functools.partial`` of them.

>>> import numpy as np
>>> from nnc.sklearn import NNCClassifier
>>> x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] * 8)
>>> y = np.array(["no", "yes", "yes", "no"] * 8)
>>> clf = NNCClassifier(hidden=(8,), learning_rate=0.05, epochs=150, batch_size=8).fit(x, y)
>>> clf.classes_.tolist(), clf.n_features_in_
(['no', 'yes'], 2)
>>> clf.predict(x[:4]).tolist()
['no', 'yes', 'yes', 'no']
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from .layers import Linear, relu
from .losses import cross_entropy, mse
from .model import Model
from .optim import ConfigError, Optimizer, adam
from .train import fit as nnc_fit
from .train import predict as nnc_predict

__all__ = ["NNCClassifier", "NNCRegressor"]


def logit_cross_entropy(prediction: Any, target: Any) -> Any:
    """``cross_entropy(prediction, target, from_logits=True)``: the classifier's default loss."""
    return cross_entropy(prediction, target, from_logits=True)


def mlp(n_features: int, n_outputs: int, hidden: tuple = (32,)) -> Model:
    """The default model: ``Linear >> relu`` for each width in ``hidden``, then ``Linear`` to ``n_outputs``."""
    model: Model | None = None
    width = n_features
    for h in hidden:
        layer = Linear(width, int(h)) >> relu
        model = layer if model is None else model >> layer
        width = int(h)
    last = Linear(width, n_outputs)
    return last if model is None else model >> last


class _NNCEstimator(BaseEstimator):
    def __init__(
        self,
        model: Any = None,
        *,
        hidden: tuple = (32,),
        loss: Any = None,
        opt: Any = adam,
        learning_rate: Any = 0.01,
        epochs: int = 20,
        batch_size: int = 32,
        seed: int = 0,
        callbacks: tuple = (),
        verbose: bool = False,
    ) -> None:
        self.model = model
        self.hidden = hidden
        self.loss = loss
        self.opt = opt
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        self.callbacks = callbacks
        self.verbose = verbose

    # ------------------------------------------------------------------ building

    def _build(self, n_features: int, n_outputs: int) -> Model:
        name = type(self).__name__
        if self.model is None:
            hidden = self.hidden
            if isinstance(hidden, (int, np.integer)) and not isinstance(hidden, bool):
                hidden = (hidden,)
            if not isinstance(hidden, (tuple, list)) or not all(
                isinstance(h, (int, np.integer)) and not isinstance(h, bool) and h >= 1 for h in hidden
            ):
                raise ConfigError(f"{name}: hidden must be a tuple of widths >= 1, got {self.hidden!r}")
            return mlp(n_features, n_outputs, tuple(hidden))
        if isinstance(self.model, Model):
            return self.model
        if callable(self.model):
            built = self.model(n_features, n_outputs)
            if not isinstance(built, Model):
                raise ConfigError(
                    f"{name}: model({n_features}, {n_outputs}) returned {built!r}, not an nnc model; "
                    "model must be an nnc model or a function (n_features, n_outputs) -> nnc model"
                )
            return built
        raise ConfigError(
            f"{name}: model must be None, an nnc model or a function (n_features, n_outputs) -> "
            f"nnc model, got {self.model!r}"
        )

    def _optimizer(self) -> Optimizer:
        name = type(self).__name__
        if isinstance(self.opt, Optimizer):
            if self.learning_rate is not None:
                raise ConfigError(
                    f"{name}: opt is an optimiser already; give learning_rate=None, or give opt as a "
                    "factory (nnc.adam, nnc.sgd) for learning_rate to apply"
                )
            return self.opt
        if not callable(self.opt):
            raise ConfigError(
                f"{name}: opt must be an optimiser factory opt(learning_rate) (nnc.adam, nnc.sgd) "
                f"or an nnc optimiser, got {self.opt!r}"
            )
        made = self.opt() if self.learning_rate is None else self.opt(self.learning_rate)
        if not isinstance(made, Optimizer):
            raise ConfigError(f"{name}: opt({self.learning_rate!r}) returned {made!r}, not an nnc optimiser")
        return made

    def _train(self, x: np.ndarray, y: np.ndarray, n_outputs: int, loss: Any) -> None:
        model = self._build(x.shape[1], n_outputs)
        params = model.init(seed=self.seed)
        result = nnc_fit(
            model,
            params,
            (x, y),
            loss=loss,
            opt=self._optimizer(),
            epochs=self.epochs,
            batch_size=self.batch_size,
            seed=self.seed,
            callbacks=tuple(self.callbacks or ()),
            progress=bool(self.verbose),
        )
        if model.keeps_stats:
            self.params_, self.stats_, self.history_ = result
        else:
            (self.params_, self.history_), self.stats_ = result, None
        self.model_ = model

    def _outputs(self, x: Any) -> np.ndarray:
        check_is_fitted(self, "params_")
        x = validate_data(self, x, reset=False, dtype=np.float32)
        return np.asarray(nnc_predict(self.model_, self.params_, x, self.stats_), np.float64)

    # ------------------------------------------------------------------ pickling

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state.pop("model_", None)  # nnc models hold closures; rebuilt from the builder on unpickling
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if "params_" in state:
            self.model_ = self._build(self.n_features_in_, self._n_outputs)


class NNCClassifier(ClassifierMixin, _NNCEstimator):
    """A scikit-learn classifier that trains an nnc model with ``nnc.fit``.

    Args:
        model: ``None`` (an MLP of widths ``hidden``), a function ``(n_features, n_classes) ->
            nnc.Model`` whose model outputs one logit per class, or an ``nnc.Model`` doing so.
        hidden: the default model's hidden widths (ignored when ``model`` is given).
        loss: ``loss(logits, labels)``; default ``cross_entropy(..., from_logits=True)``.
        opt: an optimiser factory ``opt(learning_rate)`` (default ``nnc.adam``), or an
            ``nnc.Optimizer`` with ``learning_rate=None``.
        learning_rate: passed to ``opt``.
        epochs, batch_size, seed, callbacks: as in ``nnc.fit`` (``seed`` also seeds the
            parameters' initialisation: the same seed gives the same predictions).
        verbose: show ``fit``'s progress bar.

    Fitted attributes: ``classes_``, ``n_features_in_`` (and ``feature_names_in_`` for a
    DataFrame), ``model_``, ``params_``, ``stats_`` (running statistics, or None),
    ``history_`` (``nnc.History``).
    """

    def fit(self, X: Any, y: Any) -> NNCClassifier:  # noqa: N803 (scikit-learn's name)
        x, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        y = column_or_1d(y, warn=True)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ConfigError(
                f"NNCClassifier needs at least 2 classes to learn from; the data has 1 class, "
                f"{self.classes_[0]!r}"
            )
        self._n_outputs = len(self.classes_)
        labels = encoder.transform(y).astype(np.int64)
        self._train(x, labels, self._n_outputs, self.loss or logit_cross_entropy)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        """The softmax of the model's logits: one row per example, one column per class of ``classes_``."""
        logits = self._outputs(X)
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        """The most probable class of each example."""
        check_is_fitted(self, "params_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags


class NNCRegressor(RegressorMixin, _NNCEstimator):
    """A scikit-learn regressor that trains an nnc model with ``nnc.fit``.

    Takes the arguments of :class:`NNCClassifier`; ``model(n_features, n_targets)`` outputs
    one value per target, and the default loss is ``nnc.mse``. ``y`` is one target per
    example (``(n,)``, ``predict`` returns ``(n,)``) or several (``(n, k)``).
    """

    def fit(self, X: Any, y: Any) -> NNCRegressor:  # noqa: N803
        x, y = validate_data(self, X, y, dtype=np.float32, y_numeric=True, multi_output=True)
        y = np.asarray(y, np.float32)
        self._single = y.ndim == 1
        targets = y.reshape(-1, 1) if self._single else y
        self._n_outputs = targets.shape[1]
        self._train(x, targets, self._n_outputs, self.loss or mse)
        return self

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        """The model's outputs: shape ``(n,)`` for a single target, ``(n, k)`` for ``k``."""
        out = self._outputs(X)
        return out[:, 0] if self._single else out

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
