"""Randomness and running statistics, kept explicit: keys go in, statistics go in and out.

A layer that draws random numbers (``Dropout``) or keeps running statistics
(``BatchNorm``) says so in its :class:`Effects`, and so in its model's signature
(``Vec[4] -> Vec[4], key``). Nothing is hidden in the layer: a call in training mode takes
a key and the statistics and gives the new statistics back,

    y, stats = model(params, x, key=key, stats=stats)

and :func:`inference` gives the model for evaluation, another value in which dropout is
the identity and normalisation reads the statistics it is given.

Each layer's key is ``fold_in(key, crc32(path))``, its path in the parameter tree
(``dropout_0``, ``block/dropout_1``): adding a layer does not change the others' noise.
The statistics are a tree keyed by the same paths, apart from the parameters, so no
optimiser or gradient touches them.

>>> import numpy as np
>>> from nnc import Dropout, Linear, key
>>> model = Linear(3, 4) >> Dropout(0.5)
>>> model.signature
Vec[3] -> Vec[4], key
>>> params, x = model.init(seed=0), np.ones((2, 3), np.float32)
>>> bool((model(params, x, key=key(0)) == model(params, x, key=key(0))).all())
True
>>> bool((inference(model)(params, x) == Linear(3, 4)(params["linear_0"], x)).all())
True
"""

from __future__ import annotations

import contextlib
import contextvars
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from nnc.backend.array_api import namespace_of, numpy_dtype
from nnc.backend.core import Tracer
from nnc.backend.elementwise import cast
from nnc.backend.errors import ArgumentError, ShapeError
from nnc.backend.random import fold_in
from nnc.backend.tree import tree_map, tree_paths

from .source import short_description

# The key, in a layer's slice of the parameters during one call, of its LayerCall.
CALL = "__nnc_layer_call__"


@dataclass(frozen=True)
class Effects:
    """What a layer does besides computing: draw random numbers, keep running statistics.

    ``stat_specs`` is ``((name, ParamSpec), ...)`` like ``Model.param_specs``; ``inference``
    gives the layer's evaluation form (``None``: the layer is its own)."""

    random: bool = False
    stat_specs: tuple = ()
    inference: Callable[[Any], Any] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class LayerCall:
    """What one layer is given for one call: its path, key and statistics, and where new
    statistics go (``updates``, shared by the whole call, keyed by path)."""

    path: str
    key: Any
    stats: Any
    updates: dict
    rate: Any = None  # a rate given as data (a 0-d array, traced in a compiled step), else None

    def update(self, new_stats: dict) -> None:
        self.updates[self.path] = new_stats


def layer_call(params: Any) -> LayerCall | None:
    """The :class:`LayerCall` in a layer's parameter slice, if the call gave one."""
    return params.get(CALL) if isinstance(params, dict) else None


def effect_layers(model: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every layer with effects under ``model``, with its path (as in the parameters)."""
    out = [(path, model)] if model.effects is not None else []
    for key, child in zip(model.param_keys, model.children):
        if key is None or not child.has_effects:
            continue
        out.extend(effect_layers(child, path if key == "" else f"{path}/{key}" if path else key))
    return out


def _at(tree: Any, path: str) -> Any:
    for part in path.split("/") if path else ():
        tree = tree[part]
    return tree


def put_at(tree: dict, path: str, value: Any) -> dict:
    """A copy of ``tree`` with ``value`` merged into the dict at ``path`` (made where missing)."""
    if not path:
        return {**tree, **value}
    head, _, rest = path.partition("/")
    return {**tree, head: put_at(dict(tree.get(head, {})), rest, value)}


# The rates of the random layers of the call under way, by path, when they are given as data.
_RATES: contextvars.ContextVar[dict | None] = contextvars.ContextVar("nnc_rates", default=None)


def rates_of(model: Any) -> dict:
    """The rate of every random layer with one (``Dropout``), by path, as 0-d float64 arrays.

    A training step takes them as inputs (``fit`` does), so that models that differ only in
    a rate share one compiled step: the rate is data, the model's value still shows it."""
    return {
        path: np.asarray(layer.attr("rate"), np.float64)
        for path, layer in effect_layers(model)
        if layer.effects.random and layer.attr("rate") is not None
    }


@contextlib.contextmanager
def given_rates(rates: dict | None) -> Iterator[None]:
    """Within it, the random layers of a call read their rate from ``rates`` (by path)."""
    token = _RATES.set(rates)
    try:
        yield
    finally:
        _RATES.reset(token)


def with_calls(model: Any, params: Any, key: Any, stats: Any, updates: dict) -> Any:
    """``params`` with a :class:`LayerCall` in the slice of every layer with effects."""
    params = dict(params) if isinstance(params, dict) else {}
    rates = _RATES.get() or {}
    for path, layer in effect_layers(model):
        own_key = (
            fold_in(key, zlib.crc32(path.encode())) if layer.effects.random and key is not None else None
        )
        own_stats = _at(stats, path) if layer.effects.stat_specs and stats is not None else None
        call = LayerCall(path, own_key, own_stats, updates, rates.get(path))
        params = put_at(params, path, {CALL: call})
    return params


def collected(updates: dict) -> dict:
    """The statistics tree from the updates a call collected, keyed by path."""
    out: dict = {}
    for path, value in sorted(updates.items()):
        out = put_at(out, path, value)
    return out


def init_stats(model: Any, dtype: Any = np.float32) -> dict:
    """The initial running statistics of ``model``: ``{}`` when it keeps none."""
    out: dict = {}
    for path, layer in effect_layers(model):
        specs = layer.effects.stat_specs
        if specs:
            own = {name: _initial(spec, dtype) for name, spec in specs}
            out = put_at(out, path, own)
    return out


def _initial(spec: Any, dtype: Any) -> np.ndarray:
    shape = tuple(spec.shape)
    if spec.init == "ones":
        return np.ones(shape, dtype)
    return np.zeros(shape, dtype)


def inference(model: Any) -> Any:
    """The model for evaluation: every layer in its inference form (dropout the identity,
    normalisation on the statistics it is given), as a new model value; ``model`` is unchanged."""
    if not model.has_effects:
        return model
    if model.effects is not None and model.effects.inference is not None:
        return model.effects.inference(model)
    return replace(model, children=tuple(inference(c) for c in model.children))


def checked_key(key: Any, model: Any) -> Any:
    """``key`` if it is a key (a 0-d uint64 array, traced or not), else an error naming ``model``."""
    if type(key) is Tracer or isinstance(key, (np.ndarray, np.generic)) or namespace_of(key) is not None:
        dtype = numpy_dtype(key.dtype) if namespace_of(key) is not None else np.dtype(key.dtype)
        if dtype == np.uint64 and tuple(key.shape) == ():
            return key if type(key) is Tracer or namespace_of(key) is not None else np.asarray(key)
        got = f"an array of dtype {dtype} and shape {tuple(key.shape)}"
    else:
        got = f"{key!r} ({type(key).__name__})"
    raise ArgumentError(
        f"{short_description(model)} draws random numbers: key must be a key (a 0-d uint64 array), got {got}\n"
        "  hint: make one with nnc.key(seed), and a new one per step with nnc.fold_in(key, step)"
    )


def stat_shapes(model: Any) -> list[tuple[str, tuple]]:
    """``(path, shape)`` of each running statistic of ``model``, as ``tree_paths`` names them."""
    return [
        (f"{path}/{name}" if path else name, tuple(spec.shape))
        for path, layer in effect_layers(model)
        for name, spec in layer.effects.stat_specs
    ]


def checked_stats(model: Any, stats: Any, dtype: np.dtype | None) -> Any:
    """``stats`` in the parameters' dtype, if they fit ``model``; else a :class:`ShapeError`
    naming the first statistic that is missing, unexpected or of the wrong shape."""
    expected = stat_shapes(model)
    got = dict(tree_paths(stats)) if isinstance(stats, dict) else {}
    hint = "\n  hint: make them with model.init_stats() for this very model, and pass on what it returns"
    if not isinstance(stats, dict):
        raise ShapeError(
            f"statistics of {short_description(model)} must be a dict (model.init_stats()), got {stats!r}{hint}"
        )
    for path, shape in expected:
        if path not in got:
            raise ShapeError(f"statistics do not fit {short_description(model)}: missing {path!r}{hint}")
        actual = tuple(got[path].shape) if hasattr(got[path], "shape") else np.shape(got[path])
        if actual != tuple(shape):
            raise ShapeError(
                f"statistic {path!r} has shape {actual}, but {short_description(model)} expects {tuple(shape)}{hint}"
            )
    extra = sorted(set(got) - {p for p, _ in expected})
    if extra:
        raise ShapeError(f"statistics do not fit {short_description(model)}: unexpected {extra[:4]}{hint}")
    if dtype is None:
        return stats
    return tree_map(
        lambda v: v if type(v) is not Tracer and not isinstance(v, np.ndarray) else cast(v, dtype), stats
    )
