"""Matrix product GFLOP/s: nnc.matmul against numpy's BLAS, and a hand-written Numba kernel.

Run: python benchmarks/matmul.py [--quick]

``nnc.matmul`` on arrays checks shapes and dtypes, then calls BLAS (``np.dot``); the
ratio nnc/numpy shows what the checks cost (target: at least 0.9 at n = 1024). The
Numba column is the plain loop kernel below, the best-vectorising order (i, k, j) with
unsigned indices: it is what lost to BLAS at every size, which is why nnc's dispatch
sends every matrix product to BLAS (docs/kernels.md). PyTorch is timed when installed.
"""
from __future__ import annotations

import sys

import numpy as np

import nnc
from nnc.kernels.jit import kernel
from nnc.kernels.timing import calls_for, interleaved

SIZES = (16, 64, 256, 1024)


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


def contenders(a: np.ndarray, b: np.ndarray) -> dict:
    out = np.empty((a.shape[0], b.shape[1]), a.dtype)
    runs = {"numpy": lambda: np.dot(a, b), "nnc": lambda: nnc.matmul(a, b),
            "numba": lambda: numba_matmul(a, b, out)}
    try:
        import torch
    except ImportError:
        return runs
    ta, tb = torch.tensor(a), torch.tensor(b)
    runs["torch"] = lambda: torch.matmul(ta, tb)
    return runs


def main(argv: list[str]) -> None:
    rounds = 5 if "--quick" in argv else 15
    print(f"{'dtype':8} {'n':>5} {'numpy GF/s':>10} {'nnc GF/s':>9} {'numba GF/s':>10} {'torch GF/s':>10} "
          f"{'nnc/numpy':>9} {'numba/numpy':>11}")
    for dtype in (np.float32, np.float64):
        for n in SIZES:
            rng = np.random.default_rng(n)
            a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
            runs = contenders(a, b)
            if n <= 256:
                expected = a.astype(np.float64) @ b.astype(np.float64)
                out = np.empty_like(a)
                numba_matmul(a, b, out)
                assert np.allclose(out, expected, rtol=1e-3, atol=1e-2 * np.sqrt(n))
            if n == 1024:
                runs.pop("numba")  # minutes at this size; its trend is clear below
            number = calls_for(runs["numpy"])
            t = interleaved(runs, rounds=rounds, number=number)
            gflops = {name: 2 * n ** 3 / s / 1e9 for name, s in t.items()}
            numba = f"{gflops['numba']:10.1f}" if "numba" in gflops else f"{'-':>10}"
            torch = f"{gflops['torch']:10.1f}" if "torch" in gflops else f"{'(absent)':>10}"
            numba_ratio = f"{gflops['numba'] / gflops['numpy']:11.2f}" if "numba" in gflops else f"{'-':>11}"
            print(f"{np.dtype(dtype).name:8} {n:5d} {gflops['numpy']:10.1f} {gflops['nnc']:9.1f} {numba} "
                  f"{torch} {gflops['nnc'] / gflops['numpy']:9.2f} {numba_ratio}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
