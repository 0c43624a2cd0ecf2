"""conv2d forward and forward+backward: nnc's kernels against numpy im2col and PyTorch (float32).

Run: python benchmarks/conv.py [--quick]

Forward+backward computes the output and both cotangents (images and filters) for a
given output cotangent, in every contender. 3x3 filters, padding 1, stride 1. Times are
medians of interleaved rounds (nnc.kernels.timing); ratios below 1 mean nnc is faster.
PyTorch is timed when installed (optional: pip install torch==2.13.0), on its default
threads (both cores), like numpy's BLAS and nnc.
Targets (issue 5): forward+backward within 1.5x of PyTorch and faster than numpy im2col.
"""
from __future__ import annotations

import sys

import numpy as np

from nnc.kernels import dispatch
from nnc.kernels import reference as R
from nnc.kernels.timing import interleaved

GEOMETRY = ((1, 1), (1, 1), (1, 1))  # stride, padding, dilation
SHAPES = [(64, 1, 16, 28, 28), (32, 16, 32, 32, 32), (8, 64, 64, 56, 56)]  # B, C_in, C_out, H, W
SMALL = [(1, 1, 4, 3, 3), (1, 3, 8, 8, 8), (32, 1, 16, 8, 8), (32, 16, 32, 8, 8)]


def problem(shape, seed=0):
    b, c, o, h, w = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, c, h, w), dtype=np.float32)
    f = rng.standard_normal((o, c, 3, 3), dtype=np.float32) / 3
    g = rng.standard_normal((b, o, h, w), dtype=np.float32)
    return x, f, g


def numpy_and_nnc(x, w, g):
    def nnc_forward():
        return dispatch.conv2d(x, w, *GEOMETRY)

    def nnc_both():
        return (dispatch.conv2d(x, w, *GEOMETRY), dispatch.conv2d_input_grad(g, w, x.shape, *GEOMETRY),
                dispatch.conv2d_weight_grad(x, g, w.shape, *GEOMETRY))

    def numpy_forward():
        return R.conv2d(x, w, *GEOMETRY)

    def numpy_both():
        return (R.conv2d(x, w, *GEOMETRY), R.conv2d_input_grad(g, w, x.shape, *GEOMETRY),
                R.conv2d_weight_grad(x, g, w.shape, *GEOMETRY))

    return {"nnc": (nnc_forward, nnc_both), "numpy": (numpy_forward, numpy_both)}


def torch_contender(x, w, g):
    try:
        import torch
    except ImportError:
        return None
    tx, tw, tg = (torch.tensor(a) for a in (x, w, g))
    tx.requires_grad_(True)
    tw.requires_grad_(True)

    def forward():
        with torch.no_grad():
            return torch.nn.functional.conv2d(tx, tw, padding=1)

    def both():
        y = torch.nn.functional.conv2d(tx, tw, padding=1)
        y.backward(tg)
        grads = (y.detach(), tx.grad, tw.grad)
        tx.grad = tw.grad = None
        return grads

    return forward, both


def check_agreement(runs: dict) -> float:
    """Largest relative difference of every contender's results from nnc's."""
    ours = [np.asarray(a, dtype=np.float64) for a in runs["nnc"][1]()]
    worst = 0.0
    for name, (_, both) in runs.items():
        for a, b in zip(ours, both()):
            b = np.asarray(b.numpy() if hasattr(b, "numpy") else b, dtype=np.float64)
            worst = max(worst, float(np.abs(a - b).max() / (np.abs(a).max() + 1e-30)))
    return worst


def main(argv: list[str]) -> None:
    rounds = 5 if "--quick" in argv else 15
    print(f"{'shape (B, Cin->Cout, HxW)':27} {'pass':9} {'nnc ms':>8} {'numpy ms':>9} {'torch ms':>9} "
          f"{'nnc/numpy':>9} {'nnc/torch':>9}")
    for shape in SHAPES + SMALL:
        x, w, g = problem(shape)
        runs = numpy_and_nnc(x, w, g)
        torch_run = torch_contender(x, w, g)
        if torch_run is not None:
            runs["torch"] = torch_run
        worst = check_agreement(runs)
        assert worst < 1e-4, f"results differ by {worst:.2e} (relative)"
        label = f"({shape[0]}, {shape[1]}->{shape[2]}, {shape[3]}x{shape[4]})"
        big = shape in SHAPES
        for k, name in enumerate(("forward", "fwd+bwd")):
            t = interleaved({n: fns[k] for n, fns in runs.items()}, rounds=rounds,
                            number=1 if big else 20)
            torch_ms = f"{t['torch'] * 1e3:9.3f}" if "torch" in t else f"{'(absent)':>9}"
            vs_torch = f"{t['nnc'] / t['torch']:9.2f}" if "torch" in t else f"{'-':>9}"
            print(f"{label:27} {name:9} {t['nnc'] * 1e3:8.3f} {t['numpy'] * 1e3:9.3f} {torch_ms} "
                  f"{t['nnc'] / t['numpy']:9.2f} {vs_torch}", flush=True)
        if shape == SHAPES[-1]:
            print("small inputs (where a kernel could lose to numpy's fixed costs):")


if __name__ == "__main__":
    main(sys.argv[1:])
