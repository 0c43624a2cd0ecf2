"""Draw a model to SVG, PNG or PDF with Graphviz, or write its Graphviz source.

The picture itself is made in :mod:`nnc.draw`; here it is handed to Graphviz's ``dot``
program, run as a subprocess found on ``PATH``. When ``dot`` is missing, the source is
still written (``.gv``) and :class:`GraphvizNotFound` says how to install Graphviz and
which command finishes the job; an older picture of the same name is removed, so that it
does not pass for a drawing of this model. Files are written atomically, with the
permissions an ordinary new file gets (the umask decides).

>>> import os, tempfile
>>> from nnc import Linear, tanh
>>> path = render(Linear(2, 3) >> tanh, os.path.join(tempfile.mkdtemp(), "model.gv"))
>>> open(path).read().startswith("digraph model {")
True
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

from nnc.backend.errors import NNCError

from .checkpoint import write_atomically
from .draw import Options, to_dot
from .model import Model

FORMATS = ("svg", "png", "pdf", "dot", "html")
SUFFIX = {"svg": ".svg", "png": ".png", "pdf": ".pdf", "dot": ".gv", "html": ".html"}
FORMAT_OF_SUFFIX = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".gv": "dot", ".dot": "dot", ".html": "html"}
DEFAULT_PNG_DPI = 200  # Keras' plot_model default: sharp on slides and in papers
INSTALL_HINT = (
    "install Graphviz (Debian/Ubuntu: sudo apt-get install graphviz; Fedora: sudo dnf "
    "install graphviz; macOS: brew install graphviz; conda: conda install -c "
    "conda-forge graphviz; Windows: winget install graphviz)"
)


class RenderError(NNCError):
    """A picture cannot be made: an unknown format, or Graphviz failed."""


class GraphvizNotFound(RenderError):
    """Graphviz's ``dot`` program is not installed; the source was written instead.

    ``source`` is the ``.gv`` file written, ``command`` the ``dot`` command that finishes the job."""

    def __init__(self, message: str, source: Path | None = None, command: str | None = None) -> None:
        super().__init__(message)
        self.source, self.command = source, command


def format_of(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The output format: ``fmt`` if given, else the one the suffix of ``path`` names.

    >>> format_of("net.png"), format_of("net", "pdf"), format_of("net.dot"), format_of("net.html")
    ('png', 'pdf', 'dot', 'html')
    """
    suffix = Path(path).suffix.lower()
    if fmt is not None:
        if fmt not in FORMATS:
            raise RenderError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        if suffix in FORMAT_OF_SUFFIX and FORMAT_OF_SUFFIX[suffix] != fmt:
            raise RenderError(
                f"the output {os.fspath(path)!r} ends in {suffix} but the format "
                f"asked for is {fmt}; change one of them"
            )
        return fmt
    if suffix not in FORMAT_OF_SUFFIX:
        raise RenderError(
            f"cannot tell the format of {os.fspath(path)!r} from its suffix; "
            f"use one ending in {', '.join(FORMAT_OF_SUFFIX)} or give the format "
            f"({', '.join(FORMATS)})"
        )
    return FORMAT_OF_SUFFIX[suffix]


def find_dot() -> str | None:
    """The path of Graphviz's ``dot`` program on ``PATH``, or ``None``."""
    return shutil.which("dot")


def dot_arguments(fmt: str, dpi: int | None) -> list[str]:
    """The options of the ``dot`` command for this format: ``-Tpng -Gdpi=200``."""
    if dpi is None and fmt == "png":
        dpi = DEFAULT_PNG_DPI
    return [f"-T{fmt}"] + ([f"-Gdpi={int(dpi)}"] if dpi is not None else [])


def run_dot(source: str, fmt: str, dpi: int | None = None, timeout: float = 120.0) -> bytes:
    """Graphviz's drawing of ``source`` in ``fmt``, from ``dot`` fed on its standard input.

    Raises :class:`GraphvizNotFound` (without writing anything) when ``dot`` is missing."""
    program = find_dot()
    if program is None:
        raise GraphvizNotFound(f"Graphviz's dot program was not found on PATH; {INSTALL_HINT}")
    try:
        done = subprocess.run(
            [program, *dot_arguments(fmt, dpi)],
            input=source.encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RenderError(f"Graphviz's dot did not finish within {timeout:.0f} s") from None
    except OSError as err:
        raise RenderError(f"Graphviz's dot at {program} could not be run: {err}") from None
    if done.returncode != 0 or not done.stdout:
        message = done.stderr.decode("utf-8", "replace").strip() or f"exit code {done.returncode}"
        raise RenderError(f"Graphviz's dot failed to draw the model as {fmt}: {message}")
    return done.stdout


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    Creates the folder if needed; the file gets the umask's permissions, as ``open`` would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda f: f.write(data))


def _remove_older(path: Path) -> str:
    """Remove an older picture at ``path``; the words that tell the user so."""
    try:
        path.unlink()
    except FileNotFoundError:
        return ""
    return f" The older {path} was removed, so that it does not pass for a drawing of this model."


def picture_source(model: Model, options: Options, *, grad: bool = False, ops: bool = False) -> str:
    """The Graphviz source of the picture asked for: the forward, its backward by layers
    (``grad``) or the primitives of both passes (``ops``)."""
    if grad and ops:
        raise RenderError(
            "grad and ops draw different pictures (the layers' gradient steps; the primitives "
            "of both passes, which already hold the backward): choose one"
        )
    if not isinstance(model, Model):
        raise RenderError(f"nnc draws nnc models, got {type(model).__name__}")
    if grad:
        from .draw_grad import grad_to_dot

        return grad_to_dot(model, options)
    if ops:
        from .draw_ops import ops_to_dot

        return ops_to_dot(model, options.rankdir)
    return to_dot(model, options)


def _page(model: Model, source: str, options: Options, grad: bool, ops: bool, dpi: int | None) -> bytes:
    """The interactive page: the picture, and with repeats folded also the picture unfolded."""
    from .html_page import html_page

    views = [("folded", source, run_dot(source, "svg", dpi).decode("utf-8"))]
    if options.collapse_repeats and not ops:
        unfolded = picture_source(model, replace(options, collapse_repeats=False), grad=grad)
        if unfolded != source:  # an × N block to unfold
            views.append(("unfolded", unfolded, run_dot(unfolded, "svg", dpi).decode("utf-8")))
    what = "primitives" if ops else "backward" if grad else "model"
    return html_page(f"{what}: {model!r}"[:200], views).encode("utf-8")


def render(
    model: Model,
    path: str | os.PathLike,
    *,
    format: str | None = None,
    dpi: int | None = None,
    rankdir: str = "TB",
    show_shapes: bool = True,
    show_dtype: bool = False,
    show_layer_names: bool = True,
    expand_nested: bool = True,
    depth: int | None = None,
    collapse_repeats: bool = True,
    dtype: Any = "float32",
    show_batch: bool = False,
    grad: bool = False,
    ops: bool = False,
) -> Path:
    """Draw ``model`` into ``path`` (svg, png, pdf or an html page with Graphviz; dot needs none).

    Args:
        model: the model to draw.
        path: the output file; its suffix gives the format unless ``format`` is given.
        format: ``"svg"``, ``"png"``, ``"pdf"``, ``"dot"`` (Graphviz source) or ``"html"`` (an
            interactive page, self-contained: clusters collapse on click, layers show their
            parameters on hover).
        dpi: resolution of the picture (default 200 for png, Graphviz's own for the others).
        rankdir: ``"TB"`` (top to bottom), ``"LR"``, ``"BT"`` or ``"RL"``.
        show_shapes: label edges with the type that flows along them.
        show_dtype: add the parameters' dtype (``dtype``) to those labels.
        show_layer_names: show each layer's path (``residual_0/linear_0``).
        expand_nested: draw combinators as clusters; ``False`` is ``depth=0``.
        depth: how many levels of combinators to draw as clusters (``None``: all).
        collapse_repeats: draw identical blocks repeated in a chain once, with "× N".
        show_batch: edges show the shapes of a batch, Keras' way: ``(None, 64)``.
        grad: draw the backward pass by layers: gradient steps, cotangent types, parameter gradients.
        ops: draw the primitives of the forward and backward passes, traced on zeros (a batch of 1).

    Returns: the path written. Raises :class:`GraphvizNotFound` after writing the ``.gv``
    source beside ``path`` (and removing an older file at ``path``) when Graphviz's ``dot``
    is missing.
    """
    path = Path(path)
    fmt = format_of(path, format)
    options = Options(
        rankdir=rankdir,
        show_shapes=show_shapes,
        show_dtype=show_dtype,
        show_layer_names=show_layer_names,
        expand_nested=expand_nested,
        depth=depth,
        collapse_repeats=collapse_repeats,
        dtype=dtype,
        show_batch=show_batch,
    )
    source = picture_source(model, options, grad=grad, ops=ops)
    if fmt == "dot":
        write_atomic(path, source.encode("utf-8"))
        return path
    try:
        picture = (
            _page(model, source, options, grad, ops, dpi) if fmt == "html" else run_dot(source, fmt, dpi)
        )
    except GraphvizNotFound:
        gv = path.with_suffix(".gv")
        write_atomic(gv, source.encode("utf-8"))
        removed = _remove_older(path)
        shown = "svg" if fmt == "html" else fmt  # the page needs nnc, the SVG only dot
        command = shlex.join(
            ["dot", *dot_arguments(shown, dpi), str(gv), "-o", str(path.with_suffix(f".{shown}"))]
        )
        raise GraphvizNotFound(
            f"Graphviz's dot program was not found, so {path} was not drawn.{removed} Its "
            f"Graphviz source is written to {gv}. To draw it, {INSTALL_HINT}, then run:\n  {command}",
            gv,
            command,
        ) from None
    write_atomic(path, picture)
    return path


def mimebundle(model: Model, include: Any = None, exclude: Any = None) -> dict:
    """What a notebook shows for ``model``: its SVG picture, and its text always.

    Never raises: without Graphviz, or if drawing fails for any reason, only the text is given.
    """
    try:
        bundle = {"text/plain": repr(model)}
    except Exception:  # a notebook cell must show something whatever went wrong
        bundle = {"text/plain": object.__repr__(model)}
    wanted = "image/svg+xml"
    if (include is not None and wanted not in include) or (exclude is not None and wanted in exclude):
        return bundle
    try:
        svg = run_dot(to_dot(model), "svg", timeout=30.0)
        bundle[wanted] = svg.decode("utf-8")
    except Exception:  # no Graphviz, or a drawing bug: the text above is the fallback
        pass
    return bundle


# IPython's hook: a model in a notebook cell shows as its picture, with its text.
Model._repr_mimebundle_ = mimebundle
