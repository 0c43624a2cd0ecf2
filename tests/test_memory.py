"""nnc keeps freed array memory for reuse (glibc's malloc settings, nnc.backend.memory)."""

import os
import subprocess
import sys

import pytest

PROBE = """
import os
import numpy as np
import nnc

def resident():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

block = np.ones((16 << 20) // 8)  # 16 MiB, above glibc's default mmap threshold
before = resident()
del block
print(before - resident(), nnc.backend.memory.keep_freed_memory())
"""


def freed_bytes_returned(keep: str) -> tuple[int, str]:
    env = {**os.environ, "NNC_KEEP_MEMORY": keep}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), out[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc and /proc are Linux's")
def test_freed_arrays_stay_with_the_process_unless_switched_off():
    kept, applied = freed_bytes_returned("1")
    assert applied == "True"
    assert kept < 1 << 20  # the 16 MiB stay mapped, ready for the next array
    returned, applied = freed_bytes_returned("0")
    assert applied == "False"
    assert returned >= 15 << 20  # malloc's own behaviour: a large block goes back to the kernel
