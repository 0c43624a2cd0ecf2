"""Hyperparameter sweeps: every configuration of a grid, trained with several seeds, in parallel.

``nnc.sweep(train, grid={"lr": [1e-3, 1e-2], "width": [32, 64]}, seeds=3)`` calls
``train(config, seed)`` once for each configuration of the grid and each seed, on a pool of
worker processes (or any ``concurrent.futures.Executor``: a thread pool, Dask's
``Client.get_executor()``), writes each run's result to a JSON file as soon as it finishes,
and returns a :class:`Results`.

The contract of ``train``: it takes the configuration (a dict, one value per grid axis) and
the seed (an int), draws every random number from that seed, and returns a dict of final
metrics, numbers such as ``{"val_loss": 0.12, "accuracy": 0.97}``; under the key
``"history"`` it may add the :class:`nnc.History` that ``fit`` returned (or a dict of lists
of numbers), which is saved with the run. A run whose ``train`` raises, returns something
else, or returns a metric that is NaN or infinite is recorded as failed, with its error, and
the other runs go on.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
import math
import numbers
import os
import pickle
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .checkpoint import write_atomically
from .optim import ConfigError
from .train import History

FORMAT = "nnc.sweep/1"
# The environment variables that cap the threads of the BLAS (and OpenMP, Numba) libraries
# a worker loads: one thread each, since the pool already runs one worker per core.
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "BLIS_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}
OK, FAILED, LOST = "ok", "failed", "lost"


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Run:
    """One run of a sweep: a configuration, a seed and what came of them.

    ``status`` is ``"ok"``; ``"failed"`` when ``train`` raised or returned a non-finite or
    non-numeric metric (``error`` says which; ``metrics`` holds what it returned, if it
    returned a dict); or ``"lost"`` when the executor lost the run (a worker process died):
    a lost run is tried again when the sweep is started again. ``history`` holds the
    per-epoch values of the ``History`` ``train`` returned (``{}`` without one);
    ``duration`` is the seconds ``train`` took.
    """

    config: dict
    seed: int
    metrics: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    error: str | None = None
    duration: float = 0.0
    status: str = OK

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def key(self) -> str:
        return run_key(self.config, self.seed)

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "key": self.key,
            "config": self.config,
            "seed": self.seed,
            "status": self.status,
            "metrics": {k: _encode(v) for k, v in self.metrics.items()},
            "history": {k: [_encode(v) for v in vs] for k, vs in self.history.items()},
            "error": self.error,
            "duration": self.duration,
        }

    @classmethod
    def from_json(cls, record: Mapping) -> Run:
        return cls(
            config=dict(record["config"]),
            seed=int(record["seed"]),
            metrics={k: _decode(v) for k, v in record["metrics"].items()},
            history={k: [_decode(v) for v in vs] for k, vs in record["history"].items()},
            error=record["error"],
            duration=float(record["duration"]),
            status=record["status"],
        )


def run_key(config: Mapping, seed: int) -> str:
    """A stable name for ``(config, seed)``: the same in every process and every session.

    >>> run_key({"lr": 0.01, "width": 32}, 0) == run_key({"width": 32, "lr": 0.01}, 0)
    True
    """
    text = json.dumps({"config": dict(config), "seed": seed}, sort_keys=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _encode(value: float) -> float | str:
    # JSON has no NaN or infinity: they are written as the strings "nan", "inf", "-inf"
    return value if math.isfinite(value) else repr(value)


def _decode(value: float | str) -> float:
    return float(value)


# ----------------------------------------------------------------------------- one run


def run_one(train: Callable[[dict, int], Any], config: dict, seed: int) -> Run:
    """``train(config, seed)``, timed, its result checked: what a worker runs. Never raises
    for what ``train`` does: its exception becomes the run's ``error``."""
    start = time.perf_counter()
    try:
        result = train(dict(config), seed)
    except Exception:
        return Run(
            config, seed, error=traceback.format_exc(), duration=time.perf_counter() - start, status=FAILED
        )
    duration = time.perf_counter() - start
    metrics, history, error = _check_result(result)
    return Run(config, seed, metrics, history, error, duration, OK if error is None else FAILED)


def _number(value: Any) -> float | None:
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, numbers.Real):
        return float(value)
    return None


def _check_result(result: Any) -> tuple[dict, dict, str | None]:
    if not isinstance(result, Mapping):
        return (
            {},
            {},
            (
                f"train returned {type(result).__name__} {result!r:.200}; it must return a dict of "
                "metrics, e.g. {'val_loss': 0.12} (and, optionally, 'history': the History fit returned)"
            ),
        )
    metrics, history, errors = {}, {}, []
    for name, value in result.items():
        if not isinstance(name, str):
            errors.append(f"metric names must be strings, got {name!r}")
        elif name == "history":
            values: Any = value.values if isinstance(value, History) else value  # or a dict of lists
            try:
                history = {str(k): [float(x) for x in vs] for k, vs in dict(values).items()}
            except (TypeError, ValueError):
                errors.append(
                    f"'history' must be a History (or a dict of lists of numbers), got {type(value).__name__}"
                )
        elif (number := _number(value)) is None:
            errors.append(f"metric {name!r} is {type(value).__name__} {value!r:.100}, not a number")
        else:
            metrics[name] = number
            if not math.isfinite(number):
                errors.append(f"metric {name!r} is {number}")
    if not metrics and not errors:
        errors.append("train returned no metric; return a dict such as {'val_loss': 0.12}")
    return metrics, history, "; ".join(errors) or None


# ----------------------------------------------------------------------------- workers


def _one_thread_per_worker() -> None:
    """A worker's initializer: one BLAS (OpenMP, Numba) thread. The environment variables are
    already set when the worker starts (see :func:`sweep`); threadpoolctl, where installed,
    also caps a library that was loaded before they could take effect."""
    os.environ.update(ONE_THREAD)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=1)


class _Environment:
    """``os.environ`` with ``values`` set, restored on exit: worker processes started meanwhile
    inherit them before they import anything (numpy reads them when it loads its BLAS)."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        self.saved = {k: os.environ.get(k) for k in self.values}
        os.environ.update(self.values)

    def __exit__(self, *exc: object) -> None:
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _check_importable(train: Callable) -> None:
    """Worker processes receive ``train`` by name: refuse, here, one they cannot import."""
    module = getattr(train, "__module__", None)
    main = sys.modules.get("__main__")
    if module == "__main__" and not getattr(main, "__file__", None):
        raise ConfigError(
            f"sweep: train {getattr(train, '__qualname__', train)!r} is defined in an interactive session "
            "(a notebook, the REPL), which worker processes cannot import; put it in a module "
            "(a .py file) and import it from there, or pass executor=ThreadPoolExecutor()"
        )
    try:
        pickle.dumps(train)
    except Exception as err:
        raise ConfigError(
            f"sweep: train {getattr(train, '__qualname__', train)!r} cannot be sent to worker processes "
            f"({err}); it must be a function defined at the top level of a module (not a lambda, "
            "not a function defined inside another), or pass executor=ThreadPoolExecutor()"
        ) from None


def _check_guarded(depth: int) -> None:
    """Refuse a default-pool sweep started at the top level of a script, outside ``if __name__ ==
    "__main__":``: each spawned worker imports the script again, which would start the sweep
    again inside the worker, and every run would fail with multiprocessing's bootstrapping
    error. ``depth`` is how many frames up the user's call is."""
    frame = sys._getframe(depth + 1)
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if (
        frame.f_code.co_name != "<module>"
        or frame.f_globals is not getattr(main, "__dict__", None)
        or not path
    ):
        return
    try:
        tree = ast.parse(open(path, encoding="utf-8").read())
    except (OSError, SyntaxError, ValueError):
        return
    line = frame.f_lineno
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_main_test(node.test):
            if node.lineno <= line <= (node.end_lineno or node.lineno):
                return
    raise ConfigError(
        f"sweep: started at the top level of the script {os.path.basename(path)} (line {line}); its worker "
        "processes import the script again, and would start the sweep again each\n"
        '  hint: put the sweep under if __name__ == "__main__":, or pass executor=ThreadPoolExecutor()'
    )


def _is_main_test(test: ast.expr) -> bool:
    """Whether ``test`` is ``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    mains = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(mains) == 1


# ----------------------------------------------------------------------------- the grid


def _scalar(axis: str, value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"sweep: grid[{axis!r}] holds {value}; grid values must be finite")
        return value
    raise ConfigError(
        f"sweep: grid[{axis!r}] holds {type(value).__name__} {value!r:.80}; grid values must be "
        "str, int, float, bool or None (they name the run and are saved as JSON); name a "
        "function or an object by a string and look it up in train"
    )


def configs(grid: Mapping[str, Sequence]) -> list[dict]:
    """Every configuration of ``grid``, the last axis varying fastest.

    >>> configs({"lr": [0.1, 0.01], "width": [8]})
    [{'lr': 0.1, 'width': 8}, {'lr': 0.01, 'width': 8}]
    """
    if not isinstance(grid, Mapping) or not grid:
        raise ConfigError(
            f"sweep: grid must be a non-empty dict of lists, e.g. {{'lr': [1e-3, 1e-2]}}, got {grid!r:.80}"
        )
    axes = {}
    for axis, values in grid.items():
        if not isinstance(axis, str):
            raise ConfigError(f"sweep: grid keys must be strings, got {axis!r}")
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise ConfigError(f"sweep: grid[{axis!r}] must be a list of values, got {values!r:.80}")
        values = [_scalar(axis, v) for v in values]
        if not values:
            raise ConfigError(f"sweep: grid[{axis!r}] is empty; give it at least one value")
        keys = [json.dumps(v) for v in values]
        if len(set(keys)) < len(keys):
            raise ConfigError(f"sweep: grid[{axis!r}] repeats a value: {values}")
        axes[axis] = values
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def _seeds(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ConfigError(f"sweep: seeds must be a positive number of seeds, got {seeds}")
        return list(range(int(seeds)))
    if isinstance(seeds, str | bytes) or not isinstance(seeds, Iterable):
        raise ConfigError(f"sweep: seeds must be an int (how many) or a list of ints, got {seeds!r:.80}")
    found = list(seeds)
    if not found or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in found):
        raise ConfigError(f"sweep: seeds must be a non-empty list of ints, got {found!r:.80}")
    if len(set(found)) < len(found):
        raise ConfigError(f"sweep: seeds repeat: {found}")
    return [int(s) for s in found]


# ----------------------------------------------------------------------------- the sweep


def _progress_bar(total: int, initial: int) -> Any:
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, unit="run", desc="sweep", dynamic_ncols=True)
    except ImportError:  # a notebook without ipywidgets: the text bar
        from tqdm.std import tqdm as text_tqdm

        return text_tqdm(total=total, initial=initial, unit="run", desc="sweep", dynamic_ncols=True)


def _path(folder: str, config: dict, seed: int) -> str:
    return os.path.join(folder, f"run-{run_key(config, seed)}.json")


def _read(path: str) -> Run | None:
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        return Run.from_json(record) if record.get("format") == FORMAT else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # unreadable: run it again, and overwrite it


def _write(folder: str, run: Run) -> None:
    text = json.dumps(run.to_json(), indent=1, allow_nan=False).encode()
    write_atomically(_path(folder, run.config, run.seed), lambda f: f.write(text))


def sweep(
    train: Callable[[dict, int], Mapping[str, Any]],
    grid: Mapping[str, Sequence],
    *,
    seeds: int | Sequence[int] = 1,
    executor: Executor | None = None,
    folder: str | os.PathLike | None = "sweep_results",
    workers: int | None = None,
    retry_failed: bool = False,
    progress: bool = True,
) -> Results:
    """Run ``train(config, seed)`` for every configuration of ``grid`` and every seed.

    Args:
        train: ``train(config, seed) -> dict`` of final metrics (numbers), optionally with the
            ``History`` of ``fit`` under ``"history"``; it must take every random number from
            ``seed`` (``model.init(seed=seed)``, ``fit(..., seed=seed)``), so that a run can be
            repeated. For worker processes it must be importable: a function at the top level
            of a module, not a lambda.
        grid: ``{axis: [values]}``; values are str, int, float, bool or None. Every combination
            is a configuration, ``{axis: value}``.
        seeds: how many seeds (``3``: seeds 0, 1, 2), or the list of seeds.
        executor: any ``concurrent.futures.Executor`` (``ThreadPoolExecutor``, Dask's
            ``Client(...).get_executor()``); it is used, not shut down. By default a pool of
            ``workers`` processes (default ``os.cpu_count()``), started by ``spawn``, each with
            one BLAS thread, shut down at the end.
        folder: where each run is written, as ``run-<key>.json``, atomically, as soon as it
            finishes; a run found there is not run again (the key is a hash of the
            configuration and the seed). ``None`` writes nothing.
        workers: the size of the default process pool (ignored with an ``executor``).
        retry_failed: run again the failed runs found in ``folder`` (a lost run, whose
            worker died, is always run again).
        progress: show a tqdm progress bar of the runs (those found done count as done).

    Returns:
        :class:`Results`, the runs in grid order, seeds innermost.

    Raises:
        ConfigError: a bad grid or seeds, or a ``train`` worker processes cannot import.
    """
    all_configs = configs(grid)
    all_seeds = _seeds(seeds)
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise ConfigError(f"sweep: workers must be a positive int, got {workers!r}")
    if executor is not None and not isinstance(executor, Executor):
        hint = "; for Dask, pass client.get_executor()" if hasattr(executor, "get_executor") else ""
        raise ConfigError(
            f"sweep: executor must be a concurrent.futures.Executor, got {type(executor).__name__}{hint}"
        )
    if not callable(train):
        raise ConfigError(f"sweep: train must be a function train(config, seed) -> dict, got {train!r:.80}")
    folder = None if folder is None else os.fspath(folder)
    if folder is not None:
        os.makedirs(folder, exist_ok=True)

    wanted = [(c, s) for c in all_configs for s in all_seeds]
    done: dict[str, Run] = {}
    todo: list[tuple[dict, int]] = []
    for config, seed in wanted:
        found = _read(_path(folder, config, seed)) if folder is not None else None
        if found is not None and (found.ok or (found.status == FAILED and not retry_failed)):
            done[run_key(config, seed)] = found
        else:
            todo.append((config, seed))

    if todo:
        own = executor is None
        if own:
            _check_importable(train)
            _check_guarded(1)
            import multiprocessing

            executor = ProcessPoolExecutor(
                max_workers=min(workers or os.cpu_count() or 1, len(todo)),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_one_thread_per_worker,
            )
        assert executor is not None
        futures: dict[Future, tuple[dict, int]] = {}
        finished = False
        bar = _progress_bar(len(wanted), len(wanted) - len(todo)) if progress else None
        try:
            with _Environment(ONE_THREAD if own else {}):
                for config, seed in todo:
                    futures[executor.submit(run_one, train, config, seed)] = (config, seed)
            for future in as_completed(futures):
                config, seed = futures[future]
                try:
                    run = future.result()
                except Exception as err:  # the executor lost it: a dead worker, an unpicklable result
                    detail = "".join(traceback.format_exception_only(type(err), err)).strip()
                    run = Run(config, seed, error=f"the executor lost this run: {detail}", status=LOST)
                if folder is not None:
                    _write(folder, run)
                done[run.key] = run
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(failed=sum(not r.ok for r in done.values()), refresh=False)
            finished = True
        finally:
            if bar is not None:
                bar.close()
            if not finished:  # interrupted: what finished is on disk; the rest is not started
                for future in futures:
                    future.cancel()
            if own:
                executor.shutdown(wait=finished, cancel_futures=True)

    return Results(
        runs=tuple(done[run_key(c, s)] for c, s in wanted),
        grid={axis: list(dict.fromkeys(c[axis] for c in all_configs)) for axis in all_configs[0]},
        folder=folder,
    )


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Best:
    """The best configuration of a sweep by one metric: its mean and spread over the seeds."""

    config: dict
    metric: str
    mean: float
    std: float
    runs: tuple = field(repr=False)  # the successful runs of that configuration


def _config_key(config: Mapping) -> str:
    return json.dumps(dict(config), sort_keys=True)


@dataclass(frozen=True)
class Results:
    """What a sweep found: ``runs`` (one :class:`Run` per configuration and seed), the ``grid``.

    ``best(metric)`` is the configuration with the lowest (``mode="max"``: highest) mean over
    its successful seeds; ``table()`` a text table with one row per configuration;
    ``plot()`` each metric against each grid axis; ``failed`` the runs that failed.
    ``Results.load(folder)`` reads every run a folder holds.
    """

    runs: tuple
    grid: dict
    folder: str | None = None

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Results:
        """Every run written in ``folder`` (by one sweep or several), ordered by configuration and seed."""
        folder = os.fspath(folder)
        runs = [
            run
            for name in sorted(os.listdir(folder))
            if name.startswith("run-")
            and name.endswith(".json")
            and (run := _read(os.path.join(folder, name))) is not None
        ]
        runs.sort(key=lambda r: (_config_key(r.config), r.seed))
        grid: dict[str, list] = {}
        for run in runs:
            for axis, value in run.config.items():
                if value not in grid.setdefault(axis, []):
                    grid[axis].append(value)
        return cls(runs=tuple(runs), grid=grid, folder=folder)

    @property
    def failed(self) -> list[Run]:
        """The runs that failed or were lost, with their ``error``."""
        return [r for r in self.runs if not r.ok]

    @property
    def ok(self) -> list[Run]:
        return [r for r in self.runs if r.ok]

    @property
    def metrics(self) -> list[str]:
        """The names of the metrics the successful runs returned, in order of first appearance."""
        return list(dict.fromkeys(k for r in self.ok for k in r.metrics))

    def by_config(self) -> list[tuple[dict, list[Run]]]:
        """Each configuration (in order) with its runs, all seeds, failed ones included."""
        groups: dict[str, tuple[dict, list[Run]]] = {}
        for run in self.runs:
            groups.setdefault(_config_key(run.config), (run.config, []))[1].append(run)
        return list(groups.values())

    def _metric(self, metric: str) -> None:
        if metric not in self.metrics:
            raise ConfigError(
                f"Results: no successful run recorded {metric!r}; the metrics are "
                f"{', '.join(map(repr, self.metrics)) or 'none (every run failed)'}"
            )

    def best(self, metric: str, mode: str = "min") -> Best:
        """The configuration whose mean ``metric`` over its successful seeds is the lowest
        (``mode="max"``: the highest); ties go to the first in grid order."""
        if mode not in ("min", "max"):
            raise ConfigError(f"Results.best: mode must be 'min' or 'max', got {mode!r}")
        self._metric(metric)
        candidates = []
        for config, runs in self.by_config():
            good = tuple(r for r in runs if r.ok and metric in r.metrics)
            if good:
                values = np.array([r.metrics[metric] for r in good])
                candidates.append(Best(config, metric, float(values.mean()), float(values.std()), good))
        sign = 1 if mode == "min" else -1
        return min(candidates, key=lambda b: sign * b.mean)

    def table(self) -> str:
        """One row per configuration: its grid values, then ``mean ± std`` over the successful
        seeds of each metric, then how many runs succeeded."""
        axes, metrics = list(self.grid), self.metrics
        header = [*axes, *metrics, "runs ok"]
        rows = []
        for config, runs in self.by_config():
            good = [r for r in runs if r.ok]
            cells = [_show(config.get(a)) for a in axes]
            for m in metrics:
                values = np.array([r.metrics[m] for r in good if m in r.metrics])
                cells.append(f"{values.mean():.4g} ± {values.std():.2g}" if values.size else "-")
            cells.append(f"{len(good)}/{len(runs)}")
            rows.append(cells)
        widths = [max(len(str(h)), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths)).rstrip()]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"Results({len(self.runs)} runs of {len(self.by_config())} configurations, "
            f"{len(self.failed)} failed)"
        )

    def plot(self, path: str | os.PathLike | None = None, metrics: Sequence[str] | None = None) -> Any:
        """Each metric (a row of panels) against each grid axis (a column): every successful
        run as a point, the mean over seeds as a line, one line per setting of the other axes.

        Returns a matplotlib ``Figure``; with ``path`` it is also written there (atomically;
        the format follows the extension). Needs matplotlib: ``pip install 'nnc[plot]'``."""
        try:
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError(
                "Results.plot needs matplotlib: pip install 'nnc[plot]' (or pip install matplotlib)"
            ) from None
        metrics = list(self.metrics if metrics is None else metrics)
        for m in metrics:
            self._metric(m)
        axes = list(self.grid)
        fig = Figure(figsize=(4.2 * len(axes), 3.3 * max(len(metrics), 1)), layout="constrained")
        for i, metric in enumerate(metrics):
            for j, axis in enumerate(axes):
                ax = fig.add_subplot(len(metrics), len(axes), i * len(axes) + j + 1)
                self._panel(ax, metric, axis)
        if path is not None:
            ext = os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
            write_atomically(path, lambda f: fig.savefig(f, format=ext, dpi=110))
        return fig

    def _panel(self, ax: Any, metric: str, axis: str) -> None:
        values = self.grid[axis]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        position = {_config_key({axis: v}): (v if numeric else k) for k, v in enumerate(values)}
        others = [a for a in self.grid if a != axis]
        lines: dict[str, list[Run]] = {}
        for run in self.ok:
            if metric in run.metrics:
                label = ", ".join(f"{a}={_show(run.config.get(a))}" for a in others)
                lines.setdefault(label, []).append(run)
        for k, (label, runs) in enumerate(lines.items()):
            color = f"C{k % 10}"
            xs = [position[_config_key({axis: r.config[axis]})] for r in runs]
            ax.scatter(xs, [r.metrics[metric] for r in runs], s=14, alpha=0.5, color=color)
            means: dict[Any, list[float]] = {}
            for x, r in zip(xs, runs):
                means.setdefault(x, []).append(r.metrics[metric])
            order = sorted(means)
            ax.plot(order, [float(np.mean(means[x])) for x in order], color=color, label=label or None)
        if numeric and all(v > 0 for v in values) and max(values) / min(values) >= 10:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(values)), [_show(v) for v in values])
        ax.set_xlabel(axis)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if others and 0 < len(lines) <= 10:
            ax.legend(fontsize="small")


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
