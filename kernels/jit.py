"""Numba kernels that compile on first use and cache their machine code when they can.

``import nnc`` must stay fast, so nothing here imports Numba until a kernel is first
called. A kernel is compiled with ``cache=True``: Numba stores the machine code beside
the source (or in ``NUMBA_CACHE_DIR``, or a per-user directory) and later processes load
it instead of compiling again. Numba skips a directory it cannot write and tries the
next one; when none is writable it refuses ``cache=True`` outright, and then we compile
without a cache, so a read-only installation still runs (only slower to start).

With ``NUMBA_DISABLE_JIT=1`` the kernels run as the plain Python they are written in:
slow, but the same results, which is how the test suite checks the kernels' logic.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

# Compiled once per dtype signature; without a writable cache each process pays that again.
_DEFAULT_OPTIONS = {"nogil": True, "boundscheck": False, "error_model": "numpy"}


def jit_enabled() -> bool:
    """Whether kernels run as compiled code (``False`` under ``NUMBA_DISABLE_JIT=1``).

    >>> isinstance(jit_enabled(), bool)
    True
    """
    return os.environ.get("NUMBA_DISABLE_JIT", "0") in ("", "0")


class Kernel:
    """A Python function compiled by Numba when first called (see :func:`kernel`)."""

    __slots__ = ("py_func", "options", "_compiled", "cached", "__name__")

    def __init__(self, py_func: Callable, options: dict):
        self.py_func = py_func
        self.options = {**_DEFAULT_OPTIONS, **options}
        self._compiled: Callable | None = None
        self.cached: bool | None = None  # known once compiled: was a disk cache available?
        self.__name__ = py_func.__name__

    def __repr__(self) -> str:
        state = (
            "not compiled yet"
            if self._compiled is None
            else f"compiled, {'cached on disk' if self.cached else 'no disk cache'}"
        )
        return f"<nnc kernel {self.__name__}: {state}>"

    def compile(self) -> Callable:
        """The Numba dispatcher (compiling lazily per signature), created on first use."""
        if self._compiled is None:
            import numba  # here, not at module level: keeps `import nnc` fast

            try:
                self._compiled = numba.njit(cache=True, **self.options)(self.py_func)
                self.cached = True
            except RuntimeError:  # Numba found no writable cache directory at all
                self._compiled = numba.njit(cache=False, **self.options)(self.py_func)
                self.cached = False
        return self._compiled

    def __call__(self, *args: Any) -> Any:
        compiled = self._compiled or self.compile()
        try:
            return compiled(*args)
        except OSError:
            # The cache directory was writable when checked but saving failed (full disk,
            # a permission changed): drop the cache and compile in memory.
            if self.cached is False:
                raise
            import numba

            self._compiled = numba.njit(cache=False, **self.options)(self.py_func)
            self.cached = False
            return self._compiled(*args)


def kernel(fn: Callable | None = None, **options: Any) -> Any:
    """Decorate a function written in Numba's Python subset as a lazily compiled kernel.

    Options go to ``numba.njit`` (``boundscheck=False`` and ``error_model="numpy"`` by
    default: no index checks and no Python ZeroDivisionError, so loops vectorise).

    >>> import numpy as np
    >>> @kernel
    ... def double(x):
    ...     return x * 2
    >>> double(np.arange(3.0))
    array([0., 2., 4.])
    """
    if fn is None:
        return lambda f: Kernel(f, options)
    return Kernel(fn, options)
