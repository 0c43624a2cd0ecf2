"""2-D convolution: Numba gathers receptive fields, BLAS multiplies.

Forward and both backward passes are one matrix product each around a gather
(``im2col``) or a scatter (``col2im``) of receptive fields. The Numba loops replace
numpy's ``sliding_window_view`` copy, which costs more than the product itself on
large inputs, and they work a chunk of images at a time so the gathered matrix stays
in cache instead of filling memory: one image of (8, 64, 56, 56) alone is 7 MB of
columns. The products go to numpy's BLAS (OpenBLAS, both cores).

The loops are serial on purpose: OpenBLAS's worker threads spin for a while after
each product, and a parallel Numba loop started in that window fought them for the
two cores and ran 10-100x slower than the serial loop (measured; see docs/kernels.md).

Index arithmetic in the inner loops is unsigned: with signed indices Numba must allow
for Python's negative indexing, which stops LLVM from vectorising the copies (6x slower).
"""

from __future__ import annotations

import numpy as np

from .jit import kernel
from .reference import output_size

# A chunk's columns stay below this many bytes unless one image alone needs more: few
# BLAS calls, and the gathered matrix mostly still in cache (2 MB of L2 per core, 32 MB
# of L3 here) when BLAS reads it. Few calls matter when another process holds the second
# core: each two-thread BLAS call then waits for its second thread to be scheduled
# (measured: milliseconds per call). Swept from 1 to 32 MB on the benchmark shapes:
# 4 MB ran (32, 16->32, 32x32) 10-20% faster than 1 MB, and 32 MB lost 20% on
# (8, 64->64, 56x56); the small shape did not care.
CHUNK_BYTES = 1 << 22


@kernel
def im2col(x, b0, nb, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, cols, row_stride, image_stride):
    """Gather images ``b0 .. b0+nb`` of contiguous ``x`` into the columns of contiguous ``cols``.

    Row ``r = (c*kh + ki)*kw + kj`` of image ``b`` starts at ``r*row_stride + b*image_stride``
    of the flat ``cols`` and holds ``x[b0+b, c, i*sh - ph + ki*dh, j*sw - pw + kj*dw]`` at
    ``i*wo + j``, zero where that position falls in the padding. With ``row_stride = nb*P``
    and ``image_stride = P`` (P = ho*wo) the images sit side by side, one (K, nb*P) matrix;
    with ``row_stride = P`` and ``image_stride = K*P`` they are a stack of (K, P) matrices.
    """
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    xf = x.ravel()
    cf = cols.ravel()
    usw = np.uint64(sw)
    for b in range(nb):
        for c in range(C):
            plane = ((b0 + b) * C + c) * H * W
            for ki in range(kh):
                for kj in range(kw):
                    r = (c * kh + ki) * kw + kj
                    off = kj * dw - pw  # input column of output column j is j*sw + off
                    j0 = 0 if off >= 0 else min(wo, (-off + sw - 1) // sw)
                    j1 = max(j0, min(wo, (W - 1 - off) // sw + 1)) if W - 1 - off >= 0 else j0
                    if sh == 1 and sw == 1 and wo == W:
                        # "Same" width, stride 1: the block is the image plane shifted by a
                        # constant, so one long copy, then zeros where it reads the padding
                        # (rows outside the image, and the columns that wrapped round).
                        base = r * row_stride + b * image_stride
                        shift = (ki * dh - ph) * W + off
                        i0 = min(ho, max(0, ph - ki * dh))
                        i1 = max(i0, min(ho, H + ph - ki * dh))
                        lo = min(i1 * W, max(i0 * W, -shift))
                        hi = max(lo, min(i1 * W, H * W - shift))
                        for t in range(np.uint64(base), np.uint64(base + lo)):
                            cf[t] = 0
                        if hi > lo:  # else plane + lo + shift may be negative
                            src = np.uint64(plane + lo + shift)
                            d = np.uint64(base + lo)
                            for t in range(np.uint64(hi - lo)):
                                cf[d + t] = xf[src + t]
                        for t in range(np.uint64(base + hi), np.uint64(base + ho * W)):
                            cf[t] = 0
                        for i in range(i0, i1):
                            row = base + i * W
                            for t in range(np.uint64(row), np.uint64(row + j0)):
                                cf[t] = 0
                            for t in range(np.uint64(row + j1), np.uint64(row + W)):
                                cf[t] = 0
                        continue
                    for i in range(ho):
                        y = i * sh - ph + ki * dh
                        dst = np.uint64(r * row_stride + b * image_stride + i * wo)
                        if y < 0 or y >= H:
                            for t in range(np.uint64(wo)):
                                cf[dst + t] = 0
                            continue
                        for t in range(np.uint64(j0)):
                            cf[dst + t] = 0
                        if j1 > j0:  # else the first source index may be negative
                            src = np.uint64(plane + y * W + j0 * sw + off)
                            d = dst + np.uint64(j0)
                            if sw == 1:
                                for t in range(np.uint64(j1 - j0)):
                                    cf[d + t] = xf[src + t]
                            else:
                                for t in range(np.uint64(j1 - j0)):
                                    cf[d + t] = xf[src + t * usw]
                        for t in range(np.uint64(j1), np.uint64(wo)):
                            cf[dst + t] = 0


@kernel
def col2im(cols, b0, nb, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, x, row_stride, image_stride):
    """The transpose of :func:`im2col` (same layout arguments): images ``b0 .. b0+nb`` of ``x``
    become the sums of the column entries gathered from each position (zero where nothing was).

    ``cols`` is scratch: entries that stand for padding may be set to zero."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    xf = x.ravel()
    cf = cols.ravel()
    usw = np.uint64(sw)
    for b in range(nb):
        for c in range(C):
            plane = ((b0 + b) * C + c) * H * W
            for t in range(np.uint64(plane), np.uint64(plane + H * W)):
                xf[t] = 0
            for ki in range(kh):
                for kj in range(kw):
                    r = (c * kh + ki) * kw + kj
                    off = kj * dw - pw
                    j0 = 0 if off >= 0 else min(wo, (-off + sw - 1) // sw)
                    j1 = max(j0, min(wo, (W - 1 - off) // sw + 1)) if W - 1 - off >= 0 else j0
                    if sh == 1 and sw == 1 and wo == W:
                        # As in im2col: one long shifted add, after zeroing the entries of
                        # the columns that would wrap round into the neighbouring rows. The
                        # geometry is im2col's, written out again: a kernel can only call
                        # compiled functions, and a shared one would import Numba with nnc.
                        base = r * row_stride + b * image_stride
                        shift = (ki * dh - ph) * W + off
                        i0 = min(ho, max(0, ph - ki * dh))
                        i1 = max(i0, min(ho, H + ph - ki * dh))
                        for i in range(i0, i1):
                            row = base + i * W
                            for t in range(np.uint64(row), np.uint64(row + j0)):
                                cf[t] = 0
                            for t in range(np.uint64(row + j1), np.uint64(row + W)):
                                cf[t] = 0
                        lo = min(i1 * W, max(i0 * W, -shift))
                        hi = max(lo, min(i1 * W, H * W - shift))
                        if hi > lo:
                            dst = np.uint64(plane + lo + shift)
                            s0 = np.uint64(base + lo)
                            for t in range(np.uint64(hi - lo)):
                                xf[dst + t] += cf[s0 + t]
                        continue
                    for i in range(ho):
                        y = i * sh - ph + ki * dh
                        if y < 0 or y >= H or j1 == j0:
                            continue
                        s = np.uint64(r * row_stride + b * image_stride + i * wo + j0)
                        dst = np.uint64(plane + y * W + j0 * sw + off)
                        if sw == 1:
                            for t in range(np.uint64(j1 - j0)):
                                xf[dst + t] += cf[s + t]
                        else:
                            for t in range(np.uint64(j1 - j0)):
                                xf[dst + t * usw] += cf[s + t]


def _geometry(x_shape, w_shape, stride, padding, dilation):
    b, c, h, w = x_shape
    o, _, kh, kw = w_shape
    ho = output_size(h, kh, stride[0], padding[0], dilation[0])
    wo = output_size(w, kw, stride[1], padding[1], dilation[1])
    return b, c, o, kh, kw, ho, wo


def images_per_chunk(batch: int, rows: int, positions: int, itemsize: int) -> int:
    """How many images to gather at once so their columns fit :data:`CHUNK_BYTES`."""
    per_image = max(rows * positions * itemsize, 1)
    return int(max(1, min(batch, CHUNK_BYTES // per_image)))


def _args(kh, kw, stride, padding, dilation, ho, wo):
    return (kh, kw, stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1], ho, wo)


def conv2d_forward(x, w, stride, padding, dilation) -> np.ndarray:
    """``conv2d`` of contiguous ``x`` (B, C, H, W) with ``w`` (O, C, kh, kw): (B, O, ho, wo).

    A chunk's columns are a stack of one (K, P) matrix per image, so that one batched
    product writes ``W @ columns`` straight into the output's images."""
    b, c, o, kh, kw, ho, wo = _geometry(x.shape, w.shape, stride, padding, dilation)
    k, p = c * kh * kw, ho * wo
    wm = np.ascontiguousarray(w).reshape(o, k)
    y = np.empty((b, o, ho, wo), x.dtype)
    if b == 0 or p == 0:
        return y
    n = images_per_chunk(b, k, p, x.itemsize)
    cols = np.empty((n, k, p), x.dtype)
    geometry = _args(kh, kw, stride, padding, dilation, ho, wo)
    for b0 in range(0, b, n):
        m = min(n, b - b0)
        im2col(x, b0, m, *geometry, cols[:m], p, k * p)
        np.matmul(wm, cols[:m], out=y[b0 : b0 + m].reshape(m, o, p))
    return y


def _cotangent_columns(g, b0, m, o, p):
    """Images ``b0 .. b0+m`` of the output cotangent side by side, one (O, m * P) matrix."""
    if m == 1:
        return g[b0].reshape(o, p)
    return g[b0 : b0 + m].reshape(m, o, p).transpose(1, 0, 2).reshape(o, m * p)


def conv2d_weight_grad(x, g, w_shape, stride, padding, dilation) -> np.ndarray:
    """The cotangent of the weights: ``sum over images and positions of g * receptive field``.

    A chunk's images sit side by side in one (K, m*P) matrix of columns, so each chunk is
    one product (up to twice as fast as one per image), accumulated transposed,
    ``columns @ g.T`` (K x O): OpenBLAS ran that 10-25% faster than ``g @ columns.T`` on
    the benchmark shapes. Copying ``g.T`` to a contiguous matrix first made the product
    faster still, but the copy cost as much on (32, 16->32, 32x32), the shape that
    needs it most."""
    b, c, o, kh, kw, ho, wo = _geometry(x.shape, w_shape, stride, padding, dilation)
    k, p = c * kh * kw, ho * wo
    gw_t = np.zeros((k, o), g.dtype)
    if b == 0 or p == 0:
        return np.zeros(w_shape, g.dtype)
    n = images_per_chunk(b, k, p, x.itemsize)
    cols = np.empty(k * n * p, x.dtype)
    geometry = _args(kh, kw, stride, padding, dilation, ho, wo)
    for b0 in range(0, b, n):
        m = min(n, b - b0)
        part = cols[: k * m * p].reshape(k, m * p)
        im2col(x, b0, m, *geometry, part, m * p, p)
        gw_t += np.dot(part, _cotangent_columns(g, b0, m, o, p).T)
    return np.ascontiguousarray(gw_t.T).reshape(w_shape)


def conv2d_input_grad(g, w, x_shape, stride, padding, dilation) -> np.ndarray:
    """The cotangent of the input: each output cotangent spread back over its receptive field.

    ``W.T @ g`` for a chunk of images (one batched product into a stack of (K, P) column
    matrices), then scattered back onto the images by :func:`col2im`."""
    b, c, o, kh, kw, ho, wo = _geometry(x_shape, w.shape, stride, padding, dilation)
    k, p = c * kh * kw, ho * wo
    gx = np.empty(x_shape, g.dtype)
    if b == 0 or p == 0:
        gx[...] = 0
        return gx
    wt = np.ascontiguousarray(np.ascontiguousarray(w).reshape(o, k).T)
    n = images_per_chunk(b, k, p, g.itemsize)
    cols = np.empty((n, k, p), g.dtype)
    geometry = _args(kh, kw, stride, padding, dilation, ho, wo)
    for b0 in range(0, b, n):
        m = min(n, b - b0)
        np.matmul(wt, g[b0 : b0 + m].reshape(m, o, p), out=cols[:m])
        col2im(cols[:m], b0, m, *geometry, gx, p, k * p)
    return gx
