"""Timing contenders fairly on a noisy machine: the measurements behind kernel dispatch.

Two cores shared with other work make single timings meaningless. Contenders run in
alternating rounds, so a busy moment hits all of them alike, and each reports the
median of its rounds. The benchmarks in ``benchmarks/`` use this, and the crossovers
written down in docs/kernels.md come from them.

Libraries with their own thread pools must not share a process while timed: after each
product OpenBLAS's workers spin for about 0.1 s (measured: 0.135 s of CPU in the 0.2 s
after one call), which starves the next library's threads on two cores. PyTorch is
therefore timed in a child process (:func:`timed_in_child`).

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
from typing import Callable


def interleaved(contenders: dict[str, Callable[[], object]], rounds: int = 15, number: int = 1,
                warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each contender, timed in alternating rounds of ``number`` calls."""
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            for _ in range(number):
                fn()
            samples[name].append((time.perf_counter() - start) / number)
    return {name: statistics.median(times) for name, times in samples.items()}


def calls_for(fn: Callable[[], object], budget: float = 0.02) -> int:
    """How many calls of ``fn`` fill about ``budget`` seconds (at least one)."""
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    return max(1, int(budget / max(once, 1e-7)))


def timed_in_child(script: str, args: list[str], timeout: float = 1800) -> dict:
    """Run ``python script *args`` and return the JSON object it prints on its last line."""
    done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def torch_times_in_child(script: str, rounds: int) -> dict | None:
    """``script --torch-child rounds``'s timings, or ``None`` when PyTorch is not installed.

    PyTorch runs in a child process so that its threads never share a process with numpy's."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    return timed_in_child(script, ["--torch-child", str(rounds)])
