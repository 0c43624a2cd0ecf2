"""Array backends: numpy (the CPU, with Numba kernels where they win) and CuPy (GPU).

A backend is an array namespace, a device, and the kernels it runs primitives with.
numpy holds numpy arrays; each primitive runs a Numba kernel where one measured faster
than numpy and the numpy reference elsewhere (docs/kernels.md), and only the references
under ``NUMBA_DISABLE_JIT=1``. CuPy holds arrays on a GPU and runs every primitive's
array-API implementation there (matrix products on cuBLAS, convolutions by im2col).
CuPy is optional: :func:`backends` says why it is unavailable instead of raising.

>>> backends()[0]
'numpy'
>>> import numpy as np
>>> to_backend({"W": np.ones(2)}, "numpy")
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
    BackendError,
    Placement,
    mixed,
    namespace_of,
    placement,
    placement_of,
    to_numpy,
)
from nnc.backend.tree import tree_flatten, tree_map

__all__ = ["Backend", "BackendError", "backends", "get_backend", "use", "current", "to_backend"]


@dataclass(frozen=True)
class Backend:
    """One place arrays can live: its name, placement (``None`` for numpy) and kernel set."""

    name: str
    where: Placement | None
    kernels: str = ""

    def put(self, value: Any) -> Any:
        """``value`` (any backend's array) as an array of this backend."""
        if self.where is None:
            return to_numpy(value)
        if namespace_of(value) is not None and placement(value) != self.where:
            value = to_numpy(value)
        return self.where.put(value)


def cupy_backend(cupy: Any) -> Backend:
    """The GPU backend built on module ``cupy`` (a stand-in module in tests).

    Raises :class:`BackendError` with the reason when no usable device is present."""
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA reports a missing driver or a too-old one as its own errors
        raise BackendError(f"cupy (not available: {_reason(err)})") from None
    if count < 1:
        raise BackendError("cupy (not available: no CUDA device)")
    # the namespace and device its arrays report, as every later array will
    probe = cupy.zeros(())
    return Backend(
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


def _cupy() -> Backend:
    try:  # an ImportError while probing the device means "not available" as much as at import
        return cupy_backend(importlib.import_module("cupy"))
    except ImportError as err:
        raise BackendError(f"cupy (not available: {str(err).lower()})") from None


_FACTORIES: dict[str, Callable[[], Backend]] = {
    # One CPU backend: the Numba kernels are chosen per primitive by measurement, not by name.
    "numpy": lambda: Backend(
        "numpy",
        None,
        "numpy arrays; Numba kernels where they measured faster, the numpy references elsewhere",
    ),
    "cupy": _cupy,
}


def backends() -> list[str]:
    """The backends nnc knows; unavailable ones carry the reason, and nothing raises.

    >>> backends()[0]
    'numpy'
    """
    out = []
    for name, make in _FACTORIES.items():
        try:
            make()
            out.append(name)
        except BackendError as err:
            out.append(str(err).split("\n")[0])
    return out


def get_backend(name: str | Backend) -> Backend:
    """The backend called ``name``; :class:`BackendError` with the reason if it is unavailable.

    >>> get_backend("numpy").name
    'numpy'
    """
    if isinstance(name, Backend):
        return name
    make = _FACTORIES.get(name)
    if make is None:
        raise BackendError(f"unknown backend {name!r}; nnc knows {sorted(_FACTORIES)}")
    return make()


_CURRENT: contextvars.ContextVar[Backend | None] = contextvars.ContextVar("nnc_backend", default=None)


def current() -> Backend:
    """The backend chosen by the innermost :func:`use` (numpy outside any)."""
    chosen = _CURRENT.get()
    return chosen if chosen is not None else _FACTORIES["numpy"]()


@contextlib.contextmanager
def use(name: str | Backend) -> Iterator[Backend]:
    """Within the block, ``model.init`` makes parameters on backend ``name``.

    >>> with use("numpy") as b:
    ...     b.name
    'numpy'
    """
    token = _CURRENT.set(get_backend(name))
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)


def to_backend(tree: Any, name: str | Backend) -> Any:
    """``tree`` (parameters, an optimiser state, a batch) with every array moved to backend ``name``.

    Non-array leaves (step counts, Python numbers) are kept as they are.

    >>> import numpy as np
    >>> to_backend({"b": np.zeros(1), "step": 3}, "numpy")
    {'b': array([0.]), 'step': 3}
    """
    target = get_backend(name)

    def move(leaf: Any) -> Any:
        if isinstance(leaf, np.ndarray) or namespace_of(leaf) is not None:
            return target.put(leaf)
        return leaf

    return tree_map(move, tree)


def match_inputs(params: Any, x: Any, what: str) -> Any:
    """``x`` on the parameters' backend: numpy data is moved to the parameters' device;
    data on another device than the parameters (or device data with numpy parameters)
    is a :class:`BackendError` naming both."""
    x_leaves = tree_flatten(x)[0]
    x_where = placement_of(x_leaves, f"the inputs of {what}")
    p_leaves = tree_flatten(params)[0]
    p_where = placement_of(p_leaves, f"the parameters of {what}")
    if x_where == p_where:
        return x
    has_arrays = any(isinstance(p, np.ndarray) for p in p_leaves)
    if x_where is None:
        return tree_map(lambda a: p_where.put(a) if isinstance(a, np.ndarray) else a, x)
    if p_where is None and not has_arrays:  # a model without parameters runs where its input is
        return x
    p_text = "numpy arrays (cpu)" if p_where is None else p_where.describe()
    raise mixed(
        f"the parameters and input of {what}", f"parameters are {p_text}", f"input is {x_where.describe()}"
    )
