"""What the picture and the table of a model say about it: paths, descriptions, counts, type names.

Shared by :mod:`nnc.draw` and :mod:`nnc.summary`, so that both name and count alike.

>>> from nnc import Linear, residual, tanh
>>> model = Linear(2, 4) >> residual(Linear(4, 4) >> tanh)
>>> param_total(model), own_param_total(model), child_path(model.children[1], "residual_0", 0)
(32, 0, 'residual_0/serial_0')
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from nnc.backend.tree import tree_leaves

from .model import Model
from .show import describe
from .types import ArrayType, Dim, free_vars, show


def param_total(model: Model) -> int | None:
    """How many numbers ``model.init`` creates for this model (``None`` if a size is unknown)."""
    total = 0
    for shape in tree_leaves(model.param_shapes):
        if not all(isinstance(d, int) for d in shape):
            return None
        total += int(np.prod(shape, dtype=np.int64))
    return total


def own_param_total(model: Model) -> int | None:
    """How many numbers this model's own parameters hold, without its children's."""
    shapes = [tuple(spec.shape) for _, spec in model.param_specs]
    if not all(isinstance(d, int) for s in shapes for d in s):
        return None
    return sum(int(np.prod(s, dtype=np.int64)) for s in shapes)


def plain_description(model: Model) -> str:
    """The model's one-line description without its ``.named(...)`` suffix."""
    return describe(replace(model, name=None)) if model.name else describe(model)


class TypeNames:
    """Types as text, with unnamed variables named once for the whole picture."""

    def __init__(self, types: list) -> None:
        found: list = []
        for t in types:
            found.extend(free_vars(t))
        variables = list(dict.fromkeys(found))
        # show() names variables in order of first appearance: a probe holding all of them
        # first gives every later type the same names.
        self._probe = [ArrayType((v,)) if isinstance(v, Dim) else v for v in variables]

    def __call__(self, t: Any) -> str:
        if not self._probe:
            return repr(t)
        return show(self._probe + [t])[-1]


def all_types(model: Model) -> list:
    out = [model.in_type, model.out_type] + ([model.state_type] if model.state_type is not None else [])
    for c in model.children:
        out.extend(all_types(c))
    return out


def child_path(model: Model, path: str, i: int) -> str:
    """The path of child ``i``: its key in the parameters, or its readable name when it has none.

    The child of a transparent wrapper (key ``""``, like ``zero_state``'s) keeps its parameters
    at the wrapper's level, so it shares the wrapper's path."""
    key = model.param_keys[i]
    if key == "" or (key is None and model.transparent):
        return path
    key = key if key is not None else model.child_paths[i]
    return f"{path}/{key}" if path else key


def is_inline(model: Model) -> bool:
    """An unnamed chain is drawn in place, without a cluster of its own."""
    return model.kind == "serial" and model.name is None
