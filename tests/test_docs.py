"""The docs run: every code sample of every page, and the links from error messages.

Each page's samples run in a fresh interpreter, in a scratch folder holding a copy of
``examples/`` (see ``docs/_build/samples.py`` for what counts as a sample).
"""

import importlib.util
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import nnc
from nnc.backend.errors import NNCError, docs_section

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BUILD = DOCS / "_build"
PAGES = sorted(p for p in DOCS.rglob("*.md") if BUILD not in p.parents)
# Pages whose examples show the interface rather than run it: the generated API reference.
WITHOUT_SAMPLES = {"reference/" + p.name for p in (DOCS / "reference").glob("*.md")}


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"nnc_docs_{name}", BUILD / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


samples = load("samples")


def run_samples(page: Path, folder: Path) -> subprocess.CompletedProcess:
    shutil.copytree(
        ROOT / "examples", folder / "examples", ignore=shutil.ignore_patterns("*.svg", "*.png", "*.gv")
    )
    return subprocess.run(
        [sys.executable, str(BUILD / "samples.py"), str(page)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_every_sample_of_the_page_runs(page, tmp_path):
    done = run_samples(page, tmp_path)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_every_page_but_the_reference_has_samples_that_run(page):
    runnable = samples.runnable(page)
    if page.relative_to(DOCS).as_posix() in WITHOUT_SAMPLES:
        assert runnable == []
    else:
        assert runnable, f"{page} has no sample that runs"


def test_a_wrong_sample_fails_naming_its_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        textwrap.dedent("""\
        # A page
        ```pycon
        >>> 1 + 1
        3
        ```
        ```python
        x = 1
        raise ValueError("sample broke")
        ```
        ```bash
        exit 7
        ```
        ```text
        not code, never run
        ```
        """)
    )
    done = subprocess.run(
        [sys.executable, str(BUILD / "samples.py"), str(page)], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert (
        f"sample at {page}:3 (pycon) failed" in done.stderr and "Expected:\n    3\nGot:\n    2" in done.stderr
    )
    assert f"sample at {page}:7 (python) failed" in done.stderr
    assert f'File "{page}", line 8' in done.stderr and "ValueError: sample broke" in done.stderr
    assert f"sample at {page}:11 (bash) failed:\nexit status 7" in done.stderr
    assert done.stderr.count("failed") == 3


def test_samples_of_a_page_share_one_namespace_in_order(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nx = 20\n```\n\n- a list item:\n\n    ```pycon\n    >>> x + 1\n    21\n"
        "    ```\n```python\nassert x == 20\n```\n"
    )
    assert [(b.line, b.lang, b.is_doctest) for b in samples.blocks(page)] == [
        (2, "python", False),
        (8, "pycon", True),
        (12, "python", False),
    ]
    assert samples.run_page(page) == []


def console_commands(page: Path) -> list[str]:
    return [
        line[2:].strip()
        for block in samples.blocks(page)
        if block.lang == "console"
        for line in block.code.splitlines()
        if line.startswith("$ ")
    ]


def test_commands_shown_but_not_run_by_the_docs_test_are_run_by_ci():
    ci = (ROOT / ".ci" / "run").read_text() + (ROOT / "scripts" / "setup.sh").read_text()
    commands = [c for page in PAGES + [ROOT / "CONTRIBUTING.md"] for c in console_commands(page)]
    assert "mkdocs build --strict" in commands and "python -m pytest" in commands
    for command in commands:
        assert command in ci, f"{command!r} is shown in the docs but CI does not run it"


def test_contributing_is_three_commands():
    assert console_commands(ROOT / "CONTRIBUTING.md") == [
        "bash scripts/setup.sh",
        "python -m pytest",
        "mkdocs build --strict",
    ]


# ----------------------------------------------------------------------------- site


def nav_entries() -> set[str]:
    return set(re.findall(r":?\s([\w/.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M))


def test_every_page_and_every_tutorial_is_in_the_navigation():
    pages = {p.relative_to(DOCS).as_posix() for p in PAGES}
    tutorials = {f"tutorial/{p.stem}.md" for p in (ROOT / "examples").glob("tutorial_*.py")}
    assert len(tutorials) >= 7
    missing = sorted((pages | tutorials) - nav_entries())
    assert not missing, f"add these pages to the nav in mkdocs.yml: {missing}"
    assert not nav_entries() - pages - tutorials


def test_doctests_in_docstrings_become_code_blocks_in_the_reference():
    fence = load("griffe_nnc").fence_doctests
    assert fence("Adds.\n>>> 1 + 1\n2\nDone.\n\nMore.\n    >>> x\n    3") == (
        "Adds.\n\n```pycon\n>>> 1 + 1\n2\nDone.\n```\n\nMore.\n\n    ```pycon\n    >>> x\n    3\n    ```"
    )


# ----------------------------------------------------------------------------- errors page


def all_error_classes() -> list[type]:
    import nnc.checkpoint  # noqa: F401,E401 - define errors

    found, todo = [], [NNCError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += [c for c in cls.__subclasses__() if c.__module__.split(".")[0] == "nnc"]
    return found


def test_every_error_has_a_section_with_an_example_that_raises_it():
    page = (DOCS / "errors.md").read_text()
    headings = {h.lower() for h in re.findall(r"^## (\w+)$", page, re.M)}
    classes = all_error_classes()
    assert len(classes) >= 12
    for cls in classes:
        assert docs_section(cls) in headings, f"docs/errors.md has no section for {cls.__name__}"
        if cls is not NNCError:
            shown = f"{'nnc' if cls.__module__ == 'nnc' else cls.__module__}.{cls.__name__}: "
            assert re.search(rf"^{re.escape(shown)}", page, re.M), f"no example raises {cls.__name__}"


def test_an_error_message_ends_with_the_link_to_its_section():
    with pytest.raises(nnc.TypeMismatch) as info:
        nnc.Linear(2, 3) >> nnc.Linear(4, 1)
    assert str(info.value).splitlines()[-1] == "  see docs/errors.md#typemismatch"


def test_an_error_of_your_own_links_to_the_nnc_error_it_derives_from():
    class TooWide(nnc.ShapeError):
        pass

    TooWide.__module__ = "mylib"
    assert str(TooWide("too wide")) == "too wide\n  see docs/errors.md#shapeerror"


def test_a_message_that_wraps_another_error_keeps_one_link():
    inner = str(nnc.TypeMismatch("cannot compose"))
    outer = str(nnc.LoadError(f"model.py raised TypeMismatch while loading:\n{inner}"))
    assert outer.count("see docs/errors.md") == 1 and outer.endswith("#typemismatch")


def ci_commands() -> list[str]:
    """The commands .ci/run runs (not its comments nor its shell set-up lines)."""
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    return [
        line.strip()
        for line in lines
        if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))
    ]


def test_the_readme_says_exactly_what_ci_runs():
    assert ci_commands() == [
        "bash scripts/setup.sh",
        "bash scripts/check.sh",
        "python -m pytest",
        "NUMBA_DISABLE_JIT=1 python -m pytest -q -p no:cacheprovider",
        "mkdocs build --strict",
    ]
    readme = (ROOT / "README.md").read_text()
    paragraph = next(p for p in readme.split("\n\n") if "`.ci/run`" in p)
    said = re.findall(r"`([^`]+)`", paragraph.replace("\n", " "))
    assert [c for c in said if c in ci_commands()] == ci_commands()
    contributing = (ROOT / "CONTRIBUTING.md").read_text().replace("\n", " ")
    assert all(command in contributing for command in ci_commands())


def test_the_site_publishes_only_the_files_a_page_links_to():
    hook = load("hook")
    training = (DOCS / "training.md").read_text()
    assert 'save("digits.npz", model, params)' in training  # a sample writes a checkpoint
    written = ["curves.png", "digits.npz", "pics/mlp.svg", "notes.txt"]
    assert hook.linked(training, written) == ["curves.png"]
    assert hook.linked("![a](./pics/mlp.svg) and [its source](notes.txt#top)", written) == [
        "pics/mlp.svg",
        "notes.txt",
    ]


def test_every_picture_a_page_shows_is_published_and_no_checkpoint_is():
    hook = load("hook")
    for page in PAGES:
        text = page.read_text()
        pictures = [m["src"] for m in hook._IMAGE.finditer(text) if "://" not in m["src"]]
        assert hook.linked(text, pictures) == pictures
        checkpoints = re.findall(r"""["']([\w./-]+\.npz)["']""", text)
        assert hook.linked(text, checkpoints) == [], f"{page} links to a checkpoint it writes"
