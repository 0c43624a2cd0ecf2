"""Probes: a model's every layer watched in one call, its outputs and the gradients reaching them.

:func:`probed` returns a copy of a model whose layers report what they compute: each layer's
input and output, by the layer's path (the path ``nnc summary`` prints; the whole model's is
``(model)``). The gradients come
from the same copy: it adds a zero to each layer's output and to each layer's input, and the
gradient of the loss with respect to those zeros is the gradient that reaches the layer's
output, and the one its gradient step hands on to its input. Adding zero changes no value,
so the copy computes exactly what the model does.

A layer is watched as a whole where nnc cannot look inside without changing what runs: a
recurrent loop (``unroll``, ``zero_state(...)``; its cell runs once per step inside the
loop), and wrappers that share their child's path (``each``).

>>> import numpy as np
>>> from nnc import Linear, relu
>>> model = Linear(2, 3) >> relu >> Linear(3, 1)
>>> run = watch(model, model.init(seed=0), np.ones((4, 2)))
>>> run.order
['linear_0', 'relu_0', 'linear_1', '(model)']
>>> run.outputs["relu_0"].shape
(4, 3)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from nnc.backend.autodiff import grad
from nnc.backend.broadcasting import dtype_of, shape_of
from nnc.backend.elementwise import add
from nnc.backend.errors import ShapeError
from nnc.backend.random import key as make_key
from nnc.backend.tree import tree_flatten, tree_leaves, tree_unflatten

from .effects import inference
from .inspection import child_path
from .model import Model


@dataclass
class Watched:
    """What one call of a probed model saw: the layers by path, in the order they finished
    (``order``: a layer after the layers inside it) and their inputs and outputs."""

    order: list[str] = field(default_factory=list)
    entered: list[str] = field(default_factory=list)  # the same layers, each before those inside it
    layers: dict[str, Model] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    leaves: set[str] = field(default_factory=set)  # layers watched as a whole (no layer inside)


# The zeros added during a gradient pass: {"inputs": {path: zeros}, "outputs": {path: zeros}},
# each a list aligned with the leaves of the value it is added to (None: a leaf not probed).
Probes = dict


def _is_float(x: Any) -> bool:
    return np.dtype(dtype_of(x)).kind == "f"


def _plus(x: Any, probe: list | None) -> Any:
    """``x`` with the zeros of ``probe`` added to its leaves."""
    if probe is None:
        return x
    leaves, treedef = tree_flatten(x)
    return tree_unflatten(treedef, [v if p is None else add(v, p) for v, p in zip(leaves, probe)])


def _zeros_like(x: Any) -> list:
    """Zeros shaped like each float leaf of ``x``, ``None`` for the others (tokens, lengths)."""
    return [np.zeros(shape_of(v), dtype_of(v)) if _is_float(v) else None for v in tree_leaves(x)]


def at_path(tree: Any, path: str) -> Any:
    """The subtree of a parameter tree at a layer's path (``residual_0/serial_0/linear_0``), or
    ``None`` where there is none (a layer without parameters).

    >>> at_path({"a": {"b": 1}}, "a/b"), at_path({"a": {}}, "a/c")
    (1, None)
    """
    for part in path.split("/"):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _watched_whole(node: Model) -> bool:
    """Whether ``node`` is watched as a whole, nothing inside it."""
    return not node.children or node.transparent or any(c.state_type is not None for c in node.children)


def probed(model: Model, seen: Watched, probes: Callable[[], Probes | None], path: str = "") -> Model:
    """``model`` with every layer recording into ``seen``, and adding ``probes()``'s zeros (when
    it gives some) to its input and output."""
    whole = _watched_whole(model)
    node = model
    if not whole:
        node = replace(
            model,
            children=tuple(
                probed(c, seen, probes, child_path(model, path, i)) for i, c in enumerate(model.children)
            ),
        )
    name = path or "(model)"
    original = node.forward

    def forward(m: Model, params: Any, x: Any) -> Any:
        seen.entered.append(name)
        added = probes()
        if added is not None:
            x = _plus(x, added["inputs"].get(name))
        out = original(m, params, x)
        if added is not None:
            out = _plus(out, added["outputs"].get(name))
        seen.order.append(name)
        seen.layers[name] = model
        seen.inputs[name], seen.outputs[name] = x, out
        if whole:
            seen.leaves.add(name)
        return out

    return replace(node, forward=forward)


def _stateless(model: Model, what: str) -> Model:
    if model.state_type is not None:
        raise ShapeError(
            f"{what} takes a stateless model, but {model!r} is stateful ({model.signature})\n"
            "  hint: start its state inside the model: zero_state(model) or learned_state(model)"
        )
    return model


def output_of(model: Model, params: Any, x: Any, key: Any, stats: Any) -> Any:
    """The model's output (without the new statistics a training call also gives)."""
    out = model(params, x, key=key, stats=stats)
    return out[0] if model.updates_stats and stats is not None else out


def prepared(model: Model, params: Any, key: Any, stats: Any, training: bool) -> tuple[Model, Any, Any]:
    """The model as it runs here, with its key and statistics. In training (the default of
    the callers) a model that draws random numbers without a key gets ``nnc.key(0)``, and one
    that keeps statistics without them gets fresh ones (training normalises with the batch's
    own); out of training it is its inference form, statistics as given."""
    if not training:
        return inference(model), key, stats
    if model.is_random and key is None:
        key = make_key(0)
    if model.keeps_stats and stats is None:
        leaves = [v for v in tree_leaves(params) if _is_float(v)]
        stats = model.init_stats(dtype_of(leaves[0]) if leaves else np.float32)
    return model, key, stats


def watch(
    model: Model,
    params: Any,
    x: Any,
    *,
    key: Any = None,
    stats: Any = None,
    training: bool = True,
    what: str = "watch",
) -> Watched:
    """Call ``model`` once on ``x``, recording every layer's input and output (see the module
    and :func:`prepared`); ``what`` names the caller in errors."""
    model, key, stats = prepared(_stateless(model, what), params, key, stats, training)
    seen = Watched()
    with np.errstate(all="ignore"):
        output_of(probed(model, seen, lambda: None), params, x, key, stats)
    return seen


@dataclass
class Gradients:
    """The gradients of one loss: of the parameters, and by layer path the gradient reaching
    each layer's output and the one its gradient step gives its input."""

    params: Any
    outputs: dict[str, Any]
    inputs: dict[str, Any]


def gradients(
    model: Model,
    params: Any,
    x: Any,
    y: Any,
    loss: Callable[[Any, Any], Any],
    seen: Watched,
    *,
    key: Any = None,
    stats: Any = None,
    training: bool = True,
) -> Gradients:
    """The gradients of ``loss(model(params, x), y)``, by layer (``seen`` from :func:`watch`
    on the same arguments, for the shapes of the zeros)."""
    model, key, stats = prepared(_stateless(model, "gradients"), params, key, stats, training)
    # Not the layers whose output is the model's: the loss may read through the last of them
    # (cross_entropy takes softmax's logits), which a zero added to it would hide.
    final = seen.outputs["(model)"] if "(model)" in seen.outputs else seen.outputs[seen.order[-1]]
    zeros = {
        "inputs": {p: _zeros_like(seen.inputs[p]) for p in seen.order},
        "outputs": {p: _zeros_like(seen.outputs[p]) for p in seen.order if seen.outputs[p] is not final},
    }
    holder: dict[str, Probes | None] = {"probes": None}
    again = Watched()
    watched = probed(model, again, lambda: holder["probes"])

    def objective(params: Any, added: Probes) -> Any:
        holder["probes"] = added
        try:
            return loss(output_of(watched, params, x, key, stats), y)
        finally:
            holder["probes"] = None

    with np.errstate(all="ignore"):
        g_params, g_probes = grad(objective, argnums=(0, 1))(params, zeros)
    return Gradients(g_params, _single(g_probes["outputs"]), _single(g_probes["inputs"]))


def _single(by_path: dict) -> dict:
    """Each path's list of gradients as one array where the value was one array."""
    return {p: g[0] if len(g) == 1 else g for p, g in by_path.items()}
