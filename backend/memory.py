"""Freed array memory kept for reuse: on this machine, fresh pages cost more than the work.

glibc's malloc serves every block above its mmap threshold (128 kB at first) with fresh
pages from the kernel and hands them back when the block is freed, so each new array of
a training step faults in every one of its pages again. Under virtualisation a page
fault is slow: measured on the benchmark machine (a 2-core VM), the forward pass of
conv2d on (64, 1->16, 28x28) took 4.5 ms, of which about 4 ms were the page faults of its
three arrays; with freed memory kept for reuse it took 0.5 ms.

:func:`keep_freed_memory` raises the mmap threshold to glibc's maximum (32 MiB) and keeps
up to :data:`RETAINED_BYTES` of freed memory at the top of the heap instead of returning
it to the kernel: what allocators with caches (jemalloc, PyTorch's GPU allocator) do. The
process's peak memory is unchanged; what it frees is reused rather than returned. It runs
once, on ``import nnc``; set ``NNC_KEEP_MEMORY=0`` to leave malloc's settings alone.
Elsewhere than glibc (macOS, musl) it does nothing.

>>> import nnc
>>> from nnc.backend import memory
>>> memory.keep_freed_memory()  # on Linux with glibc
True
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

# mallopt's parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's upper limit for the threshold on 64-bit machines
RETAINED_BYTES = 256 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc's malloc to reuse freed arrays (see the module docstring); ``True`` when applied."""
    if os.environ.get("NNC_KEEP_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        # The process's own symbols, libc's among them: no search for the library file
        # (ctypes.util.find_library runs ldconfig, 6 ms of every import).
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        # gnu_get_libc_version exists only in glibc; musl's mallopt accepts and ignores everything.
        libc.gnu_get_libc_version  # noqa: B018 (the lookup is the test)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(_M_TRIM_THRESHOLD, RETAINED_BYTES)
    )
