"""How models print: one short line a person can read, ``Linear(2 -> 4) >> tanh``."""

from __future__ import annotations

from collections.abc import Callable

from .types import show

DESCRIBERS: dict[str, Callable] = {}


def describer(kind: str):
    """Register how models of ``kind`` print."""

    def register(fn):
        DESCRIBERS[kind] = fn
        return fn

    return register


def dims(*ds) -> list[str]:
    """Dimensions as text, unknown ones as ``?``."""
    return [repr(d) if isinstance(d, int) else "?" for d in ds]


def describe(model) -> str:
    fn = DESCRIBERS.get(model.kind)
    text = fn(model) if fn else _default(model)
    return f"{text}.named({model.name!r})" if model.name else text


def _default(model) -> str:
    if model.children:
        return f"{model.kind}({', '.join(describe(c) for c in model.children)})"
    return model.kind


@describer("serial")
def _serial(model) -> str:
    parts = []
    for c in model.children:
        text = describe(c)
        parts.append(f"({text})" if c.kind == "serial" else text)
    return " >> ".join(parts)


@describer("Input")
def _input(model) -> str:
    return f"Input({show([model.in_type])[0]})"


@describer("repeat")
def _repeat(model) -> str:
    block = model.children[0]
    return f"repeat({describe(block.named(None) if block.name == '0' else block)}, {model.attr('times')})"
