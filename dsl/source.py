"""Where the user wrote something: the first stack frame outside nnc itself.

In IPython and Jupyter, code runs from files named like ``/tmp/ipykernel_1234/5678.py``;
such places are shown as IPython shows them in tracebacks, ``cell In[3], line 2``.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from types import FrameType
from typing import Any

_NNC_DIRS = tuple(
    os.path.dirname(os.path.abspath(p)) + os.sep
    for p in (
        __file__,
        os.path.join(os.path.dirname(__file__), "..", "backend", "x"),
        os.path.join(os.path.dirname(__file__), "..", "kernels", "x"),
    )
)


@dataclass(frozen=True)
class UserLocation:
    """A file and line in user code."""

    file: str
    line: int

    def __str__(self) -> str:
        cell = ipython_cell(self.file)
        if cell is not None:
            return f"cell {cell}, line {self.line}"
        name = self.file
        if not name.startswith("<"):
            try:
                rel = os.path.relpath(name)
                name = rel if not rel.startswith("..") else name
            except ValueError:
                pass
        return f"{name}:{self.line}"


def ipython_cell(file: str) -> str | None:
    """IPython's name of the cell whose code ``file`` holds (``In[3]``), or ``None``.

    IPython's compiler keeps a map from the file names it gives cells to their execution
    counts; it is asked only when IPython is already loaded, never imported for this.

    >>> ipython_cell("<ipython-input-3-9d1c2f7b5e4a>"), ipython_cell("model.py")
    ('In[3]', None)
    """
    old_style = re.match(r"<ipython-input-(\d+)-", file)  # IPython before 7.x named cells so
    if old_style:
        return f"In[{old_style[1]}]"
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)()
    number = getattr(getattr(shell, "compile", None), "_filename_map", {}).get(file)
    return None if number is None else f"In[{number}]"


def created_at_note(thing: Any) -> str:
    """`` (created at file:line)`` for a message about a model, or nothing if the place is unknown."""
    created_at = getattr(thing, "created_at", None)
    return f" (created at {created_at})" if created_at else ""


def short_description(thing: Any) -> str:
    """A model's repr, cut to 80 characters, and where it was created: a message's name for it."""
    text = repr(thing)
    return (text if len(text) < 80 else text[:77] + "...") + created_at_note(thing)


def user_location(skip: int = 1) -> UserLocation | None:
    """The file and line of the innermost caller frame whose file is not part of nnc (or any
    import machinery): where the user wrote the call."""
    frame: FrameType | None = sys._getframe(skip)
    while frame is not None:
        fname = frame.f_code.co_filename
        if not fname.startswith(_NNC_DIRS) and not fname.startswith("<frozen"):
            return UserLocation(fname, frame.f_lineno)
        frame = frame.f_back
    return None
