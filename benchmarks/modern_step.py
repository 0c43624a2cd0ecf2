"""Training steps with dropout and normalisation (issue 16): nnc compiled and interpreted
against hand-written numpy, PyTorch eager and JAX jit, ratios printed in one run.

- MLP: ``Linear(64, 128) >> LayerNorm(128) >> gelu >> Dropout(0.1) >> Linear(128, 10) >> softmax``,
  one training step at batch 32: softmax cross-entropy, plain SGD (learning rate 0.1, no
  momentum), float32, exact GELU (erf), dropout on with a new mask every step.
- CNN: ``Input(Tensor[1, 8, 8]) >> Conv2d(1, 16, 3, padding=1) >> BatchNorm(16) >> relu >>
  max_pool(2) >> flatten >> Linear(None, 10) >> softmax``, the same loss and SGD, batch 32,
  BatchNorm in training mode (batch statistics, running statistics updated and threaded).

Contenders, each doing that same work on the same shapes:

- nnc compiled: ``nnc.compile(nnc.train_step(model, loss=nnc.cross_entropy, opt=nnc.sgd(0.1)))``,
  called as a user's loop calls it, the step's key ``nnc.fold_in(nnc.key(0), i)`` made on the host;
- nnc interpreted: the same ``train_step`` without ``nnc.compile``;
- numpy by hand (MLP): forward and backward of LayerNorm, exact GELU with ``scipy.special.erf``,
  inverted dropout with a mask drawn once per step from a numpy ``Generator`` at its start
  (and used by the forward and the backward), cross-entropy from the logits, SGD;
- PyTorch eager (one thread): ``nn.Linear``, ``nn.LayerNorm``, ``F.gelu`` (exact),
  ``F.dropout(training=True)``, ``nn.Conv2d``, ``nn.BatchNorm2d`` in training mode, ``F.max_pool2d``,
  ``F.cross_entropy`` on the logits, SGD written out under ``no_grad``;
- JAX jit (MLP, one thread; optional: a line says when it is absent): the same math, the
  mask from ``jax.random.uniform`` of ``jax.random.fold_in(key, i)`` inside the jitted step.

Before timing, the step is checked once where it is cheap: nnc compiled against interpreted
(same key, dropout on: loss and updated parameters equal to rounding), and numpy, PyTorch
and JAX against nnc interpreted with dropout off (rate 0: same loss, same updated first
layer; for the CNN also the same running statistics).

Timing follows benchmarks/timing.py: alternating rounds, medians; a ratio is the median
over rounds of that round's ratio. Here each round starts one contender later, and each
turn begins with two untimed steps (see :func:`rotating_samples`). PyTorch and JAX each
run in a child process of their own (their thread pools would otherwise compete with the
parent's contenders on two cores), timed in the same rounds, with a pause around each of
their turns. On Linux all processes are pinned to one core: JAX sizes its thread pool
from the affinity (XLA_FLAGS alone left three threads busy), and every contender meets
the same core in each round. Every contender carries its parameters (and statistics)
from step to step; after timing the last losses are checked to be finite.

Targets (issue 16): MLP compiled faster than JAX jit and than PyTorch eager; CNN compiled
faster than PyTorch eager; MLP interpreted within 1.5x of numpy by hand.

Run: python benchmarks/modern_step.py [--quick]  (``--quick``: 5 rounds instead of 21). The
first run compiles each nnc step (about a minute each); later runs load them from disk.
Optional baselines: pip install torch==2.13.0; pip install jax jaxlib.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import math
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import numpy as np
from timing import SETTLE_SECONDS, ChildTimers, Remote, median_ratio

import nnc
from nnc import (
    BatchNorm,
    Conv2d,
    Dropout,
    Input,
    LayerNorm,
    Linear,
    Tensor,
    flatten,
    gelu,
    max_pool,
    relu,
    softmax,
)

LR = 0.1
RATE = 0.1
EPS = 1e-5  # LayerNorm's and BatchNorm's default epsilon, in nnc as in PyTorch
BATCH = 32
WARM = 2  # untimed steps before each contender's timed ones in a round
SQRT_HALF = 0.7071067811865476
INV_SQRT_2PI = 0.3989422804014327
# One thread in the children too: set before their libraries start their pools.
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false",
}
# The children's contenders, as the tables name them.
CHILD_NAMES = {"torch": "torch eager (1 thread)", "jax": "jax jit (1 thread)"}
# A note in the table for each optional library that is not installed.
NOT_INSTALLED = {
    "jax": "JAX not installed: pip install jax jaxlib to compare",
    "torch": "PyTorch not installed: pip install torch==2.13.0 to compare",
}


def mlp_model(rate: float = RATE):
    return Linear(64, 128) >> LayerNorm(128) >> gelu >> Dropout(rate) >> Linear(128, 10) >> softmax


def cnn_model():
    return (
        Input(Tensor[1, 8, 8])
        >> Conv2d(1, 16, 3, padding=1)
        >> BatchNorm(16)
        >> relu
        >> max_pool(2)
        >> flatten
        >> Linear(None, 10)
        >> softmax
    )


def data():
    """The same batches in every process: ``(x_mlp, y_mlp, x_cnn, y_cnn)``."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 64)).astype(np.float32)
    y = rng.integers(0, 10, BATCH)
    xc = rng.standard_normal((BATCH, 1, 8, 8)).astype(np.float32)
    yc = rng.integers(0, 10, BATCH)
    return x, y, xc, yc


def nnc_step(model):
    return nnc.train_step(model, loss=nnc.cross_entropy, opt=nnc.sgd(LR))


def reference(kind: str) -> dict:
    """nnc interpreted, one step from the initial parameters, dropout off: the values every
    other contender is checked against (``loss``, ``params``, and ``stats`` for the CNN)."""
    x, y, xc, yc = data()
    if kind == "mlp":
        model = mlp_model(0.0)
        params = model.init(seed=0)
        step = nnc_step(model)
        new, _, loss = step(params, step.opt.init(params), x, y, {}, nnc.key(0))
        return {"loss": float(loss), "params": new}
    model = cnn_model()
    params = model.init(seed=0)
    step = nnc_step(model)
    new, _, loss, stats = step(params, step.opt.init(params), xc, yc, model.init_stats(), None)
    return {"loss": float(loss), "params": new, "stats": stats}


def relative(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-30))


class Contender:
    """A training loop of one library: ``step()`` advances it by one step; ``last`` is the
    last loss (a float, or whatever the library returns)."""

    def __init__(self, advance):
        self._advance = advance
        self.last = None

    def step(self) -> None:
        self.last = self._advance()


# ----------------------------------------------------------------------------- nnc


def keyed_loop(step, params, opt_state, x, y) -> Contender:
    """``step`` (a ``train_step``, compiled or not) in a loop from ``params``, a new key
    ``nnc.fold_in(nnc.key(0), i)`` each step."""
    state = {"params": params, "opt": opt_state, "i": 0}
    base = nnc.key(0)

    def advance():
        state["params"], state["opt"], loss = step(
            state["params"], state["opt"], x, y, {}, nnc.fold_in(base, state["i"])
        )
        state["i"] += 1
        return loss

    return Contender(advance)


def nnc_mlp(step, opt_state) -> Contender:
    """``step`` (a ``train_step``, compiled or not) in a loop, a new key each step."""
    x, y, _, _ = data()
    return keyed_loop(step, mlp_model().init(seed=0), opt_state, x, y)


def nnc_cnn(step, opt_state) -> Contender:
    """``step`` in a loop, the running statistics threaded from step to step."""
    model = cnn_model()
    _, _, x, y = data()
    state = {"params": model.init(seed=0), "opt": opt_state, "stats": model.init_stats()}

    def advance():
        state["params"], state["opt"], loss, state["stats"] = step(
            state["params"], state["opt"], x, y, state["stats"], None
        )
        return loss

    return Contender(advance)


def compiled_first_call(compiled, *args) -> tuple[list[str], object]:
    """Compile on ``args``; the lines that describe the compilation, and its output."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        out = compiled(*args)
        seconds = time.perf_counter() - start
    notes = [
        f"nnc.compile: first call {seconds:.1f} s (compiles, or loads from the disk cache; "
        "the process's first also imports Numba)"
    ]
    for entry in getattr(compiled, "specialisations", {}).values():
        fallbacks = ", ".join(entry.fallbacks) or "none"
        notes.append(f"nnc.compile: {entry.ops} operations, primitives without a compiled form: {fallbacks}")
    notes += [f"warning: {w.message}" for w in caught]
    return notes, out


def first_steps(step, compiled, params, x, y) -> tuple[object, list[str], float]:
    """One step of ``compiled`` (its first call) and of ``step`` (interpreted) from ``params``,
    with the same key, dropout on: the optimiser's initial state, the lines that describe
    the compilation, and the largest relative difference of the loss and the updated
    parameters between the two."""
    opt_state = step.opt.init(params)
    key = nnc.fold_in(nnc.key(0), 0)
    notes, compiled_out = compiled_first_call(compiled, params, opt_state, x, y, {}, key)
    interpreted_out = step(params, opt_state, x, y, {}, key)
    same = max(
        relative(compiled_out[2], interpreted_out[2]),
        *(
            relative(a, b)
            for a, b in zip(nnc.tree_leaves(compiled_out[0]), nnc.tree_leaves(interpreted_out[0]))
        ),
    )
    return opt_state, notes, same


# ----------------------------------------------------------------------------- numpy by hand


def numpy_mlp(params, rate: float = RATE, seed: int = 0):
    """The MLP's SGD step written out in numpy, float32 throughout; ``(step, state)``.
    The dropout mask is drawn once at the start of each step from ``default_rng(seed)``."""
    from scipy.special import erf

    rng = np.random.default_rng(seed)
    keep_scale = np.float32(1.0 / (1.0 - rate))
    state = tuple(
        params[k][n].copy()
        for k, n in (("linear_0", "W"), ("linear_0", "b"), ("layernorm_0", "scale"), ("layernorm_0", "bias"))
        + (("linear_1", "W"), ("linear_1", "b"))
    )

    def step(p, x, y):
        W1, b1, g, beta, W2, b2 = p
        n = x.shape[0]
        rows = np.arange(n)
        # the mask, once per step, for the forward and the backward
        scale = (rng.random((n, W1.shape[1]), dtype=np.float32) >= rate) * keep_scale
        h = x @ W1 + b1
        centred = h - h.mean(axis=1, keepdims=True)
        inv_std = 1.0 / np.sqrt((centred * centred).mean(axis=1, keepdims=True) + EPS)
        xhat = centred * inv_std
        u = xhat * g + beta
        cdf = 0.5 * (1.0 + erf(u * SQRT_HALF))
        d = u * cdf * scale
        z = d @ W2 + b2
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        prob = e / e.sum(axis=1, keepdims=True)
        loss = -np.log(prob[rows, y]).mean()
        dz = prob
        dz[rows, y] -= 1.0
        dz /= n
        dW2 = d.T @ dz
        db2 = dz.sum(axis=0)
        du = (dz @ W2.T) * scale * (cdf + u * np.exp(-0.5 * u * u) * INV_SQRT_2PI)
        dg = (du * xhat).sum(axis=0)
        dbeta = du.sum(axis=0)
        dxhat = du * g
        dh = inv_std * (
            dxhat - dxhat.mean(axis=1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=1, keepdims=True)
        )
        dW1 = x.T @ dh
        db1 = dh.sum(axis=0)
        grads = (dW1, db1, dg, dbeta, dW2, db2)
        return tuple(a - LR * b for a, b in zip(p, grads)), loss

    return step, state, rng


def carrying(step, state, x, y) -> Contender:
    """``state, loss = step(state, x, y)`` in a loop, the state carried from step to step."""
    box = [state]

    def advance():
        box[0], loss = step(box[0], x, y)
        return loss

    return Contender(advance)


def numpy_contender(params) -> Contender:
    x, y, _, _ = data()
    step, state, _ = numpy_mlp(params)
    return carrying(step, state, x, y)


# ----------------------------------------------------------------------------- PyTorch (child)


def torch_sgd(loss, leaves, lr: float):
    """Backpropagate ``loss`` and take a plain SGD step on ``leaves``, their gradients then
    cleared; the loss."""
    import torch

    loss.backward()
    with torch.no_grad():
        for t in leaves:
            t -= lr * t.grad
            t.grad = None
    return loss


def torch_contenders() -> tuple[dict, dict]:
    """PyTorch's MLP and CNN loops and their checks against nnc, by name; built in the child."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    x, y, xc, yc = (torch.tensor(a) for a in data())

    def copy_linear(layer, p):
        with torch.no_grad():
            layer.weight.copy_(torch.tensor(p["W"]).T)
            layer.bias.copy_(torch.tensor(p["b"]))

    def mlp(rate: float):
        p = mlp_model().init(seed=0)
        lin1, norm, lin2 = (
            torch.nn.Linear(64, 128),
            torch.nn.LayerNorm(128, eps=EPS),
            torch.nn.Linear(128, 10),
        )
        copy_linear(lin1, p["linear_0"])
        copy_linear(lin2, p["linear_1"])
        with torch.no_grad():
            norm.weight.copy_(torch.tensor(p["layernorm_0"]["scale"]))
            norm.bias.copy_(torch.tensor(p["layernorm_0"]["bias"]))
        leaves = [*lin1.parameters(), *norm.parameters(), *lin2.parameters()]

        def advance():
            h = F.dropout(F.gelu(norm(lin1(x)), approximate="none"), rate, training=True)
            return torch_sgd(F.cross_entropy(lin2(h), y), leaves, LR)

        return Contender(advance), lin1

    def cnn():
        p = cnn_model().init(seed=0)
        conv, bn, lin = (
            torch.nn.Conv2d(1, 16, 3, padding=1),
            torch.nn.BatchNorm2d(16),
            torch.nn.Linear(256, 10),
        )
        bn.train()  # batch statistics, running statistics updated (momentum 0.1, eps 1e-5)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor(p["conv2d_0"]["W"]))
            conv.bias.copy_(torch.tensor(p["conv2d_0"]["b"]))
            bn.weight.copy_(torch.tensor(p["batchnorm_0"]["scale"]))
            bn.bias.copy_(torch.tensor(p["batchnorm_0"]["bias"]))
        copy_linear(lin, p["linear_0"])
        leaves = [*conv.parameters(), *bn.parameters(), *lin.parameters()]

        def advance():
            h = F.max_pool2d(F.relu(bn(conv(xc))), 2).flatten(1)
            return torch_sgd(F.cross_entropy(lin(h), yc), leaves, LR)

        return Contender(advance), (conv, bn)

    def check_mlp() -> float:
        ref = reference("mlp")
        contender, lin1 = mlp(0.0)
        contender.step()
        return max(
            relative(contender.last.item(), ref["loss"]),
            relative(lin1.weight.detach().numpy().T, ref["params"]["linear_0"]["W"]),
        )

    def check_cnn() -> float:
        ref = reference("cnn")
        contender, (conv, bn) = cnn()
        contender.step()
        stats = ref["stats"]["batchnorm_0"]
        return max(
            relative(contender.last.item(), ref["loss"]),
            relative(conv.weight.detach().numpy(), ref["params"]["conv2d_0"]["W"]),
            relative(bn.running_mean.numpy(), stats["mean"]),
            relative(bn.running_var.numpy(), stats["var"]),
        )

    loops = {"mlp": mlp(RATE)[0], "cnn": cnn()[0]}
    checks = {"check:mlp": check_mlp, "check:cnn": check_cnn}
    for name, loop in loops.items():
        checks[f"finite:{name}"] = lambda loop=loop: float(math.isfinite(loop.last.item()))
    return loops, checks


# ----------------------------------------------------------------------------- JAX (child)


def jax_loop(step, p, x, y) -> tuple[Contender, dict]:
    """A jitted ``step(p, x, y, key, i) -> (p, loss)`` in a loop from parameters ``p``, with
    ``key = jax.random.key(0)`` and ``i`` counting the steps, waited for each step; the
    contender and its state (``state["p"]``: the parameters now)."""
    import jax

    state = {"p": p, "i": 0}
    base = jax.random.key(0)

    def advance():
        state["p"], value = step(state["p"], x, y, base, state["i"])
        jax.block_until_ready((state["p"], value))
        state["i"] += 1
        return value

    return Contender(advance), state


def jax_contenders() -> tuple[dict, dict]:
    """JAX's jitted MLP step and its check against nnc, by name; built in the child."""
    import jax
    import jax.numpy as jnp

    x, y, _, _ = (jnp.asarray(a) for a in data())

    def loss_fn(p, x, y, key, rate=RATE):
        W1, b1, g, beta, W2, b2 = p
        h = x @ W1 + b1
        centred = h - h.mean(axis=1, keepdims=True)
        u = centred / jnp.sqrt((centred * centred).mean(axis=1, keepdims=True) + EPS) * g + beta
        a = jax.nn.gelu(u, approximate=False)
        if rate > 0:
            drop = jax.random.uniform(key, a.shape, jnp.float32) < rate
            a = jnp.where(drop, 0.0, a * (1.0 / (1.0 - rate)))
        z = a @ W2 + b2
        return -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(x.shape[0]), y])

    def make(rate: float):
        @jax.jit
        def step(p, x, y, key, i):
            loss = functools.partial(loss_fn, rate=rate)  # a Python number: fixed at tracing
            value, grads = jax.value_and_grad(loss)(p, x, y, jax.random.fold_in(key, i))
            return [a - LR * b for a, b in zip(p, grads)], value

        params = mlp_model().init(seed=0)
        p = [
            jnp.asarray(params[k][n])
            for k, n in (("linear_0", "W"), ("linear_0", "b"), ("layernorm_0", "scale"))
            + (("layernorm_0", "bias"), ("linear_1", "W"), ("linear_1", "b"))
        ]
        return jax_loop(step, p, x, y)

    def check_mlp() -> float:
        ref = reference("mlp")
        contender, state = make(0.0)
        contender.step()
        return max(
            relative(float(contender.last), ref["loss"]),
            relative(np.asarray(state["p"][0]), ref["params"]["linear_0"]["W"]),
        )

    loop = make(RATE)[0]
    checks = {"check:mlp": check_mlp, "finite:mlp": lambda: float(math.isfinite(float(loop.last)))}
    return {"mlp": loop}, checks


def serve_steps(steps: dict[str, Callable[[], object]], checks: dict[str, Callable[[], float]]) -> None:
    """The child's side: answer ``[name, number]`` lines on stdin, as
    :func:`timing.serve_timings` does, with the seconds per call of ``number`` calls of
    ``steps[name]`` (after ``WARM`` untimed ones, as :func:`rotating_samples` does here), or,
    for a check, its value."""
    import json

    for line in sys.stdin:
        name, number = json.loads(line)
        if name in checks:
            print(checks[name](), flush=True)
            continue
        step = steps[name]
        for _ in range(WARM):
            step()
        start = time.perf_counter()
        for _ in range(number):
            step()
        print((time.perf_counter() - start) / number, flush=True)


def serve(library: str) -> None:
    """The child's side of this script: :func:`serve_steps` with ``library``'s loops."""
    loops, checks = torch_contenders() if library == "torch" else jax_contenders()
    serve_steps({name: loop.step for name, loop in loops.items()}, checks)


def start_child(script: str, library: str, *args: str) -> ChildTimers | None:
    """A child process ``script --timing-child library *args`` serving ``library``'s loops,
    one thread each (``ONE_THREAD``), or ``None`` when ``library`` is not installed."""
    if importlib.util.find_spec(library) is None:
        return None
    process = subprocess.Popen(
        [sys.executable, script, "--timing-child", library, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **ONE_THREAD},
    )
    return ChildTimers(process)


@contextmanager
def started_children(script: str, libraries: tuple[str, ...], *args: str) -> Iterator[dict[str, ChildTimers]]:
    """A child (:func:`start_child`) for each of ``libraries`` that is installed, by library;
    each is closed at the end."""
    with ExitStack() as stack:
        children = {}
        for library in libraries:
            child = start_child(script, library, *args)
            if child is not None:
                children[library] = stack.enter_context(child)
        yield children


# ----------------------------------------------------------------------------- timing


def rotating_samples(contenders: dict, rounds: int, number: int) -> dict[str, list[float]]:
    """Every round's seconds per step of each contender, as :func:`timing.interleaved_samples`
    measures them (a :class:`timing.Remote` one with a pause before and after its turn), but
    each round starts one contender later, and each turn times ``number`` steps after
    ``WARM`` untimed ones. In one fixed order, whatever follows the children's turns (the
    pause, a cold core) falls on the same contender every round; rotating the order spreads
    it over all of them (in fixed order, two runs put nnc compiled at 1.75x numpy's time,
    two others at 0.8x)."""
    names = list(contenders)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds + 1):  # round 0 warms every contender up and is not kept
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            fn = contenders[name]
            if isinstance(fn, Remote):
                time.sleep(SETTLE_SECONDS)
                seconds = fn.run(number if r else 1)
                time.sleep(SETTLE_SECONDS)
            else:
                for _ in range(WARM):
                    fn()
                start = time.perf_counter()
                for _ in range(number):
                    fn()
                seconds = (time.perf_counter() - start) / number
            if r:
                samples[name].append(seconds)
    return samples


def time_loops(
    loops: dict[str, Contender], children: dict, loop: str, finite: str, rounds: int, number: int, extra=None
) -> dict[str, list[float]]:
    """:func:`rotating_samples` of ``loops`` (in this process), then the callables ``extra``,
    then each child's loop ``loop`` (named as in ``CHILD_NAMES``); then every contender's
    last loss is checked to be finite (a child's by its check ``finite``)."""
    contenders = {name: contender.step for name, contender in loops.items()} | (extra or {})
    for library, child in children.items():
        contenders[CHILD_NAMES[library]] = child.contender(loop)
    samples = rotating_samples(contenders, rounds, number=number)
    for name, contender in loops.items():
        assert math.isfinite(float(contender.last)), f"{name}: the loss went non-finite during timing"
    for library, child in children.items():
        assert child.contender(finite).run(0) == 1.0, f"{library}: the loss went non-finite"
    return samples


# ----------------------------------------------------------------------------- report


def table(title: str, samples: dict, notes: list[str]) -> dict:
    """Print the medians and each contender's ratio to nnc compiled; the ratios."""
    print(title)
    print(f"  {'contender':26s} {'median us':>10s} {'/ nnc compiled':>15s}")
    ratios = {}
    for name, times in samples.items():
        ratios[name] = median_ratio(samples, name, "nnc compiled")
        print(f"  {name:26s} {statistics.median(times) * 1e6:10.1f} {ratios[name]:15.2f}")
    for note in notes:
        print(f"  {note}")
    return ratios


def verdict(what: str, ratio: float, met: bool) -> str:
    return f"target {what}: {ratio:.2f} ({'met' if met else 'NOT met'})"


def not_installed(children: dict, libraries: tuple[str, ...]) -> list[str]:
    """A note for each of ``libraries`` that has no child (it is not installed)."""
    return [NOT_INSTALLED[library] for library in libraries if library not in children]


def step_targets(samples: dict, ratios: dict, children: dict) -> None:
    """Print the targets of a training step: nnc interpreted within 1.5x of numpy by hand
    (where numpy is timed), and each child's library slower than nnc compiled."""
    targets = []
    if "numpy by hand" in samples:
        within = median_ratio(samples, "nnc interpreted", "numpy by hand")
        targets.append(verdict("nnc interpreted / numpy by hand <= 1.5", within, within <= 1.5))
    for library in children:
        ratio = ratios[CHILD_NAMES[library]]
        targets.append(verdict(f"{CHILD_NAMES[library]} / nnc compiled > 1", ratio, ratio > 1))
    for line in targets:
        print(f"  {line}")


def child_checks(children: dict, check: str) -> list[str]:
    """Each child's check ``check`` against nnc, dropout off, as a line's part."""
    return [
        f"{library} vs nnc (rate 0): {child.contender(check).run(0):.1e}"
        for library, child in children.items()
    ]


def mlp_figures(rounds: int, children: dict) -> None:
    x, y, _, _ = data()
    step = nnc_step(mlp_model())
    compiled = nnc.compile(step)
    params = mlp_model().init(seed=0)
    # checks: compiled against interpreted with dropout on; numpy, torch, jax against nnc with it off
    opt_state, notes, same = first_steps(step, compiled, params, x, y)
    ref = reference("mlp")
    np_step, np_state, _ = numpy_mlp(params, rate=0.0)
    (W1, *_), np_loss = np_step(np_state, x, y)
    checks = [
        f"compiled vs interpreted (rate {RATE}, same key): {same:.1e}",
        f"numpy by hand vs nnc (rate 0): {max(relative(np_loss, ref['loss']), relative(W1, ref['params']['linear_0']['W'])):.1e}",
        *child_checks(children, "check:mlp"),
    ]
    print(f"check, max relative difference of the loss and updated weights: {'; '.join(checks)}")

    loops = {
        "nnc compiled": nnc_mlp(compiled, opt_state),
        "nnc interpreted": nnc_mlp(step, opt_state),
        "numpy by hand": numpy_contender(params),
    }
    mask_rng = np.random.default_rng(1)
    mask_draw = {"(numpy's mask draw alone)": lambda: mask_rng.random((BATCH, 128), dtype=np.float32) >= RATE}
    samples = time_loops(loops, children, "mlp", "finite:mlp", rounds, number=50, extra=mask_draw)
    ratios = table(
        f"MLP 64-128-10, LayerNorm, exact GELU, Dropout({RATE}), cross-entropy, SGD({LR}), "
        f"batch {BATCH}, float32",
        samples,
        notes + not_installed(children, ("jax", "torch")),
    )
    step_targets(samples, ratios, children)


def cnn_figures(rounds: int, children: dict) -> None:
    _, _, x, y = data()
    model = cnn_model()
    step = nnc_step(model)
    compiled = nnc.compile(step)
    params, stats = model.init(seed=0), model.init_stats()
    opt_state = step.opt.init(params)
    notes, compiled_out = compiled_first_call(compiled, params, opt_state, x, y, stats, None)
    interpreted_out = step(params, opt_state, x, y, stats, None)
    # the convolution's bias is left out: BatchNorm subtracts it again, so its gradient is
    # zero and both sides hold rounding noise (about 1e-8) there
    same = max(
        relative(a, b)
        for (path, a), b in zip(nnc.tree_paths(compiled_out), nnc.tree_leaves(interpreted_out))
        if not path.endswith("conv2d_0/b")
    )
    checks = [f"compiled vs interpreted (all but the convolution's bias): {same:.1e}"]
    if "torch" in children:
        checks.append(f"torch vs nnc: {children['torch'].contender('check:cnn').run(0):.1e}")
    print(
        f"check, max relative difference of the loss, updated weights and running statistics: {'; '.join(checks)}"
    )
    loops = {"nnc compiled": nnc_cnn(compiled, opt_state), "nnc interpreted": nnc_cnn(step, opt_state)}
    samples = time_loops(loops, children, "cnn", "finite:cnn", rounds, number=20)
    ratios = table(
        f"digits CNN, Conv2d(1, 16, 3) + BatchNorm(16) (training, running statistics updated), "
        f"cross-entropy, SGD({LR}), batch {BATCH}, float32",
        samples,
        notes + not_installed(children, ("torch",)),
    )
    step_targets(samples, ratios, children)


# ----------------------------------------------------------------------------- command line


def arguments(doc: str, rounds: int, libraries: tuple[str, ...]) -> argparse.ArgumentParser:
    """The command line of a benchmark script: ``--quick`` (``args.rounds`` 5 instead of
    ``rounds``) and the hidden ``--timing-child LIBRARY`` of :func:`start_child`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(
        "--quick",
        dest="rounds",
        action="store_const",
        const=5,
        default=rounds,
        help=f"5 rounds instead of {rounds}",
    )
    parser.add_argument("--timing-child", choices=libraries, help=argparse.SUPPRESS)
    return parser


def pin_to_one_core() -> None:
    """On Linux, one core for this process and the children, which inherit it: XLA sizes
    its thread pool from the affinity (its flags alone left three threads busy in a jitted
    product), and every contender meets the same core, busy or not, in each round."""
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        print(f"every contender runs on CPU {core} alone (one thread each)")


def run(main: Callable[[list[str]], None]) -> None:
    """``main(sys.argv[1:])`` with one BLAS thread for every contender in this process (the
    children set their own)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        main(sys.argv[1:])
    else:
        with threadpool_limits(1):
            main(sys.argv[1:])


def main(argv: list[str]) -> None:
    args = arguments(__doc__, 21, ("torch", "jax")).parse_args(argv)
    if args.timing_child:
        serve(args.timing_child)
        return
    pin_to_one_core()
    with started_children(__file__, ("torch", "jax")) as children:
        mlp_figures(args.rounds, children)
        print()
        cnn_figures(args.rounds, {k: v for k, v in children.items() if k == "torch"})


if __name__ == "__main__":
    run(main)
