"""Griffe extension for nnc's API reference.

- setuptools' ``package-dir`` maps ``nnc`` to ``dsl/`` and its sub-packages to ``backend/``
  and ``kernels/`` beside it; Griffe follows the mapping for the top package only and looks
  for the sub-packages inside ``dsl/``. They are loaded from where they are.
- nnc's docstrings carry doctest examples (``>>>`` lines and their output) in plain
  paragraphs, where Markdown would read them as nested quotes and ``[...]`` as links.
  Each run of them becomes a ``pycon`` code block.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import griffe

ROOT = Path(__file__).resolve().parents[2]
ELSEWHERE = ("backend", "kernels")
_PROMPT = re.compile(r"^(\s*)>>>")


def fence_doctests(text: str) -> str:
    """Wrap each doctest example (from a ``>>>`` line to the next blank line) in a fence."""
    out, block, indent = [], [], ""
    for line in text.splitlines() + [""]:
        if block and not line.strip():
            out += ["", f"{indent}```pycon", *block, f"{indent}```", ""]
            block = []
        elif block:
            block.append(line)
        elif prompt := _PROMPT.match(line):
            indent, block = prompt.group(1), [line]
        else:
            out.append(line)
    return "\n".join(out).rstrip("\n")


def _walk(obj: Any):
    yield obj
    for member in obj.members.values():
        if not member.is_alias and (member.is_module or member.is_class):
            yield from _walk(member)
        elif not member.is_alias:
            yield member


class NncReference(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != "nnc":
            return
        for name in ELSEWHERE:
            if name not in pkg.members:
                # Griffe has no public call to load a folder as a sub-package of another.
                pkg.set_member(name, loader._load_module(name, ROOT / name, parent=pkg))
        for obj in _walk(pkg):
            if obj.docstring is not None and ">>>" in obj.docstring.value:
                obj.docstring.value = fence_doctests(obj.docstring.value)
