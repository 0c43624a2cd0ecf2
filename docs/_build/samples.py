"""Find and run the code samples of a docs page, so that no sample goes unexecuted.

A page's samples are its fenced blocks, run in page order in one namespace, as a reader
would type them into one notebook:

- ```python: run with ``exec``; a block whose first line starts with ``>>>`` is a doctest,
  and its printed output (or the exception it shows) must match.
- ```pycon: always a doctest.
- ```bash: run with ``bash -eo pipefail`` in the same working folder.
- ```console: commands that CI itself runs (set up, test, build the docs); the docs test
  checks that each one appears in ``.ci/run`` or ``scripts/setup.sh`` instead of running it.
- Anything else (```text, ```dot, no language) is not code.

Run one page from the command line (in a scratch folder: samples write files):
``python docs/_build/samples.py docs/errors.md``. It prints each failure with the page
and line and exits with status 1 if any sample failed.
"""
from __future__ import annotations

import doctest
import re
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

RUN = {"python", "pycon", "bash"}
DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<lang>[\w+-]*)[^\n]*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, its text (indent removed) and the line it starts on."""

    page: Path
    line: int  # 1-based line of the block's first code line
    lang: str
    code: str

    @property
    def is_doctest(self) -> bool:
        return self.lang == "pycon" or (self.lang == "python" and self.code.lstrip().startswith(">>>"))

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page``, in order (indented blocks inside lists included)."""
    lines = Path(page).read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        body, j = [], i + 1
        while j < len(lines) and not re.match(rf"^[ \t]*{re.escape(fence)}[ \t]*$", lines[j]):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        found.append(Block(Path(page), i + 2, opening["lang"].lower(), "\n".join(body) + "\n"))
        i = j + 1
    return found


def runnable(page: Path) -> list[Block]:
    """The blocks of ``page`` that are run."""
    return [b for b in blocks(page) if b.lang in RUN]


def _run_doctest(block: Block, namespace: dict) -> str | None:
    test = doctest.DocTestParser().get_doctest(block.code, namespace, f"{block.page.name}:{block.line}",
                                               str(block.page),
                                               block.line - 1)
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=DOCTEST_FLAGS)
    runner.run(test, out=report.append, clear_globs=False)
    namespace.update(test.globs)  # a DocTest runs in a copy of the namespace it is given
    return "".join(report) if runner.failures else None


def _run_python(block: Block, namespace: dict) -> str | None:
    # Padding with blank lines makes tracebacks point at the page's own line numbers.
    code = compile("\n" * (block.line - 1) + block.code, str(block.page), "exec")
    try:
        exec(code, namespace)  # noqa: S102 - running the docs' own samples is the point
    except BaseException:  # any failure of a sample is reported with its traceback
        return traceback.format_exc()
    return None


def _run_bash(block: Block) -> str | None:
    done = subprocess.run(["bash", "-eo", "pipefail", "-c", block.code], capture_output=True,
                          text=True)
    sys.stdout.write(done.stdout)
    if done.returncode != 0:
        return f"exit status {done.returncode}\n{done.stderr}"
    return None


def run_page(page: Path) -> list[tuple[Block, str]]:
    """Run the samples of ``page`` in the current folder; returns ``(block, failure)`` pairs."""
    namespace: dict = {"__name__": "__main__"}
    failures = []
    for block in runnable(page):
        if block.lang == "bash":
            failure = _run_bash(block)
        elif block.is_doctest:
            failure = _run_doctest(block, namespace)
        else:
            failure = _run_python(block, namespace)
        if failure is not None:
            failures.append((block, failure))
    return failures


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python docs/_build/samples.py PAGE.md", file=sys.stderr)
        return 2
    page = Path(argv[0]).resolve()
    failures = run_page(page)
    for block, failure in failures:
        print(f"--- sample at {block.where} ({block.lang}) failed:\n{failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
