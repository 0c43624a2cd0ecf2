"""A dense layer's forward and backward pass, ``activation(x @ W + b)``, at small sizes (float32).

Run: python benchmarks/linear_layer.py [--quick]

Each contender computes the output and the cotangents of x, W and b for a given
output cotangent g:

- numpy: separate matmul, add and activation calls, and their derivatives by hand;
- nnc grad: ``nnc.value_and_grad`` over ``matmul``, ``+`` and the activation primitive
  (what ``Linear(k, n) >> tanh`` runs: one traced graph, traced once).

Times are medians of interleaved rounds; PyTorch is timed when installed, in a child
process of its own, in the same alternating rounds (see benchmarks/timing.py).
"""

from __future__ import annotations

import sys
from contextlib import nullcontext

import numpy as np
from timing import ChildTimers, calls_for, interleaved, serve_timings

import nnc
from nnc.backend import activations

SHAPES = [(32, 64, 128), (32, 128, 10), (256, 64, 128), (8, 16, 16)]
ACTIVATIONS = ("tanh", "relu")
NUMPY_ACTIVATION = {
    "tanh": (np.tanh, lambda g, y: g * (1 - y * y)),
    "relu": (lambda z: np.maximum(z, 0, dtype=z.dtype), lambda g, y: g * (y > 0)),
}


def numpy_pass(x, w, b, g, activation):
    forward, derivative = NUMPY_ACTIVATION[activation]

    def run():
        y = forward(x @ w + b)
        gz = derivative(g, y)
        return y, gz @ w.T, x.T @ gz, gz.sum(axis=0)

    return run


def nnc_pass(x, w, b, g, activation):
    act = {"tanh": activations.tanh, "relu": activations.relu}[activation]
    step = nnc.value_and_grad(lambda x, w, b: nnc.sum(act(nnc.matmul(x, w) + b) * g), (0, 1, 2))
    return lambda: step(x, w, b)


def problem(batch: int, n_in: int, n_out: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, n_in), dtype=np.float32)
    w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
    b = rng.standard_normal(n_out, dtype=np.float32)
    g = rng.standard_normal((batch, n_out), dtype=np.float32)
    return x, w, b, g


def torch_contenders() -> dict:
    """PyTorch's forward+backward for every shape and activation, by name; built in the
    timing child."""
    import torch

    out = {}
    for shape in SHAPES:
        tx, tw, tb, tg = (torch.tensor(a) for a in problem(*shape))
        for t in (tx, tw, tb):
            t.requires_grad_(True)
        for activation in ACTIVATIONS:
            act = {"tanh": torch.tanh, "relu": torch.relu}[activation]

            def run(act=act, tx=tx, tw=tw, tb=tb, tg=tg):
                y = act(torch.addmm(tb, tx, tw))
                y.backward(tg)
                tx.grad = tw.grad = tb.grad = None

            out[f"{shape}/{activation}"] = run
    return out


def main(argv: list[str]) -> None:
    rounds = 7 if "--quick" in argv else 21
    if "--timing-child" in argv:
        serve_timings(torch_contenders())
        return
    with ChildTimers.start(__file__) or nullcontext() as child:
        layers(rounds, child)


def layers(rounds: int, child: ChildTimers | None) -> None:
    """Every shape and activation: numpy, nnc's graph and (in ``child``) PyTorch, timed in the
    same alternating rounds."""
    print(
        f"{'batch, in -> out':17} {'act':5} {'numpy us':>9} {'nnc grad us':>11} {'torch us':>9} {'nnc/np':>7}"
    )
    for shape in SHAPES:
        x, w, b, g = problem(*shape)
        for activation in ACTIVATIONS:
            runs = {"numpy": numpy_pass(x, w, b, g, activation), "nnc": nnc_pass(x, w, b, g, activation)}
            _, *cotangents = runs["numpy"]()
            _, got = runs["nnc"]()
            for mine, want in zip(got, cotangents):
                assert np.allclose(mine, want, rtol=1e-4, atol=1e-4)
            if child is not None:
                runs["torch"] = child.contender(f"{shape}/{activation}")
            t = interleaved(runs, rounds=rounds, number=calls_for(runs["numpy"]))
            us = {k: v * 1e6 for k, v in t.items()}
            torch_us = f"{us['torch']:9.1f}" if "torch" in us else f"{'(absent)':>9}"
            batch, n_in, n_out = shape
            print(
                f"{f'{batch}, {n_in} -> {n_out}':17} {activation:5} {us['numpy']:9.1f} {us['nnc']:11.1f} "
                f"{torch_us} {us['nnc'] / us['numpy']:7.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
