"""A model as a table: each layer's path, description, input and output type, parameters.

Counts are those of the parameters ``model.init`` creates. A block (a combinator) shows
its parameters in parentheses, as a subtotal of the rows under it, so the plain numbers
add up to the total.

>>> from nnc import Linear, tanh
>>> print(summary(Linear(2, 4) >> tanh >> Linear(4, 1)))
path      layer           input   output  params
--------  --------------  ------  ------  ------
linear_0  Linear(2 -> 4)  Vec[2]  Vec[4]      12
tanh_0    tanh            Vec[4]  Vec[4]       0
linear_1  Linear(4 -> 1)  Vec[4]  Vec[1]       5
total: 17 parameters (68 B as float32)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from nnc.backend.tree import tree_paths

from .effects import stat_shapes
from .inspection import (
    TypeNames,
    all_types,
    child_path,
    is_inline,
    own_param_total,
    param_total,
    plain_description,
)
from .model import Model
from .types import ArrayType, show

COLUMNS = ("path", "layer", "input", "output", "params")


@dataclass(frozen=True)
class Row:
    """One line of the table. ``param_count`` is the layer's own count, or a block's subtotal."""

    path: str
    layer: str
    input: str
    output: str
    param_count: int | None
    block: bool
    depth: int


@dataclass(frozen=True)
class Summary:
    """The table of a model's layers with the total number of parameters (``None`` if unknown)."""

    rows: tuple
    total: int | None
    dtype: str
    unknown: str = ""  # why the total is unknown
    stats_total: int = 0  # running statistics (BatchNorm's): counted apart, never trained

    def __str__(self) -> str:
        cells = [COLUMNS] + [
            (
                "  " * r.depth + (r.path or "(model)"),
                _clip(r.layer),
                r.input,
                r.output,
                _count(r.param_count, r.block),
            )
            for r in self.rows
        ]
        widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
        lines = []
        for j, row in enumerate(cells):
            lines.append(
                "  ".join(
                    c.rjust(w) if i == 4 and j else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))
                ).rstrip()
            )
            if j == 0:
                lines.append("  ".join("-" * w for w in widths))
        if self.total is None:
            lines.append(f"total: unknown, {self.unknown}")
        else:
            size = self.total * np.dtype(self.dtype).itemsize
            noun = "parameter" if self.total == 1 else "parameters"
            lines.append(f"total: {self.total:,} {noun} ({_bytes(size)} as {self.dtype})")
        if self.stats_total:
            noun = "statistic" if self.stats_total == 1 else "statistics"
            lines.append(f"and {self.stats_total:,} running {noun}, not trained (model.init_stats())")
        return "\n".join(lines)

    __repr__ = __str__


def _clip(s: str, width: int = 40) -> str:
    return s if len(s) <= width else s[: width - 1] + "…"


def _count(n: int | None, block: bool) -> str:
    text = "?" if n is None else f"{n:,}"
    return f"({text})" if block else text


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _rows(model: Model, path: str, depth: int, limit: int | None, names: TypeNames, out: list) -> None:
    def row(layer: str, param_count: int | None, block: bool) -> None:
        out.append(Row(path, layer, names(model.in_type), names(model.out_type), param_count, block, depth))

    if model.kind == "each":  # one row: the model, with the sequence types it is run on
        first = len(out)
        _rows(model.children[0], child_path(model, path, 0), depth, limit, names, out)
        out[first] = replace(out[first], input=names(model.in_type), output=names(model.out_type))
        return
    if not model.children:
        state = f", state {names(model.state_type)}" if model.state_type is not None else ""
        row(plain_description(model) + state, own_param_total(model), False)
        return
    if is_inline(model):
        inner = depth
    elif limit is not None and depth >= limit:
        row(plain_description(model), param_total(model), False)
        return
    else:
        own = own_param_total(model)
        row(
            model.kind if model.name is None else f"{model.name} ({model.kind})",
            own if own else param_total(model),
            not own,
        )
        inner = depth + 1
    for i, child in enumerate(model.children):
        _rows(child, child_path(model, path, i), inner, limit, names, out)


def _unknown(model: Model) -> str:
    for path, shape in tree_paths(model.param_shapes):
        if not all(isinstance(d, int) for d in shape):
            dims = show([ArrayType(tuple(shape))])[0][len("Tensor") :]
            return (
                f"{path} has shape ({dims[1:-1]}); start the model with nnc.Input(Vec[n]) "
                "to fix its input size"
            )
    return ""


def summary(model: Model, *, depth: int | None = None, dtype: Any = "float32") -> Summary:
    """The table of ``model``'s layers; ``print`` it, or read ``.rows`` and ``.total``.

    Args:
        model: the model to describe.
        depth: how many levels of combinators to open (``None``: all); a closed block is one row.
        dtype: the parameters' dtype, for their size in bytes.
    """
    if not isinstance(model, Model):
        raise TypeError(f"summary describes nnc models, got {type(model).__name__}")
    rows: list = []
    _rows(model, "", 0, depth, TypeNames(all_types(model)), rows)
    total = param_total(model)
    stats = sum(
        int(np.prod(shape)) for _, shape in stat_shapes(model) if all(isinstance(d, int) for d in shape)
    )
    unknown = "" if total is not None else _unknown(model)
    return Summary(tuple(rows), total, str(np.dtype(dtype)), unknown, stats)
