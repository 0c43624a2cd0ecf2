"""Training steps compiled by nnc.compile against the interpreted nnc step, PyTorch eager and
JAX jit (both optional: a line says when one is absent), ratios printed in one run.

- MLP: one SGD step of the 64-128-10 tanh MLP with softmax cross-entropy, batch 32 and 256;
- RNN: one BPTT step of an Elman RNN (hidden 32, 50 steps, batch 16, linear read-out, MSE);
- CNN: one SGD step of the digits CNN (Conv2d 1->16 3x3 pad 1, relu, max_pool 2, Linear 10), batch 32.

Targets (MLP, batch 32): faster than JAX jit and than hand-written numpy, at least 3x faster
than PyTorch eager. Run: python benchmarks/compiled_step.py [--quick]
"""

from __future__ import annotations

import sys
import time

import numpy as np

import nnc
from nnc import Input, Linear, Tensor, fcrnn, softmax, tanh, unroll_last, zero_state

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from mlp_step import numpy_step_fn, time_interleaved  # noqa: E402

LR = 0.1


def nnc_steps(model, loss, params):
    value_and_grad = nnc.value_and_grad(lambda p, x, y: loss(model(p, x), y))
    opt = nnc.sgd(LR)

    def step(p, x, y):
        value, grads = value_and_grad(p, x, y)
        return opt.update(p, grads, ())[0], value

    return step, nnc.compile(step)


def torch_mlp(params):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    ws = [
        torch.tensor(params[k][n], requires_grad=True) for k in ("linear_0", "linear_1") for n in ("W", "b")
    ]

    def step(state, x, y):
        W1, b1, W2, b2 = ws
        loss = torch.nn.functional.cross_entropy(torch.tanh(x @ W1 + b1) @ W2 + b2, y)
        loss.backward()
        with torch.no_grad():
            for t in ws:
                t -= LR * t.grad
                t.grad = None
        return state, loss

    return step, torch


def jax_mlp(params):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None

    def loss(p, x, y):
        z = jnp.tanh(x @ p[0] + p[1]) @ p[2] + p[3]
        return -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(x.shape[0]), y])

    @jax.jit
    def step(p, x, y):
        value, g = jax.value_and_grad(loss)(p, x, y)
        return [a - LR * b for a, b in zip(p, g)], value

    def run(p, x, y):
        p, value = step(p, x, y)
        value.block_until_ready()
        return p, value

    p = [jnp.asarray(params[k][n]) for k in ("linear_0", "linear_1") for n in ("W", "b")]
    return run, p, jnp


def jax_rnn(params):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None

    def loss(p, x, y):
        Wx, Wh, b, Wo, bo = p

        def cell(h, xt):
            h = jnp.tanh(xt @ Wx + h @ Wh + b)
            return h, None

        h, _ = jax.lax.scan(cell, jnp.zeros((x.shape[0], Wh.shape[0]), x.dtype), jnp.swapaxes(x, 0, 1))
        return jnp.mean((h @ Wo + bo - y) ** 2)

    @jax.jit
    def step(p, x, y):
        value, g = jax.value_and_grad(loss)(p, x, y)
        return [a - LR * b for a, b in zip(p, g)], value

    def run(p, x, y):
        p, value = step(p, x, y)
        value.block_until_ready()
        return p, value

    c, o = params["fcrnn_0"], params["linear_0"]
    return run, [jnp.asarray(a) for a in (c["Wx"], c["Wh"], c["b"], o["W"], o["b"])], jnp


def torch_cnn(params):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    leaves = [
        torch.tensor(params[k][n], requires_grad=True) for k in ("conv2d_0", "linear_0") for n in ("W", "b")
    ]

    def step(state, x, y):
        cw, cb, W, b = leaves
        z = torch.nn.functional.conv2d(x, cw, cb, padding=1)
        z = torch.nn.functional.max_pool2d(torch.relu(z), 2).flatten(1) @ W + b
        loss = torch.nn.functional.cross_entropy(z, y)
        loss.backward()
        with torch.no_grad():
            for t in leaves:
                t -= LR * t.grad
                t.grad = None
        return state, loss

    return step, torch


def compile_seconds(compiled, *args) -> float:
    start = time.perf_counter()
    compiled(*args)
    return time.perf_counter() - start


def report(title: str, times: dict, notes: list[str]) -> None:
    print(title)
    base = times["nnc compiled"]
    for name, seconds in times.items():
        print(f"  {name:16s} {seconds * 1e6:9.1f} us   {name} / compiled = {seconds / base:6.2f}")
    for note in notes:
        print(f"  {note}")


def main(argv: list[str]) -> None:
    repeat = 5 if "--quick" in argv else 21
    rng = np.random.default_rng(0)
    for batch in (32, 256):
        model = Linear(64, 128) >> tanh >> Linear(128, 10) >> softmax
        params = model.init(seed=0)
        x = rng.standard_normal((batch, 64)).astype(np.float32)
        y = rng.integers(0, 10, batch)
        interpreted, compiled = nnc_steps(model, nnc.cross_entropy, params)
        seconds = compile_seconds(compiled, params, x, y)
        np_state, np_step = numpy_step_fn(params)
        runs = {
            "nnc compiled": (compiled, params, x, y),
            "nnc interpreted": (interpreted, params, x, y),
            "numpy by hand": (np_step, np_state, x, y),
        }
        notes = [f"compile time {seconds:.2f} s (first call; later processes load it from disk)"]
        torch_part = torch_mlp(params)
        if torch_part:
            t_step, torch = torch_part
            runs["torch eager"] = (t_step, None, torch.tensor(x), torch.tensor(y))
        else:
            notes.append("PyTorch not installed: pip install torch==2.13.0 to compare")
        jax_part = jax_mlp(params)
        if jax_part:
            j_step, j_params, jnp = jax_part
            runs["jax jit"] = (j_step, j_params, jnp.asarray(x), jnp.asarray(y))
        else:
            notes.append("JAX not installed: pip install jax to compare")
        times = time_interleaved(runs, repeat, 100 if batch == 32 else 20)
        report(f"MLP 64-128-10 tanh, SGD step, batch {batch}", times, notes)

    model = zero_state(unroll_last(fcrnn(1, 32))) >> Linear(32, 1)
    params = model.init(seed=0)
    x = rng.standard_normal((16, 50, 1)).astype(np.float32)
    y = rng.standard_normal((16, 1)).astype(np.float32)
    interpreted, compiled = nnc_steps(model, nnc.mse, params)
    seconds = compile_seconds(compiled, params, x, y)
    runs = {"nnc compiled": (compiled, params, x, y), "nnc interpreted": (interpreted, params, x, y)}
    notes = [f"compile time {seconds:.2f} s"]
    from rnn_step import numpy_step, torch_step

    np_state, np_fn = numpy_step(params)
    runs["numpy by hand"] = (np_fn, np_state, x, y)
    torch_part = torch_step(params)
    if torch_part:
        t_step, torch = torch_part
        runs["torch nn.RNN"] = (t_step, None, torch.tensor(x), torch.tensor(y))
    jax_part = jax_rnn(params)
    if jax_part:
        j_step, j_params, jnp = jax_part
        runs["jax lax.scan"] = (j_step, j_params, jnp.asarray(x), jnp.asarray(y))
    else:
        notes.append("JAX not installed: pip install jax to compare")
    times = time_interleaved(runs, repeat, 10)
    report("Elman RNN BPTT step, hidden 32, 50 steps, batch 16", times, notes)

    try:
        from nnc.conv import Conv2d, flatten, max_pool
    except ImportError:
        print("CNN: convolution layers not available")
        return
    model = (
        Input(Tensor[1, 8, 8])
        >> Conv2d(1, 16, 3, padding=1)
        >> nnc.relu
        >> max_pool(2)
        >> flatten
        >> Linear(None, 10)
        >> softmax
    )
    params = model.init(seed=0)
    x = rng.standard_normal((32, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    interpreted, compiled = nnc_steps(model, nnc.cross_entropy, params)
    seconds = compile_seconds(compiled, params, x, y)
    runs = {"nnc compiled": (compiled, params, x, y), "nnc interpreted": (interpreted, params, x, y)}
    torch_part = torch_cnn(params)
    if torch_part:
        t_step, torch = torch_part
        runs["torch eager"] = (t_step, None, torch.tensor(x), torch.tensor(y))
    times = time_interleaved(runs, repeat, 20)
    report("digits CNN step, batch 32", times, [f"compile time {seconds:.2f} s"])


if __name__ == "__main__":
    try:  # one BLAS thread for every contender (PyTorch is set to one thread above): on two
        # cores, a multithreaded BLAS stalls badly whenever another process holds a core
        from threadpoolctl import threadpool_limits
    except ImportError:
        main(sys.argv[1:])
    else:
        with threadpool_limits(1):
            main(sys.argv[1:])
