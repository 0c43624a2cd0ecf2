"""Dropout and normalisation: ``Dropout``, ``BatchNorm``, ``LayerNorm``, ``RMSNorm``.

Dropout draws random numbers and BatchNorm keeps running statistics; both are explicit
(:mod:`nnc.effects`): in training a call takes ``key=`` and ``stats=`` and gives the new
statistics back, and :func:`nnc.inference` gives the evaluation model. LayerNorm and
RMSNorm normalise each example on its own and have no effects.

Momentum and epsilon mean what they mean in PyTorch: ``running = (1 - momentum) * running
+ momentum * batch``, the running variance takes the unbiased batch variance, and the
normalisation the biased one.

>>> import numpy as np
>>> from nnc import Linear, LayerNorm
>>> model = Linear(3, 4) >> LayerNorm(4)
>>> y = model(model.init(seed=0), np.arange(6.0).reshape(2, 3))
>>> np.abs(y.mean(axis=-1)).max() < 1e-6, np.abs(y.std(axis=-1) - 1).max() < 1e-3
(np.True_, np.True_)
"""

from __future__ import annotations

import numbers
from dataclasses import replace
from typing import Any

import numpy as np

from nnc.backend.broadcasting import dtype_of, shape_of
from nnc.backend.elementwise import add, cast, div, less, mul, sqrt, sub, where
from nnc.backend.errors import ArgumentError, ShapeError
from nnc.backend.random import uniform
from nnc.backend.reductions import mean
from nnc.backend.structural import reshape

from .effects import Effects, layer_call
from .layers import check_flag, check_name
from .model import Model, ParamSpec, created_at_note
from .show import describer, dims
from .source import UserLocation, user_location
from .types import ArrayType, Dim, Mismatch, Tensor, Type, TypeVar, Vec, bad_argument, size_argument


def _rate(value: Any, layer: str, created_at: UserLocation | None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= float(value) < 1:
        raise bad_argument(
            layer, created_at, "rate", "a number in [0, 1), the probability of dropping an entry", value
        )
    return float(value)


def _positive(value: Any, layer: str, argument: str, created_at: UserLocation | None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) > 0:
        raise bad_argument(layer, created_at, argument, "a number > 0", value)
    return float(value)


def missing(model: Model, what: str, hint: str) -> ArgumentError:
    """The error for a layer called in training mode without its key or statistics: an
    argument the call needs was not given."""
    return ArgumentError(f"{model!r}{created_at_note(model)} {what}\n  hint: {hint}")


def too_small(model: Model, what: str, hint: str) -> ShapeError:
    """The error for BatchNorm in training given too few values to take statistics of."""
    return ShapeError(f"{model!r}{created_at_note(model)} {what}\n  hint: {hint}")


# ----------------------------------------------------------------------------- Dropout


def _dropout_forward(model: Model, params: Any, x: Any) -> Any:
    call = layer_call(params)
    if call is None or call.key is None:
        raise missing(
            model,
            "draws random numbers in training, but the call gave no key",
            "call model(params, x, key=nnc.key(seed)), or evaluate nnc.inference(model)(params, x)",
        )
    rate = model.attr("rate")
    if rate == 0.0:  # structure: no dropout at all
        return x
    drawn = uniform(call.key, shape_of(x), dtype_of(x))
    if call.rate is not None:  # the rate as data (fit's steps): rounded to x's dtype as a float would be
        dtype = dtype_of(x)
        scale = cast(div(1.0, sub(1.0, call.rate)), dtype)
        return where(less(drawn, cast(call.rate, dtype)), 0.0, mul(x, scale))
    return where(less(drawn, rate), 0.0, mul(x, 1.0 / (1.0 - rate)))


def _dropout_inference(model: Model) -> Model:
    return replace(model, forward=lambda m, p, x: x, effects=None, attrs=model.attrs + (("inference", True),))


def Dropout(rate: float, *, name: str | None = None) -> Model:
    """Inverted dropout: in training each entry is zeroed with probability ``rate`` and the
    others scaled by ``1 / (1 - rate)``; in :func:`nnc.inference` the identity. Any type to
    the same type; draws random numbers, so a training call takes ``key=``.

    >>> import numpy as np
    >>> from nnc import key
    >>> y = Dropout(0.5)(np.ones((2, 4)), key=key(0))
    >>> sorted(set(y.ravel().tolist()))
    [0.0, 2.0]
    """
    created_at = user_location(2)
    rate = _rate(rate, "Dropout", created_at)
    a = TypeVar("a")
    return Model(
        "Dropout",
        a,
        a,
        _dropout_forward,
        attrs=(("rate", rate),),
        name=check_name("Dropout", created_at, name),
        created_at=created_at,
        effects=Effects(random=True, inference=_dropout_inference),
    )


@describer("Dropout")
def _describe_dropout(model: Model) -> str:
    return f"Dropout({model.attr('rate'):g}" + (", inference)" if model.attr("inference") else ")")


# ----------------------------------------------------------------------------- BatchNorm


def _batch_norm_forward(model: Model, params: Any, x: Any) -> Any:
    call = layer_call(params)
    rank = len(shape_of(x))
    type_rank = len(model.in_type.dims) if isinstance(model.in_type, ArrayType) else rank - 1
    training = not model.attr("inference", False)
    if call is None or call.stats is None:
        raise missing(
            model,
            "normalises with running statistics, but the call gave none",
            "make them with model.init_stats() and call model(params, x, stats=stats)",
        )
    eps, momentum = model.attr("eps"), model.attr("momentum")
    if training:
        if rank == type_rank:
            raise too_small(
                model,
                f"normalises over a batch in training, but was given one example of shape {shape_of(x)}",
                "give it a batch (a leading batch axis), or evaluate nnc.inference(model)",
            )
        axes = (0,) + tuple(range(2, rank))
        count = int(np.prod([shape_of(x)[a] for a in axes]))
        if count < 2:
            raise too_small(
                model,
                f"needs more than one value per channel in training, but was given shape {shape_of(x)}",
                "train with batches of two examples or more, or evaluate nnc.inference(model)",
            )
        batch_mean = mean(x, axes, keepdims=True)
        centred = sub(x, batch_mean)
        batch_var = mean(mul(centred, centred), axes, keepdims=True)
        normalised = div(centred, sqrt(add(batch_var, eps)))
        channels = shape_of(call.stats["mean"])
        keep = 1.0 - momentum
        call.update(
            {
                "mean": add(mul(call.stats["mean"], keep), mul(reshape(batch_mean, channels), momentum)),
                "var": add(
                    mul(call.stats["var"], keep),
                    mul(reshape(batch_var, channels), momentum * count / (count - 1)),
                ),
            }
        )
    else:
        lead = rank - type_rank  # 1 for a batch, 0 for one example
        shape = (1,) * lead + (shape_of(call.stats["mean"])[0],) + (1,) * (type_rank - 1)
        centred = sub(x, reshape(call.stats["mean"], shape))
        normalised = div(centred, sqrt(add(reshape(call.stats["var"], shape), eps)))
        return _affine(normalised, params, shape)
    return _affine(normalised, params, (1, shape_of(call.stats["mean"])[0]) + (1,) * (rank - 2))


def _affine(x: Any, params: Any, shape: tuple) -> Any:
    if "scale" in params:
        x = mul(x, reshape(params["scale"], shape))
    if "bias" in params:
        x = add(x, reshape(params["bias"], shape))
    return x


def _batch_norm_refine(model: Model, incoming: Type) -> Model:
    if not isinstance(incoming, ArrayType):
        return model
    c = model.attr("channels")
    if len(incoming.dims) == 1:
        t: Type = Vec[c]
    elif len(incoming.dims) == 3:
        t = Tensor[c, Dim("h"), Dim("w")]
    else:
        raise Mismatch(
            f"BatchNorm normalises Vec[c] or Tensor[c, h, w], not a rank-{len(incoming.dims)} array"
        )
    return replace(model, in_type=t, out_type=t)


def _batch_norm_inference(model: Model) -> Model:
    return replace(
        model,
        attrs=model.attrs + (("inference", True),),
        effects=replace(model.effects, inference=None) if model.effects is not None else None,
    )


def BatchNorm(
    channels: int,
    *,
    momentum: float = 0.1,
    eps: float = 1e-5,
    scale: bool = True,
    bias: bool = True,
    name: str | None = None,
) -> Model:
    """Batch normalisation over the batch (and, for ``Tensor[c, h, w]``, the positions) of
    each of ``channels`` channels: ``Vec[c] -> Vec[c]`` or ``Tensor[c, h, w] -> Tensor[c, h, w]``.

    Training normalises with the batch's statistics and updates the running ones
    (``stats`` in, new ``stats`` out); :func:`nnc.inference` normalises with the running
    statistics. Learned ``scale`` (ones) and ``bias`` (zeros) per channel are options.

    >>> import numpy as np
    >>> from nnc import Linear
    >>> model = Linear(2, 3) >> BatchNorm(3)
    >>> model.signature
    Vec[2] -> Vec[3], stats
    >>> params, stats = model.init(seed=0), model.init_stats()
    >>> y, stats = model(params, np.arange(8.0).reshape(4, 2), stats=stats)
    >>> np.abs(y.mean(axis=0)).max() < 1e-6, sorted(stats["batchnorm_0"])
    (np.True_, ['mean', 'var'])
    """
    created_at = user_location(2)
    c = size_argument(
        channels, "BatchNorm", "channels", created_at, hint="channels is the number of features"
    )
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0 <= float(momentum) <= 1:
        raise bad_argument("BatchNorm", created_at, "momentum", "a number in [0, 1]", momentum)
    momentum = float(momentum)
    eps = _positive(eps, "BatchNorm", "eps", created_at)
    specs = []
    if check_flag("BatchNorm", created_at, "scale", scale):
        specs.append(("scale", ParamSpec((c,), "ones")))
    if check_flag("BatchNorm", created_at, "bias", bias):
        specs.append(("bias", ParamSpec((c,), "zeros")))
    a = TypeVar("a")
    return Model(
        "BatchNorm",
        a,
        a,
        _batch_norm_forward,
        param_specs=tuple(specs),
        attrs=(("channels", c), ("momentum", momentum), ("eps", eps)),
        name=check_name("BatchNorm", created_at, name),
        created_at=created_at,
        refine=_batch_norm_refine,
        effects=Effects(
            stat_specs=(("mean", ParamSpec((c,), "zeros")), ("var", ParamSpec((c,), "ones"))),
            inference=_batch_norm_inference,
        ),
    )


@describer("BatchNorm")
def _describe_batch_norm(model: Model) -> str:
    options = f", momentum={model.attr('momentum'):g}" if model.attr("momentum") != 0.1 else ""
    return f"BatchNorm({model.attr('channels')}{options}" + (
        ", inference)" if model.attr("inference") else ")"
    )


# ----------------------------------------------------------------------------- LayerNorm, RMSNorm


def _layer_norm_forward(model: Model, params: Any, x: Any) -> Any:
    eps = model.attr("eps")
    centred = sub(x, mean(x, -1, keepdims=True))
    normalised = div(centred, sqrt(add(mean(mul(centred, centred), -1, keepdims=True), eps)))
    return _affine(normalised, params, (shape_of(x)[-1],))


def _rms_norm_forward(model: Model, params: Any, x: Any) -> Any:
    eps = model.attr("eps")
    if eps is None:  # as PyTorch: the machine epsilon of the input's dtype
        eps = float(np.finfo(dtype_of(x)).eps)
    normalised = div(x, sqrt(add(mean(mul(x, x), -1, keepdims=True), eps)))
    return _affine(normalised, params, (shape_of(x)[-1],))


def _feature_norm(
    kind: str, forward: Any, size: Any, eps: Any, scale: Any, bias: Any, name: Any, created_at: Any
) -> Model:
    n = size_argument(size, kind, "n", created_at, hint="n is the number of features, the last axis")
    if eps is not None:
        eps = _positive(eps, kind, "eps", created_at)
    specs = []
    if check_flag(kind, created_at, "scale", scale):
        specs.append(("scale", ParamSpec((n,), "ones")))
    if bias is not None and check_flag(kind, created_at, "bias", bias):
        specs.append(("bias", ParamSpec((n,), "zeros")))
    return Model(
        kind,
        Vec[n],
        Vec[n],
        forward,
        param_specs=tuple(specs),
        attrs=(("n", n), ("eps", eps)),
        name=check_name(kind, created_at, name),
        created_at=created_at,
    )


def LayerNorm(
    n: int, *, eps: float = 1e-5, scale: bool = True, bias: bool = True, name: str | None = None
) -> Model:
    """Normalise each example over its last axis to mean 0 and variance 1, then scale and
    shift (learned, per feature; options): ``Vec[n] -> Vec[n]``. No effects.

    >>> LayerNorm(4).signature
    Vec[4] -> Vec[4]
    """
    return _feature_norm("LayerNorm", _layer_norm_forward, n, eps, scale, bias, name, user_location(2))


def RMSNorm(n: int, *, eps: float | None = None, scale: bool = True, name: str | None = None) -> Model:
    """Divide each example by the root mean square of its last axis, then scale (learned, per
    feature; an option): ``Vec[n] -> Vec[n]``. ``eps=None`` is the machine epsilon of the
    input's dtype, as in PyTorch. No effects.

    >>> RMSNorm(4).signature
    Vec[4] -> Vec[4]
    """
    return _feature_norm("RMSNorm", _rms_norm_forward, n, eps, scale, None, name, user_location(2))


@describer("LayerNorm")
def _describe_layer_norm(model: Model) -> str:
    return f"LayerNorm({dims(model.attr('n'))[0]})"


@describer("RMSNorm")
def _describe_rms_norm(model: Model) -> str:
    return f"RMSNorm({dims(model.attr('n'))[0]})"
