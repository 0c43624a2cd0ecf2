"""Test your own layers the way nnc tests its own: gradients against finite differences,
inputs drawn by hypothesis from a model's type.

>>> import numpy as np, nnc
>>> check_grads(lambda x: nnc.sum(nnc.tanh(x) ** 2), np.array([0.5, -1.0]))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

import numpy as np

from nnc.backend.autodiff import grad
from nnc.backend.tree import tree_flatten, tree_paths, tree_unflatten

from .types import Dim, SeqType, TupleType, TypeVar, Vec, as_type


def _to_float64(tree: Any) -> Any:
    leaves, treedef = tree_flatten(tree)
    return tree_unflatten(
        treedef,
        [
            np.array(x, dtype=np.float64) if isinstance(x, np.ndarray) and x.dtype.kind == "f" else x
            for x in leaves
        ],
    )


def check_grads(
    fn: Callable,
    *args: Any,
    argnums: int | Sequence[int] | None = None,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
    directions: int = 4,
    seed: int = 0,
) -> None:
    """Assert that nnc's gradient of ``fn`` matches central finite differences in float64.

    Float arrays among ``args`` are cast to float64. A non-scalar ``fn`` is reduced to a
    scalar by a fixed random projection, so every output entry is checked. Arrays of
    at most 64 numbers are checked entry by entry, larger ones along ``directions``
    random directions. Raises ``AssertionError`` naming the argument and entry that differ.
    """
    args = tuple(_to_float64(a) for a in args)
    if argnums is None:
        argnums = tuple(
            i
            for i, a in enumerate(args)
            if any(isinstance(x, np.ndarray) and x.dtype.kind == "f" for x in tree_flatten(a)[0])
        )
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    rng = np.random.default_rng(seed)
    out = np.asarray(fn(*args))
    weights = rng.standard_normal(out.shape) if out.shape else None

    def scalar(*xs):
        y = fn(*xs)
        return y if weights is None else (y * weights).sum()

    def value(*xs) -> float:
        return float(np.asarray(scalar(*xs)))

    grads = grad(scalar, nums)(*args)
    for a, g in zip(nums, grads):
        for path, leaf in tree_paths(args[a]):
            if not (isinstance(leaf, np.ndarray) and leaf.dtype.kind == "f"):
                continue
            g_leaf = dict(tree_paths(g))[path] if path else g
            which = f"argument {a}" + (f" at {path!r}" if path else "")
            _check_leaf(
                value, args, a, path, leaf, np.asarray(g_leaf), which, eps, rtol, atol, directions, rng
            )


def _replace(tree: Any, path: str, new: np.ndarray) -> Any:
    if not path:
        return new
    leaves, treedef = tree_flatten(tree)
    paths = [p for p, _ in tree_paths(tree)]
    return tree_unflatten(treedef, [new if p == path else x for p, x in zip(paths, leaves)])


def _check_leaf(value, args, a, path, leaf, g, which, eps, rtol, atol, directions, rng) -> None:
    if g.shape != leaf.shape:
        raise AssertionError(f"gradient of {which} has shape {g.shape}, expected {leaf.shape}")

    def at(delta: np.ndarray) -> float:
        moved = list(args)
        moved[a] = _replace(args[a], path, leaf + delta)
        return value(*moved)

    if leaf.size <= 64:
        probes = []
        for i in range(leaf.size):
            d = np.zeros(leaf.size)
            d[i] = 1.0
            probes.append(
                (f"entry {np.unravel_index(i, leaf.shape) if leaf.shape else ()}", d.reshape(leaf.shape))
            )
    else:
        probes = [(f"random direction {k}", rng.standard_normal(leaf.shape)) for k in range(directions)]
    for label, d in probes:
        numeric = (at(eps * d) - at(-eps * d)) / (2 * eps)
        analytic = float(np.sum(g * d))
        if not np.isclose(analytic, numeric, rtol=rtol, atol=atol):
            raise AssertionError(
                f"gradient of {which} is wrong along {label}: nnc gives {analytic!r}, "
                f"central finite differences give {numeric!r}"
            )


# ----------------------------------------------------------------------------- hypothesis


def arrays_of(
    t: Any,
    *,
    batch: int | None | Any = None,
    dtype: Any = np.float64,
    min_size: int = 1,
    max_size: int = 5,
    elements: Any = None,
) -> Any:
    """A hypothesis strategy drawing arrays (or tuples of arrays) of nnc type ``t``.

    Unknown dimensions are drawn between ``min_size`` and ``max_size`` (the same
    variable gets the same size everywhere); ``batch`` adds a leading batch axis of that
    size (or drawn from a strategy). Needs hypothesis installed (a test dependency).
    """
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    t = as_type(t)
    # hypothesis draws floats of 16, 32 or 64 bits; it refuses any other width itself
    width = cast(Literal[16, 32, 64], np.dtype(dtype).itemsize * 8 if np.dtype(dtype).kind == "f" else 64)
    elements = elements if elements is not None else st.floats(-3, 3, width=width)

    @st.composite
    def draw_value(draw):
        sizes: dict = {}
        b = draw(batch) if hasattr(batch, "example") else batch

        def dim(d):
            if isinstance(d, int):
                return d
            if isinstance(d, Dim):  # named dimensions agree by name, as in annotations
                key = d.name or d
                if key not in sizes:
                    sizes[key] = draw(st.integers(min_size, max_size))
                return sizes[key]
            raise ValueError(f"cannot draw a size for {d!r}; give the type concrete sizes")

        def one(tt):
            if isinstance(tt, TupleType):
                return tuple(one(i) for i in tt.items)
            time: tuple[int, ...] = ()
            if isinstance(tt, SeqType):  # a sequence: a drawn number of time steps first
                time, tt = (draw(st.integers(min_size, max_size)),), tt.item
            if isinstance(tt, TypeVar):
                tt = Vec[Dim()]
            shape = time + tuple(dim(d) for d in tt.dims)
            shape = shape if b is None else (b,) + shape
            return draw(hnp.arrays(np.dtype(dtype), shape, elements=elements))

        return one(t)

    return draw_value()


def inputs(model: Any, **kwargs: Any) -> Any:
    """A hypothesis strategy drawing inputs of ``model``'s input type (see :func:`arrays_of`)."""
    return arrays_of(model.in_type, **kwargs)
