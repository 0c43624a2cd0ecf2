"""Plain-numpy references for every kernel: the meaning of each kernel, and its test oracle.

Convolution here is the textbook im2col: gather every receptive field into the columns
of a matrix with ``sliding_window_view`` and multiply by the weights with BLAS. It is
also the "numpy im2col" the convolution benchmark compares against, and the path nnc
takes when kernels are not compiled (``NUMBA_DISABLE_JIT=1``).

Layouts: images are ``(batch, channels, height, width)``, conv weights
``(out_channels, in_channels, kh, kw)``; ``stride``, ``padding`` and ``dilation`` are
``(rows, cols)`` pairs. A column of ``cols`` holds one receptive field in the order
``(channel, ki, kj)``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def output_size(size: int, k: int, stride: int, padding: int, dilation: int) -> int:
    """How many positions a window of ``k`` taps (``dilation`` apart) takes along one axis.

    >>> output_size(28, 3, 1, 1, 1), output_size(8, 2, 2, 0, 1), output_size(2, 3, 1, 0, 1)
    (28, 4, 0)
    """
    return max((size + 2 * padding - dilation * (k - 1) - 1) // stride + 1, 0)


# ----------------------------------------------------------------------------- convolution


def im2col(x: np.ndarray, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple) -> np.ndarray:
    """Receptive fields of ``x`` as columns: shape ``(batch, channels * kh * kw, ho * wo)``."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    b, c, h, w = x.shape
    ho, wo = output_size(h, kh, sh, ph, dh), output_size(w, kw, sw, pw, dw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    win = sliding_window_view(xp, span, axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw][:, :, :ho, :wo]
    return win.transpose(0, 1, 4, 5, 2, 3).reshape(b, c * kh * kw, ho * wo)


def col2im(
    cols: np.ndarray, x_shape: tuple, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple
) -> np.ndarray:
    """The transpose of :func:`im2col`: add every column back where it was gathered from."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    b, c, h, w = x_shape
    ho, wo = output_size(h, kh, sh, ph, dh), output_size(w, kw, sw, pw, dw)
    xp = np.zeros((b, c, h + 2 * ph, w + 2 * pw), cols.dtype)
    fields = cols.reshape(b, c, kh, kw, ho, wo)
    for ki in range(kh):
        for kj in range(kw):
            r, s = ki * dh, kj * dw
            xp[:, :, r : r + sh * (ho - 1) + 1 : sh, s : s + sw * (wo - 1) + 1 : sw] += fields[:, :, ki, kj]
    return xp[:, :, ph : ph + h, pw : pw + w]


def conv2d(x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1)) -> np.ndarray:
    """Cross-correlation of ``x`` (B, C, H, W) with ``w`` (O, C, kh, kw): (B, O, ho, wo)."""
    o, _, kh, kw = w.shape
    h, wd = x.shape[2:]
    ho = output_size(h, kh, stride[0], padding[0], dilation[0])
    wo = output_size(wd, kw, stride[1], padding[1], dilation[1])
    cols = im2col(x, (kh, kw), stride, padding, dilation)
    return np.matmul(w.reshape(o, -1), cols).reshape(x.shape[0], o, ho, wo)


def conv2d_input_grad(g, w, x_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1)) -> np.ndarray:
    """The cotangent of ``conv2d``'s input ``x`` for the output cotangent ``g``."""
    b, o, ho, wo = g.shape
    cols = np.matmul(w.reshape(o, -1).T, g.reshape(b, o, ho * wo))  # not -1: b may be 0
    return col2im(cols, x_shape, w.shape[2:], stride, padding, dilation)


def conv2d_weight_grad(x, g, w_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1)) -> np.ndarray:
    """The cotangent of ``conv2d``'s weights ``w`` for the output cotangent ``g``."""
    b, o, ho, wo = g.shape
    cols = im2col(x, w_shape[2:], stride, padding, dilation)
    return np.tensordot(g.reshape(b, o, ho * wo), cols, axes=([0, 2], [0, 2])).reshape(w_shape)


# ----------------------------------------------------------------------------- pooling


def _windows(x: np.ndarray, kernel: tuple, stride: tuple) -> np.ndarray:
    """``(B, C, ho, wo, kh * kw)``: every pooling window, flattened row by row."""
    (kh, kw), (sh, sw) = kernel, stride
    win = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    return win.reshape(win.shape[:4] + (kh * kw,))


def max_pool(x, kernel, stride) -> np.ndarray:
    """The largest entry of each window."""
    return _windows(x, kernel, stride).max(axis=-1)


def max_pool_grad(x, g, kernel, stride) -> np.ndarray:
    """``g`` routed to the first largest entry of each window (zeros elsewhere)."""
    (kh, kw), (sh, sw) = kernel, stride
    first = _windows(x, kernel, stride).argmax(axis=-1)
    ho, wo = g.shape[2:]
    gx = np.zeros(x.shape, g.dtype)
    for t in range(kh * kw):
        ki, kj = divmod(t, kw)
        gx[:, :, ki : ki + sh * (ho - 1) + 1 : sh, kj : kj + sw * (wo - 1) + 1 : sw] += np.where(
            first == t, g, 0
        )
    return gx


def max_pool_gather(x, c, kernel, stride) -> np.ndarray:
    """The entry of ``c`` at each window's first largest entry of ``x`` (``max_pool_grad``'s transpose)."""
    first = _windows(x, kernel, stride).argmax(axis=-1)
    return np.take_along_axis(_windows(c, kernel, stride), first[..., None], axis=-1)[..., 0]


def avg_pool(x, kernel, stride) -> np.ndarray:
    """The mean of each window."""
    return _windows(x, kernel, stride).mean(axis=-1)


def avg_pool_grad(g, x_shape, kernel, stride) -> np.ndarray:
    """``g`` spread evenly over each window (the transpose of ``avg_pool``)."""
    (kh, kw), (sh, sw) = kernel, stride
    ho, wo = g.shape[2:]
    gx = np.zeros(x_shape, g.dtype)
    share = g / (kh * kw)
    for ki in range(kh):
        for kj in range(kw):
            gx[:, :, ki : ki + sh * (ho - 1) + 1 : sh, kj : kj + sw * (wo - 1) + 1 : sw] += share
    return gx
