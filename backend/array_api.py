"""Array namespaces: which library an array belongs to, on which device, and how to move it.

numpy is the reference and the fast path: a numpy array has no :class:`Placement`
(``placement_of`` gives ``None``), and primitives run their numpy ``impl``. Any other
array that follows the Python array API (CuPy, array-api-strict) has a placement, its
namespace and device; primitives then run their generic implementation, written with
that namespace alone, so nothing is silently converted to numpy.

>>> import numpy as np
>>> placement_of([np.ones(2), 1.0]) is None
True
>>> numpy_dtype(np.float32)
dtype('float32')
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from numbers import Number
from typing import Any

import numpy as np

from .errors import NNCError


class DeviceError(NNCError, ValueError):
    """An array backend is unavailable, or one call mixes arrays of two backends or devices."""


@dataclass(frozen=True, eq=False)
class Placement:
    """Where non-numpy arrays live: their array-API namespace and device."""

    xp: Any
    device: Any

    @property
    def key(self) -> tuple:
        """Hashable identity, part of the signature under which graphs are compiled."""
        return (self.xp.__name__, repr(self.device))

    def describe(self) -> str:
        return f"{self.xp.__name__} arrays on {self.device!r}"

    def put(self, value: Any) -> Any:
        """``value`` (numpy, a Python number, or already here) as an array of this placement."""
        if namespace_of(value) is self.xp:
            return value
        if hasattr(self.xp, "asnumpy"):  # CuPy: asarray has no device=; the current device takes it
            with self.device:
                return self.xp.asarray(value)
        return self.xp.asarray(value, device=self.device)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Placement) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)


def namespace_of(x: Any) -> Any | None:
    """The array-API namespace of ``x``; ``None`` for numpy arrays, numpy scalars and Python values."""
    if isinstance(x, (np.ndarray, np.generic, Number)):  # subclasses too: np.memmap is numpy
        return None
    get = getattr(x, "__array_namespace__", None)
    return None if get is None else get()


def placement(x: Any) -> Placement | None:
    """The placement of one array (``None`` for numpy)."""
    xp = namespace_of(x)
    return None if xp is None else Placement(xp, x.device)


def placement_of(values: Iterable, what: str = "arguments") -> Placement | None:
    """The one placement shared by the non-numpy arrays among ``values`` (``None``: all numpy).

    Raises :class:`DeviceError` naming both when two namespaces or devices meet."""
    found = None
    for v in values:
        p = placement(v)
        if p is None:
            continue
        if found is None:
            found = p
        elif p != found:
            raise mixed(what, found.describe(), p.describe())
    return found


def described(place: Placement | None) -> str:
    """How messages name the arrays at ``place``; ``None`` is numpy's.

    >>> described(None)
    'numpy arrays (cpu)'
    """
    return "numpy arrays (cpu)" if place is None else place.describe()


def mixed(what: str, first: str, second: str) -> DeviceError:
    return DeviceError(
        f"{what} mix devices: {first} and {second}.\n"
        "  hint: move them to one device first, e.g. nnc.to_device(params, 'numpy')"
    )


# ----------------------------------------------------------------------------- dtypes

_DTYPE_NAMES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float32",
    "float64",
    "complex64",
    "complex128",
)
_NUMPY_DTYPES: dict = {}


def numpy_dtype(dtype: Any) -> np.dtype:
    """The numpy dtype of the same name as ``dtype`` (graphs describe values with numpy dtypes)."""
    if isinstance(dtype, np.dtype):
        return dtype
    found = _NUMPY_DTYPES.get(dtype)
    if found is None:
        try:
            found = np.dtype(dtype)
        except TypeError:
            name = getattr(dtype, "name", None) or str(dtype).rsplit(".", 1)[-1]
            if name not in _DTYPE_NAMES:
                raise DeviceError(f"array dtype {dtype!r} has no numpy counterpart") from None
            found = np.dtype(name)
        _NUMPY_DTYPES[dtype] = found
    return found


def xp_dtype(xp: Any, dtype: Any) -> Any:
    """The dtype of namespace ``xp`` named like numpy dtype ``dtype``."""
    return getattr(xp, np.dtype(dtype).name)


# ----------------------------------------------------------------------------- moving arrays


def to_numpy(x: Any) -> Any:
    """``x`` as a numpy array, copied from its device if need be; numpy values pass unchanged.

    >>> to_numpy(np.arange(3))
    array([0, 1, 2])
    """
    xp = namespace_of(x)
    if xp is None:
        return x if isinstance(x, (np.ndarray, np.generic)) else np.asarray(x)
    if hasattr(xp, "asnumpy"):  # CuPy copies device memory to the host itself
        return xp.asnumpy(x)
    try:
        return np.asarray(x)
    except (RuntimeError, TypeError, ValueError, BufferError):
        # on a device numpy cannot read: move to the namespace's first (host) device, then read
        host = xp.__array_namespace_info__().devices()[0]
        return np.asarray(x.to_device(host))


def lift(values: list, place: Placement) -> list:
    """Numpy arrays and numbers among ``values`` put at ``place`` (constants of a device computation)."""
    return [v if namespace_of(v) is place.xp else place.put(v) for v in values]
