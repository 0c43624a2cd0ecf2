"""Matrix product GFLOP/s: nnc.matmul against numpy's BLAS, and a hand-written Numba kernel.

Run: python benchmarks/matmul.py [--quick]

``nnc.matmul`` on arrays checks shapes and dtypes, then calls BLAS (``np.dot``); the
ratio nnc/numpy shows what the checks cost (target: at least 0.9 at n = 1024). The
Numba column is the plain loop kernel below, the best-vectorising order (i, k, j) with
unsigned indices: it is what lost to BLAS at every size, which is why nnc's dispatch
sends every matrix product to BLAS (docs/kernels.md). PyTorch is timed when installed,
in a child process of its own, in the same alternating rounds (see benchmarks/timing.py:
OpenBLAS's idle threads would slow it down here).
"""

from __future__ import annotations

import sys
from contextlib import nullcontext

import numpy as np
from timing import ChildTimers, calls_for, interleaved, serve_timings

import nnc
from nnc.kernels.jit import kernel

SIZES = (16, 64, 256, 1024)
DTYPES = (np.float32, np.float64)


@kernel
def numba_matmul(x, w, out):
    """``out = x @ w`` for C-contiguous matrices: rows of ``w`` scaled and added (vectorises over j)."""
    m, k = x.shape
    n = w.shape[1]
    xf, wf, of = x.ravel(), w.ravel(), out.ravel()
    un, uk = np.uint64(n), np.uint64(k)
    for i in range(np.uint64(m)):
        row = i * un
        for j in range(un):
            of[row + j] = 0
        for p in range(uk):
            a = xf[i * uk + p]
            wrow = p * un
            for j in range(un):
                of[row + j] += a * wf[wrow + j]


def problem(dtype, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n)
    return tuple(rng.standard_normal((n, n)).astype(dtype) for _ in range(2))


def torch_contenders() -> dict:
    """PyTorch's product for every dtype and size, by name; built in the timing child."""
    import torch

    out = {}
    for dtype in DTYPES:
        for n in SIZES:
            a, b = (torch.tensor(m) for m in problem(dtype, n))
            out[f"{np.dtype(dtype).name}/{n}"] = lambda a=a, b=b: torch.matmul(a, b)
    return out


def main(argv: list[str]) -> None:
    rounds = 5 if "--quick" in argv else 15
    if "--timing-child" in argv:
        serve_timings(torch_contenders())
        return
    with ChildTimers.start(__file__) or nullcontext() as child:
        products(rounds, child)


def products(rounds: int, child: ChildTimers | None) -> None:
    """GFLOP/s of every contender, PyTorch's (in ``child``) timed in the same rounds."""
    print(
        f"{'dtype':8} {'n':>5} {'numpy GF/s':>10} {'nnc GF/s':>9} {'numba GF/s':>10} {'torch GF/s':>10} "
        f"{'nnc/numpy':>9} {'numba/numpy':>11}"
    )
    for dtype in DTYPES:
        for n in SIZES:
            a, b = problem(dtype, n)
            out = np.empty_like(a)
            runs = {"numpy": lambda: np.dot(a, b), "nnc": lambda: nnc.matmul(a, b)}
            if n <= 256:  # minutes at n = 1024; the trend is clear below
                runs["numba"] = lambda: numba_matmul(a, b, out)
                numba_matmul(a, b, out)
                expected = a.astype(np.float64) @ b.astype(np.float64)
                assert np.allclose(out, expected, rtol=1e-3, atol=1e-2 * np.sqrt(n))
            if child is not None:
                runs["torch"] = child.contender(f"{np.dtype(dtype).name}/{n}")
            t = interleaved(runs, rounds=rounds, number=calls_for(runs["numpy"]))
            gflops = {name: 2 * n**3 / s / 1e9 for name, s in t.items()}
            numba = f"{gflops['numba']:10.1f}" if "numba" in gflops else f"{'-':>10}"
            torch = f"{gflops['torch']:10.1f}" if "torch" in gflops else f"{'(absent)':>10}"
            numba_ratio = f"{gflops['numba'] / gflops['numpy']:11.2f}" if "numba" in gflops else f"{'-':>11}"
            print(
                f"{np.dtype(dtype).name:8} {n:5d} {gflops['numpy']:10.1f} {gflops['nnc']:9.1f} {numba} "
                f"{torch} {gflops['nnc'] / gflops['numpy']:9.2f} {numba_ratio}",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
