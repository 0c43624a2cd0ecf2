"""Where the user wrote something: the first stack frame outside nnc itself."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

_NNC_DIRS = tuple(
    os.path.dirname(os.path.abspath(p)) + os.sep
    for p in (__file__, os.path.join(os.path.dirname(__file__), "..", "backend", "x"),
              os.path.join(os.path.dirname(__file__), "..", "kernels", "x"))
)


@dataclass(frozen=True)
class Where:
    """A file and line in user code."""

    file: str
    line: int

    def __str__(self) -> str:
        name = self.file
        if not name.startswith("<"):
            try:
                rel = os.path.relpath(name)
                name = rel if not rel.startswith("..") else name
            except ValueError:
                pass
        return f"{name}:{self.line}"


def user_frame(skip: int = 1) -> Where | None:
    """The innermost caller frame whose file is not part of nnc (or any import machinery)."""
    frame = sys._getframe(skip)
    while frame is not None:
        fname = frame.f_code.co_filename
        if not fname.startswith(_NNC_DIRS) and not fname.startswith("<frozen"):
            return Where(fname, frame.f_lineno)
        frame = frame.f_back
    return None
