"""Max and average pooling over (batch, channels, height, width), forward and backward.

Windows are ``kh x kw`` taps placed every ``sh`` rows and ``sw`` columns, with no
padding; a window ties are broken by its first largest entry in row-major order,
like the numpy reference and PyTorch, and a NaN is the largest entry, as in numpy. One plane (an image's channel) at a time, with
unsigned indices so the inner loops compile without negative-index checks.
"""

from __future__ import annotations

import numpy as np

from .jit import kernel
from .reference import output_size


@kernel
def _max_pool(x, kh, kw, sh, sw, y):
    planes, H, W = x.shape[0] * x.shape[1], x.shape[2], x.shape[3]
    ho, wo = y.shape[2], y.shape[3]
    xf = x.ravel()
    yf = y.ravel()
    for p in range(np.uint64(planes)):
        src = p * np.uint64(H * W)
        dst = p * np.uint64(ho * wo)
        for i in range(np.uint64(ho)):
            for j in range(np.uint64(wo)):
                top = src + i * np.uint64(sh * W) + j * np.uint64(sw)
                best = xf[top]
                for ki in range(np.uint64(kh)):
                    row = top + ki * np.uint64(W)
                    for kj in range(np.uint64(kw)):
                        v = xf[row + kj]
                        if v > best or v != v:  # NaN wins, as in np.max
                            best = v
                yf[dst + i * np.uint64(wo) + j] = best


@kernel
def _max_pool_route(x, kh, kw, sh, sw, g, scatter, out):
    """``scatter``: add ``g`` at each window's first maximum of ``x`` into ``out`` (x-shaped).
    Otherwise gather: ``out`` (g-shaped) takes ``g``'s entry (x-shaped) at that position."""
    planes, H, W = x.shape[0] * x.shape[1], x.shape[2], x.shape[3]
    ho, wo = (g.shape[2], g.shape[3]) if scatter else (out.shape[2], out.shape[3])
    xf = x.ravel()
    gf = g.ravel()
    of = out.ravel()
    if scatter:
        for t in range(np.uint64(of.size)):
            of[t] = 0
    for p in range(np.uint64(planes)):
        src = p * np.uint64(H * W)
        dst = p * np.uint64(ho * wo)
        for i in range(np.uint64(ho)):
            for j in range(np.uint64(wo)):
                top = src + i * np.uint64(sh * W) + j * np.uint64(sw)
                at = top
                best = xf[top]
                for ki in range(np.uint64(kh)):
                    row = top + ki * np.uint64(W)
                    for kj in range(np.uint64(kw)):
                        v = xf[row + kj]
                        # the first NaN wins, as in np.argmax; after it nothing does
                        if v > best or (v != v and best == best):
                            best = v
                            at = row + kj
                k = dst + i * np.uint64(wo) + j
                if scatter:
                    of[at] += gf[k]
                else:
                    of[k] = gf[at]


@kernel
def _avg_pool(x, kh, kw, sh, sw, count, y):
    """``count`` is ``kh * kw`` in ``x``'s dtype: float32 arithmetic stays float32."""
    planes, H, W = x.shape[0] * x.shape[1], x.shape[2], x.shape[3]
    ho, wo = y.shape[2], y.shape[3]
    xf = x.ravel()
    yf = y.ravel()
    for p in range(np.uint64(planes)):
        src = p * np.uint64(H * W)
        dst = p * np.uint64(ho * wo)
        for i in range(np.uint64(ho)):
            for j in range(np.uint64(wo)):
                top = src + i * np.uint64(sh * W) + j * np.uint64(sw)
                total = count - count
                for ki in range(np.uint64(kh)):
                    row = top + ki * np.uint64(W)
                    for kj in range(np.uint64(kw)):
                        total += xf[row + kj]
                yf[dst + i * np.uint64(wo) + j] = total / count


@kernel
def _avg_pool_grad(g, kh, kw, sh, sw, count, gx):
    planes, H, W = gx.shape[0] * gx.shape[1], gx.shape[2], gx.shape[3]
    ho, wo = g.shape[2], g.shape[3]
    gf = g.ravel()
    xf = gx.ravel()
    for t in range(np.uint64(xf.size)):
        xf[t] = 0
    for p in range(np.uint64(planes)):
        src = p * np.uint64(H * W)
        dst = p * np.uint64(ho * wo)
        for i in range(np.uint64(ho)):
            for j in range(np.uint64(wo)):
                share = gf[dst + i * np.uint64(wo) + j] / count
                top = src + i * np.uint64(sh * W) + j * np.uint64(sw)
                for ki in range(np.uint64(kh)):
                    row = top + ki * np.uint64(W)
                    for kj in range(np.uint64(kw)):
                        xf[row + kj] += share


def _out(x_shape, kernel_, stride, dtype) -> np.ndarray:
    b, c, h, w = x_shape
    return np.empty(
        (b, c, output_size(h, kernel_[0], stride[0], 0, 1), output_size(w, kernel_[1], stride[1], 0, 1)),
        dtype,
    )


def max_pool(x, kernel_, stride) -> np.ndarray:
    """The largest entry of each window of contiguous ``x``."""
    y = _out(x.shape, kernel_, stride, x.dtype)
    _max_pool(x, kernel_[0], kernel_[1], stride[0], stride[1], y)
    return y


def max_pool_grad(x, g, kernel_, stride) -> np.ndarray:
    """``g`` routed to each window's first largest entry of ``x``."""
    gx = np.empty(x.shape, g.dtype)
    _max_pool_route(x, kernel_[0], kernel_[1], stride[0], stride[1], g, True, gx)
    return gx


def max_pool_gather(x, c, kernel_, stride) -> np.ndarray:
    """``c``'s entry at each window's first largest entry of ``x``."""
    out = _out(x.shape, kernel_, stride, c.dtype)
    _max_pool_route(x, kernel_[0], kernel_[1], stride[0], stride[1], c, False, out)
    return out


def avg_pool(x, kernel_, stride) -> np.ndarray:
    """The mean of each window of contiguous ``x``."""
    y = _out(x.shape, kernel_, stride, x.dtype)
    _avg_pool(x, kernel_[0], kernel_[1], stride[0], stride[1], x.dtype.type(kernel_[0] * kernel_[1]), y)
    return y


def avg_pool_grad(g, x_shape, kernel_, stride) -> np.ndarray:
    """``g`` spread evenly over each window."""
    gx = np.empty(x_shape, g.dtype)
    _avg_pool_grad(g, kernel_[0], kernel_[1], stride[0], stride[1], g.dtype.type(kernel_[0] * kernel_[1]), gx)
    return gx
