"""Which implementation runs each operation, decided by measurement on this machine.

The primitives in ``nnc.backend`` call these functions; each picks a Numba kernel
where one measured faster than numpy, and the numpy reference otherwise. Under
``NUMBA_DISABLE_JIT=1`` the kernels would run as Python loops, so everything takes the
numpy path (the kernels' own tests still call them directly).

Crossovers measured (benchmarks/conv.py; docs/kernels.md):

- conv2d and its two backward passes: the kernels beat numpy's im2col from the
  smallest inputs tried (one 1x3x3 image) up, so they always run.
- pooling: the kernels beat ``sliding_window_view`` at every size tried.
- matrix products: BLAS always (``np.dot``), no kernel here (benchmarks/matmul.py).
"""

from __future__ import annotations

import numpy as np

from . import im2col, pool, reference
from .jit import jit_enabled


def _c(x: np.ndarray) -> np.ndarray:
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def conv2d(x, w, stride, padding, dilation) -> np.ndarray:
    if jit_enabled():
        return im2col.conv2d_forward(_c(x), w, stride, padding, dilation)
    return reference.conv2d(x, w, stride, padding, dilation)


def conv2d_input_grad(g, w, x_shape, stride, padding, dilation) -> np.ndarray:
    if jit_enabled():
        return im2col.conv2d_input_grad(_c(g), w, x_shape, stride, padding, dilation)
    return reference.conv2d_input_grad(g, w, x_shape, stride, padding, dilation)


def conv2d_weight_grad(x, g, w_shape, stride, padding, dilation) -> np.ndarray:
    if jit_enabled():
        return im2col.conv2d_weight_grad(_c(x), _c(g), w_shape, stride, padding, dilation)
    return reference.conv2d_weight_grad(x, g, w_shape, stride, padding, dilation)


def max_pool(x, kernel, stride) -> np.ndarray:
    return pool.max_pool(_c(x), kernel, stride) if jit_enabled() else reference.max_pool(x, kernel, stride)


def max_pool_grad(x, g, kernel, stride) -> np.ndarray:
    if jit_enabled():
        return pool.max_pool_grad(_c(x), _c(g), kernel, stride)
    return reference.max_pool_grad(x, g, kernel, stride)


def max_pool_gather(x, c, kernel, stride) -> np.ndarray:
    if jit_enabled():
        return pool.max_pool_gather(_c(x), _c(c), kernel, stride)
    return reference.max_pool_gather(x, c, kernel, stride)


def avg_pool(x, kernel, stride) -> np.ndarray:
    return pool.avg_pool(_c(x), kernel, stride) if jit_enabled() else reference.avg_pool(x, kernel, stride)


def avg_pool_grad(g, x_shape, kernel, stride) -> np.ndarray:
    if jit_enabled():
        return pool.avg_pool_grad(_c(g), x_shape, kernel, stride)
    return reference.avg_pool_grad(g, x_shape, kernel, stride)
