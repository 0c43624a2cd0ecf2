"""conv2d forward and forward+backward: nnc's kernels against numpy im2col and PyTorch (float32);
pooling forward+backward against numpy.

Run: python benchmarks/conv.py [--quick]

Forward+backward computes the output and both cotangents (images and filters) for a
given output cotangent, in every contender. 3x3 filters, padding 1, stride 1. Times are
medians of interleaved rounds (benchmarks/timing.py); ratios are medians of each round's
ratio, and below 1 mean nnc is faster. The BLAS column times nnc's matrix products
alone, on receptive fields gathered beforehand: the floor of nnc's approach here.
PyTorch is timed when installed (optional: pip install torch==2.13.0), on its default
threads (both cores) like numpy's BLAS and nnc, in a child process of its own (idle
OpenBLAS threads spin for about 0.1 s after each product and would slow it down here),
in the same alternating rounds as nnc and numpy, so that a busy spell on this shared
machine slows all three alike.
Targets (issue 5): forward+backward within 1.5x of PyTorch and faster than numpy im2col.
"""

from __future__ import annotations

import statistics
import sys
from contextlib import nullcontext

import numpy as np
from timing import ChildTimers, calls_for, interleaved, interleaved_samples, median_ratio, serve_timings

from nnc.kernels import dispatch, reference

GEOMETRY = ((1, 1), (1, 1), (1, 1))  # stride, padding, dilation
SHAPES = [(64, 1, 16, 28, 28), (32, 16, 32, 32, 32), (8, 64, 64, 56, 56)]  # B, C_in, C_out, H, W
SMALL = [(1, 1, 4, 3, 3), (1, 3, 8, 8, 8), (32, 1, 16, 8, 8), (32, 16, 32, 8, 8)]
POOLS = [(1, 1, 4, 4), (32, 16, 8, 8), (64, 16, 28, 28), (8, 64, 56, 56)]  # B, C, H, W; 2x2 windows


def problem(shape, seed=0):
    b, c, o, h, w = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, c, h, w), dtype=np.float32)
    f = rng.standard_normal((o, c, 3, 3), dtype=np.float32) / 3
    g = rng.standard_normal((b, o, h, w), dtype=np.float32)
    return x, f, g


def numpy_and_nnc(x, w, g) -> dict:
    """``name -> (forward, forward+backward)`` for nnc's dispatch and the numpy reference."""

    def both(impl):
        return lambda: (
            impl.conv2d(x, w, *GEOMETRY),
            impl.conv2d_input_grad(g, w, x.shape, *GEOMETRY),
            impl.conv2d_weight_grad(x, g, w.shape, *GEOMETRY),
        )

    return {
        "nnc": (lambda: dispatch.conv2d(x, w, *GEOMETRY), both(dispatch)),
        "numpy": (lambda: reference.conv2d(x, w, *GEOMETRY), both(reference)),
    }


def products_alone(x, w, g) -> tuple:
    """The products nnc's kernels make, in the same orientations, with the receptive fields
    gathered beforehand and nothing scattered afterwards: (forward, forward+backward). Each
    is one call over the whole batch (nnc's kernels make one per chunk of images). What
    BLAS alone costs, the floor of any im2col convolution on this machine."""
    b, c, h, wd = x.shape
    o, k, p = w.shape[0], c * 9, h * wd
    cols = reference.im2col(x, (3, 3), *GEOMETRY)  # (B, K, P)
    side_by_side = np.ascontiguousarray(cols.transpose(1, 0, 2)).reshape(k, b * p)
    wm, wt = w.reshape(o, k), np.ascontiguousarray(w.reshape(o, k).T)
    g3 = g.reshape(b, o, p)
    g_side = np.ascontiguousarray(g3.transpose(1, 0, 2)).reshape(o, b * p)

    def forward():
        return np.matmul(wm, cols)

    def both():
        return forward(), np.matmul(wt, g3), np.dot(side_by_side, g_side.T)

    return forward, both


def relative_difference(ours, theirs) -> float:
    return max(float(np.abs(a - b).max() / (np.abs(b).max() + 1e-30)) for a, b in zip(ours, theirs))


def torch_contenders() -> dict:
    """PyTorch's forward and forward+backward for every shape, by name; built in the child."""
    import torch

    out = {}
    for shape in SHAPES + SMALL:
        x, w, g = problem(shape)
        tx, tw, tg = (torch.tensor(a) for a in (x, w, g))
        tx.requires_grad_(True)
        tw.requires_grad_(True)

        def forward(tx=tx, tw=tw):
            with torch.no_grad():
                return torch.nn.functional.conv2d(tx, tw, padding=1)

        def both(tx=tx, tw=tw, tg=tg):
            y = torch.nn.functional.conv2d(tx, tw, padding=1)
            y.backward(tg)
            grads = (y.detach().numpy(), tx.grad.numpy(), tw.grad.numpy())
            tx.grad = tw.grad = None
            return grads

        assert relative_difference(both(), numpy_and_nnc(x, w, g)["numpy"][1]()) < 1e-4
        out.update({f"{shape}/forward": forward, f"{shape}/fwd+bwd": both})
    return out


def pooling(rounds: int) -> None:
    """Max and average pooling (2x2, stride 2), forward+backward: kernels against numpy."""
    print(f"{'pooling (B, C, HxW)':27} {'kind':9} {'nnc ms':>8} {'numpy ms':>9} {'':>9} {'nnc/numpy':>9}")
    for b, c, h, w in POOLS:
        x = np.random.default_rng(0).standard_normal((b, c, h, w), dtype=np.float32)
        g = np.ones((b, c, h // 2, w // 2), np.float32)
        k = (2, 2)
        runs = {
            "max": (
                lambda: (dispatch.max_pool(x, k, k), dispatch.max_pool_grad(x, g, k, k)),
                lambda: (reference.max_pool(x, k, k), reference.max_pool_grad(x, g, k, k)),
            ),
            "avg": (
                lambda: (dispatch.avg_pool(x, k, k), dispatch.avg_pool_grad(g, x.shape, k, k)),
                lambda: (reference.avg_pool(x, k, k), reference.avg_pool_grad(g, x.shape, k, k)),
            ),
        }
        for kind, (ours, theirs) in runs.items():
            assert relative_difference(ours(), theirs()) < 1e-6
            t = interleaved({"nnc": ours, "numpy": theirs}, rounds=rounds, number=calls_for(theirs))
            print(
                f"{f'({b}, {c}, {h}x{w})':27} {kind:9} {t['nnc'] * 1e3:8.3f} {t['numpy'] * 1e3:9.3f} "
                f"{'':>9} {t['nnc'] / t['numpy']:9.2f}",
                flush=True,
            )


def main(argv: list[str]) -> None:
    rounds = 5 if "--quick" in argv else 15
    if "--timing-child" in argv:
        serve_timings(torch_contenders())
        return
    with ChildTimers.start(__file__) or nullcontext() as child:
        convolutions(rounds, child)
    pooling(rounds)


def convolutions(rounds: int, child: ChildTimers | None) -> None:
    """Every shape's forward and forward+backward: nnc, numpy and (in ``child``) PyTorch,
    timed in the same alternating rounds."""
    print(
        f"{'shape (B, Cin->Cout, HxW)':27} {'pass':9} {'nnc ms':>8} {'numpy ms':>9} {'torch ms':>9} "
        f"{'nnc/numpy':>9} {'nnc/torch':>9} {'BLAS ms':>8} {'BLAS/torch':>10}"
    )
    for shape in SHAPES + SMALL:
        x, w, g = problem(shape)
        runs = {**numpy_and_nnc(x, w, g), "BLAS": products_alone(x, w, g)}
        assert relative_difference(runs["nnc"][1](), runs["numpy"][1]()) < 1e-4
        label = f"({shape[0]}, {shape[1]}->{shape[2]}, {shape[3]}x{shape[4]})"
        for k, name in enumerate(("forward", "fwd+bwd")):
            contenders = {n: fns[k] for n, fns in runs.items()}
            if child is not None:
                contenders["torch"] = child.contender(f"{shape}/{name}")
            samples = interleaved_samples(contenders, rounds=rounds, number=1 if shape in SHAPES else 20)
            t = {n: statistics.median(s) for n, s in samples.items()}
            theirs = t.get("torch")
            torch_ms = f"{theirs * 1e3:9.3f}" if theirs else f"{'(absent)':>9}"
            vs_torch = f"{median_ratio(samples, 'nnc', 'torch'):9.2f}" if theirs else f"{'-':>9}"
            blas_vs_torch = f"{median_ratio(samples, 'BLAS', 'torch'):10.2f}" if theirs else f"{'-':>10}"
            print(
                f"{label:27} {name:9} {t['nnc'] * 1e3:8.3f} {t['numpy'] * 1e3:9.3f} {torch_ms} "
                f"{median_ratio(samples, 'nnc', 'numpy'):9.2f} {vs_torch} {t['BLAS'] * 1e3:8.3f} {blas_vs_torch}",
                flush=True,
            )
        if shape == SHAPES[-1]:
            print("small inputs (where a kernel could lose to numpy's fixed costs):")


if __name__ == "__main__":
    main(sys.argv[1:])
