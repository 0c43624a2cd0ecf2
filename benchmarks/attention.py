"""Attention forward and backward at sequence 256 (issue 17): nnc's ``nnc.attention.attention``,
interpreted and compiled, against PyTorch's ``F.scaled_dot_product_attention`` and plain numpy.

Shapes: batch 8, 4 heads, 256 steps, head size 16 (``q``, ``k``, ``v`` of shape
``(8, 4, 256, 16)``), float32, causal and not (a table each). Each contender computes the
loss ``sum(attention(q, k, v) * w)`` (``w`` a fixed random array of the output's shape) and
its gradients with respect to ``q``, ``k`` and ``v``:

- nnc interpreted: ``nnc.value_and_grad(loss, argnums=(0, 1, 2))(q, k, v, w)``;
- nnc compiled: ``nnc.compile`` of a function of ``q, k, v, w`` that returns that value and
  those gradients;
- numpy by hand: the scores ``q k^T / sqrt(16)`` (masked to -1e30 above the diagonal when
  causal, as nnc does), a stable softmax, the product with ``v``, and the backward written out;
- PyTorch (one thread, in a child process): ``F.scaled_dot_product_attention(q, k, v,
  is_causal=...)``, ``(out * w).sum().backward()``, the gradients cleared before each call.

Before timing, each contender's loss and gradients are checked against nnc interpreted.
Timing is that of benchmarks/modern_step.py (alternating rounds, each starting one contender
later, two untimed calls before each turn, PyTorch in a child process, everything pinned to
one core); a ratio is the median over rounds of that round's ratio.

Target (issue 17): nnc compiled within 1.5x of PyTorch's sdpa. Printed beside it: the interpreted
path against numpy by hand (the interpreter runs numpy's whole-array operations).

Run: OMP_NUM_THREADS=1 python benchmarks/attention.py [--quick]  (``--quick``: 5 rounds
instead of 15). The first run compiles nnc's function for each masking (about half a minute
each); later runs load them from disk. Optional baseline: pip install torch==2.13.0.
"""

from __future__ import annotations

import functools
import math
import time

import numpy as np
from modern_step import (
    NOT_INSTALLED,
    arguments,
    compiled_first_call,
    pin_to_one_core,
    relative,
    rotating_samples,
    run,
    serve_steps,
    started_children,
    table,
    verdict,
)
from timing import ChildTimers, median_ratio

import nnc
from nnc.attention import attention

BATCH, HEADS, STEPS, SIZE = 8, 4, 256, 16
SHAPE = (BATCH, HEADS, STEPS, SIZE)
MASKED = -1e30  # nnc's masked score


def data():
    """``q, k, v, w``, standard normal, the same in every process."""
    rng = np.random.default_rng(0)
    return tuple(rng.standard_normal(SHAPE).astype(np.float32) for _ in range(4))


def nnc_value_and_grad(causal: bool):
    def loss(q, k, v, w):
        return nnc.sum(attention(q, k, v, causal=causal) * w)

    return nnc.value_and_grad(loss, argnums=(0, 1, 2))


def nnc_compiled(causal: bool):
    value_and_grad = nnc_value_and_grad(causal)

    def attention_loss_and_grads(q, k, v, w):
        return value_and_grad(q, k, v, w)

    return nnc.compile(attention_loss_and_grads)


def reference(causal: bool) -> tuple[float, tuple]:
    """nnc interpreted: the loss and the gradients every other contender is checked against."""
    value, grads = nnc_value_and_grad(causal)(*data())
    return float(value), tuple(grads)


def difference(value, grads, ref) -> tuple[float, float]:
    """The relative difference of the loss and the largest of the gradients'. The loss sums
    131072 products of both signs to a number near 0, so a float32 sum in another order
    (nnc compiled's, one accumulator) moves it by about 1e-5 of itself; the gradients are
    well conditioned."""
    return relative(value, ref[0]), max(relative(a, b) for a, b in zip(grads, ref[1]))


def differences(loss: float, grads: float) -> str:
    return f"loss {loss:.1e}, gradients {grads:.1e}"


def numpy_attention(q, k, v, w, causal: bool):
    """The loss and its gradients with respect to ``q``, ``k``, ``v``, written out in numpy."""
    scale = np.float32(1.0 / math.sqrt(q.shape[-1]))
    s = (q @ k.transpose(0, 1, 3, 2)) * scale
    if causal:
        s = np.where(np.tril(np.ones((q.shape[-2], k.shape[-2]), bool)), s, np.float32(MASKED))
    s -= s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    prob = e / e.sum(axis=-1, keepdims=True)
    loss = ((prob @ v) * w).sum()
    # backward: d out = w
    dv = prob.transpose(0, 1, 3, 2) @ w
    dprob = w @ v.transpose(0, 1, 3, 2)
    ds = prob * (dprob - (dprob * prob).sum(axis=-1, keepdims=True)) * scale
    return loss, (ds @ k, ds.transpose(0, 1, 3, 2) @ q, dv)


# ----------------------------------------------------------------------------- PyTorch (child)


def torch_contenders() -> tuple[dict, dict]:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    arrays = data()
    q, k, v = (torch.tensor(a, requires_grad=True) for a in arrays[:3])
    w = torch.tensor(arrays[3])

    def make(causal: bool):
        def call():
            for t in (q, k, v):
                t.grad = None
            loss = (F.scaled_dot_product_attention(q, k, v, is_causal=causal) * w).sum()
            loss.backward()
            return loss

        return call

    def check(causal: bool, part: int) -> float:
        loss = make(causal)()
        grads = tuple(t.grad.numpy() for t in (q, k, v))
        return difference(loss.item(), grads, reference(causal))[part]

    loops = {"causal": make(True), "full": make(False)}
    checks = {
        f"check:{name}:{part}": functools.partial(check, causal, i)
        for name, causal in (("causal", True), ("full", False))
        for i, part in enumerate(("loss", "grads"))
    }
    return loops, checks


# ----------------------------------------------------------------------------- report


def figures(causal: bool, rounds: int, child: ChildTimers | None) -> None:
    q, k, v, w = data()
    interpreted = nnc_value_and_grad(causal)
    compiled = nnc_compiled(causal)
    print("nnc.compile: the first call (compiles, or loads from the disk cache) ...", flush=True)
    notes, compiled_out = compiled_first_call(compiled, q, k, v, w)
    start = time.perf_counter()
    ref = reference(causal)
    notes.append(f"nnc interpreted: first call {time.perf_counter() - start:.2f} s (traces the function)")
    np_loss, np_grads = numpy_attention(q, k, v, w, causal)
    checks = [
        f"compiled: {differences(*difference(compiled_out[0], compiled_out[1], ref))}",
        f"numpy by hand: {differences(*difference(np_loss, np_grads, ref))}",
    ]
    name = "causal" if causal else "full"
    if child is not None:
        checked = (child.contender(f"check:{name}:{part}").run(0) for part in ("loss", "grads"))
        checks.append(f"torch sdpa: {differences(*checked)}")
    print(
        f"check against nnc interpreted, max relative difference of the loss and gradients: {'; '.join(checks)}"
    )

    contenders = {
        "nnc compiled": lambda: compiled(q, k, v, w),
        "nnc interpreted": lambda: interpreted(q, k, v, w),
        "numpy by hand": lambda: numpy_attention(q, k, v, w, causal),
    }
    sdpa = "torch sdpa (1 thread)"
    if child is not None:
        contenders[sdpa] = child.contender(name)
    else:
        notes.append(NOT_INSTALLED["torch"])
    samples = rotating_samples(contenders, rounds, number=3)
    table(
        f"attention forward + backward, {'causal' if causal else 'not causal'}, batch {BATCH}, {HEADS} heads, "
        f"sequence {STEPS}, head size {SIZE}, float32 ({rounds} rounds of 3 calls)",
        samples,
        notes,
    )
    if child is not None:
        ratio = median_ratio(samples, "nnc compiled", sdpa)
        print(f"  {verdict(f'nnc compiled / {sdpa} <= 1.5', ratio, ratio <= 1.5)}")
        # information: the interpreter runs numpy's whole-array operations, as fast as numpy by
        # hand, which itself takes about twice sdpa's time here
        ratio = median_ratio(samples, "nnc interpreted", "numpy by hand")
        print(f"  nnc interpreted / numpy by hand: {ratio:.2f}")


def main(argv: list[str]) -> None:
    args = arguments(__doc__, 15, ("torch",)).parse_args(argv)
    if args.timing_child:  # the child's side: modern_step's serve_steps with PyTorch's calls
        serve_steps(*torch_contenders())
        return
    pin_to_one_core()
    start = time.perf_counter()
    with started_children(__file__, ("torch",)) as children:
        for causal in (True, False):
            figures(causal, args.rounds, children.get("torch"))
            print()
    print(f"whole run: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    run(main)
