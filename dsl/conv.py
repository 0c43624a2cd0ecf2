"""Convolutional layers: ``Conv2d``, ``max_pool``, ``avg_pool`` and ``flatten``.

They work on images typed ``Tensor[channels, height, width]`` (with the usual optional
batch axis in front). Output sizes are computed while composing, from the input's
sizes and the layer's kernel, stride, padding and dilation, so a mistake surfaces
before any data flows: a kernel larger than its padded input is a ``TypeMismatch``
naming the layer. Where the input size is not known yet (a layer composed before an
``Input``), the output sizes stay unknown until data arrives.

>>> from nnc import Input, Linear, Tensor, relu, softmax
>>> cnn = (Input(Tensor[1, 8, 8]) >> Conv2d(1, 16, 3, padding=1) >> relu >> max_pool(2)
...        >> flatten >> Linear(None, 10) >> softmax)
>>> cnn.signature
Tensor[1, 8, 8] -> Vec[10]
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from nnc.backend import windows
from nnc.backend.broadcasting import shape_of
from nnc.backend.elementwise import add
from nnc.backend.errors import TypeMismatch
from nnc.backend.structural import reshape
from nnc.kernels.reference import output_size

from .layers import check_init, check_options
from .model import Model, ParamSpec, created_at_note
from .show import describer, dims
from .source import UserLocation, user_location
from .types import (
    ArrayType,
    Dim,
    DimLike,
    Tensor,
    Type,
    Vec,
    array_type,
    bad_argument,
    dim_prod,
    is_int,
    show,
    size_argument,
)


def _pair(
    value: Any, name: str, layer: str, created_at: UserLocation | None, minimum: int = 1
) -> tuple[int, int]:
    """``3 -> (3, 3)``, a pair stays a pair; anything else is an ArgumentError naming the layer."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) == 2 and all(is_int(v) and v >= minimum for v in items):
        return int(items[0]), int(items[1])
    least = "1" if minimum == 1 else str(minimum)
    raise bad_argument(
        layer,
        created_at,
        name,
        f"an int >= {least} or a (rows, cols) pair of them",
        value,
        _PAIR_HINTS.get(name, ""),
    )


_PAIR_HINTS = {
    "kernel": "kernel=3 is a 3x3 window; (3, 5) is 3 rows by 5 columns",
    "padding": "padding=k // 2 keeps the size for an odd kernel k; 0 adds none",
    "stride": "stride=1 visits every position, stride=2 every other one",
    "dilation": "dilation=1 is an ordinary kernel",
}


def _sizes(t: Type) -> tuple[int, int] | None:
    """The height and width of an image type, when both are known."""
    if isinstance(t, ArrayType) and t.rank == 3 and all(isinstance(d, int) for d in t.dims[1:]):
        return t.dims[1], t.dims[2]
    return None


def _too_small(model: Model, incoming: Type, detail: str, hint: str) -> TypeMismatch:
    return TypeMismatch(
        f"cannot compose at {user_location(1) or 'unknown place'}\n"
        f"  {model!r}{created_at_note(model)} cannot take {show([incoming])[0]}:\n"
        f"  {detail}\n  hint: {hint}"
    )


def _with_sizes(model: Model, channels_in, channels_out, h: int, w: int, ho: int, wo: int) -> Model:
    return replace(model, in_type=Tensor[channels_in, h, w], out_type=Tensor[channels_out, ho, wo])


# ----------------------------------------------------------------------------- Conv2d


def _conv_forward(model: Model, params: Any, x: Any) -> Any:
    y = windows.conv2d(x, params["W"], model.attr("stride"), model.attr("padding"), model.attr("dilation"))
    if "b" not in params:
        return y
    channels = shape_of(params["b"])[0]
    lead = (1,) * (len(shape_of(y)) - 3)  # a batch gets a batch axis of 1: strict broadcasting
    return add(y, reshape(params["b"], lead + (channels, 1, 1)))


def _conv_refine(model: Model, incoming: Type) -> Model:
    sizes = _sizes(incoming)
    if sizes is None:
        return model
    (kh, kw), (sh, sw) = model.attr("kernel"), model.attr("stride")
    (ph, pw), (dh, dw) = model.attr("padding"), model.attr("dilation")
    ho, wo = output_size(sizes[0], kh, sh, ph, dh), output_size(sizes[1], kw, sw, pw, dw)
    if ho < 1 or wo < 1:
        reach = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
        raise _too_small(
            model,
            incoming,
            f"its {kh}x{kw} kernel"
            + (f" (dilation {dh}x{dw}, spanning {reach[0]}x{reach[1]})" if (dh, dw) != (1, 1) else "")
            + f" is larger than the padded input {sizes[0] + 2 * ph}x{sizes[1] + 2 * pw} "
            f"({sizes[0]}x{sizes[1]} with padding {ph}x{pw})",
            "pad the input (padding=k//2 keeps the size), or use a smaller kernel or dilation",
        )
    channels_in = _channels(model.in_type)
    return _with_sizes(model, channels_in, _channels(model.out_type), sizes[0], sizes[1], ho, wo)


def _channels(t: Type) -> DimLike:
    """The channels of a convolution or pooling layer's own type, always a ``Tensor[c, h, w]``."""
    assert isinstance(t, ArrayType), f"{t!r} is not a Tensor[c, h, w]"
    return t.dims[0]


def Conv2d(
    c_in: int | None,
    c_out: int,
    kernel: int | tuple[int, int],
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    *,
    bias: bool = True,
    init: Any = "glorot_uniform",
    name: str | None = None,
) -> Model:
    """A 2-D convolution (cross-correlation) from ``Tensor[c_in, h, w]`` to ``Tensor[c_out, ho, wo]``.

    Args:
        c_in: input channels, or ``None`` to infer them from the model before it.
        c_out: output channels (the number of filters).
        kernel: filter size, an int or a (rows, cols) pair.
        stride, padding, dilation: ints or (rows, cols) pairs; padding adds zeros on both
            sides, dilation spaces the filter taps.
        bias: whether to add ``b`` (shape ``(c_out,)``, zeros) to every position.
        init: initialiser of ``W`` (shape ``(c_out, c_in, kh, kw)``), as for ``Linear``.
        name: the key of its parameters inside a composed model (default ``conv2d_<i>``).

    Returns: a model with ``ho = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1``
    (likewise ``wo``), computed when it is composed after a model of known size.

    >>> import numpy as np
    >>> from nnc import Input, Tensor
    >>> model = Input(Tensor[3, 32, 32]) >> Conv2d(3, 8, 5, stride=2, padding=2)
    >>> model.signature
    Tensor[3, 32, 32] -> Tensor[8, 16, 16]
    >>> model(model.init(seed=0), np.ones((4, 3, 32, 32))).shape
    (4, 8, 16, 16)
    """
    created_at = user_location(2)
    c_in = size_argument(
        c_in,
        "Conv2d",
        "c_in",
        created_at,
        optional=True,
        hint="c_in is the number of input channels; None infers it",
    )
    c_out = size_argument(
        c_out, "Conv2d", "c_out", created_at, hint="c_out is the number of filters (output channels)"
    )
    kh, kw = _pair(kernel, "kernel", "Conv2d", created_at)
    stride = _pair(stride, "stride", "Conv2d", created_at)
    padding = _pair(padding, "padding", "Conv2d", created_at, 0)
    dilation = _pair(dilation, "dilation", "Conv2d", created_at)
    check_init(init, "Conv2d", created_at)
    check_options("Conv2d", created_at, bias, name)
    d_in = Dim() if c_in is None else c_in
    specs = [("W", ParamSpec((c_out, d_in, kh, kw), init, fan=(dim_prod([d_in, kh * kw]), c_out * kh * kw)))]
    if bias:
        specs.append(("b", ParamSpec((c_out,), "zeros")))
    attrs = (("kernel", (kh, kw)), ("stride", stride), ("padding", padding), ("dilation", dilation))
    return Model(
        "Conv2d",
        Tensor[d_in, Dim("h"), Dim("w")],
        Tensor[c_out, Dim(), Dim()],
        _conv_forward,
        param_specs=tuple(specs),
        attrs=attrs,
        name=name,
        created_at=created_at,
        refine=_conv_refine,
    )


def _pair_text(v: tuple) -> str:
    return str(v[0]) if v[0] == v[1] else f"({v[0]}, {v[1]})"


def _options(model: Model, defaults: dict) -> str:
    return "".join(f", {k}={_pair_text(model.attr(k))}" for k, d in defaults.items() if model.attr(k) != d)


@describer("Conv2d")
def _describe_conv(model: Model) -> str:
    c_out, c_in, kh, kw = model.param_specs[0][1].shape
    a, b = dims(c_in, c_out)
    options = _options(model, {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1)})
    bias = "" if len(model.param_specs) == 2 else ", bias=False"
    return f"Conv2d({a} -> {b}, {kh}x{kw}{options}{bias})"


# ----------------------------------------------------------------------------- pooling


def _pool_refine(model: Model, incoming: Type) -> Model:
    sizes = _sizes(incoming)
    if sizes is None:
        return model
    (kh, kw), (sh, sw) = model.attr("kernel"), model.attr("stride")
    if kh > sizes[0] or kw > sizes[1]:
        raise _too_small(
            model,
            incoming,
            f"its {kh}x{kw} window is larger than the {sizes[0]}x{sizes[1]} input",
            "use a smaller window, or pad before pooling with a Conv2d(padding=...)",
        )
    ho, wo = output_size(sizes[0], kh, sh, 0, 1), output_size(sizes[1], kw, sw, 0, 1)
    channels = _channels(model.in_type)
    return _with_sizes(model, channels, channels, sizes[0], sizes[1], ho, wo)


def _pool_layer(kind: str, fn, kernel: Any, stride: Any) -> Model:
    created_at = user_location(3)
    k = _pair(kernel, "kernel", kind, created_at)
    s = k if stride is None else _pair(stride, "stride", kind, created_at)
    c = Dim("c")
    return Model(
        kind,
        Tensor[c, Dim("h"), Dim("w")],
        Tensor[c, Dim(), Dim()],
        lambda m, p, x: fn(x, m.attr("kernel"), m.attr("stride")),
        attrs=(("kernel", k), ("stride", s)),
        created_at=created_at,
        refine=_pool_refine,
    )


def max_pool(kernel: int | tuple[int, int], stride: Any = None) -> Model:
    """The largest value of each ``kernel`` window: ``Tensor[c, h, w] -> Tensor[c, ho, wo]``.

    Windows are ``stride`` apart (default: ``kernel``, so they do not overlap), without
    padding: ``ho = (h - kh) // stride + 1``; rows and columns that do not fill a window
    are left out.

    >>> from nnc import Input, Tensor
    >>> (Input(Tensor[16, 7, 7]) >> max_pool(2)).signature
    Tensor[16, 7, 7] -> Tensor[16, 3, 3]
    """
    return _pool_layer("max_pool", windows.max_pool, kernel, stride)


def avg_pool(kernel: int | tuple[int, int], stride: Any = None) -> Model:
    """The mean of each ``kernel`` window: ``Tensor[c, h, w] -> Tensor[c, ho, wo]`` (as ``max_pool``).

    >>> from nnc import Input, Tensor
    >>> (Input(Tensor[4, 8, 8]) >> avg_pool(3, stride=1)).signature
    Tensor[4, 8, 8] -> Tensor[4, 6, 6]
    """
    return _pool_layer("avg_pool", windows.avg_pool, kernel, stride)


@describer("max_pool")
@describer("avg_pool")
def _describe_pool(model: Model) -> str:
    k, s = model.attr("kernel"), model.attr("stride")
    step = "" if s == k else f", stride={_pair_text(s)}"
    return f"{model.kind}({_pair_text(k)}{step})"


# ----------------------------------------------------------------------------- flatten


def _flatten_forward(model: Model, params: Any, x: Any) -> Any:
    shape = shape_of(x)
    batched = len(shape) > model.attr("rank")
    # the example's size, not -1: an empty batch (0, c, h, w) leaves -1 undetermined
    size = math.prod(shape[1:] if batched else shape)
    return reshape(x, (shape[0], size) if batched else (size,))


def _flatten_of(dims_in: tuple) -> Model:
    return Model(
        "flatten",
        array_type(dims_in),
        Vec[dim_prod(dims_in)],
        _flatten_forward,
        attrs=(("rank", len(dims_in)),),
        refine=_flatten_refine,
    )


def _flatten_refine(model: Model, incoming: Type) -> Model:
    if not isinstance(incoming, ArrayType) or incoming.rank == model.attr("rank") or incoming.rank < 1:
        return model
    return _flatten_of(tuple(Dim() for _ in incoming.dims))


flatten = _flatten_of((Dim("c"), Dim("h"), Dim("w")))
"""All of an example's entries in one vector: ``Tensor[c, h, w] -> Vec[c * h * w]``
(any rank: ``Mat[m, n] -> Vec[m * n]``); the batch axis stays."""
