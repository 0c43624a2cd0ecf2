"""One epoch of training on scikit-learn's digits: ``nnc.fit`` against the same epoch written by hand.

Run: python benchmarks/fit_epoch.py [--quick]

Model 64-128-10 (tanh, softmax cross-entropy), SGD with learning rate 0.1, batch 32,
1437 training examples (45 steps per epoch, the last one partial), float32. Contenders,
timed in interleaved rounds (medians), each doing the same shuffled batches:

- numpy:      forward, backward and update written by hand in numpy
- torch:      the same epoch in PyTorch eager (only when torch is installed)
- nnc step:   a bare Python loop of ``nnc.train_step`` calls (what fit runs per batch)
- fit:        ``nnc.fit(..., progress=False)`` without callbacks or metrics
- fit+bar+cb: ``nnc.fit`` with its progress bar (written to a null stream) and the
              EarlyStopping and StopOnNaN callbacks
- fit+eval:   ``fit+bar+cb`` plus accuracy on the training set and validation data

``fit``'s own overhead is (fit+bar+cb) / (nnc step) - 1; the target is under 5%. Because
that difference is small against a noisy machine, the machinery is also timed alone: the
same fit calls and bare loop with a step that does nothing (``fit(..., step=noop)``); the
difference per epoch, divided by the nnc step epoch, is the overhead without the noise of
the step itself.
Every contender runs on one BLAS/torch thread (threadpoolctl, torch.set_num_threads): on
this shared 2-core machine a second BLAS thread only adds noise at these sizes.
Each round runs EPOCHS epochs with a fresh step (fit and the bare loop alike), so one-off
costs (checking the data, tracing the step for the full and the last partial batch) are
spread over them as in a short real run.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import sys
import time

import numpy as np

import nnc
from nnc import Linear, softmax, tanh
from nnc.callbacks import EarlyStopping, StopOnNaN
from nnc.metrics import accuracy
from nnc.optim import sgd
from nnc.train import fit, train_step

LR, BATCH, EPOCHS = 0.1, 32, 10


def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:1437], y[:1437]), (x[1437:], y[1437:])


def epochs_of_batches(n: int, epochs: int, seed: int = 0):
    """The batches fit would draw: one permutation per epoch from default_rng(seed)."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(n) for _ in range(epochs)]


def numpy_run(params, train):
    x_all, y_all = train
    W1, b1 = params["linear_0"]["W"].copy(), params["linear_0"]["b"].copy()
    W2, b2 = params["linear_1"]["W"].copy(), params["linear_1"]["b"].copy()

    def run():
        nonlocal W1, b1, W2, b2
        for perm in epochs_of_batches(len(x_all), EPOCHS):
            xs, ys = x_all[perm], y_all[perm]
            for s in range(0, len(xs), BATCH):
                x, y = xs[s : s + BATCH], ys[s : s + BATCH]
                n = len(x)
                h = np.tanh(x @ W1 + b1)
                z = h @ W2 + b2
                e = np.exp(z - z.max(axis=1, keepdims=True))
                dz = e / e.sum(axis=1, keepdims=True)
                dz[np.arange(n), y] -= 1
                dz /= n
                dh = (dz @ W2.T) * (1 - h * h)
                W2, b2 = W2 - LR * (h.T @ dz), b2 - LR * dz.sum(axis=0)
                W1, b1 = W1 - LR * (x.T @ dh), b1 - LR * dh.sum(axis=0)

    return run


def torch_run(params, train):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    ts = [torch.tensor(params[k][n], requires_grad=True) for k in ("linear_0", "linear_1") for n in "Wb"]
    x_all, y_all = torch.tensor(train[0]), torch.tensor(train[1])
    opt = torch.optim.SGD(ts, lr=LR)

    def run():
        W1, b1, W2, b2 = ts
        for perm in epochs_of_batches(len(x_all), EPOCHS):
            p = torch.from_numpy(perm)
            xs, ys = x_all[p], y_all[p]
            for s in range(0, len(xs), BATCH):
                z = torch.tanh(xs[s : s + BATCH] @ W1 + b1) @ W2 + b2
                loss = torch.nn.functional.cross_entropy(z, ys[s : s + BATCH])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

    return run


def nnc_bare_run(model, params, train):
    x_all, y_all = train

    def run():
        # a fresh step per run, as fit makes one per call: both trace it once per run
        step = train_step(model, loss=nnc.cross_entropy, opt=sgd(LR))
        p, state = params, step.opt.init(params)
        for perm in epochs_of_batches(len(x_all), EPOCHS):
            xs, ys = x_all[perm], y_all[perm]
            for s in range(0, len(xs), BATCH):
                p, state, _ = step(p, state, xs[s : s + BATCH], ys[s : s + BATCH])

    return run


def fit_run(model, params, train, valid, *, bar: bool, callbacks: bool, evaluate: bool, step=None):
    def run():
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            fit(
                model,
                params,
                train,
                loss=nnc.cross_entropy,
                opt=sgd(LR),
                epochs=EPOCHS,
                batch_size=BATCH,
                seed=0,
                progress=bar,
                step=step,
                callbacks=[EarlyStopping(patience=100), StopOnNaN()] if callbacks else [],
                metrics=[accuracy] if evaluate else [],
                validation=valid if evaluate else None,
            )

    return run


LOSS = np.float32(1.0)


def noop_step(params, opt_state, x, y):
    return params, opt_state, LOSS


def noop_bare_run(params, train):
    x_all, y_all = train

    def run():
        p, state = params, ()
        for perm in epochs_of_batches(len(x_all), EPOCHS):
            xs, ys = x_all[perm], y_all[perm]
            for s in range(0, len(xs), BATCH):
                p, state, _ = noop_step(p, state, xs[s : s + BATCH], ys[s : s + BATCH])

    return run


def interleaved(runs: dict, rounds: int) -> dict:
    """Median seconds per epoch of each run, timed in alternating rounds after a warm-up."""
    for run in runs.values():  # warm up: first traces, BLAS threads, caches
        run()
    samples: dict = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            samples[name].append((time.perf_counter() - t0) / EPOCHS)
    return {name: statistics.median(v) for name, v in samples.items()}


def main(argv: list[str]) -> None:
    try:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is None:
        print("(threadpoolctl absent: BLAS runs with its default threads)")
        return measure(argv)
    with threadpool_limits(limits=1):
        return measure(argv)


def measure(argv: list[str]) -> None:
    rounds = 5 if "--quick" in argv else 15
    train, valid = digits()
    model = Linear(64, 128) >> tanh >> Linear(128, 10) >> softmax
    params = model.init(seed=0)
    runs = {
        "numpy": numpy_run(params, train),
        "nnc step": nnc_bare_run(model, params, train),
        "fit": fit_run(model, params, train, valid, bar=False, callbacks=False, evaluate=False),
        "fit+bar+cb": fit_run(model, params, train, valid, bar=True, callbacks=True, evaluate=False),
        "fit+eval": fit_run(model, params, train, valid, bar=True, callbacks=True, evaluate=True),
    }
    torch = torch_run(params, train)
    if torch is not None:
        runs["torch"] = torch
    t = interleaved(runs, rounds)
    machinery = interleaved(
        {
            "bare": noop_bare_run(params, train),
            "fit": fit_run(
                model, params, train, valid, bar=False, callbacks=False, evaluate=False, step=noop_step
            ),
            "fit+bar+cb": fit_run(
                model, params, train, valid, bar=True, callbacks=True, evaluate=False, step=noop_step
            ),
        },
        rounds * 10,
    )
    steps = -(-len(train[0]) // BATCH)
    print(
        f"one epoch on digits ({len(train[0])} examples, {steps} steps of batch {BATCH}), "
        f"median of {rounds} rounds, {EPOCHS} epochs per round, one thread"
    )
    print(f"{'contender':>12} {'ms/epoch':>9} {'us/step':>8} {'vs numpy':>9} {'vs torch':>9}")
    for name, sec in t.items():
        vs_torch = f"{sec / t['torch']:9.2f}" if "torch" in t else f"{'-':>9}"
        print(f"{name:>12} {sec * 1e3:9.2f} {sec / steps * 1e6:8.1f} {sec / t['numpy']:9.2f} {vs_torch}")
    if "torch" not in t:
        print("(torch absent: pip install torch==2.13.0 to compare with PyTorch eager)")
    for name in ("fit", "fit+bar+cb"):
        extra = machinery[name] - machinery["bare"]
        print(
            f"{name}: end to end {(t[name] / t['nnc step'] - 1) * 100:+.1f}% of the nnc step epoch; "
            f"machinery alone {extra * 1e6:.0f} us/epoch = {extra / t['nnc step'] * 100:.1f}% "
            "(target < 5%)"
        )
    print(
        f"metrics and validation after each epoch: {(t['fit+eval'] / t['fit+bar+cb'] - 1) * 100:+.1f}% more"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
