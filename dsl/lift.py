"""``lift``: a function of arrays, written with nnc operations, as a model.

Only models compose with ``>>``; ``lift`` is how a user's own parameter-free function
becomes one (Keras calls this a ``Lambda`` layer). Its output type is found by tracing
the function on one example of the type composed before it, so the sizes after it are
known and checked like any other layer's.

>>> import numpy as np, nnc
>>> from nnc import Input, Linear, Vec, lift
>>> square = lift(lambda x: x * x, name="square")
>>> model = Input(Vec[3]) >> Linear(None, 2) >> square
>>> model.signature
Vec[3] -> Vec[2]
>>> halves = lift(lambda x: x[..., :2])
>>> (Input(Vec[6]) >> halves).signature
Vec[6] -> Vec[2]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nnc.backend.core import trace_graph
from nnc.backend.errors import NNCError, TypeMismatch

from .model import Model, created_at_note
from .show import describer
from .source import user_location
from .types import ArrayType, Type, TypeVar, array_type, example_shape, is_concrete, show


def _lift_forward(model: Model, params: Any, x: Any) -> Any:
    return model.attr("fn")(x)


def _lift_refine(model: Model, incoming: Type) -> Model:
    """The lifted model typed by what flows into it: ``incoming -> fn(incoming)``."""
    if not isinstance(incoming, ArrayType) or not is_concrete(incoming):
        return model
    shape = (1,) + example_shape(incoming)
    try:
        graph = trace_graph(lambda xs: [model.attr("fn")(xs[0])], [(shape, np.float32)])
    except NNCError:
        raise  # already says what is wrong, and where
    except Exception as err:
        raise TypeMismatch(
            f"{model!r}{created_at_note(model)} fails on an input of type "
            f"{show([incoming])[0]}: {type(err).__name__}: {err}\n"
            "  hint: write the function with nnc operations (nnc.tanh, nnc.sum, x * x, x[..., :k]) "
            "so that it can be traced"
        ) from None
    out = graph.outputs[0]
    if len(out.shape) < 1 or out.shape[0] != 1:
        raise TypeMismatch(
            f"{model!r}{created_at_note(model)} turns a batch of shape {shape} into shape "
            f"{tuple(out.shape)}: a lifted function must keep the leading batch axis"
        )
    return Model(
        "lift",
        incoming,
        array_type(out.shape[1:]),
        _lift_forward,
        attrs=model.attrs,
        name=model.name,
        created_at=model.created_at,
    )


def lift(fn: Callable[[Any], Any], *, name: str | None = None) -> Model:
    """The parameter-free model ``x -> fn(x)``; ``fn`` maps a batch to a batch with nnc operations.

    Its type is solved when it is composed after a model whose output sizes are known.
    """
    if isinstance(fn, Model):
        raise TypeMismatch(f"lift: {fn!r} is a model already; compose it with >> directly")
    if not callable(fn):
        raise TypeMismatch(f"lift: expected a function of arrays, got {type(fn).__name__} {fn!r}")
    label = name or getattr(fn, "__name__", "fn")
    label = "fn" if label == "<lambda>" else label
    return Model(
        "lift",
        TypeVar("a"),
        TypeVar("b"),
        _lift_forward,
        attrs=(("fn", fn), ("label", label)),
        name=name,
        created_at=user_location(2),
        refine=_lift_refine,
    )


@describer("lift")
def _describe_lift(model: Model) -> str:
    return f"lift({model.attr('label')})"
