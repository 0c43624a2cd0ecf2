"""nnc.sklearn: NNCClassifier and NNCRegressor as scikit-learn estimators."""

import functools
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, load_iris
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

import nnc
from nnc.sklearn import NNCClassifier, NNCRegressor, mlp

# The checks scikit-learn itself skips here: the array API check, which runs only with
# SCIPY_ARRAY_API=1 (and passes then: see below; the estimators convert their inputs to numpy
# arrays, nnc computes with numpy), and the pandas checks, which run only where pandas is
# installed.
ENVIRONMENT_SKIPS = {
    "check_array_api_input": "SCIPY_ARRAY_API",
    "check_classifier_data_not_an_array": "pandas",
    "check_regressor_data_not_an_array": "pandas",
}


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)


@pytest.mark.parametrize(
    "estimator",
    [NNCClassifier(epochs=5), NNCRegressor(epochs=5), NNCClassifier(functools.partial(mlp, hidden=(8, 8)))],
    ids=["classifier", "regressor", "builder"],
)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_check_estimator_passes_every_check(estimator):
    results = check_estimator(estimator, on_fail=None)
    assert len(results) > 50
    for r in results:
        if r["status"] == "skipped":
            assert ENVIRONMENT_SKIPS.get(r["check_name"], "-") in str(r["exception"]), r
        else:
            assert r["status"] == "passed", (r["check_name"], r["exception"])


def test_the_array_api_check_passes_where_scikit_learn_runs_it():
    # check_array_api_input runs only when SCIPY_ARRAY_API=1 is set before scipy is imported
    code = """if True:
        import warnings
        warnings.simplefilter("ignore")
        from sklearn.utils.estimator_checks import check_estimator
        from nnc.sklearn import NNCClassifier, NNCRegressor
        for estimator in (NNCClassifier(epochs=3), NNCRegressor(epochs=3)):
            for r in check_estimator(estimator, on_fail=None):
                if r["check_name"] == "check_array_api_input":
                    print(type(estimator).__name__, r["status"], r["exception"])
    """
    env = {**os.environ, "SCIPY_ARRAY_API": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.split("\n") == ["NNCClassifier passed None", "NNCRegressor passed None", ""], (
        done.stderr
    )


def test_a_pipeline_learns_digits(digits):
    x_train, x_test, y_train, y_test = digits
    pipe = Pipeline([("scale", StandardScaler()), ("net", NNCClassifier(epochs=10))]).fit(x_train, y_train)
    net = pipe.named_steps["net"]
    assert net.classes_.tolist() == list(range(10)) and net.n_features_in_ == 64
    assert pipe.score(x_test, y_test) > 0.93
    proba = pipe.predict_proba(x_test)
    assert proba.shape == (len(x_test), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert (net.classes_[proba.argmax(axis=1)] == pipe.predict(x_test)).all()
    assert len(net.history_["loss"]) == 10 and net.history_["loss"][-1] < net.history_["loss"][0]


def test_cross_val_score_on_iris():
    x, y = load_iris(return_X_y=True)
    scores = cross_val_score(make_pipeline(StandardScaler(), NNCClassifier(epochs=30)), x, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85


def test_grid_search_over_the_learning_rate_and_the_epochs(digits):
    x_train, x_test, y_train, y_test = digits
    grid = {"net__learning_rate": [1e-4, 1e-2], "net__epochs": [1, 4]}
    pipe = Pipeline([("scale", StandardScaler()), ("net", NNCClassifier())])
    search = GridSearchCV(pipe, grid, cv=3).fit(x_train, y_train)
    assert search.best_params_ == {"net__learning_rate": 1e-2, "net__epochs": 4}
    scores = dict(zip(map(str, search.cv_results_["params"]), search.cv_results_["mean_test_score"]))
    assert scores[str({"net__epochs": 1, "net__learning_rate": 1e-4})] < 0.5
    assert search.score(x_test, y_test) > 0.9


def test_a_builder_sets_the_widths_and_is_searchable(digits):
    x_train, x_test, y_train, y_test = digits
    widths = []

    def net(n_features, n_outputs, width=16):
        widths.append((n_features, width, n_outputs))
        return nnc.Linear(n_features, width) >> nnc.tanh >> nnc.Linear(width, n_outputs)

    search = GridSearchCV(
        make_pipeline(StandardScaler(), NNCClassifier(epochs=4)),
        {"nncclassifier__model": [functools.partial(net, width=2), functools.partial(net, width=32)]},
        cv=2,
    ).fit(x_train, y_train)
    assert search.best_params_["nncclassifier__model"].keywords == {"width": 32}
    assert {(64, 2, 10), (64, 32, 10)} <= set(widths)
    assert search.score(x_test, y_test) > 0.9


def test_the_same_seed_gives_the_same_predictions_and_another_seed_others(digits):
    x_train, x_test, y_train, _ = digits

    def make(seed):
        return make_pipeline(StandardScaler(), NNCClassifier(epochs=2, seed=seed))

    a, b, c = (make(s).fit(x_train, y_train) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.predict_proba(x_test), b.predict_proba(x_test))
    assert not np.array_equal(a.predict_proba(x_test), c.predict_proba(x_test))
    again = clone(a).fit(x_train, y_train)
    np.testing.assert_array_equal(a.predict_proba(x_test), again.predict_proba(x_test))


def test_a_fixed_model_an_optimiser_value_and_pickling(digits):
    x_train, x_test, y_train, y_test = digits
    model = nnc.Linear(64, 10)
    clf = NNCClassifier(model, opt=nnc.sgd(0.2), learning_rate=None, epochs=5).fit(x_train / 16, y_train)
    assert clf.model_ is model and clf.score(x_test / 16, y_test) > 0.8
    fitted = NNCClassifier(epochs=2).fit(x_train, y_train)
    back = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(back.predict_proba(x_test), fitted.predict_proba(x_test))


def test_the_regressor_fits_one_target_and_several():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.1
    reg = make_pipeline(StandardScaler(), NNCRegressor(epochs=40)).fit(x, y)
    assert reg.predict(x).shape == (300,) and reg.score(x, y) > 0.95
    both = NNCRegressor(epochs=40).fit(x, np.stack([y, -y], axis=1))
    assert both.predict(x).shape == (300, 2) and both.score(x, np.stack([y, -y], axis=1)) > 0.95


def test_errors_are_nnc_errors_that_say_what_to_give():
    x, y = np.zeros((10, 2)), np.array([0, 1] * 5)
    with pytest.raises(nnc.ConfigError, match="at least 2 classes.*1 class"):
        NNCClassifier().fit(x, np.zeros(10))
    with pytest.raises(nnc.ConfigError, match="hidden must be a tuple of widths"):
        NNCClassifier(hidden=(0,)).fit(x, y)
    with pytest.raises(nnc.ConfigError, match=r"model must be None, an nnc model or a function"):
        NNCClassifier(model="mlp").fit(x, y)
    with pytest.raises(nnc.ConfigError, match=r"model\(2, 2\) returned 3, not an nnc model"):
        NNCClassifier(model=lambda n, k: 3).fit(x, y)
    with pytest.raises(nnc.ConfigError, match="opt is an optimiser already; give learning_rate=None"):
        NNCClassifier(opt=nnc.adam(0.1)).fit(x, y)
    with pytest.raises(nnc.ConfigError, match="opt must be an optimiser factory"):
        NNCRegressor(opt="adam").fit(x, y)
    with pytest.raises(nnc.ConfigError, match="epochs must be an int >= 1"):
        NNCRegressor(epochs=0).fit(x, y)


def test_import_nnc_does_not_import_sklearn_and_nnc_sklearn_is_an_attribute():
    code = (
        "import sys, nnc; assert 'sklearn' not in sys.modules and 'nnc.sklearn' not in sys.modules; "
        "assert nnc.sklearn.NNCClassifier.__name__ == 'NNCClassifier'; assert 'sklearn' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def batch_norm_net(n_features, n_outputs):
    return (
        nnc.Linear(n_features, 16)
        >> nnc.BatchNorm(16)
        >> nnc.relu
        >> nnc.Dropout(0.1)
        >> nnc.Linear(16, n_outputs)
    )


def test_a_model_with_running_statistics_and_dropout_and_the_default_widths():
    x, y = load_iris(return_X_y=True)
    clf = NNCClassifier(batch_norm_net, epochs=20).fit(x, y)
    assert sorted(clf.stats_) == ["batchnorm_0"] and clf.score(x, y) > 0.9
    np.testing.assert_array_equal(clf.predict_proba(x), clf.predict_proba(x))  # inference: no dropout
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(x), clf.predict_proba(x))
    assert str(NNCClassifier(hidden=()).fit(x, y).model_.signature) == "Vec[4] -> Vec[3]"
    assert NNCClassifier(hidden=8, epochs=1).fit(x, y).params_["linear_0"]["W"].shape == (4, 8)
