"""One BPTT training step of an Elman RNN (hidden 32, 50 steps, batch 16, one feature in, a linear
read-out of the last hidden state, mean squared error): nnc against the same step written by hand in numpy,
and PyTorch when it is installed (optional). Target: nnc at most 1.5x the numpy step.

Run: python benchmarks/rnn_step.py [--quick]
"""

from __future__ import annotations

import sys

import numpy as np

import nnc
from nnc import Linear, fcrnn, unroll_last, zero_state

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from mlp_step import time_interleaved  # noqa: E402 - shared timing helper

HIDDEN, STEPS, BATCH, LR = 32, 50, 16, 0.01


def data(seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((BATCH, STEPS, 1)).astype(np.float32),
        rng.standard_normal((BATCH, 1)).astype(np.float32),
    )


def nnc_step():
    model = zero_state(unroll_last(fcrnn(1, HIDDEN))) >> Linear(HIDDEN, 1)
    value_and_grad = nnc.value_and_grad(lambda p, x, y: nnc.mse(model(p, x), y))
    opt = nnc.sgd(LR)

    def step(params, x, y):
        value, grads = value_and_grad(params, x, y)
        return opt.update(params, grads, ())[0], value

    return model.init(seed=0), step


def numpy_step(params):
    p = params["fcrnn_0"]
    state = (
        p["Wx"].copy(),
        p["Wh"].copy(),
        p["b"].copy(),
        params["linear_0"]["W"].copy(),
        params["linear_0"]["b"].copy(),
    )

    def step(state, x, y):
        Wx, Wh, b, Wo, bo = state
        xs = x.transpose(1, 0, 2)
        hs = [np.zeros((BATCH, HIDDEN), np.float32)]
        for t in range(STEPS):
            hs.append(np.tanh(xs[t] @ Wx + hs[-1] @ Wh + b))
        out = hs[-1] @ Wo + bo
        loss = np.mean((out - y) ** 2)
        d_out = 2 * (out - y) / out.size
        dWo, dbo = hs[-1].T @ d_out, d_out.sum(axis=0)
        dh = d_out @ Wo.T
        dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)
        for t in range(STEPS, 0, -1):
            dz = dh * (1 - hs[t] * hs[t])
            dWx += xs[t - 1].T @ dz
            dWh += hs[t - 1].T @ dz
            db += dz.sum(axis=0)
            dh = dz @ Wh.T
        return (Wx - LR * dWx, Wh - LR * dWh, b - LR * db, Wo - LR * dWo, bo - LR * dbo), loss

    return state, step


def torch_step(params):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    rnn = torch.nn.RNN(1, HIDDEN, batch_first=True)
    head = torch.nn.Linear(HIDDEN, 1)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.tensor(params["fcrnn_0"]["Wx"].T))
        rnn.weight_hh_l0.copy_(torch.tensor(params["fcrnn_0"]["Wh"].T))
        rnn.bias_ih_l0.copy_(torch.tensor(params["fcrnn_0"]["b"]))
        rnn.bias_hh_l0.zero_()
        head.weight.copy_(torch.tensor(params["linear_0"]["W"].T))
        head.bias.copy_(torch.tensor(params["linear_0"]["b"]))
    opt = torch.optim.SGD(list(rnn.parameters()) + list(head.parameters()), lr=LR)

    def step(state, x, y):
        opt.zero_grad()
        out, _ = rnn(x)
        loss = torch.nn.functional.mse_loss(head(out[:, -1]), y)
        loss.backward()
        opt.step()
        return state, loss

    return step, torch


def check_same_gradients(params, x, y) -> float:
    """The numpy step and nnc must agree, or the timing compares different work."""
    _, nnc_fn = nnc_step()
    np_state, np_fn = numpy_step(params)
    new_nnc, _ = nnc_fn(params, x, y)
    new_np, _ = np_fn(np_state, x, y)
    return float(np.abs(new_nnc["fcrnn_0"]["Wh"] - new_np[1]).max())


def main(argv: list[str]) -> None:
    repeat = 5 if "--quick" in argv else 21
    x, y = data()
    params, step = nnc_step()
    print(f"max |Wh after one step, nnc - numpy| = {check_same_gradients(params, x, y):.2e}")
    np_state, np_fn = numpy_step(params)
    runs = {"numpy": (np_fn, np_state, x, y), "nnc": (step, params, x, y)}
    torch_part = torch_step(params)
    if torch_part is not None:
        t_step, torch = torch_part
        runs["torch"] = (t_step, None, torch.tensor(x), torch.tensor(y))
    t = time_interleaved(runs, repeat, 10)
    print(f"Elman RNN BPTT step (hidden {HIDDEN}, {STEPS} steps, batch {BATCH}), median ms per step:")
    for name, seconds in t.items():
        print(f"  {name:6s} {seconds * 1e3:7.3f} ms   nnc/{name} = {t['nnc'] / seconds:5.2f}")
    if "torch" not in t:
        print("  torch  (not installed: pip install torch==2.13.0 to compare)")


if __name__ == "__main__":
    main(sys.argv[1:])
