"""Devices, the places arrays live: numpy (the CPU, with Numba kernels where they win) and CuPy (GPU).

A device is an array namespace, a device of it (a GPU), and the kernels it runs primitives with.
numpy holds numpy arrays; each primitive runs a Numba kernel where one measured faster
than numpy and the numpy reference elsewhere (docs/kernels.md), and only the references
under ``NUMBA_DISABLE_JIT=1``. CuPy holds arrays on a GPU and runs every primitive's
array-API implementation there (matrix products on cuBLAS, convolutions by im2col).
CuPy is optional: :func:`devices` says why it is unavailable instead of raising.

>>> devices()[0]
'numpy'
>>> import numpy as np
>>> to_device({"W": np.ones(2)}, "numpy")
{'W': array([1., 1.])}
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnc.backend.array_api import (
    DeviceError,
    Placement,
    mixed,
    namespace_of,
    placement,
    placement_of,
    to_numpy,
)
from nnc.backend.tree import tree_flatten, tree_map

__all__ = ["Device", "DeviceError", "devices", "get_device", "use", "current", "to_device"]


@dataclass(frozen=True)
class Device:
    """One place arrays can live: its name, placement (``None`` for numpy) and kernel set."""

    name: str
    placement: Placement | None
    kernels: str = ""

    def put(self, value: Any) -> Any:
        """``value`` (any device's array) as an array of this device."""
        if self.placement is None:
            return to_numpy(value)
        if namespace_of(value) is not None and placement(value) != self.placement:
            value = to_numpy(value)
        return self.placement.put(value)


def cupy_device(cupy: Any) -> Device:
    """The GPU device built on module ``cupy`` (a stand-in module in tests).

    Raises :class:`DeviceError` with the reason when no usable device is present."""
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA reports a missing driver or a too-old one as its own errors
        raise DeviceError(f"cupy (not available: {_reason(err)})") from None
    if count < 1:
        raise DeviceError("cupy (not available: no CUDA device)")
    # the namespace and device its arrays report, as every later array will
    probe = cupy.zeros(())
    return Device(
        "cupy",
        Placement(probe.__array_namespace__(), probe.device),
        "array-API implementations on the GPU: cuBLAS matmul, im2col convolution",
    )


def _reason(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    lowered = text.lower()
    if "insufficient" in lowered or "driver version" in lowered:
        return f"driver too old: {text}"
    if "no cuda-capable device" in lowered or "no device" in lowered:
        return "no CUDA device"
    return text


def _cupy() -> Device:
    try:  # an ImportError while probing the device means "not available" as much as at import
        return cupy_device(importlib.import_module("cupy"))
    except ImportError as err:
        raise DeviceError(f"cupy (not available: {str(err).lower()})") from None


_FACTORIES: dict[str, Callable[[], Device]] = {
    # One CPU device: the Numba kernels are chosen per primitive by measurement, not by name.
    "numpy": lambda: Device(
        "numpy",
        None,
        "numpy arrays; Numba kernels where they measured faster, the numpy references elsewhere",
    ),
    "cupy": _cupy,
}


def devices() -> list[str]:
    """The devices nnc knows; unavailable ones carry the reason, and nothing raises.

    >>> devices()[0]
    'numpy'
    """
    out = []
    for name, make in _FACTORIES.items():
        try:
            make()
            out.append(name)
        except DeviceError as err:
            out.append(str(err).split("\n")[0])
    return out


def get_device(name: str | Device) -> Device:
    """The device called ``name``; :class:`DeviceError` with the reason if it is unavailable.

    >>> get_device("numpy").name
    'numpy'
    """
    if isinstance(name, Device):
        return name
    make = _FACTORIES.get(name)
    if make is None:
        raise DeviceError(f"unknown device {name!r}; nnc knows {sorted(_FACTORIES)}")
    return make()


_CURRENT: contextvars.ContextVar[Device | None] = contextvars.ContextVar("nnc_device", default=None)


def current() -> Device:
    """The device chosen by the innermost :func:`use` (numpy outside any)."""
    chosen = _CURRENT.get()
    return chosen if chosen is not None else _FACTORIES["numpy"]()


@contextlib.contextmanager
def use(name: str | Device) -> Iterator[Device]:
    """Within the block, ``model.init`` makes parameters on device ``name``.

    >>> with use("numpy") as b:
    ...     b.name
    'numpy'
    """
    device = get_device(name)
    token = _CURRENT.set(device)
    try:
        yield device
    finally:
        _CURRENT.reset(token)


def to_device(tree: Any, name: str | Device) -> Any:
    """``tree`` (parameters, an optimiser state, a batch) with every array moved to device ``name``.

    Non-array leaves (step counts, Python numbers) are kept as they are.

    >>> import numpy as np
    >>> to_device({"b": np.zeros(1), "step": 3}, "numpy")
    {'b': array([0.]), 'step': 3}
    """
    target = get_device(name)

    def move(leaf: Any) -> Any:
        if isinstance(leaf, np.ndarray) or namespace_of(leaf) is not None:
            return target.put(leaf)
        return leaf

    return tree_map(move, tree)


def match_inputs(params: Any, x: Any, what: str) -> Any:
    """``x`` on the parameters' device: numpy data is moved to the parameters' device;
    data on another device than the parameters (or device data with numpy parameters)
    is a :class:`DeviceError` naming both."""
    x_leaves = tree_flatten(x)[0]
    x_placement = placement_of(x_leaves, f"the inputs of {what}")
    p_leaves = tree_flatten(params)[0]
    p_placement = placement_of(p_leaves, f"the parameters of {what}")
    if x_placement == p_placement:
        return x
    has_arrays = any(isinstance(p, np.ndarray) for p in p_leaves)
    if x_placement is None and p_placement is not None:
        return tree_map(lambda a: p_placement.put(a) if isinstance(a, np.ndarray) else a, x)
    if p_placement is None and not has_arrays:  # a model without parameters runs where its input is
        return x
    raise mixed(
        f"the parameters and input of {what}",
        f"parameters are {_described(p_placement)}",
        f"input is {_described(x_placement)}",
    )


def _described(placement: Placement | None) -> str:
    return "numpy arrays (cpu)" if placement is None else placement.describe()
