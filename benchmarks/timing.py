"""Timing contenders fairly on a noisy machine: the measurements behind kernel dispatch.

Two cores shared with other work make single timings meaningless. Contenders run in
alternating rounds, so a busy moment hits all of them alike, and each reports the
median of its rounds. The benchmark scripts beside this module import it (``from timing
import ...``: a script's own folder is on ``sys.path``), and the crossovers written down in
docs/kernels.md come from them.

Libraries with their own thread pools must not share a process while timed: after each
product OpenBLAS's workers spin for about 0.1 s (measured: 0.135 s of CPU in the 0.2 s
after one call), which starves the next library's threads on two cores. PyTorch is
therefore timed in a child process. :class:`ChildTimers` keeps that child alive and
times it in the same alternating rounds as the parent's contenders, with a pause between
the two processes for the other side's threads to go to sleep: timing the child's
contenders all first and the parent's afterwards let a busy spell fall on one side only
(a ratio of 1.3x in one run, 3.0x in the next, on the same code).

>>> import numpy as np
>>> times = interleaved({"sum": lambda: np.ones(100).sum(), "max": lambda: np.ones(100).max()},
...                     rounds=3, number=10)
>>> sorted(times), all(t > 0 for t in times.values())
(['max', 'sum'], True)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

# Long enough for OpenBLAS's workers (about 0.1 s) and an OpenMP pool to stop spinning.
SETTLE_SECONDS = 0.15


@dataclass(frozen=True)
class Remote:
    """A contender that runs in another process: ``run(number)`` times ``number`` calls there
    and returns the seconds per call measured there."""

    run: Callable[[int], float]


def interleaved(
    contenders: dict[str, Callable[[], object] | Remote], rounds: int = 15, number: int = 1, warmup: int = 2
) -> dict[str, float]:
    """Median seconds per call of each contender, timed in alternating rounds of ``number`` calls.

    A :class:`Remote` contender is timed in its own process, with a pause before and after
    it so that neither process's idle threads compete with the other's work."""
    samples = interleaved_samples(contenders, rounds, number, warmup)
    return {name: statistics.median(times) for name, times in samples.items()}


def median_ratio(samples: dict[str, list[float]], ours: str, theirs: str) -> float:
    """The median over rounds of ``ours / theirs``: a busy spell that slows one round of
    both sides leaves their ratio alone, where it would shift one side's median."""
    return statistics.median(a / b for a, b in zip(samples[ours], samples[theirs]))


def interleaved_samples(
    contenders: dict[str, Callable[[], object] | Remote], rounds: int = 15, number: int = 1, warmup: int = 2
) -> dict[str, list[float]]:
    """Every round's seconds per call of each contender (see :func:`interleaved`)."""
    timers = {name: fn.run if isinstance(fn, Remote) else _local(fn) for name, fn in contenders.items()}
    remote = {name for name, fn in contenders.items() if isinstance(fn, Remote)}
    for name, timer in timers.items():
        for _ in range(warmup):
            _timed(timer, 1, name in remote)
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, timer in timers.items():
            samples[name].append(_timed(timer, number, name in remote))
    return samples


def _local(fn: Callable[[], object]) -> Callable[[int], float]:
    def run(number: int) -> float:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - start) / number

    return run


def _timed(timer: Callable[[int], float], number: int, remote: bool) -> float:
    if remote:
        time.sleep(SETTLE_SECONDS)
    seconds = timer(number)
    if remote:
        time.sleep(SETTLE_SECONDS)
    return seconds


def calls_for(fn: Callable[[], object], budget: float = 0.02) -> int:
    """How many calls of ``fn`` fill about ``budget`` seconds (at least one)."""
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    return max(1, int(budget / max(once, 1e-7)))


class ChildTimers:
    """A child process ``python script --timing-child`` whose contenders the parent times
    as :class:`Remote` ones; ``None`` from :meth:`start` when ``needs`` is not installed.

    The child calls :func:`serve_timings` with its contenders by name."""

    def __init__(self, process: subprocess.Popen):
        self._process = process

    @classmethod
    def start(cls, script: str, needs: str = "torch") -> ChildTimers | None:
        import importlib.util

        if importlib.util.find_spec(needs) is None:
            return None
        return cls(
            subprocess.Popen(
                [sys.executable, script, "--timing-child"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )

    def contender(self, name: str) -> Remote:
        def run(number: int) -> float:
            self._process.stdin.write(json.dumps([name, number]) + "\n")
            self._process.stdin.flush()
            reply = self._process.stdout.readline()
            if not reply:
                raise RuntimeError(f"the timing child stopped (exit status {self._process.wait()})")
            return float(reply)

        return Remote(run)

    def __enter__(self) -> ChildTimers:
        return self

    def __exit__(self, *exc) -> None:
        self._process.stdin.close()  # the child's loop ends at end of input
        self._process.wait(timeout=60)
        self._process.stdout.close()


def serve_timings(contenders: dict[str, Callable[[], object]]) -> None:
    """The child's side of :class:`ChildTimers`: answer each ``[name, number]`` line on stdin
    with the seconds per call of ``number`` calls of that contender."""
    for line in sys.stdin:
        name, number = json.loads(line)
        print(_local(contenders[name])(number), flush=True)
