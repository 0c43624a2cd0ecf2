"""Parameter trees: nested dicts, lists and tuples whose leaves are arrays.

A tree is flattened into a list of leaves and a hashable *treedef* describing its
structure, so that gradients, optimiser states and checkpoints can share one shape.

>>> leaves, treedef = tree_flatten({"b": 1, "a": (2, 3)})
>>> leaves
[1, 2, 3]
>>> tree_unflatten(treedef, [10, 20, 30])
{'b': 10, 'a': (20, 30)}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .errors import ShapeError

_LEAF = "*"


def _flatten(tree: Any, leaves: list) -> Any:
    # Runs on every call of a transformed function and every optimiser update: leaves are
    # handled inline (no call per leaf), the common container types tested by identity.
    t = type(tree)
    if t is dict:
        values: Iterable = tree.values()
        kind, keys = "d", tuple(tree)
    elif t is tuple or t is list:
        values, kind, keys = tree, "t" if t is tuple else "l", None
    elif tree is None:
        return None
    else:
        leaves.append(tree)
        return _LEAF
    defs = []
    for v in values:
        tv = type(v)
        if tv is dict or tv is tuple or tv is list:
            defs.append(_flatten(v, leaves))
        elif v is None:
            defs.append(None)
        else:
            leaves.append(v)
            defs.append(_LEAF)
    return (kind, keys, tuple(defs))


def tree_flatten(tree: Any) -> tuple[list, Any]:
    """Split ``tree`` into its leaves (depth first, dict insertion order) and a hashable treedef.

    ``None`` is an empty subtree, not a leaf."""
    leaves: list = []
    return leaves, _flatten(tree, leaves)


def _unflatten(treedef: Any, it: Iterator) -> Any:
    if treedef is _LEAF:
        return next(it)
    if treedef is None:
        return None
    kind, keys, children = treedef
    if kind == "d":  # loops, not comprehensions: no frame per container
        out = {}
        for k, c in zip(keys, children):
            out[k] = next(it) if c is _LEAF else _unflatten(c, it)
        return out
    values = []
    for c in children:
        values.append(next(it) if c is _LEAF else _unflatten(c, it))
    return tuple(values) if kind == "t" else values


def tree_unflatten(treedef: Any, leaves: Iterable) -> Any:
    """Rebuild a tree of the structure ``treedef`` from ``leaves``."""
    return _unflatten(treedef, iter(leaves))


def treedef_size(treedef: Any) -> int:
    """How many leaves a tree of structure ``treedef`` holds."""
    if treedef is _LEAF:
        return 1
    if treedef is None:
        return 0
    return sum(treedef_size(c) for c in treedef[2])


def tree_leaves(tree: Any) -> list:
    """The leaves of ``tree`` in flattening order.

    >>> tree_leaves({"linear_0": {"W": 1, "b": 2}, "linear_1": {"W": 3, "b": 4}})
    [1, 2, 3, 4]
    """
    return tree_flatten(tree)[0]


def tree_map(fn: Callable, tree: Any, *rest: Any) -> Any:
    """Apply ``fn`` leaf by leaf to one or more trees of the same structure.

    >>> tree_map(lambda p, g: p - 0.5 * g, {"W": 1.0, "b": 2.0}, {"W": 2.0, "b": 2.0})
    {'W': 0.0, 'b': 1.0}
    """
    leaves, treedef = tree_flatten(tree)
    others = []
    for i, other in enumerate(rest, start=1):
        other_leaves, other_def = tree_flatten(other)
        if other_def != treedef:
            raise ShapeError(
                f"tree_map: tree {i} has a different structure from tree 0\n"
                f"  tree 0: {tree_paths_summary(tree)}\n  tree {i}: {tree_paths_summary(other)}"
            )
        others.append(other_leaves)
    return tree_unflatten(treedef, [fn(*xs) for xs in zip(leaves, *others)])


def tree_paths(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``(path, leaf)`` pairs with readable slash-separated paths.

    >>> tree_paths({"linear_0": {"W": 1, "b": 2}})
    [('linear_0/W', 1), ('linear_0/b', 2)]
    """
    items: Iterable[tuple[Any, Any]]
    if type(tree) is dict:
        items = tree.items()
    elif type(tree) in (tuple, list):
        items = enumerate(tree)
    elif tree is None:
        return []
    else:
        return [(prefix, tree)]
    out = []
    for k, v in items:
        out.extend(tree_paths(v, f"{prefix}/{k}" if prefix else str(k)))
    return out


def tree_paths_summary(tree: Any, limit: int = 6) -> str:
    paths = [p for p, _ in tree_paths(tree)]
    shown = ", ".join(paths[:limit]) + (f", ... ({len(paths)} leaves)" if len(paths) > limit else "")
    return "{" + shown + "}"
