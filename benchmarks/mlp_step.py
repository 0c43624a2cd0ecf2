"""One SGD step of a 64-128-10 tanh MLP with softmax cross-entropy: nnc against hand-written numpy.

Run: python benchmarks/mlp_step.py
Prints the median time per step of each and the ratio nnc / numpy (target: at most 1.5 at batch 32).
PyTorch eager is timed too when torch is installed (optional).
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

import nnc
from nnc import Linear, softmax, tanh

LR = 0.1


def make_data(batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 64)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    return x, y


def nnc_step_fn():
    model = Linear(64, 128) >> tanh >> Linear(128, 10) >> softmax
    opt = nnc.sgd(LR)

    def loss(p, x, y):
        return nnc.cross_entropy(model(p, x), y)

    value_and_grad = nnc.value_and_grad(loss)

    def step(params, x, y):
        value, grads = value_and_grad(params, x, y)
        params, _ = opt.update(params, grads, ())
        return params, value

    return model.init(seed=0), step


def numpy_step_fn(params):
    W1, b1 = params["linear_0"]["W"].copy(), params["linear_0"]["b"].copy()
    W2, b2 = params["linear_1"]["W"].copy(), params["linear_1"]["b"].copy()

    def step(p, x, y):
        W1, b1, W2, b2 = p
        h = np.tanh(x @ W1 + b1)
        z = h @ W2 + b2
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        prob = e / e.sum(axis=1, keepdims=True)
        n = x.shape[0]
        loss = -np.log(prob[np.arange(n), y]).mean()
        dz = prob
        dz[np.arange(n), y] -= 1
        dz /= n
        dW2 = h.T @ dz
        db2 = dz.sum(axis=0)
        dh = (dz @ W2.T) * (1 - h * h)
        dW1 = x.T @ dh
        db1 = dh.sum(axis=0)
        return (W1 - LR * dW1, b1 - LR * db1, W2 - LR * dW2, b2 - LR * db2), loss

    return (W1, b1, W2, b2), step


def torch_step_fn(params):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    W1 = torch.tensor(params["linear_0"]["W"], requires_grad=True)
    b1 = torch.tensor(params["linear_0"]["b"], requires_grad=True)
    W2 = torch.tensor(params["linear_1"]["W"], requires_grad=True)
    b2 = torch.tensor(params["linear_1"]["b"], requires_grad=True)

    def step(p, x, y):
        W1, b1, W2, b2 = p
        z = torch.tanh(x @ W1 + b1) @ W2 + b2
        loss = torch.nn.functional.cross_entropy(z, y)
        loss.backward()
        with torch.no_grad():
            for t in p:
                t -= LR * t.grad
                t.grad = None
        return p, loss

    return (W1, b1, W2, b2), step, torch


def time_interleaved(runs: dict, repeat: int, number: int) -> dict:
    """Median seconds per step of each ``name -> (step, state, x, y)``, timed in alternating
    rounds so that a noisy moment of the machine hits every contender alike.

    Every round starts again from the initial state: carried over, hundreds of steps on
    the same random batch drove the RNN's weights to overflow, and steps on infinities and
    NaNs are no measure of steps on numbers."""
    for step, state, x, y in runs.values():
        for _ in range(20):
            state, _ = step(state, x, y)
    samples: dict = {name: [] for name in runs}
    for _ in range(repeat):
        for name, (step, state, x, y) in runs.items():
            t0 = time.perf_counter()
            for _ in range(number):
                state, _ = step(state, x, y)
            samples[name].append((time.perf_counter() - t0) / number)
    return {name: statistics.median(v) for name, v in samples.items()}


def main(argv: list[str]) -> None:
    repeat = 31 if "--quick" not in argv else 5
    print(f"{'batch':>5} {'numpy us':>9} {'nnc us':>8} {'nnc/numpy':>9} {'torch us':>9} {'nnc/torch':>9}")
    for batch in (32, 256):
        x, y = make_data(batch)
        params, nnc_step = nnc_step_fn()
        np_state, np_step = numpy_step_fn(params)
        runs = {"numpy": (np_step, np_state, x, y), "nnc": (nnc_step, params, x, y)}
        torch_part = torch_step_fn(params)
        if torch_part is not None:
            t_state, t_step, torch = torch_part
            runs["torch"] = (t_step, t_state, torch.tensor(x), torch.tensor(y))
        t = time_interleaved(runs, repeat, 100 if batch == 32 else 25)
        if "torch" in t:
            torch_txt = f"{t['torch'] * 1e6:9.1f} {t['nnc'] / t['torch']:9.2f}"
        else:
            torch_txt = f"{'(absent)':>9} {'-':>9}"
        print(
            f"{batch:5d} {t['numpy'] * 1e6:9.1f} {t['nnc'] * 1e6:8.1f} {t['nnc'] / t['numpy']:9.2f} "
            f"{torch_txt}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
