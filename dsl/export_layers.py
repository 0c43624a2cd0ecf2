"""The ONNX form of each stateless layer and combinator, looked up by the model's kind.

Every emitter takes a scope, the model, the names of its input values and its place, and
returns the names of its outputs. Values carry one leading batch axis in front of one
example; inside ``each``, layers whose ONNX form takes any leading axes (``Linear``,
activations, the norms, ``Embedding``) see the time axis as well (``Scope.lead`` is 2), and the
others get the steps folded into the batch. Recurrent models are in :mod:`nnc.export_recurrent`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .export_graph import DOMAIN, At, Scope, cannot_export, children_at, join, onnx_modules
from .model import Model
from .sequence import sinusoidal_table

Emitter = Callable[[Scope, Model, Any, At], Any]
LAYERS: dict[str, Emitter] = {}
INT64_MAX = np.iinfo(np.int64).max
MASKED = -1e30  # nnc's masked attention score (nnc.backend.attention.MASKED)


def layer(*kinds: str) -> Callable[[Emitter], Emitter]:
    def register(fn: Emitter) -> Emitter:
        for kind in kinds:
            LAYERS[kind] = fn
        return fn

    return register


def emit(s: Scope, model: Model, x: Any, at: At) -> Any:
    """The ONNX nodes of ``model`` applied to ``x``, written into ``s``; the output names."""
    fn = LAYERS.get(model.kind)
    if fn is None:
        raise cannot_export(
            model,
            f"nnc has no ONNX form for {model.kind!r} layers",
            "see docs/howto/export.md for what exports",
        )
    return fn(s, model, x, at)


def own(s: Scope, at: At, name: str) -> str:
    """A parameter of the layer at ``at``."""
    return s.param(join(at.params, name))


def has(model: Model, name: str) -> bool:
    return any(k == name for k, _ in model.param_specs)


def reduce_mean(s: Scope, x: str, name: str) -> str:
    """The mean over the last axis, kept (``ReduceMean`` takes its axes as an input from opset 18)."""
    if s.export.opset >= 18:
        return s.op("ReduceMean", [x, s.ints([-1], name)], name, keepdims=1)
    return s.op("ReduceMean", [x], name, axes=[-1], keepdims=1)


def shape(s: Scope, x: str, name: str, start: int, end: int | None = None) -> str:
    attrs: dict[str, Any] = {"start": start} if end is None else {"start": start, "end": end}
    return s.op("Shape", [x], name, **attrs)


def slice_last(s: Scope, x: str, start: int, end: int, name: str) -> str:
    """``x[..., start:end]``."""
    return s.op("Slice", [x, s.ints([start], name), s.ints([end], name), s.ints([-1], name)], name)


# ----------------------------------------------------------------------------- structure


@layer("serial")
def _serial(s: Scope, m: Model, x: Any, at: At) -> Any:
    for child, child_at in children_at(m, at):
        x = emit(s, child, x, child_at)
    return x


@layer("Input")
def _input(s: Scope, m: Model, x: Any, at: At) -> Any:
    return x


@layer("residual")
def _residual(s: Scope, m: Model, x: Any, at: At) -> Any:
    ((inner, inner_at),) = children_at(m, at)
    return s.call(
        at, m.kind, x, lambda b, fx: b.op("Add", [fx, emit(b, inner, fx, inner_at)], at.label(m.kind))
    )


@layer("repeat")
def _repeat(s: Scope, m: Model, x: Any, at: At) -> Any:
    def body(b: Scope, fx: Any) -> Any:
        for child, child_at in children_at(m, at):  # each copy a function of its own: repeat_0/1
            fx = b.call(child_at, "block", fx, copy(child, child_at))
        return fx

    def copy(child: Model, child_at: At) -> Callable[[Scope, Any], Any]:
        return lambda bb, v: emit(bb, child, v, child_at)

    return s.call(at, m.kind, x, body)


@layer("fanout")
def _fanout(s: Scope, m: Model, x: Any, at: At) -> Any:
    return s.call(at, m.kind, x, lambda b, fx: tuple(emit(b, c, fx, ca) for c, ca in children_at(m, at)))


@layer("parallel")
def _parallel(s: Scope, m: Model, x: Any, at: At) -> Any:
    return s.call(
        at,
        m.kind,
        x,
        lambda b, fx: tuple(emit(b, c, xi, ca) for (c, ca), xi in zip(children_at(m, at), fx)),
    )


@layer("add")
def _add(s: Scope, m: Model, x: Any, at: At) -> Any:
    return s.op("Sum", list(x), at.label(m.kind))


@layer("concat")
def _concat(s: Scope, m: Model, x: Any, at: At) -> Any:
    return s.op("Concat", list(x), at.label(m.kind), axis=-m.attr("rank", 1))


@layer("each")
def _each(s: Scope, m: Model, x: Any, at: At) -> Any:
    ((inner, inner_at),) = children_at(m, at)
    return each(s, inner, x, inner_at, at.label(m.kind))


# layers whose ONNX form works on any number of leading axes: ``each`` runs them as they are
_ANY_LEAD = {"Linear", "LayerNorm", "RMSNorm", "Dropout", "Embedding", "Input", "softmax", "log_softmax"}
_ANY_LEAD_COMBINATORS = {"serial", "residual", "each"}


def _any_lead(m: Model) -> bool:
    if m.kind in _ANY_LEAD or m.kind in _ELEMENTWISE or m.kind in ("silu", "gelu", "gelu_tanh"):
        return True
    return m.kind in _ANY_LEAD_COMBINATORS and all(_any_lead(c) for c in m.children)


def each(s: Scope, inner: Model, x: str, at: At, name: str) -> str:
    """``inner`` at every step of ``x`` (batch, time, ...): as it is where its layers take any
    leading axes (so that the time axis keeps its name in the inferred shapes), else with the
    steps folded into the batch."""
    if _any_lead(inner):
        saved, s.lead = s.lead, s.lead + 1
        try:
            return emit(s, inner, x, at)
        finally:
            s.lead = saved
    steps = s.op(
        "Reshape", [x, s.op("Concat", [s.ints([-1], name), shape(s, x, name, 2)], name, axis=0)], name
    )
    y = emit(s, inner, steps, at)
    lead, tail = shape(s, x, name, 0, 2), shape(s, y, name, 1)
    return s.op("Reshape", [y, s.op("Concat", [lead, tail], name, axis=0)], name)


@layer("lift")
def _lift(s: Scope, m: Model, x: Any, at: At) -> Any:
    raise cannot_export(
        m,
        "lift(fn) runs a Python function, which an ONNX graph cannot hold",
        "write the function as layers nnc can export, or export the model before and after it",
    )


LENGTHS = "__nnc_lengths__"  # padded's lengths, passed to the attention layers like a parameter


@layer("padded")
def _padded(s: Scope, m: Model, x: Any, at: At) -> Any:
    ((inner, inner_at),) = children_at(m, at)
    sequences, lengths = x
    saved = s.padded, s.known.get(LENGTHS)
    s.padded, s.known[LENGTHS] = True, lengths
    try:
        return emit(s, inner, sequences, inner_at)
    finally:
        s.padded = saved[0]
        if saved[1] is None:
            del s.known[LENGTHS]
        else:
            s.known[LENGTHS] = saved[1]


# ----------------------------------------------------------------------------- dense layers and activations


@layer("Linear")
def _linear(s: Scope, m: Model, x: Any, at: At) -> Any:
    name = at.label(m.kind)
    if has(m, "b") and s.lead == 1:
        return s.op("Gemm", [x, own(s, at, "W"), own(s, at, "b")], name)
    y = s.op("MatMul", [x, own(s, at, "W")], name)
    return s.op("Add", [y, own(s, at, "b")], name) if has(m, "b") else y


_ELEMENTWISE = {"tanh": "Tanh", "relu": "Relu", "logistic": "Sigmoid"}


@layer(*_ELEMENTWISE)
def _elementwise(s: Scope, m: Model, x: Any, at: At) -> Any:
    return s.op(_ELEMENTWISE[m.kind], [x], at.label(m.kind))


@layer("softmax", "log_softmax")
def _softmax(s: Scope, m: Model, x: Any, at: At) -> Any:
    return s.op("Softmax" if m.kind == "softmax" else "LogSoftmax", [x], at.label(m.kind), axis=-1)


@layer("silu")
def _silu(s: Scope, m: Model, x: Any, at: At) -> Any:
    name = at.label(m.kind)
    return s.op("Mul", [x, s.op("Sigmoid", [x], name)], name)


@layer("gelu", "gelu_tanh")
def _gelu(s: Scope, m: Model, x: Any, at: At) -> Any:
    # ONNX's Gelu operator arrives in opset 20: written out, as nnc computes it
    name = at.label(m.kind)
    if m.kind == "gelu":
        inner = erf(s, s.op("Mul", [x, s.const(math.sqrt(0.5), name)], name), name)
    else:
        cube = s.op("Mul", [s.op("Mul", [s.op("Mul", [x, x], name), x], name), s.const(0.044715, name)], name)
        inner = s.op(
            "Tanh",
            [s.op("Mul", [s.op("Add", [x, cube], name), s.const(math.sqrt(2 / math.pi), name)], name)],
            name,
        )
    cdf = s.op("Mul", [s.op("Add", [inner, s.const(1.0, name)], name), s.const(0.5, name)], name)
    return s.op("Mul", [x, cdf], name)


def erf(s: Scope, x: str, name: str) -> str:
    """``erf(x)``: ONNX's Erf in float32; in float64, which onnxruntime has no Erf for, the local
    function ``nnc.erf`` (a Taylor series below 2.5, a continued fraction of erfc above: both
    within 1e-14 of the true value)."""
    if s.export.float32:
        return s.op("Erf", [x], name)
    if "erf" not in s.export.function_names:
        s.export.function_names.add("erf")
        s.export.functions.append(_erf_function(s))
    return s.op("erf", [x], name, domain=DOMAIN)


def _erf_function(s: Scope) -> Any:
    _, helper = onnx_modules()
    f = Scope(s.export, "function", None)
    a = f.op("Abs", ["x"], "erf")
    split = f.const(2.5, "erf")
    # below: 2/sqrt(pi) * a * sum_n (-1)^n a^(2n) / (n! (2n + 1)), by Horner's rule in a^2
    small = f.op("Min", [a, split], "erf")
    z = f.op("Mul", [small, small], "erf")
    p = f.const(_taylor(45), "erf")
    for n in range(44, -1, -1):
        p = f.op("Add", [f.op("Mul", [p, z], "erf"), f.const(_taylor(n), "erf")], "erf")
    below = f.op("Mul", [f.op("Mul", [small, p], "erf"), f.const(2 / math.sqrt(math.pi), "erf")], "erf")
    # above: 1 - exp(-a^2) / (sqrt(pi) (a + (1/2) / (a + 1 / (a + (3/2) / (a + ...)))))
    large = f.op("Max", [a, split], "erf")
    c = large
    for k in range(30, 0, -1):
        c = f.op("Add", [large, f.op("Div", [f.const(k / 2, "erf"), c], "erf")], "erf")
    tail = f.op("Exp", [f.op("Neg", [f.op("Mul", [large, large], "erf")], "erf")], "erf")
    tail = f.op("Div", [tail, f.op("Mul", [c, f.const(math.sqrt(math.pi), "erf")], "erf")], "erf")
    above = f.op("Sub", [f.const(1.0, "erf"), tail], "erf")
    value = f.op("Where", [f.op("Less", [a, split], "erf"), below, above], "erf")
    y = f.op("Mul", [value, f.op("Sign", ["x"], "erf")], "erf")
    return helper.make_function(
        DOMAIN,
        "erf",
        ["x"],
        [y],
        f.nodes,
        opset_imports=[helper.make_opsetid("", s.export.opset)],
        doc_string="erf in float64, which onnxruntime has no kernel for",
    )


def _taylor(n: int) -> float:
    return (-1) ** n / (math.factorial(n) * (2 * n + 1))


@layer("Dropout")
def _dropout(s: Scope, m: Model, x: Any, at: At) -> Any:
    return s.op("Identity", [x], at.label(m.kind))  # the inference form; kept as a node to be seen


# ----------------------------------------------------------------------------- images


def _windows(s: Scope, m: Model, x: str, name: str) -> tuple[str, list]:
    """``x`` (batch, c, h, w) as (batch, h, w, c), padded, and for each tap ``(i, j)`` of the
    kernel the strided slice of it that the tap meets at every output position: a convolution
    or pooling written with Slice, for the float64 models that onnxruntime has no kernel for."""
    (kh, kw), (sh, sw) = m.attr("kernel"), m.attr("stride")
    (ph, pw), (dh, dw) = m.attr("padding", (0, 0)), m.attr("dilation", (1, 1))
    x = s.op("Transpose", [x], name, perm=[0, 2, 3, 1])
    if ph or pw:
        x = s.op("Pad", [x, s.ints([0, ph, pw, 0, 0, ph, pw, 0], name)], name)
    taps = []
    for i in range(kh):
        for j in range(kw):
            # the last position a tap reaches lies as far from the end as the taps after it
            ends = [-(dh * (kh - 1 - i)) or INT64_MAX, -(dw * (kw - 1 - j)) or INT64_MAX]
            taps.append(
                (
                    (i, j),
                    s.op(
                        "Slice",
                        [
                            x,
                            s.ints([i * dh, j * dw], name),
                            s.ints(ends, name),
                            s.ints([1, 2], name),
                            s.ints([sh, sw], name),
                        ],
                        name,
                    ),
                )
            )
    return x, taps


def _conv_by_taps(s: Scope, m: Model, x: str, at: At) -> str:
    name = at.label(m.kind)
    _, taps = _windows(s, m, x, name)
    kernel = s.op("Transpose", [own(s, at, "W")], name, perm=[2, 3, 1, 0])  # (kh, kw, c_in, c_out)
    total = None
    for (i, j), window in taps:
        w = s.op(
            "Gather",
            [
                s.op("Gather", [kernel, s.const(np.asarray(i), name, np.int64)], name, axis=0),
                s.const(np.asarray(j), name, np.int64),
            ],
            name,
            axis=0,
        )
        term = s.op("MatMul", [window, w], name)
        total = term if total is None else s.op("Add", [total, term], name)
    if has(m, "b"):
        total = s.op("Add", [total, own(s, at, "b")], name)
    return s.op("Transpose", [total], name, perm=[0, 3, 1, 2])


@layer("Conv2d")
def _conv(s: Scope, m: Model, x: Any, at: At) -> Any:
    if not s.export.float32:  # onnxruntime has no float64 Conv
        return _conv_by_taps(s, m, x, at)
    (ph, pw) = m.attr("padding")
    inputs = [x, own(s, at, "W")] + ([own(s, at, "b")] if has(m, "b") else [])
    return s.op(
        "Conv",
        inputs,
        at.label(m.kind),
        kernel_shape=list(m.attr("kernel")),
        strides=list(m.attr("stride")),
        pads=[ph, pw, ph, pw],
        dilations=list(m.attr("dilation")),
    )


@layer("max_pool", "avg_pool")
def _pool(s: Scope, m: Model, x: Any, at: At) -> Any:
    op = "MaxPool" if m.kind == "max_pool" else "AveragePool"
    if op == "AveragePool" and not s.export.float32:  # onnxruntime has no float64 AveragePool
        name = at.label(m.kind)
        _, taps = _windows(s, m, x, name)
        total = s.op("Sum", [t for _, t in taps], name)
        kh, kw = m.attr("kernel")
        return s.op(
            "Transpose", [s.op("Div", [total, s.const(float(kh * kw), name)], name)], name, perm=[0, 3, 1, 2]
        )
    return s.op(
        op, [x], at.label(m.kind), kernel_shape=list(m.attr("kernel")), strides=list(m.attr("stride"))
    )


@layer("flatten")
def _flatten(s: Scope, m: Model, x: Any, at: At) -> Any:
    return s.op("Flatten", [x], at.label(m.kind), axis=1)


# ----------------------------------------------------------------------------- normalisation


def _scale_and_bias(s: Scope, m: Model, at: At, n: int) -> tuple[str, str | None]:
    name = at.label(m.kind)
    scale = own(s, at, "scale") if has(m, "scale") else s.const(np.ones(n), name)
    bias = own(s, at, "bias") if has(m, "bias") else None
    return scale, bias


@layer("BatchNorm")
def _batch_norm(s: Scope, m: Model, x: Any, at: At) -> Any:
    c = m.attr("channels")
    scale, bias = _scale_and_bias(s, m, at, c)
    bias = bias if bias is not None else s.const(np.zeros(c), at.label(m.kind))
    stats = [own(s, at, "mean"), own(s, at, "var")]
    return s.op("BatchNormalization", [x, scale, bias, *stats], at.label(m.kind), epsilon=m.attr("eps"))


@layer("LayerNorm")
def _layer_norm(s: Scope, m: Model, x: Any, at: At) -> Any:
    # written out as nnc computes it (the mean of the centred squares), rather than as ONNX's
    # LayerNormalization, whose variance may be E[x^2] - E[x]^2: on features that nearly agree
    # the two differ by far more than rounding
    name = at.label(m.kind)
    centred = s.op("Sub", [x, reduce_mean(s, x, name)], name)
    variance = reduce_mean(s, s.op("Mul", [centred, centred], name), name)
    y = s.op(
        "Div",
        [centred, s.op("Sqrt", [s.op("Add", [variance, s.const(m.attr("eps"), name)], name)], name)],
        name,
    )
    return _affine(s, m, at, y, name)


def _affine(s: Scope, m: Model, at: At, y: str, name: str) -> str:
    if has(m, "scale"):
        y = s.op("Mul", [y, own(s, at, "scale")], name)
    if has(m, "bias"):
        y = s.op("Add", [y, own(s, at, "bias")], name)
    return y


@layer("RMSNorm")
def _rms_norm(s: Scope, m: Model, x: Any, at: At) -> Any:
    name = at.label(m.kind)
    eps = m.attr("eps")
    eps = float(np.finfo(s.dtype).eps) if eps is None else eps  # as nnc: the dtype's epsilon
    mean_square = reduce_mean(s, s.op("Mul", [x, x], name), name)
    y = s.op("Div", [x, s.op("Sqrt", [s.op("Add", [mean_square, s.const(eps, name)], name)], name)], name)
    return _affine(s, m, at, y, name)


# ----------------------------------------------------------------------------- tokens and attention


@layer("Embedding")
def _embedding(s: Scope, m: Model, x: Any, at: At) -> Any:
    return s.op("Gather", [own(s, at, "W"), x], at.label(m.kind), axis=0)


@layer("PositionalEmbedding")
def _positional(s: Scope, m: Model, x: Any, at: At) -> Any:
    name = at.label(m.kind)
    if m.attr("kind") == "learned":
        table = own(s, at, "P")
    else:
        table = s.const(sinusoidal_table(int(m.attr("max_len")), int(_last_dim(m))), name)
    steps = shape(s, x, name, 1, 2)
    positions = s.op("Slice", [table, s.ints([0], name), steps, s.ints([0], name)], name)
    # shaped as x again: shape inference cannot tell that the slice has ``time`` rows, and
    # without this every edge after it would show an unknown number of steps
    return s.op("Reshape", [s.op("Add", [x, positions], name), s.op("Shape", [x], name)], name)


def _last_dim(m: Model) -> Any:
    return m.in_type.item.dims[-1]  # type: ignore[union-attr]


def _keep(s: Scope, m: Model, x: str, name: str) -> str | None:
    """Where a query may look at a key (broadcasting against the scores), or None: everywhere."""
    if not m.attr("causal") and not s.padded:
        return None
    steps = s.op("Squeeze", [shape(s, x, name, 1, 2), s.ints([0], name)], name)
    zero, one = (s.const(np.asarray(v), name, np.int64) for v in (0, 1))
    positions = s.op("Range", [zero, steps, one], name)
    cols = s.op("Unsqueeze", [positions, s.ints([0], name)], name)
    keep = None
    if m.attr("causal"):
        rows = s.op("Unsqueeze", [positions, s.ints([1], name)], name)
        keep = s.op("LessOrEqual", [cols, rows], name)  # step i sees the steps j <= i
    if s.padded:  # key j of sequence b is real where j < lengths[b]: (batch, 1, 1, steps)
        lengths = s.op("Cast", [s.param(LENGTHS)], name, to=7)  # int64
        lengths = s.op("Unsqueeze", [lengths, s.ints([1, 2, 3], name)], name)
        real = s.op("Less", [cols, lengths], name)
        keep = real if keep is None else s.op("And", [keep, real], name)
    return keep


@layer("SelfAttention")
def _self_attention(s: Scope, m: Model, x: Any, at: At) -> Any:
    name = at.label(m.kind)
    heads = m.attr("heads")
    d = int(_last_dim(m))
    size = d // heads
    qkv = s.op("Add", [s.op("MatMul", [x, own(s, at, "W_qkv")], name), own(s, at, "b_qkv")], name)
    # (batch, steps, 3, heads, size) -> (3, batch, heads, steps, size): q, k and v, head by head
    qkv = s.op("Reshape", [qkv, s.ints([0, 0, 3, heads, size], name)], name)
    qkv = s.op("Transpose", [qkv], name, perm=[2, 0, 3, 1, 4])
    q, k, v = (s.op("Gather", [qkv, s.const(np.asarray(i), name, np.int64)], name, axis=0) for i in range(3))
    scores = s.op("MatMul", [q, s.op("Transpose", [k], name, perm=[0, 1, 3, 2])], name)
    scores = s.op("Mul", [scores, s.const(1.0 / math.sqrt(size), name)], name)
    keep = _keep(s, m, x, name)
    if keep is not None:
        # as nnc: far below any real score, so it weighs exactly 0, yet finite (a query that
        # sees no key at all, in a sequence of length 0, weighs every key alike)
        masked = s.op("Where", [keep, scores, s.const(MASKED, name)], name)
        scores = s.op("Reshape", [masked, s.op("Shape", [scores], name)], name)  # keeps ``time``
    probs = s.op("Softmax", [scores], name, axis=-1)
    mixed = s.op("Transpose", [s.op("MatMul", [probs, v], name)], name, perm=[0, 2, 1, 3])
    mixed = s.op("Reshape", [mixed, s.ints([0, 0, d], name)], name)
    return s.op("Add", [s.op("MatMul", [mixed, own(s, at, "W_out")], name), own(s, at, "b_out")], name)
