"""The dense layer ``activation(x @ w + b)``: BLAS for the product, Numba for what follows.

Measured here (docs/kernels.md): a hand-written Numba matrix product lost to BLAS at
every size from 4x2x4 to 64x64x64, in float32 and float64, so the product is always
``np.dot``. What Numba wins is the elementwise work around it, done in place in one
pass instead of numpy's separate calls each allocating a result: bias plus ReLU after
the product, and the activation's derivative in the backward pass.

Every function here gives bit-for-bit the values of nnc's separate primitives
(``dot``, ``add``, ``tanh``, ...) and their gradient rules: the same operations in the
same order and precision, with no fast-math reordering. tanh and the logistic run as
numpy ufuncs in place, because numpy's vectorised tanh is both faster than the scalar
libm tanh Numba calls (25x on 32x128 float32) and what the separate ``tanh`` computes.
"""

from __future__ import annotations

import numpy as np

from .jit import jit_enabled, kernel
from .reference import activation_grad as reference_activation_grad

ACTIVATION_CODES = {"identity": 0, "relu": 1, "tanh": 2, "logistic": 3}
JIT = jit_enabled()  # read once, as Numba reads NUMBA_DISABLE_JIT once


@kernel
def _bias_relu(z, b, relu):
    """``z[i, :] = max(z[i, :] + b, 0)`` in place (without the max when ``relu`` is false)."""
    m, n = z.shape
    zf = z.ravel()
    un = np.uint64(n)
    for i in range(np.uint64(m)):
        row = i * un
        for j in range(un):
            v = zf[row + j] + b[j]
            if relu and v <= 0:  # as np.maximum(v, 0): NaN stays, -0.0 becomes 0.0
                v = 0
            zf[row + j] = v


@kernel
def _activation_grad(g, out, code, one, gz):
    """``gz = g * activation'(...)`` from the activation's output ``out`` (all contiguous)."""
    gf = g.ravel()
    of = out.ravel()
    zf = gz.ravel()
    for t in range(np.uint64(zf.size)):
        y = of[t]
        v = gf[t]
        if code == 1:
            v = v * (one if y > 0 else one - one)
        elif code == 2:
            v = v * (one - y * y)
        elif code == 3:
            v = v * (y * (one - y))
        zf[t] = v


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray, activation: str) -> np.ndarray:
    """``activation(x @ w + b)`` for ``x`` (..., k), ``w`` (k, n), ``b`` (n,)."""
    z = np.dot(x, w)
    flat = z.reshape(-1, z.shape[-1])
    if JIT:
        _bias_relu(flat, b, activation == "relu")
    else:
        flat += b
        if activation == "relu":
            np.maximum(flat, 0, out=flat)
    if activation == "tanh":
        np.tanh(z, out=z)
    elif activation == "logistic":  # the same steps as the logistic primitive, in place
        np.multiply(z, 0.5, out=z)
        np.tanh(z, out=z)
        z *= 0.5
        z += 0.5
    return z


def activation_grad(g: np.ndarray, out: np.ndarray, activation: str) -> np.ndarray:
    """The cotangent of the pre-activation, given the activation's output ``out``."""
    if not JIT:
        return reference_activation_grad(g, out, activation)
    g = g if g.flags.c_contiguous else np.ascontiguousarray(g)
    out = out if out.flags.c_contiguous else np.ascontiguousarray(out)
    gz = np.empty(g.shape, g.dtype)
    _activation_grad(g, out, ACTIVATION_CODES[activation], g.dtype.type(1), gz)
    return gz
