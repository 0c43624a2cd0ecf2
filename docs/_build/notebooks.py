"""Run a tutorial notebook (a jupytext percent-format ``.py``) in a real Jupyter kernel and
turn it into a Markdown page: its Markdown cells as they are, each code cell followed by
what it printed, and every file it wrote (pictures, learning curves) listed for the site.

A failing cell fails the docs build: a tutorial in the site has really run.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TIMEOUT_S = 1800  # one cell; the longest, in tutorial 9, trains the transformer for four epochs (about 11 minutes on a busy 2-core CPU)


@dataclass
class Page:
    """A notebook run: its Markdown text and the files it wrote into ``folder``."""

    markdown: str
    folder: Path
    files: list[Path] = field(default_factory=list)


def execute(notebook: Path, folder: Path) -> Page:
    """Run ``notebook`` with ``folder`` as its working folder (where it writes its files)."""
    import jupytext
    from jupyter_client import KernelManager
    from nbclient import NotebookClient

    nb = jupytext.read(notebook)
    before = set(folder.iterdir())
    previous = os.environ.get("NNC_EXAMPLE_OUT")
    os.environ["NNC_EXAMPLE_OUT"] = str(folder)  # the kernel inherits it
    try:
        # IPC sockets: the kernel talks to this process only (no TCP port is opened)
        kernel = KernelManager(kernel_name="python3", transport="ipc", ip=str(folder / "kernel-ipc"))
        try:
            NotebookClient(
                nb, km=kernel, timeout=TIMEOUT_S, resources={"metadata": {"path": str(folder)}}
            ).execute()
        finally:
            if kernel.has_kernel:
                kernel.shutdown_kernel(now=True)
    finally:
        if previous is None:
            del os.environ["NNC_EXAMPLE_OUT"]
        else:
            os.environ["NNC_EXAMPLE_OUT"] = previous
    page = Page(to_markdown(nb, folder, notebook.stem), folder)
    page.files = sorted(
        p for p in folder.iterdir() if p not in before and p.is_file() and not p.name.startswith("kernel-ipc")
    )
    return page


def _text(value) -> str:
    return _ANSI.sub("", "".join(value) if isinstance(value, list) else value)


def to_markdown(nb, folder: Path, stem: str) -> str:
    """The executed notebook as Markdown; displayed images are saved into ``folder``."""
    parts = []
    for number, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            parts.append(_text(cell.source))
        elif cell.cell_type == "code" and cell.source.strip():
            parts.append(f"```python\n{cell.source.rstrip()}\n```")
            parts.extend(_outputs(cell.outputs, folder, f"{stem}_cell{number}"))
    return "\n\n".join(parts) + "\n"


def _outputs(outputs, folder: Path, prefix: str) -> list[str]:
    shown, printed = [], []
    for k, out in enumerate(outputs):
        if out.output_type == "stream":
            printed.append(_text(out.text))
            continue
        data = out.get("data", {})
        if "image/png" in data:
            name = f"{prefix}_{k}.png"
            (folder / name).write_bytes(base64.b64decode(data["image/png"]))
            shown.append(f"![output]({name})")
        elif "image/svg+xml" in data:
            name = f"{prefix}_{k}.svg"
            (folder / name).write_text(_text(data["image/svg+xml"]), encoding="utf-8")
            shown.append(f"![output]({name})")
        elif "text/plain" in data:
            printed.append(_text(data["text/plain"]) + "\n")
    text = "".join(printed).rstrip()
    return ([f'```text title="output"\n{text}\n```'] if text else []) + shown
