"""Random numbers as pure functions of a key: the same key gives the same numbers everywhere.

A *key* is a 0-d ``uint64`` array. :func:`fold_in` derives a new key from a key and a
number (a step count, the hash of a layer's path), and :func:`uniform` turns a key into
an array of uniform numbers in ``[0, 1)``. Both are primitives, so they are traced and
compiled like any operation: a training step that draws a dropout mask stays one pure
function of its inputs, and the interpreter, ``nnc.compile`` and an array-API device
draw the same numbers, bit for bit.

The generator is SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
generators", OOPSLA 2014): the ``i``-th number of key ``k`` is the mix of
``k + (i + 1) * golden``. It is counter-based (no state is carried from one number to the
next), so every entry is computed independently, in any order, by a whole-array numpy
expression or a loop. Its output passes BigCrush; it is not for cryptography.

>>> k = key(0)
>>> uniform(k, (3,), np.float64).round(4).tolist() == uniform(key(0), (3,), np.float64).round(4).tolist()
True
>>> bool((uniform(fold_in(k, 1), (1000,), np.float32) != uniform(fold_in(k, 2), (1000,), np.float32)).any())
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .core import Eqn, bind, defemit, defgeneric, defprim
from .errors import ArgumentError
from .numba_codegen import FunctionWriter

GOLDEN = 0x9E3779B97F4A7C15
# A uniform float is an integer of this many random bits (the top ones) times 2**-bits: every
# value is exact, and 1.0 is never reached.
_MANTISSA = {"float32": 24, "float64": 53}
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _mix(z: Any, u64: Any) -> Any:
    """SplitMix64's finaliser on uint64 values ``z`` (wrapping arithmetic)."""
    z = (z ^ (z >> u64(30))) * u64(_M1)
    z = (z ^ (z >> u64(27))) * u64(_M2)
    return z ^ (z >> u64(31))


def key(seed: int) -> np.ndarray:
    """The key of ``seed`` (an int >= 0): a 0-d ``uint64`` array.

    >>> key(7).dtype, key(7).shape
    (dtype('uint64'), ())
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**64:
        raise ArgumentError(f"nnc.key: seed must be an int in [0, 2**64), got {seed!r}")
    with np.errstate(over="ignore"):
        return np.asarray(_mix(np.uint64(seed) + np.uint64(GOLDEN), np.uint64), np.uint64)


_MASK = 2**64 - 1


def _mix_int(z: int) -> int:
    """:func:`_mix` on a Python int in ``[0, 2**64)``, wrapping as uint64 does."""
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return z ^ (z >> 31)


def _fold_in_impl(k: np.ndarray, data: np.ndarray) -> np.ndarray:
    k, data = np.asarray(k, np.uint64), np.asarray(data, np.uint64)
    if k.ndim == 0 and data.ndim == 0:  # a key and a number, as always: Python ints are faster
        z = int(k) ^ _mix_int((int(data) + GOLDEN) & _MASK)
        return np.array(_mix_int(z), np.uint64)
    with np.errstate(over="ignore"):
        z = k ^ _mix(data + np.uint64(GOLDEN), np.uint64)
        return np.asarray(_mix(z, np.uint64), np.uint64)


fold_in_p = defprim(
    "fold_in", _fold_in_impl, nondiff=True, abstract=lambda k, data: ((), np.dtype(np.uint64))
)


def _fold_in_generic(xp: Any, k: Any, data: Any) -> Any:
    u64, device = xp.uint64, k.device

    def as_u64(v: Any) -> Any:  # constants on the key's device: a device meets no other
        return xp.asarray(v, dtype=u64, device=device)

    z = as_u64(k) ^ _mix(as_u64(data) + as_u64(GOLDEN), as_u64)
    return _mix(z, as_u64)


defgeneric(fold_in_p, _fold_in_generic)


def fold_in(k: Any, data: Any) -> Any:
    """A new key from key ``k`` and ``data`` (an int, or a 0-d unsigned array such as a step count).

    Different data give independent keys: ``fold_in(k, crc32(path))`` is a layer's key.
    """
    if isinstance(data, (int, np.integer)):
        data = np.asarray(data, np.uint64)
    return bind(fold_in_p, k, data)


# Per float dtype: the dtype, the mantissa's bits and the scale 2**-bits in that dtype.
_FLOATS = {name: (np.dtype(name), bits, np.dtype(name).type(2.0**-bits)) for name, bits in _MANTISSA.items()}
_M1_U64, _M2_U64, _GOLDEN_U64 = np.uint64(_M1), np.uint64(_M2), np.uint64(GOLDEN)
# ``(i + 1) * golden`` for i < n, read-only, kept for a few small n: a training loop draws
# the same shapes at every step. Bounded: at most 8 sizes of at most 2**18 numbers (2 MiB).
_STRIDES: dict[int, np.ndarray] = {}
_STRIDES_MAX_N, _STRIDES_MAX_SIZES = 2**18, 8


def _strides(n: int) -> np.ndarray:
    steps = _STRIDES.get(n)
    if steps is None:
        steps = np.arange(1, n + 1, dtype=np.uint64)
        np.multiply(steps, _GOLDEN_U64, out=steps)
        if n <= _STRIDES_MAX_N:
            if len(_STRIDES) >= _STRIDES_MAX_SIZES:
                _STRIDES.clear()
            steps.flags.writeable = False
            _STRIDES[n] = steps
    return steps


def _uniform_impl(k: np.ndarray, shape: tuple, dtype: str) -> np.ndarray:
    # _mix's arithmetic done in place, in one buffer and one for the shifted copy: the same
    # integer operations (uint64 arrays wrap, without a warning), without the temporaries.
    target, mantissa, scale = _FLOATS[dtype] if dtype in _FLOATS else _FLOATS[np.dtype(dtype).name]
    z = np.add(_strides(math.prod(shape)), np.asarray(k, np.uint64))
    shifted = np.empty_like(z)
    np.right_shift(z, 30, out=shifted)
    np.bitwise_xor(z, shifted, out=z)
    np.multiply(z, _M1_U64, out=z)
    np.right_shift(z, 27, out=shifted)
    np.bitwise_xor(z, shifted, out=z)
    np.multiply(z, _M2_U64, out=z)
    np.right_shift(z, 31, out=shifted)
    np.bitwise_xor(z, shifted, out=z)
    np.right_shift(z, 64 - mantissa, out=z)
    # The top ``mantissa`` bits, below 2**53, convert exactly from int64 (faster than from uint64).
    out = z.view(np.int64).astype(target)
    out *= scale
    return out.reshape(shape)


uniform_p = defprim(
    "uniform",
    _uniform_impl,
    nondiff=True,
    abstract=lambda k, shape, dtype: (tuple(shape), np.dtype(dtype)),
)


def _uniform_generic(xp: Any, k: Any, shape: tuple, dtype: str) -> Any:
    n = int(np.prod(shape, dtype=np.int64))

    def as_u64(v: Any) -> Any:
        return xp.asarray(v, dtype=xp.uint64, device=k.device)

    counters = xp.arange(1, n + 1, dtype=xp.uint64, device=k.device)
    bits = _mix(as_u64(k) + counters * as_u64(GOLDEN), as_u64)
    target = {"float32": xp.float32, "float64": xp.float64}[np.dtype(dtype).name]
    mantissa = _MANTISSA[np.dtype(dtype).name]
    top = bits >> as_u64(64 - mantissa)
    return xp.reshape(xp.astype(top, target) * (2.0**-mantissa), tuple(shape))


defgeneric(uniform_p, _uniform_generic)


def uniform(k: Any, shape: tuple, dtype: Any = np.float32) -> Any:
    """``shape`` uniform numbers in ``[0, 1)`` of ``dtype`` (float32 or float64), drawn from key ``k``."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ArgumentError(f"nnc uniform: dtype must be float32 or float64, got {dtype}")
    return bind(uniform_p, k, shape=tuple(int(d) for d in shape), dtype=dtype.name)


# The compiled forms: the same arithmetic on uint64 scalars, which wrap in Numba as in numpy.


def _mix_lines(z: str) -> list[str]:
    return [
        f"{z} = ({z} ^ ({z} >> np.uint64(30))) * np.uint64({_M1})",
        f"{z} = ({z} ^ ({z} >> np.uint64(27))) * np.uint64({_M2})",
        f"{z} = {z} ^ ({z} >> np.uint64(31))",
    ]


def _emit_fold_in(writer: FunctionWriter, e: Eqn) -> bool:
    k, data = (writer.scalar(v) for v in e.inputs)
    d, z, out = writer.fresh("data"), writer.fresh("z"), writer.name(e.out)
    writer.emit(f"{d} = np.uint64({data}) + np.uint64({GOLDEN})")
    for line in _mix_lines(d):
        writer.emit(line)
    writer.emit(f"{z} = np.uint64({k}) ^ {d}")
    for line in _mix_lines(z):
        writer.emit(line)
    writer.alloc(out, (), np.uint64)
    writer.emit(f"{out}[()] = {z}")
    return True


def _emit_uniform(writer: FunctionWriter, e: Eqn) -> bool:
    shape, dtype = tuple(e.attrs["shape"]), np.dtype(e.attrs["dtype"])
    n, mantissa = int(np.prod(shape, dtype=np.int64)), _MANTISSA[dtype.name]
    k, z, flat, out = writer.fresh("key"), writer.fresh("z"), writer.fresh("flat"), writer.name(e.out)
    writer.emit(f"{k} = np.uint64({writer.scalar(e.inputs[0])})")
    writer.alloc(out, shape, dtype)
    writer.emit(f"{flat} = {out}.reshape({n})")
    writer.emit(f"for i in range({n}):")
    writer.emit(f"{z} = {k} + np.uint64(i + 1) * np.uint64({GOLDEN})", 2)
    for line in _mix_lines(z):
        writer.emit(line, 2)
    scale = f"np.{dtype.name}({2.0**-mantissa!r})"
    writer.emit(f"{flat}[i] = np.{dtype.name}({z} >> np.uint64({64 - mantissa})) * {scale}", 2)
    return True


defemit(fold_in_p, _emit_fold_in)
defemit(uniform_p, _emit_uniform)
