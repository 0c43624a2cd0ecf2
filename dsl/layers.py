"""The basic layers: ``Input``, ``Linear`` and the activations.

Layers are named in CamelCase when they are constructors (``Linear(2, 4)``) and in
snake_case when they are ready-made values (``tanh``). An activation is also an array
function: ``tanh(x)`` applies it to an array, ``tanh(params, x)`` calls it as a model.
"""

from __future__ import annotations

from typing import Any

from nnc.backend import activations
from nnc.backend.elementwise import add
from nnc.backend.errors import InitError
from nnc.backend.linalg import matmul

from .model import Model, ParamSpec
from .show import describer, dims
from .source import UserLocation, user_location
from .types import Dim, TypeVar, Vec, as_type, bad_argument, size_argument


def Input(t: Any) -> Model:
    """Declare a model's input type: the identity on ``t``.

    >>> from nnc import Input, Linear, Vec
    >>> (Input(Vec[64]) >> Linear(None, 10)).signature
    Vec[64] -> Vec[10]
    """
    t = as_type(t, "Input")
    return Model("Input", t, t, lambda m, p, x: x, created_at=user_location(2))


INITIALISERS = ("glorot_uniform", "he_normal", "lecun_normal", "normal", "zeros")
"""The initialisers known by name; any ``fn(rng, shape) -> array`` is one too."""


def check_init(init: Any, layer: str, created_at: UserLocation | None) -> Any:
    """``init`` if it names an initialiser or is a function, else an :class:`InitError` now,
    where the layer is written, rather than at ``model.init`` time."""
    if callable(init) or (isinstance(init, str) and init in INITIALISERS):
        return init
    raise bad_argument(
        layer,
        created_at,
        "init",
        "one of " + ", ".join(map(repr, INITIALISERS)) + " or a function (rng, shape) -> array",
        init,
        cls=InitError,
    )


def check_flag(layer: str, created_at: UserLocation | None, argument: str, value: Any) -> bool:
    """``value`` if it is a bool, else the error naming ``layer``'s ``argument``."""
    if not isinstance(value, bool):
        raise bad_argument(layer, created_at, argument, "True or False", value)
    return value


def check_name(layer: str, created_at: UserLocation | None, name: Any) -> str | None:
    """``name`` if it is a non-empty string or None: a name is a key of the parameters."""
    if name is not None and (not isinstance(name, str) or not name):
        raise bad_argument(
            layer,
            created_at,
            "name",
            "a non-empty string or None",
            name,
            "the name is the key of its parameters inside a composed model",
        )
    return name


def check_options(layer: str, created_at: UserLocation | None, bias: Any, name: Any) -> None:
    """``bias`` must be a bool and ``name`` a string (or None)."""
    check_flag(layer, created_at, "bias", bias)
    check_name(layer, created_at, name)


def _linear_forward(model: Model, params: Any, x: Any) -> Any:
    y = matmul(x, params["W"])
    return add(y, params["b"]) if "b" in params else y


def Linear(
    n_in: int | None, n_out: int, *, bias: bool = True, init: Any = "glorot_uniform", name: str | None = None
) -> Model:
    """An affine map ``y = x @ W + b`` from ``Vec[n_in]`` to ``Vec[n_out]``.

    Args:
        n_in: input size, or ``None`` to infer it from the model composed before it.
        n_out: output size.
        bias: whether to add ``b`` (shape ``(n_out,)``, initialised to zeros).
        init: initialiser of ``W`` (shape ``(n_in, n_out)``): ``"glorot_uniform"``,
            ``"he_normal"``, ``"lecun_normal"``, ``"zeros"`` or ``fn(rng, shape)``.
        name: the key of its parameters inside a composed model (default ``linear_<i>``).

    Returns: a model ``Vec[n_in] -> Vec[n_out]`` with parameters ``{"W", "b"}``.

    >>> import numpy as np
    >>> layer = Linear(2, 3)
    >>> params = layer.init(seed=0)
    >>> layer(params, np.ones((5, 2))).shape
    (5, 3)
    """
    created_at = user_location(2)
    n_in = size_argument(
        n_in,
        "Linear",
        "n_in",
        created_at,
        optional=True,
        hint="n_in is the input size; Linear(None, n) infers it from the model before",
    )
    n_out = size_argument(n_out, "Linear", "n_out", created_at, hint="n_out is the output size")
    check_init(init, "Linear", created_at)
    check_options("Linear", created_at, bias, name)
    d_in = Dim() if n_in is None else n_in
    specs = [("W", ParamSpec((d_in, n_out), init, fan=(d_in, n_out)))]
    if bias:
        specs.append(("b", ParamSpec((n_out,), "zeros")))
    return Model(
        "Linear",
        Vec[d_in],
        Vec[n_out],
        _linear_forward,
        param_specs=tuple(specs),
        name=name,
        created_at=created_at,
    )


@describer("Linear")
def _describe_linear(model: Model) -> str:
    n_in, n_out = dims(model.param_specs[0][1].shape[0], model.param_specs[0][1].shape[1])
    return f"Linear({n_in} -> {n_out})" + ("" if len(model.param_specs) == 2 else ", bias=False")


def _activation(kind: str, fn, over_last_axis: bool = False) -> Model:
    t = Vec[Dim("n")] if over_last_axis else TypeVar("a")
    return Model(kind, t, t, lambda m, p, x: fn(x))


logistic = _activation("logistic", activations.logistic)
"""Elementwise logistic sigmoid ``1 / (1 + exp(-x))``: any type to the same type."""
tanh = _activation("tanh", activations.tanh)
"""Elementwise hyperbolic tangent: any type to the same type."""
relu = _activation("relu", activations.relu)
"""Elementwise ``max(x, 0)``: any type to the same type."""
softmax = _activation("softmax", activations.softmax, over_last_axis=True)
"""``exp(x) / sum(exp(x))`` over the features: ``Vec[n] -> Vec[n]``."""
log_softmax = _activation("log_softmax", activations.log_softmax, over_last_axis=True)
"""``log(softmax(x))``, computed stably: ``Vec[n] -> Vec[n]``."""
gelu = _activation("gelu", activations.gelu)
"""Elementwise Gaussian error linear unit ``x * Phi(x)`` (exact, with erf): any type to the same type."""
gelu_tanh = _activation("gelu_tanh", lambda x: activations.gelu(x, approximate="tanh"))
"""GELU in its tanh approximation (PyTorch's ``approximate="tanh"``): any type to the same type."""
silu = _activation("silu", activations.silu)
"""Elementwise sigmoid linear unit (swish) ``x * logistic(x)``: any type to the same type."""
