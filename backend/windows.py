"""Sliding windows over images ``(batch, channels, height, width)``: the convolution and
pooling primitives.

Each primitive's gradient rule is written with primitives, so the backward pass is
differentiable again (hessians, gradient penalties). Convolution closes over three
primitives: with ``T(x, w, g) = <conv2d(x, w), g>``, the input gradient is ``dT/dx``
and the weight gradient ``dT/dw``, and the rules of those two are again ``conv2d``
and each other. Max pooling closes over a scatter (its backward) and a gather (the
scatter's transpose); average pooling over itself and its transpose.

The implementations are chosen in :mod:`nnc.kernels.dispatch` (Numba kernels or numpy);
the compiled forms, for ``nnc.compile``, follow each family's gradient rules. A single image
``(channels, height, width)`` is accepted too and gives a single result.

>>> import numpy as np
>>> x = np.arange(16.0).reshape(1, 1, 4, 4)
>>> conv2d(x, np.ones((1, 1, 2, 2)), stride=2)
array([[[[10., 18.],
         [42., 50.]]]])
>>> max_pool(x, 2)
array([[[[ 5.,  7.],
         [13., 15.]]]])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nnc.kernels import dispatch
from nnc.kernels.reference import output_size

from .broadcasting import dtype_of, shape_of
from .core import Eqn, bind, defemit, defgeneric, defprim, defvjp
from .elementwise import cast
from .errors import ShapeError
from .numba_codegen import FunctionWriter, literal
from .structural import reshape


def pair(value: Any, name: str, op: str, minimum: int = 1) -> tuple[int, int]:
    """``3 -> (3, 3)``; a pair stays a pair. Anything else is a :class:`ShapeError` of ``op``
    naming ``name``: the geometry decides the output's shape. (The layers check their own
    arguments when they are created, with messages that say where.)"""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= minimum for v in items
    ):
        raise ShapeError(f"{op}: {name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return int(items[0]), int(items[1])


def _images(x: Any, op: str) -> tuple[Any, bool]:
    """``x`` as a batch of images, and whether it was a single image."""
    shape = tuple(shape_of(x))
    if len(shape) not in (3, 4):
        raise ShapeError(
            f"{op}: expected images of shape (batch, channels, height, width) or "
            f"(channels, height, width), got shape {shape}"
        )
    if dtype_of(x).kind != "f":
        raise ShapeError(f"{op}: expected floating-point images, got dtype {dtype_of(x)}")
    if len(shape) == 3:
        return reshape(x, (1,) + shape), True
    return x, False


def _unbatch(y: Any, single: bool) -> Any:
    return reshape(y, shape_of(y)[1:]) if single else y


# ----------------------------------------------------------------------------- convolution


def _conv_shape(x_shape, w_shape, stride, padding, dilation) -> tuple[int, ...]:
    (b, _, h, w), (o, _, kh, kw) = x_shape, w_shape
    return (
        b,
        o,
        output_size(h, kh, stride[0], padding[0], dilation[0]),
        output_size(w, kw, stride[1], padding[1], dilation[1]),
    )


conv2d_p = defprim(
    "conv2d",
    dispatch.conv2d,
    abstract=lambda x, w, stride, padding, dilation: (
        _conv_shape(x[0], w[0], stride, padding, dilation),
        np.result_type(x[1], w[1]),
    ),
)
conv2d_input_grad_p = defprim(
    "conv2d_input_grad",
    dispatch.conv2d_input_grad,
    abstract=lambda g, w, x_shape, stride, padding, dilation: (x_shape, np.result_type(g[1], w[1])),
)
conv2d_weight_grad_p = defprim(
    "conv2d_weight_grad",
    dispatch.conv2d_weight_grad,
    abstract=lambda x, g, w_shape, stride, padding, dilation: (w_shape, np.result_type(x[1], g[1])),
)


# ----------------------------------------------------------------------------- array-API forms
# im2col written with slicing, stacking and matmul alone, so it runs on any array-API
# namespace (on CuPy the products go to cuBLAS). Tap t = i * kw + j is kernel row i, column j.


def _taps(images, kernel, stride, dilation, out_hw) -> list:
    """The slice of ``images`` each kernel tap sees, one (B, C, ho, wo) view per tap."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    return [
        (
            slice(None),
            slice(None),
            slice(i * dh, i * dh + sh * (ho - 1) + 1, sh),
            slice(j * dw, j * dw + sw * (wo - 1) + 1, sw),
        )
        for i in range(kh)
        for j in range(kw)
    ]


def _padded_zeros(xp, shape, padding, like):
    b, c, h, w = shape
    return xp.zeros((b, c, h + 2 * padding[0], w + 2 * padding[1]), dtype=like.dtype, device=like.device)


def _pad(xp, x, padding):
    if padding == (0, 0):
        return x
    out = _padded_zeros(xp, x.shape, padding, x)
    out[:, :, padding[0] : padding[0] + x.shape[2], padding[1] : padding[1] + x.shape[3]] = x
    return out


def _crop(x, shape, padding):
    if padding == (0, 0):
        return x
    return x[:, :, padding[0] : padding[0] + shape[2], padding[1] : padding[1] + shape[3]]


def _columns(xp, x, kernel, stride, padding, dilation, out_hw):
    """(B, C * kh * kw, ho * wo): every tap's view of the padded images, stacked."""
    padded = _pad(xp, x, padding)
    cols = xp.stack([padded[t] for t in _taps(padded, kernel, stride, dilation, out_hw)], axis=2)
    b, c = x.shape[:2]
    return xp.reshape(cols, (b, c * kernel[0] * kernel[1], out_hw[0] * out_hw[1]))


def _conv2d_generic(xp, x, w, stride, padding, dilation):
    o, _, kh, kw = w.shape
    _, _, ho, wo = _conv_shape(x.shape, w.shape, stride, padding, dilation)
    cols = _columns(xp, x, (kh, kw), stride, padding, dilation, (ho, wo))
    y = xp.matmul(xp.reshape(w, (o, -1)), cols)
    return xp.reshape(y, (x.shape[0], o, ho, wo))


def _conv2d_input_grad_generic(xp, g, w, x_shape, stride, padding, dilation):
    (b, o, ho, wo), (_, c, kh, kw) = g.shape, w.shape
    cols = xp.matmul(xp.matrix_transpose(xp.reshape(w, (o, -1))), xp.reshape(g, (b, o, ho * wo)))
    cols = xp.reshape(cols, (b, c, kh * kw, ho, wo))
    out = _padded_zeros(xp, x_shape, padding, g)
    for t, tap in enumerate(_taps(out, (kh, kw), stride, dilation, (ho, wo))):
        out[tap] = out[tap] + cols[:, :, t, ...]
    return _crop(out, x_shape, padding)


def _conv2d_weight_grad_generic(xp, x, g, w_shape, stride, padding, dilation):
    b, o, ho, wo = g.shape
    cols = _columns(xp, x, w_shape[2:], stride, padding, dilation, (ho, wo))
    gw = xp.sum(xp.matmul(xp.reshape(g, (b, o, ho * wo)), xp.matrix_transpose(cols)), axis=0)
    return xp.reshape(gw, w_shape)


def _windows(xp, x, kernel, stride):
    """(B, C, kh * kw, ho, wo): each pooling window's entries along axis 2, and the tap slices."""
    _, _, ho, wo = _pool_shape(x.shape, kernel, stride)
    taps = _taps(x, kernel, stride, (1, 1), (ho, wo))
    return xp.stack([x[t] for t in taps], axis=2), taps


def _first_largest(xp, x, kernel, stride):
    """Per window, a one-hot mask (B, C, K, ho, wo) of its first largest entry, and the tap slices."""
    stacked, taps = _windows(xp, x, kernel, stride)
    first = xp.argmax(stacked, axis=2)
    k = xp.arange(len(taps), device=x.device)
    return first[:, :, None, ...] == xp.reshape(k, (1, 1, -1, 1, 1)), taps


def _max_pool_generic(xp, x, kernel, stride):
    return xp.max(_windows(xp, x, kernel, stride)[0], axis=2)


def _max_pool_grad_generic(xp, x, g, kernel, stride):
    mask, taps = _first_largest(xp, x, kernel, stride)
    out = xp.zeros(x.shape, dtype=g.dtype, device=g.device)
    zero = xp.zeros_like(g)
    for t, tap in enumerate(taps):
        out[tap] = out[tap] + xp.where(mask[:, :, t, ...], g, zero)
    return out


def _max_pool_gather_generic(xp, x, c, kernel, stride):
    mask, _ = _first_largest(xp, x, kernel, stride)
    stacked = _windows(xp, c, kernel, stride)[0]
    return xp.sum(xp.where(mask, stacked, xp.zeros_like(stacked)), axis=2)


def _avg_pool_generic(xp, x, kernel, stride):
    return xp.sum(_windows(xp, x, kernel, stride)[0], axis=2) / (kernel[0] * kernel[1])


def _avg_pool_grad_generic(xp, g, x_shape, kernel, stride):
    out = xp.zeros(x_shape, dtype=g.dtype, device=g.device)
    share = g / (kernel[0] * kernel[1])
    for tap in _taps(out, kernel, stride, (1, 1), g.shape[2:]):
        out[tap] = out[tap] + share
    return out


def conv2d(x, w, stride: Any = 1, padding: Any = 0, dilation: Any = 1) -> Any:
    """Cross-correlate images ``x`` (B, C, H, W) with filters ``w`` (O, C, kh, kw).

    ``stride``, ``padding`` (zeros on both sides) and ``dilation`` (spacing of the taps)
    are ints or (rows, cols) pairs. The result has shape (B, O, ho, wo), with
    ``ho = (H + 2 * padding - dilation * (kh - 1) - 1) // stride + 1`` (likewise wo).
    """
    stride, padding, dilation = (
        pair(stride, "stride", "conv2d"),
        pair(padding, "padding", "conv2d", 0),
        pair(dilation, "dilation", "conv2d"),
    )
    x, single = _images(x, "conv2d")
    ws = tuple(shape_of(w))
    if len(ws) != 4:
        raise ShapeError(
            f"conv2d: expected filters of shape (out_channels, in_channels, kh, kw), got shape {ws}"
        )
    xs = tuple(shape_of(x))
    if xs[1] != ws[1]:
        raise ShapeError(
            f"conv2d: the images have {xs[1]} channels but the filters of shape {ws} expect {ws[1]}"
        )
    out = _conv_shape(xs, ws, stride, padding, dilation)
    if out[2] < 1 or out[3] < 1:
        raise ShapeError(
            f"conv2d: a {ws[2]}x{ws[3]} kernel (dilation {dilation}) does not fit images of "
            f"{xs[2]}x{xs[3]} with padding {padding}: the output would be {out[2]}x{out[3]}"
        )
    dtype = np.result_type(dtype_of(x), dtype_of(w))
    x, w = cast(x, dtype), cast(w, dtype)
    y = bind(conv2d_p, x, w, stride=stride, padding=padding, dilation=dilation)
    return _unbatch(y, single)


def conv2d_input_grad(g, w, x_shape, stride, padding, dilation) -> Any:
    """The cotangent of ``conv2d``'s images for output cotangent ``g`` (a transposed convolution)."""
    return bind(
        conv2d_input_grad_p, g, w, x_shape=tuple(x_shape), stride=stride, padding=padding, dilation=dilation
    )


def conv2d_weight_grad(x, g, w_shape, stride, padding, dilation) -> Any:
    """The cotangent of ``conv2d``'s filters for output cotangent ``g``."""
    return bind(
        conv2d_weight_grad_p, x, g, w_shape=tuple(w_shape), stride=stride, padding=padding, dilation=dilation
    )


def _conv2d_vjp(g, out, x, w, stride, padding, dilation):
    geometry = dict(stride=stride, padding=padding, dilation=dilation)
    return (
        conv2d_input_grad(g, w, shape_of(x), **geometry),
        conv2d_weight_grad(x, g, shape_of(w), **geometry),
    )


def _input_grad_vjp(ct, out, g, w, x_shape, stride, padding, dilation):
    geometry = dict(stride=stride, padding=padding, dilation=dilation)
    return (bind(conv2d_p, ct, w, **geometry), conv2d_weight_grad(ct, g, shape_of(w), **geometry))


def _weight_grad_vjp(ct, out, x, g, w_shape, stride, padding, dilation):
    geometry = dict(stride=stride, padding=padding, dilation=dilation)
    return (conv2d_input_grad(g, ct, shape_of(x), **geometry), bind(conv2d_p, x, ct, **geometry))


defvjp(conv2d_p, _conv2d_vjp)
defvjp(conv2d_input_grad_p, _input_grad_vjp)
defvjp(conv2d_weight_grad_p, _weight_grad_vjp)


# Compiled forms (nnc.compile): the kernels' own gathers (nnc.kernels.im2col), called from the
# generated code, around BLAS products. The receptive fields of all B images sit side by side
# in one (K, B * P) matrix of columns, P = ho * wo: one product per pass. Called rather than
# written out as loops in the generated code: the digits CNN step runs as fast, and each new
# model compiles about 12% faster, Numba's cache keeping the kernels (measured interleaved).


def _conv_geometry(e: Eqn, x_shape: tuple, w_shape: tuple) -> dict:
    (b, c, h, w), (o, _, kh, kw) = x_shape, w_shape
    (sh, sw), (ph, pw), (dh, dw) = e.attrs["stride"], e.attrs["padding"], e.attrs["dilation"]
    ho, wo = output_size(h, kh, sh, ph, dh), output_size(w, kw, sw, pw, dw)
    return dict(
        B=b, O=o, K=c * kh * kw, P=ho * wo, HO=ho, WO=wo, taps=(kh, kw, sh, sw, ph, pw, dh, dw, ho, wo)
    )


def _ints(*values: int) -> str:
    return ", ".join(f"np.int64({int(v)})" for v in values)


def _written_columns(writer: FunctionWriter, x: Any, geo: dict, dtype: Any) -> str:
    """The receptive fields of images ``x``, one column each: (K, B * P)."""
    cols = writer.fresh("cols")
    b, p = geo["B"], geo["P"]
    writer.alloc(cols, (geo["K"], b * p), dtype)
    gather = writer.kernel("im2col", "im2col")
    writer.emit(f"{gather}({writer.contiguous(x)}, {_ints(0, b, *geo['taps'])}, {cols}, {_ints(b * p, p)})")
    return cols


def _images_side_by_side(writer: FunctionWriter, g: Any, geo: dict, dtype: Any) -> str:
    """An output cotangent (B, O, ho, wo) as the (O, B * P) matrix the columns line up with."""
    rows = writer.fresh("gm")
    writer.permute(
        rows, writer.contiguous(g), (geo["B"], geo["O"], geo["HO"], geo["WO"]), (1, 0, 2, 3), dtype
    )
    return f"{rows}.reshape(({geo['O']}, {geo['B'] * geo['P']}))"


def _emit_conv2d(writer: FunctionWriter, e: Eqn) -> bool:
    x, w = e.inputs
    geo = _conv_geometry(e, x.shape, w.shape)
    (b, o, p), dtype = (geo["B"], geo["O"], geo["P"]), e.out.dtype
    cols = _written_columns(writer, x, geo, dtype)
    w2, _ = writer.matrix(w, (o, geo["K"]))
    y = writer.fresh("y")
    writer.gemm(y, w2, cols, o, b * p, dtype)
    shape = (o, b, geo["HO"], geo["WO"])
    writer.permute(writer.name(e.out), f"{y}.reshape({shape!r})", shape, (1, 0, 2, 3), dtype)
    return True


def _emit_conv2d_input_grad(writer: FunctionWriter, e: Eqn) -> bool:
    g, w = e.inputs
    geo = _conv_geometry(e, e.attrs["x_shape"], w.shape)
    (b, p), dtype = (geo["B"], geo["P"]), e.out.dtype
    w2, _ = writer.matrix(w, (geo["O"], geo["K"]))
    cols, dx = writer.fresh("dcols"), writer.name(e.out)
    writer.gemm(cols, w2, _images_side_by_side(writer, g, geo, dtype), geo["K"], b * p, dtype, trans_a=True)
    writer.alloc(dx, e.attrs["x_shape"], dtype)
    scatter = writer.kernel("im2col", "col2im")
    writer.emit(f"{scatter}({cols}, {_ints(0, b, *geo['taps'])}, {dx}, {_ints(b * p, p)})")
    return True


def _emit_conv2d_weight_grad(writer: FunctionWriter, e: Eqn) -> bool:
    x, g = e.inputs
    geo = _conv_geometry(e, x.shape, e.attrs["w_shape"])
    dtype = e.out.dtype
    cols = _written_columns(writer, x, geo, dtype)
    gw = writer.fresh("gw")
    writer.gemm(
        gw, _images_side_by_side(writer, g, geo, dtype), cols, geo["O"], geo["K"], dtype, trans_b=True
    )
    writer.emit(f"{writer.name(e.out)} = {gw}.reshape({tuple(e.attrs['w_shape'])!r})")
    return True


defemit(conv2d_p, _emit_conv2d)
defemit(conv2d_input_grad_p, _emit_conv2d_input_grad)
defemit(conv2d_weight_grad_p, _emit_conv2d_weight_grad)


# ----------------------------------------------------------------------------- pooling


def _pool_shape(x_shape, kernel, stride) -> tuple[int, ...]:
    b, c, h, w = x_shape
    return (b, c, output_size(h, kernel[0], stride[0], 0, 1), output_size(w, kernel[1], stride[1], 0, 1))


def _pool_abstract(x, kernel, stride):
    return _pool_shape(x[0], kernel, stride), x[1]


max_pool_p = defprim("max_pool", dispatch.max_pool, abstract=_pool_abstract)
max_pool_grad_p = defprim(
    "max_pool_grad", dispatch.max_pool_grad, abstract=lambda x, g, kernel, stride: (x[0], g[1])
)
max_pool_gather_p = defprim(
    "max_pool_gather",
    dispatch.max_pool_gather,
    abstract=lambda x, c, kernel, stride: (_pool_shape(x[0], kernel, stride), c[1]),
)
avg_pool_p = defprim("avg_pool", dispatch.avg_pool, abstract=_pool_abstract)
avg_pool_grad_p = defprim(
    "avg_pool_grad", dispatch.avg_pool_grad, abstract=lambda g, x_shape, kernel, stride: (x_shape, g[1])
)


def _pool(prim, op: str, x, kernel, stride) -> Any:
    kernel = pair(kernel, "kernel", op)
    stride = kernel if stride is None else pair(stride, "stride", op)
    x, single = _images(x, op)
    xs = tuple(shape_of(x))
    if kernel[0] > xs[2] or kernel[1] > xs[3]:
        raise ShapeError(f"{op}: a {kernel[0]}x{kernel[1]} window does not fit images of {xs[2]}x{xs[3]}")
    return _unbatch(bind(prim, x, kernel=kernel, stride=stride), single)


def max_pool(x, kernel: Any, stride: Any = None) -> Any:
    """The largest entry of each ``kernel`` window, windows ``stride`` apart (default: ``kernel``).

    No padding; the last rows or columns that do not fill a window are left out. At a tie
    the gradient goes to the window's first largest entry (row by row)."""
    return _pool(max_pool_p, "max_pool", x, kernel, stride)


def avg_pool(x, kernel: Any, stride: Any = None) -> Any:
    """The mean of each ``kernel`` window, windows ``stride`` apart (default: ``kernel``)."""
    return _pool(avg_pool_p, "avg_pool", x, kernel, stride)


def max_pool_grad(x, g, kernel, stride) -> Any:
    """``g`` routed back to the first largest entry of each window of ``x``."""
    return bind(max_pool_grad_p, x, g, kernel=kernel, stride=stride)


def max_pool_gather(x, c, kernel, stride) -> Any:
    """The entry of ``c`` (shaped like ``x``) at each window's first largest entry of ``x``."""
    return bind(max_pool_gather_p, x, c, kernel=kernel, stride=stride)


def avg_pool_grad(g, x_shape, kernel, stride) -> Any:
    """``g`` spread evenly over the windows of an input of shape ``x_shape``."""
    return bind(avg_pool_grad_p, g, x_shape=tuple(x_shape), kernel=kernel, stride=stride)


# The position of a window's maximum is constant almost everywhere: no gradient flows to x.
defvjp(max_pool_p, lambda g, out, x, kernel, stride: (max_pool_grad(x, g, kernel, stride),))
defvjp(max_pool_grad_p, lambda ct, out, x, g, kernel, stride: (None, max_pool_gather(x, ct, kernel, stride)))
defvjp(max_pool_gather_p, lambda ct, out, x, c, kernel, stride: (None, max_pool_grad(x, ct, kernel, stride)))
defvjp(avg_pool_p, lambda g, out, x, kernel, stride: (avg_pool_grad(g, shape_of(x), kernel, stride),))
defvjp(
    avg_pool_grad_p,
    lambda ct, out, g, x_shape, kernel, stride: (bind(avg_pool_p, ct, kernel=kernel, stride=stride),),
)


# Compiled forms: loops written into the generated code, specialised to the window. (Calling the
# pooling kernels instead ran the digits CNN step 1.6x slower, measured interleaved: their loops
# take the window's size at run time, where here it is a constant.)
# Pooling windows (no padding); ``{init}`` runs per window, ``{each}`` per entry, ``{done}``
# after. Lines of those, after their first, are indented for their place: _I4 is four levels deep.
_I4, _I5, _I6, _I7 = (" " * (4 * k) for k in (4, 5, 6, 7))
_WINDOWS = """for b in range({B}):
    for c in range({C}):
        for oh in range({HO}):
            for ow in range({WO}):
                {init}
                for ki in range({KH}):
                    for kj in range({KW}):
                        ih = oh * {SH} + ki
                        iw = ow * {SW} + kj
                        {each}
                {done}"""


def _block(writer: FunctionWriter, template: str, **fields: Any) -> None:
    for line in template.format(**fields).splitlines():
        writer.emit(line)


def _pool_geometry(e: Eqn, x_shape: tuple) -> dict:
    (b, c, h, w), (kh, kw), (sh, sw) = x_shape, e.attrs["kernel"], e.attrs["stride"]
    return dict(
        B=b, C=c, KH=kh, KW=kw, SH=sh, SW=sw, HO=output_size(h, kh, sh, 0, 1), WO=output_size(w, kw, sw, 0, 1)
    )


def _argmax_window(x: str, geo: dict) -> dict:
    """Window loops that find the first largest entry (row by row) of ``x`` in each window,
    or its first NaN, as numpy's argmax does. The search starts at the window's first
    entry (a window of -inf still has an argmax) and keeps to ``v > best``; whether the
    window holds a NaN is gathered beside it, off the search's chain of dependent
    comparisons (a NaN test inside that chain cost the CNN step about 15%, this about 7%),
    and only a window holding one is searched again, for its first NaN."""
    sh, sw, kh, kw = geo["SH"], geo["SW"], geo["KH"], geo["KW"]
    at = f"{x}[b, c, oh * {sh} + t // {kw}, ow * {sw} + t % {kw}]"
    return dict(
        init=f"bi = oh * {sh}\n{_I4}bj = ow * {sw}\n{_I4}best = {x}[b, c, bi, bj]\n{_I4}nan = False",
        each=f"v = {x}[b, c, ih, iw]\n{_I6}nan = nan | (v != v)\n{_I6}if v > best:\n"
        f"{_I7}best = v\n{_I7}bi = ih\n{_I7}bj = iw",
        then=f"if nan:\n{_I5}for t in range({kh * kw - 1}, -1, -1):  # the last one found is the first\n"
        f"{_I6}if {at} != {at}:\n{_I7}bi = oh * {sh} + t // {kw}\n{_I7}bj = ow * {sw} + t % {kw}\n"
        f"{_I4}",
    )


def _max_windows(writer: FunctionWriter, e: Eqn, zeros: bool, done: str) -> bool:
    """A max-pooling form: ``done`` uses the window's argmax (bi, bj) of the first input and
    ``{other}``, the last input."""
    x, other, o = writer.name(e.inputs[0]), writer.name(e.inputs[-1]), writer.name(e.out)
    geo = _pool_geometry(e, e.inputs[0].shape)
    writer.alloc(o, e.out.shape, e.out.dtype, fill="0" if zeros else None)
    search = _argmax_window(x, geo)
    done = search["then"] + done.format(o=o, other=other)
    _block(writer, _WINDOWS, init=search["init"], each=search["each"], done=done, **geo)
    return True


def _emit_max_gather(writer: FunctionWriter, e: Eqn) -> bool:
    """max_pool (the entry of x itself) and max_pool_gather (of c) at each window's argmax of x."""
    return _max_windows(writer, e, False, "{o}[b, c, oh, ow] = {other}[b, c, bi, bj]")


def _emit_max_pool_grad(writer: FunctionWriter, e: Eqn) -> bool:
    return _max_windows(writer, e, True, "{o}[b, c, bi, bj] += {other}[b, c, oh, ow]")


def _emit_avg_pool(writer: FunctionWriter, e: Eqn) -> bool:
    x, o, dtype = writer.name(e.inputs[0]), writer.name(e.out), e.out.dtype
    geo = _pool_geometry(e, e.inputs[0].shape)
    writer.alloc(o, e.out.shape, dtype)
    scale = literal(1.0 / (geo["KH"] * geo["KW"]), dtype)
    each, done = f"acc += {x}[b, c, ih, iw]", f"{o}[b, c, oh, ow] = acc * {scale}"
    _block(writer, _WINDOWS, init=f"acc = {literal(0, dtype)}", each=each, done=done, **geo)
    return True


def _emit_avg_pool_grad(writer: FunctionWriter, e: Eqn) -> bool:
    g, o, dtype = writer.name(e.inputs[0]), writer.name(e.out), e.out.dtype
    geo = _pool_geometry(e, e.attrs["x_shape"])
    scale = literal(1.0 / (geo["KH"] * geo["KW"]), dtype)
    writer.alloc(o, e.out.shape, dtype, fill="0")
    init, each = f"share = {g}[b, c, oh, ow] * {scale}", f"{o}[b, c, ih, iw] += share"
    _block(writer, _WINDOWS, init=init, each=each, done="pass", **geo)
    return True


defemit(max_pool_p, _emit_max_gather)
defemit(max_pool_gather_p, _emit_max_gather)
defemit(max_pool_grad_p, _emit_max_pool_grad)
defemit(avg_pool_p, _emit_avg_pool)
defemit(avg_pool_grad_p, _emit_avg_pool_grad)

defgeneric(conv2d_p, _conv2d_generic)
defgeneric(conv2d_input_grad_p, _conv2d_input_grad_generic)
defgeneric(conv2d_weight_grad_p, _conv2d_weight_grad_generic)
defgeneric(max_pool_p, _max_pool_generic)
defgeneric(max_pool_grad_p, _max_pool_grad_generic)
defgeneric(max_pool_gather_p, _max_pool_gather_generic)
defgeneric(avg_pool_p, _avg_pool_generic)
defgeneric(avg_pool_grad_p, _avg_pool_grad_generic)
