"""One benchmark, two versions of nnc, interleaved: is a change within noise?

Run: python benchmarks/versions.py OLD_COMMIT benchmarks/mlp_step.py [--rounds 5] [-- ARGS...]

Runs the benchmark script (this checkout's copy, so both versions do the same work) in
alternating processes, old then new, ``--rounds`` times, with ``nnc`` imported from a
worktree of ``OLD_COMMIT`` or from this checkout. A busy spell on the shared machine then
falls on both versions alike. Every benchmark prints a table whose layout does not depend
on the timings; this prints that table again with each number replaced by the median over
rounds of new / old (``1.00`` is no change; for times, above 1 is slower). Columns that
time numpy or PyTorch do not depend on nnc's version: their ratios show the noise.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def installed_layout(tree: Path, into: Path) -> Path:
    """``into/nnc`` laid out as installed (dsl/ holding backend/ and kernels/), of links to ``tree``."""
    package = into / "nnc"
    package.mkdir(parents=True)
    for module in (tree / "dsl").iterdir():
        (package / module.name).symlink_to(module)
    (package / "backend").symlink_to(tree / "backend")
    (package / "kernels").symlink_to(tree / "kernels")
    return into


def run(script: Path, args: list[str], path: Path) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(path))
    done = subprocess.run(
        [sys.executable, str(script), *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.splitlines()


def ratios(old: list[list[str]], new: list[list[str]]) -> list[str]:
    """Each line of the table with its numbers replaced by the median new/old ratio."""
    lines = []
    for i, line in enumerate(new[0]):
        olds = [NUMBER.findall(run[i]) for run in old]
        news = [NUMBER.findall(run[i]) for run in new]
        if not news[0] or any(len(n) != len(news[0]) for n in olds + news):
            lines.append(line)
            continue
        pieces, cells = NUMBER.split(line), []
        for j in range(len(news[0])):
            pairs = [(float(o[j]), float(n[j])) for o, n in zip(olds, news)]
            same = all(o == n for o, n in pairs)  # a label such as the batch size
            cells.append(news[0][j] if same else f"{statistics.median(n / o for o, n in pairs if o):.2f}")
        lines.append("".join(p + c for p, c in zip(pieces, cells + [""])))
    return lines


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("script", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    ours, theirs = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    options = parser.parse_args(ours)
    options.args = theirs
    with tempfile.TemporaryDirectory() as scratch:
        old_tree = Path(scratch) / "old"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(old_tree), options.old],
            check=True,
        )
        try:
            old_path = installed_layout(old_tree, Path(scratch) / "old_path")
            new_path = installed_layout(ROOT, Path(scratch) / "new_path")
            old, new = [], []
            for _ in range(options.rounds):
                old.append(run(options.script, options.args, old_path))
                new.append(run(options.script, options.args, new_path))
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_tree)], check=True
            )
    print(f"{options.script.name}: new / old ({options.old}), median of {options.rounds} interleaved rounds")
    print("\n".join(ratios(old, new)))


if __name__ == "__main__":
    main(sys.argv[1:])
