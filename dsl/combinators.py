"""Combinators: build bigger models from smaller ones, checking types as they meet.

``f >> g`` (serial) lives on :class:`Model`; here are the others:

- ``parallel(f, g)``: ``(a, c) -> (b, d)``, each model on its own part of a tuple;
- ``fanout(f, g)``: ``a -> (b, c)``, every model on the same input;
- ``residual(f)``: ``a -> a``, ``x + f(x)``;
- ``repeat(f, n)``: ``a -> a``, ``n`` independent copies of ``f`` one after another;
- ``add`` and ``concat``: fan-in from a tuple back to one array.
"""

from __future__ import annotations

from functools import reduce
from typing import Any

from nnc.backend import elementwise, structural
from nnc.backend.errors import ArgumentError, TypeMismatch

from .model import Model, child_params, created_at_note, non_model_hint, serial_forward, value_in_words
from .source import UserLocation, user_location
from .types import (
    ArrayType,
    Dim,
    Mismatch,
    Subst,
    TupleType,
    Type,
    TypeVar,
    Vec,
    array_type,
    dim_sum,
    show,
    unify,
)


def _check_models(name: str, models: tuple) -> None:
    created_at = user_location(3)
    if not models:
        raise ArgumentError(
            f"{name} at {created_at or 'unknown place'} needs at least one model, got none"
            f"\n  hint: write {name}(f, g) with the models as its arguments"
        )
    for i, m in enumerate(models):
        if not isinstance(m, Model):
            raise not_a_model_argument(name, created_at, m, i if len(models) > 1 else None)
        if m.state_type is not None:
            raise TypeMismatch(
                f"{name} takes stateless models, but {m!r}{created_at_note(m)} is a recurrent "
                f"cell ({m.signature}).\n  hint: make it stateless first with "
                "zero_state(unroll_last(...)) or learned_state(...)"
            )


def not_a_model_argument(
    name: str, created_at: UserLocation | None, value: Any, index: int | None = None
) -> TypeMismatch:
    """The error for a combinator given something that is not a model (as ``>>`` gives it)."""
    which = "" if index is None else f" (argument {index + 1})"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Model) for v in value):
        hint = f"pass the models themselves, {name}(f, g), or unpack the list: {name}(*models)"
    elif callable(value):
        hint = non_model_hint(value)
    else:
        hint = (
            f"{name} takes models: layers (nnc.Linear(...)), activations (nnc.tanh) and compositions of them"
        )
    return TypeMismatch(
        f"{name} at {created_at or 'unknown place'}: {value_in_words(value)}{which} is not "
        f"an nnc model\n  hint: {hint}"
    )


def _parallel_forward(model: Model, params: Any, x: Any) -> Any:
    return tuple(c.forward(c, p, xi) for c, p, xi in zip(model.children, child_params(model, params), x))


def parallel(*models: Model) -> Model:
    """Run each model on its own item of a tuple: ``parallel(f, g): (a, c) -> (b, d)``.

    >>> from nnc import Linear, parallel
    >>> parallel(Linear(2, 3), Linear(4, 5)).signature
    (Vec[2], Vec[4]) -> (Vec[3], Vec[5])
    """
    _check_models("parallel", models)
    models = tuple(m.freshen() for m in models)
    return Model(
        "parallel",
        TupleType(tuple(m.in_type for m in models)),
        TupleType(tuple(m.out_type for m in models)),
        _parallel_forward,
        children=models,
        created_at=user_location(2),
    )


def _fanout_forward(model: Model, params: Any, x: Any) -> Any:
    return tuple(c.forward(c, p, x) for c, p in zip(model.children, child_params(model, params)))


def _unify_inputs(name: str, models: tuple, created_at: UserLocation | None) -> Subst:
    s: Subst = {}
    for m in models[1:]:
        try:
            unify(models[0].in_type, m.in_type, s)
        except Mismatch as err:
            a, b = show([models[0].in_type, m.in_type])
            raise TypeMismatch(
                f"{name} at {created_at or 'unknown place'}: the branches expect different inputs\n"
                f"  {models[0]!r}{created_at_note(models[0])} expects {a}\n"
                f"  {m!r}{created_at_note(m)} expects {b}\n  {err}"
            ) from None
    return s


def fanout(*models: Model) -> Model:
    """Run every model on the same input: ``fanout(f, g): a -> (b, c)``.

    >>> from nnc import Linear, fanout, tanh
    >>> fanout(Linear(3, 2), tanh).signature
    Vec[3] -> (Vec[2], Vec[3])
    """
    _check_models("fanout", models)
    created_at = user_location(2)
    models = tuple(m.freshen() for m in models)
    s = _unify_inputs("fanout", models, created_at)
    models = tuple(m.subst(s) for m in models)
    return Model(
        "fanout",
        models[0].in_type,
        TupleType(tuple(m.out_type for m in models)),
        _fanout_forward,
        children=models,
        created_at=created_at,
    )


def _keeping_type(model: Model, needs: str) -> Model:
    """``model`` (freshened) with its input and output types made one, or the TypeMismatch
    that says ``needs`` it to keep its type and what it maps to what."""
    model = model.freshen()
    s: Subst = {}
    try:
        unify(model.in_type, model.out_type, s)
    except Mismatch as err:
        a, b = show([model.in_type, model.out_type])
        raise TypeMismatch(
            f"{needs} to keep its type, but\n  {model!r}{created_at_note(model)} maps {a} to {b}\n  {err}"
        ) from None
    return model.subst(s)


def _residual_forward(model: Model, params: Any, x: Any) -> Any:
    (inner,) = model.children
    return elementwise.add(x, inner.forward(inner, child_params(model, params)[0], x))


def residual(model: Model) -> Model:
    """``x + model(x)``: a skip connection around ``model``, whose output type must equal its input type.

    >>> from nnc import Linear, residual, tanh
    >>> residual(Linear(4, 4) >> tanh).signature
    Vec[4] -> Vec[4]
    """
    _check_models("residual", (model,))
    created_at = user_location(2)
    model = _keeping_type(model, f"residual at {created_at or 'unknown place'}: x + f(x) needs f")
    return Model(
        "residual", model.in_type, model.out_type, _residual_forward, children=(model,), created_at=created_at
    )


def repeat(block: Model, n: int) -> Model:
    """``n`` copies of ``block`` one after another, each with parameters of its own (keyed
    ``"0"``, ``"1"``, ...): the stack of a transformer. ``block`` must keep its type.

    >>> from nnc import Linear, relu, repeat
    >>> model = repeat(Linear(4, 4) >> relu, 3)
    >>> model.signature, sorted(model.init(seed=0))
    (Vec[4] -> Vec[4], ['0', '1', '2'])
    """
    _check_models("repeat", (block,))
    created_at = user_location(2)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ArgumentError(
            f"repeat at {created_at or 'unknown place'}: n must be an int >= 1 (the number of "
            f"copies), got {n!r}"
        )
    if block.state_type is not None:
        raise TypeMismatch(
            f"repeat at {created_at or 'unknown place'}: repeat takes stateless models, got {block!r}"
        )
    block = _keeping_type(
        block, f"repeat at {created_at or 'unknown place'}: copies one after another need the block"
    )
    copies = tuple(block.freshen().named(str(i)) for i in range(n))
    return Model(
        "repeat",
        block.in_type,
        block.out_type,
        serial_forward,
        children=copies,
        attrs=(("times", n),),
        created_at=created_at,
    )


# ----------------------------------------------------------------------------- fan-in


def _add_forward(model: Model, params: Any, x: Any) -> Any:
    return reduce(elementwise.add, x)


def _refine_add(model: Model, incoming: Type) -> Model:
    if not isinstance(incoming, TupleType) or len(incoming.items) < 2:
        return model
    t = TypeVar("a")
    return _fan_in(
        "add",
        TupleType((t,) * len(incoming.items)),
        t,
        _add_forward,
        _refine_add,
        model.attrs,
        model.created_at,
    )


def _concat_forward(model: Model, params: Any, x: Any) -> Any:
    return structural.concat(list(x), axis=-model.attr("rank", 1))


def _refine_concat(model: Model, incoming: Type) -> Model:
    if (
        not isinstance(incoming, TupleType)
        or len(incoming.items) < 2
        or not all(isinstance(i, ArrayType) for i in incoming.items)
    ):
        return model
    rank = incoming.items[0].rank
    if rank == 0 or any(i.rank != rank for i in incoming.items):
        return model  # unification will report the rank mismatch
    rest = incoming.items[0].dims[1:]
    firsts = tuple(Dim() for _ in incoming.items)
    items = tuple(array_type((f,) + rest) for f in firsts)
    out = array_type((dim_sum(firsts),) + rest)
    return _fan_in(
        "concat", TupleType(items), out, _concat_forward, _refine_concat, (("rank", rank),), model.created_at
    )


def _fan_in(kind, in_t, out_t, forward, refine, attrs, created_at) -> Model:
    return Model(kind, in_t, out_t, forward, attrs=tuple(attrs), created_at=created_at, refine=refine)


_a = TypeVar("a")
add = _fan_in("add", TupleType((_a, _a)), _a, _add_forward, _refine_add, (), None)
"""Fan-in by elementwise sum: ``(a, a, ...) -> a``."""

_n, _m = Dim("n"), Dim("m")
concat = _fan_in(
    "concat",
    TupleType((Vec[_n], Vec[_m])),
    Vec[dim_sum([_n, _m])],
    _concat_forward,
    _refine_concat,
    (("rank", 1),),
    None,
)
"""Fan-in by joining along the first example axis: ``(Vec[n], Vec[m], ...) -> Vec[n + m]``
(for ``Tensor[c, h, w]`` items, along the channels)."""
