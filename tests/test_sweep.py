"""nnc.sweep: every configuration and seed run, each written as it finishes, failures kept,
interrupted sweeps resumed, the same results from the same seeds on every executor."""

import json
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import sweep_functions as fns

import nnc
from nnc import ConfigError, Results
from nnc.sweep import Run, configs, run_key

GRID = {"lr": [1e-3, 3e-3, 1e-2], "width": [32, 64, 128]}


def threads(n=2):
    return ThreadPoolExecutor(n)


def run_files(folder):
    return sorted(name for name in os.listdir(folder) if name.startswith("run-") and name.endswith(".json"))


def test_every_configuration_and_seed_runs_and_is_written(tmp_path):
    results = nnc.sweep(fns.quadratic, GRID, seeds=3, executor=threads(), folder=tmp_path)
    assert isinstance(results, Results) and len(results.runs) == 27 and results.failed == []
    # grid order, seeds innermost
    assert [(r.config, r.seed) for r in results.runs] == [(c, s) for c in configs(GRID) for s in range(3)]
    for run in results.runs:
        assert run.ok and run.error is None and run.duration >= 0
        assert run.metrics["val_loss"] == pytest.approx(fns.expected_quadratic(run.config, run.seed), abs=0)
    assert len(run_files(tmp_path)) == 27
    record = json.loads((tmp_path / f"run-{run_key({'lr': 1e-3, 'width': 64}, 2)}.json").read_text())
    assert record["config"] == {"lr": 1e-3, "width": 64} and record["seed"] == 2
    assert record["status"] == "ok" and record["error"] is None and record["history"] == {}
    assert record["metrics"]["val_loss"] == fns.expected_quadratic({"lr": 1e-3, "width": 64}, 2)
    assert sorted(map(repr, Results.load(tmp_path).runs)) == sorted(map(repr, results.runs))


def test_best_is_the_lowest_mean_over_seeds_and_max_the_highest():
    results = nnc.sweep(fns.quadratic, GRID, seeds=3, executor=threads(), folder=None)
    best = results.best("val_loss")
    assert best.config == {"lr": 1e-2, "width": 32} and best.metric == "val_loss"
    values = [fns.expected_quadratic(best.config, s) for s in range(3)]
    assert best.mean == pytest.approx(np.mean(values)) and best.std == pytest.approx(np.std(values))
    assert [r.seed for r in best.runs] == [0, 1, 2]
    assert results.best("accuracy", mode="max").config == {"lr": 1e-2, "width": 32}
    assert results.best("val_loss", mode="max").config == {"lr": 1e-3, "width": 128}
    with pytest.raises(ConfigError, match="mode must be 'min' or 'max'"):
        results.best("val_loss", mode="lowest")
    with pytest.raises(
        ConfigError, match="no successful run recorded 'val_acc'; the metrics are 'val_loss', 'accuracy'"
    ):
        results.best("val_acc")


def test_table_has_one_row_per_configuration_with_mean_and_std():
    results = nnc.sweep(fns.quadratic, GRID, seeds=3, executor=threads(), folder=None)
    lines = results.table().splitlines()
    assert lines[0].split() == ["lr", "width", "val_loss", "accuracy", "runs", "ok"]
    assert len(lines) == 2 + 9
    values = [fns.expected_quadratic({"lr": 3e-3, "width": 64}, s) for s in range(3)]
    row = lines[2 + 4].split()
    assert row[:2] == ["0.003", "64"] and row[-1] == "3/3"
    assert row[2:5] == [f"{np.mean(values):.4g}", "±", f"{np.std(values):.2g}"]
    assert repr(results) == "Results(27 runs of 9 configurations, 0 failed)"


def test_two_sweeps_with_the_default_pool_give_identical_metrics_and_match_threads(tmp_path):
    grid = {"lr": [1e-2, 3e-2], "width": [4, 8]}
    first = nnc.sweep(fns.tiny_fit, grid, seeds=2, workers=2, folder=tmp_path / "a")
    second = nnc.sweep(fns.tiny_fit, grid, seeds=2, workers=2, folder=tmp_path / "b")
    in_threads = nnc.sweep(fns.tiny_fit, grid, seeds=2, executor=threads(), folder=None)
    assert first.failed == [] and len(first.runs) == 8
    assert (
        [r.metrics for r in first.runs]
        == [r.metrics for r in second.runs]
        == [r.metrics for r in in_threads.runs]
    )
    assert [r.history for r in first.runs] == [r.history for r in second.runs]
    run = first.runs[0]
    assert list(run.history) == ["loss", "val_loss"] and len(run.history["val_loss"]) == 3
    assert run.history["val_loss"][-1] == run.metrics["val_loss"]
    # the seed matters: the two seeds of a configuration differ
    assert first.runs[0].metrics != first.runs[1].metrics
    # the files say the same as the results
    assert sorted(map(repr, Results.load(tmp_path / "a").runs)) == sorted(map(repr, first.runs))


def test_default_pool_workers_have_one_blas_thread_and_the_parent_environment_is_restored(tmp_path):
    before = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    results = nnc.sweep(fns.blas_threads, {"n": [1, 2]}, seeds=2, workers=2, folder=tmp_path)
    assert results.failed == []
    for run in results.runs:
        assert run.metrics["blas_threads"] == 1 and run.metrics["most_threads"] == 1
        assert run.metrics["omp_env"] == run.metrics["openblas_env"] == run.metrics["mkl_env"] == 1
        assert run.metrics["pid"] != os.getpid()  # in a worker process
    assert {k: os.environ.get(k) for k in before} == before


def test_a_run_that_raises_or_returns_nan_is_recorded_and_the_others_go_on(tmp_path):
    results = nnc.sweep(fns.sometimes_fails, GRID, seeds=2, executor=threads(), folder=tmp_path)
    assert len(results.runs) == 18 and len(run_files(tmp_path)) == 18
    failed = {(r.config["lr"], r.config["width"], r.seed): r for r in results.failed}
    # width 64 raises (3 lrs x 2 seeds); lr 0.01 returns NaN (widths 32 and 128 x 2 seeds)
    assert len(failed) == 6 + 4
    raised = failed[(1e-3, 64, 1)]
    assert raised.status == "failed" and "ValueError: width 64 is not allowed" in raised.error
    assert "Traceback" in raised.error and raised.metrics == {}
    nan = failed[(1e-2, 32, 0)]
    assert (
        nan.error == "metric 'val_loss' is nan"
        and np.isnan(nan.metrics["val_loss"])
        and nan.metrics["loss"] == 1.0
    )
    record = json.loads((tmp_path / f"run-{run_key({'lr': 1e-2, 'width': 32}, 0)}.json").read_text())
    assert record["status"] == "failed" and record["metrics"]["val_loss"] == "nan"
    assert record["error"] == "metric 'val_loss' is nan"
    assert [r.config for r in results.ok if r.seed == 0] == [
        {"lr": 1e-3, "width": 32},
        {"lr": 1e-3, "width": 128},
        {"lr": 3e-3, "width": 32},
        {"lr": 3e-3, "width": 128},
    ]
    assert results.best("val_loss").config == {"lr": 3e-3, "width": 32}
    rows = {tuple(line.split()[:2]): line.split()[-1] for line in results.table().splitlines()[2:]}
    assert rows[("0.001", "64")] == "0/2" and rows[("0.01", "32")] == "0/2" and rows[("0.003", "32")] == "2/2"
    assert results.table().splitlines()[2 + 1].split()[2] == "-"  # no successful seed: no mean
    # read back from the files: the same, NaN included
    loaded = {(r.config["lr"], r.config["width"], r.seed): r for r in Results.load(tmp_path).failed}
    assert loaded.keys() == failed.keys() and np.isnan(loaded[(1e-2, 32, 0)].metrics["val_loss"])


def test_what_train_must_return_is_checked():
    grid = {"kind": ["list", "text", "inf", "empty", "history", "bad history", "fine"]}
    results = nnc.sweep(fns.bad_results, grid, executor=threads(), folder=None)
    errors = {r.config["kind"]: r.error for r in results.runs}
    assert errors["list"].startswith("train returned list [0.5]; it must return a dict of metrics")
    assert errors["text"] == "metric 'val_loss' is str 'low', not a number"
    assert errors["inf"] == "metric 'val_loss' is inf"
    assert errors["empty"].startswith("train returned no metric")
    assert errors["bad history"] == "'history' must be a History (or a dict of lists of numbers), got list"
    assert errors["fine"] is None and errors["history"] is None
    assert results.runs[4].history == {"loss": [2.0, 1.5]} and results.runs[4].metrics == {"val_loss": 0.5}
    fine = results.runs[-1]
    assert fine.metrics == {"val_loss": 0.25, "steps": 7.0} and type(fine.metrics["steps"]) is float


def test_an_interrupted_sweep_started_again_runs_only_what_is_not_done(tmp_path, monkeypatch):
    folder = tmp_path / "runs"
    monkeypatch.setenv("NNC_SWEEP_LOG", str(tmp_path / "first.log"))
    with pytest.raises(KeyboardInterrupt):
        nnc.sweep(fns.interrupted_at_width_128, GRID, seeds=2, executor=threads(1), folder=folder)
    written = {Run.from_json(json.loads((folder / n).read_text())).key for n in run_files(folder)}
    assert written and all(Run.from_json(json.loads((folder / n).read_text())).ok for n in run_files(folder))
    monkeypatch.setenv("NNC_SWEEP_LOG", str(tmp_path / "second.log"))
    results = nnc.sweep(fns.logged, GRID, seeds=2, executor=threads(), folder=folder)
    calls = (tmp_path / "second.log").read_text().splitlines()
    rerun = {run_key({"lr": float(lr), "width": int(w)}, int(s)) for lr, w, s in map(str.split, calls)}
    every = {run_key(c, s) for c in configs(GRID) for s in range(2)}
    assert len(calls) == len(rerun) == len(every - written) and rerun == every - written
    assert results.failed == [] and len(results.runs) == 18 and len(run_files(folder)) == 18
    # a third time: nothing left to do
    monkeypatch.setenv("NNC_SWEEP_LOG", str(tmp_path / "third.log"))
    again = nnc.sweep(fns.logged, GRID, seeds=2, executor=threads(), folder=folder)
    assert not (tmp_path / "third.log").exists() and again.runs == results.runs


def test_failed_runs_are_kept_unless_retried_and_lost_runs_are_always_retried(tmp_path, monkeypatch):
    grid = {"lr": [1e-3], "width": [32, 64]}
    first = nnc.sweep(fns.dies_at_width_64, grid, seeds=1, workers=1, folder=tmp_path)
    lost = [r for r in first.failed if r.config["width"] == 64]
    assert len(lost) == 1 and lost[0].status == "lost" and "the executor lost this run" in lost[0].error
    assert "BrokenProcessPool" in lost[0].error
    assert (tmp_path / f"run-{run_key({'lr': 1e-3, 'width': 64}, 0)}.json").exists()
    monkeypatch.setenv("NNC_SWEEP_LOG", str(tmp_path / "calls.log"))
    # the lost run is run again; the width-32 run, if done, is not
    second = nnc.sweep(fns.logged, grid, seeds=1, executor=threads(), folder=tmp_path)
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert "0.001 64 0" in calls and second.failed == []
    if first.runs[0].ok:  # done before the worker died: kept, not run again
        assert second.runs[0] == first.runs[0] and "0.001 32 0" not in calls
    # a failed run is kept...
    failing = nnc.sweep(
        fns.sometimes_fails, {"lr": [1e-2], "width": [32]}, executor=threads(), folder=tmp_path
    )
    assert failing.failed[0].status == "failed"
    kept = nnc.sweep(fns.logged, {"lr": [1e-2], "width": [32]}, executor=threads(), folder=tmp_path)
    assert [(r.status, r.error) for r in kept.runs] == [("failed", "metric 'val_loss' is nan")]
    assert "0.01 32 0" not in (tmp_path / "calls.log").read_text()
    # ...unless retry_failed
    retried = nnc.sweep(
        fns.logged, {"lr": [1e-2], "width": [32]}, executor=threads(), folder=tmp_path, retry_failed=True
    )
    assert retried.failed == [] and "0.01 32 0" in (tmp_path / "calls.log").read_text()
    assert retried.runs[0].metrics["val_loss"] == fns.expected_quadratic({"lr": 1e-2, "width": 32}, 0)


def test_a_dask_cluster_of_worker_processes_gives_the_same_results(tmp_path):
    from distributed import Client, LocalCluster

    grid = {"lr": [1e-2, 3e-2], "width": [4, 8]}
    here = nnc.sweep(fns.tiny_fit, grid, seeds=2, executor=threads(), folder=None)
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            on_dask = nnc.sweep(fns.tiny_fit, grid, seeds=2, executor=client.get_executor(), folder=tmp_path)
            pids = set(client.run(os.getpid).values())
    assert on_dask.failed == [] and len(run_files(tmp_path)) == 8
    assert [r.metrics for r in on_dask.runs] == [r.metrics for r in here.runs]
    assert [r.history for r in on_dask.runs] == [r.history for r in here.runs]
    assert len(pids) == 2 and os.getpid() not in pids


def test_the_plot_shows_each_metric_against_each_axis(tmp_path):
    results = nnc.sweep(fns.quadratic, GRID, seeds=3, executor=threads(), folder=None)
    path = tmp_path / "sweep.png"
    fig = results.plot(path)
    axes = fig.get_axes()
    assert len(axes) == 2 * 2  # (val_loss, accuracy) x (lr, width)
    assert [(a.get_xlabel(), a.get_ylabel()) for a in axes] == [
        ("lr", "val_loss"),
        ("width", "val_loss"),
        ("lr", "accuracy"),
        ("width", "accuracy"),
    ]
    lr_panel = axes[0]
    assert lr_panel.get_xscale() == "log"
    # one line per width: the mean over seeds at each lr; every run a point
    lines = lr_panel.get_lines()
    assert [line.get_label() for line in lines] == ["width=32", "width=64", "width=128"]
    assert list(lines[0].get_xdata()) == [1e-3, 3e-3, 1e-2]
    means = [
        np.mean([fns.expected_quadratic({"lr": lr, "width": 32}, s) for s in range(3)]) for lr in GRID["lr"]
    ]
    assert np.allclose(lines[0].get_ydata(), means)
    assert sum(len(c.get_offsets()) for c in lr_panel.collections) == 27
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and os.listdir(tmp_path) == ["sweep.png"]
    one = results.plot(metrics=["val_loss"])
    assert len(one.get_axes()) == 2
    with pytest.raises(ConfigError, match="no successful run recorded 'loss'"):
        results.plot(metrics=["loss"])


@pytest.mark.parametrize(
    "grid, message",
    [
        ({}, "grid must be a non-empty dict of lists"),
        ([("lr", [1])], "grid must be a non-empty dict of lists"),
        ({"lr": []}, r"grid\['lr'\] is empty"),
        ({"lr": "0.1"}, r"grid\['lr'\] must be a list of values"),
        ({"lr": 0.1}, r"grid\['lr'\] must be a list of values"),
        ({"act": [print]}, r"grid\['act'\] holds builtin_function_or_method .*name a function"),
        ({"lr": [float("nan")]}, r"grid\['lr'\] holds nan; grid values must be finite"),
        ({"lr": [0.1, 0.1]}, r"grid\['lr'\] repeats a value"),
        ({1: [0.1]}, "grid keys must be strings"),
    ],
)
def test_a_bad_grid_is_a_config_error(grid, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        nnc.sweep(fns.quadratic, grid, executor=threads(), folder=tmp_path)
    assert os.listdir(tmp_path) == []


def test_bad_seeds_workers_train_and_executor_are_config_errors(tmp_path):
    grid = {"lr": [0.1]}
    for seeds, message in [
        (0, "positive number of seeds"),
        ([], "non-empty list of ints"),
        ([1, 1], "seeds repeat"),
        ("3", "an int"),
    ]:
        with pytest.raises(ConfigError, match=message):
            nnc.sweep(fns.quadratic, grid, seeds=seeds, executor=threads(), folder=tmp_path)
    with pytest.raises(ConfigError, match="workers must be a positive int, got 0"):
        nnc.sweep(fns.quadratic, grid, workers=0, folder=tmp_path)
    with pytest.raises(ConfigError, match="executor must be a concurrent.futures.Executor, got int"):
        nnc.sweep(fns.quadratic, grid, executor=4, folder=tmp_path)

    class Client:  # what a Dask client looks like: submit, but futures of its own
        def submit(self, fn, *args):
            raise AssertionError("not called")

        def get_executor(self):
            return threads()

    with pytest.raises(ConfigError, match="got Client; for Dask, pass client.get_executor()"):
        nnc.sweep(fns.quadratic, grid, executor=Client(), folder=tmp_path)
    with pytest.raises(ConfigError, match="train must be a function"):
        nnc.sweep("train", grid, executor=threads(), folder=tmp_path)
    with pytest.raises(ConfigError, match="cannot be sent to worker processes .*not a lambda"):
        nnc.sweep(lambda config, seed: {"val_loss": 1.0}, grid, folder=tmp_path)
    # a thread pool takes a lambda; seeds may be listed
    results = nnc.sweep(
        lambda config, seed: {"val_loss": config["lr"] * seed},
        grid,
        seeds=[3, 5],
        executor=threads(),
        folder=None,
    )
    assert [r.metrics["val_loss"] for r in results.runs] == [0.1 * 3, 0.1 * 5]
    assert str(ConfigError("x")).endswith("see docs/errors.md#configerror")


def test_the_run_key_is_stable_and_names_config_and_seed():
    assert run_key({"lr": 0.01, "width": 32}, 0) == run_key({"width": 32, "lr": 0.01}, 0)
    assert run_key({"lr": 0.01}, 0) != run_key({"lr": 0.01}, 1) != run_key({"lr": 0.02}, 1)
    assert run_key({"w": 1}, 0) != run_key({"w": 1.0}, 0)
    # pinned: a key that changed would rerun every sweep already on disk
    assert run_key({"lr": 0.001, "width": 32}, 0) == run_key({"lr": 1e-3, "width": np.int64(32).item()}, 0)
    assert len(run_key({"lr": 0.01}, 0)) == 20
    assert run_key({"lr": 0.001, "width": 32}, 0) == "8fbf6bd40a5d1f96eba9"


def test_the_progress_bar_counts_runs_and_failures(capsys, tmp_path):
    nnc.sweep(fns.sometimes_fails, GRID, executor=threads(1), folder=tmp_path / "a")
    shown = capsys.readouterr().err
    assert "sweep: 100%" in shown and "9/9" in shown and "failed=5" in shown
    nnc.sweep(fns.sometimes_fails, GRID, executor=threads(1), folder=tmp_path / "b", progress=False)
    assert capsys.readouterr().err == ""


SCRIPT = """import sys
sys.path.insert(0, {tests!r})
import nnc
import sweep_functions as fns

{call}
"""


def test_a_script_that_starts_the_default_pool_at_its_top_level_is_told_to_guard_it(tmp_path):
    import subprocess
    import sys

    tests = os.path.dirname(os.path.abspath(__file__))
    call = 'results = nnc.sweep(fns.quadratic, {"lr": [1e-3], "width": [32]}, seeds=2, folder=None, progress=False)'
    bare, guarded = tmp_path / "bare.py", tmp_path / "guarded.py"
    bare.write_text(SCRIPT.format(tests=tests, call=call))
    guarded.write_text(
        SCRIPT.format(tests=tests, call=f'if __name__ == "__main__":\n    {call}\n    print(results)')
    )
    done = subprocess.run(
        [sys.executable, str(bare)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-3:] == [
        "nnc.ConfigError: sweep: started at the top level of the script bare.py (line 6); its worker processes "
        "import the script again, and would start the sweep again each",
        '  hint: put the sweep under if __name__ == "__main__":, or pass executor=ThreadPoolExecutor()',
        "  see docs/errors.md#configerror",
    ]
    done = subprocess.run(
        [sys.executable, str(guarded)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Results(2 runs of 1 configurations, 0 failed)"
