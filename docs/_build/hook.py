"""MkDocs hook: builds the pages and pictures that are made by running code.

- Each tutorial notebook ``examples/tutorial_*.py`` runs in a real Jupyter kernel and
  becomes the page ``tutorial/<name>.md``, with its printed output and the pictures and
  learning curves it wrote.
- A hand-written page whose image links name files that do not exist (``![](mlp.svg)``)
  has its samples run (``samples.py``) in a scratch folder; the files they write that the
  page links to are published beside the page (a checkpoint a sample saves, ``digits.npz``,
  is not). So every picture in the site is drawn by code the reader sees.

Nothing generated is written into the source tree. ``mkdocs serve`` runs the notebooks
once and reuses their pages while it rebuilds.
"""
from __future__ import annotations

import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).parent))
import notebooks  # noqa: E402 - beside this hook, which MkDocs loads by path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
_IMAGE = re.compile(r"!\[[^\]]*\]\((?P<src>[^)\s]+)")
_LINK = re.compile(r"\]\((?P<src>[^)\s#]+)")  # images and links alike: ![..](x.svg), [..](x.gv)
_scratch: list[Path] = []
_cache: dict[str, tuple[str, list[tuple[str, Path]]]] = {}
_serving = False


def on_startup(command: str, dirty: bool) -> None:
    global _serving
    _serving = command == "serve"
    # `mkdocs` runs with its scripts folder first on sys.path, and that folder holds the
    # `nnc` console script, which Griffe (the API reference) would take for the package.
    sys.path[:] = [p for p in sys.path if not (Path(p or ".") / "nnc").is_file()]


def _folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="nnc-docs-"))
    _scratch.append(folder)
    return folder


def _tutorial(notebook: Path) -> tuple[str, list[tuple[str, Path]]]:
    """(page text, [(site path, file)]) of one tutorial, run once per build (once per serve)."""
    key = f"{notebook}:{notebook.stat().st_mtime_ns}"
    if _serving and key in _cache:
        return _cache[key]
    page = notebooks.execute(notebook, _folder())
    source = notebook.relative_to(ROOT).as_posix()
    note = (f'!!! note ""\n    This page is the notebook `{source}`, run in a Jupyter kernel '
            f"while the site was built.\n")
    text = re.sub(r"^(# .*\n)", lambda m: m.group(1) + "\n" + note, page.markdown, count=1)
    result = (text, [(f"tutorial/{p.name}", p) for p in page.files])
    _cache[key] = result
    return result


def _missing_images(page: File, docs_dir: Path) -> list[str]:
    text = Path(page.abs_src_path).read_text(encoding="utf-8")
    here = Path(page.abs_src_path).parent
    return [m["src"] for m in _IMAGE.finditer(text)
            if "://" not in m["src"] and not (here / m["src"]).exists()]


def linked(text: str, written: list[str]) -> list[str]:
    """The files of ``written`` (paths relative to the page's folder) that ``text`` links to."""
    targets = {posixpath.normpath(m["src"]) for m in _LINK.finditer(text) if "://" not in m["src"]}
    return [name for name in written if name in targets]


def _page_pictures(page: File) -> list[tuple[str, Path]]:
    """Run a page's samples in a scratch folder; the files they write that the page links to
    go beside the page (the others, a checkpoint or a script a sample writes, are left out)."""
    folder = _folder()
    shutil.copytree(EXAMPLES, folder / "examples", ignore=shutil.ignore_patterns("*.svg", "*.png"))
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("samples.py")),
                           page.abs_src_path], cwd=folder, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the samples of {page.src_uri} failed:\n{done.stderr}")
    base = Path(page.src_uri).parent
    written = [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*"))
               if p.is_file() and not p.relative_to(folder).parts[0] == "examples"]
    text = Path(page.abs_src_path).read_text(encoding="utf-8")
    return [((base / name).as_posix(), folder / name) for name in linked(text, written)]


def on_files(files: Files, config) -> Files:
    docs_dir = Path(config["docs_dir"])
    for notebook in sorted(EXAMPLES.glob("tutorial_*.py")):
        text, produced = _tutorial(notebook)
        files.append(File.generated(config, f"tutorial/{notebook.stem}.md", content=text))
        for uri, path in produced:
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    for page in [f for f in files.documentation_pages() if f.abs_src_path]:
        if _missing_images(page, docs_dir):
            for uri, path in _page_pictures(page):
                if files.get_file_from_path(uri) is None:
                    files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_shutdown() -> None:
    for folder in _scratch:
        shutil.rmtree(folder, ignore_errors=True)
