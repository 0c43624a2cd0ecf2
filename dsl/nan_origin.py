"""Where a NaN was born: the layer whose forward pass, or whose gradient step, first made a
value that is not finite.

``find_nan(model, params, x, y, loss=...)`` watches every layer (see :mod:`nnc.probes`). In
the forward pass, layers finish in order, a layer after those inside it: the first whose
output holds NaN or infinity while its input did not made it. In the backward pass, gradient
steps run in the reverse order: the first layer whose step received a finite gradient and
handed on a non-finite one (to its input or its parameters) made that. ``fit``'s non-finite
reports (:class:`nnc.StopOnNaN`) name it; a user's own loop can call this directly.

>>> import numpy as np
>>> from nnc import Linear, lift, log, mse
>>> model = Linear(1, 1) >> lift(log) >> Linear(1, 1)
>>> params = model.init(seed=0)
>>> params["linear_0"]["W"][:] = -1.0  # log of a negative number
>>> print(find_nan(model, params, np.ones((2, 1)), np.ones((2, 1)), loss=mse).message)  # doctest: +ELLIPSIS
the forward pass of lift_0: lift(log) (created at ...) made NaN or infinity from a finite input (2 of 2 entries)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnc.backend.tree import tree_leaves

from .model import Model, created_at_note
from .probes import at_path, gradients, watch


@dataclass(frozen=True)
class NaNOrigin:
    """The layer where a non-finite value was born: its path, the layer, and the pass
    (``"forward"`` or ``"backward"``); ``message`` says it in words."""

    path: str
    layer: Model
    where: str
    message: str


def _bad(x: Any) -> int:
    """How many entries of the float leaves of ``x`` are NaN or infinite."""
    return sum(int((~np.isfinite(v)).sum()) for v in tree_leaves(x) if np.asarray(v).dtype.kind == "f")


def _size(x: Any) -> int:
    return sum(int(np.asarray(v).size) for v in tree_leaves(x) if np.asarray(v).dtype.kind == "f")


def _named(path: str, layer: Model) -> str:
    return (
        f"{path}: {layer!r}{created_at_note(layer)}"
        if path != "(model)"
        else f"{layer!r}{created_at_note(layer)}"
    )


def find_nan(
    model: Model,
    params: Any,
    x: Any,
    y: Any = None,
    *,
    loss: Callable[[Any, Any], Any] | None = None,
    key: Any = None,
    stats: Any = None,
) -> NaNOrigin | None:
    """The layer that first made NaN or infinity in ``model(params, x)``, or (given ``y`` and
    ``loss``) in the gradient of ``loss(model(params, x), y)``; ``None`` if every value is finite.
    """
    seen = watch(model, params, x, key=key, stats=stats, what="find_nan")
    for path in seen.order:
        if path not in seen.leaves:
            continue
        out_bad = _bad(seen.outputs[path])
        if out_bad and not _bad(seen.inputs[path]):
            layer = seen.layers[path]
            message = (
                f"the forward pass of {_named(path, layer)} made NaN or infinity from a finite input "
                f"({out_bad} of {_size(seen.outputs[path])} entries)"
            )
            return NaNOrigin(path, layer, "forward", message)
    if loss is None:
        return None
    grads = gradients(model, params, x, y, loss, seen, key=key, stats=stats)
    for path in reversed(seen.order):
        if path not in seen.leaves:
            continue
        reached = grads.outputs.get(path)
        if reached is not None and _bad(reached):
            continue  # it came from a later layer's step (which the loop met first)
        own = at_path(grads.params, path) if path != "(model)" else grads.params
        own = own if isinstance(own, dict) and seen.layers[path].has_params else None
        handed = _bad(grads.inputs.get(path)), 0 if own is None else _bad(own)
        if any(handed):
            layer = seen.layers[path]
            to = " and ".join(what for what, n in zip(("its input", "its parameters"), handed) if n)
            message = (
                f"the gradient step of {_named(path, layer)} received a finite gradient and gave "
                f"{to} NaN or infinity ({sum(handed)} entries)"
            )
            return NaNOrigin(path, layer, "backward", message)
    return None
