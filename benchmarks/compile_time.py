"""How long nnc.compile takes for a training step, measured in fresh processes.

Run: python benchmarks/compile_time.py [--quick]

Each figure is the time ``nnc.compile`` reports for its first call (tracing, generating the
source, importing Numba, compiling, running once), the median over fresh Python processes:

- cold: empty nnc and Numba caches, as on a new machine: nnc's product functions
  (nnc.backend.numba_blas) are compiled too;
- new model: empty nnc cache, Numba's cache of nnc's own functions kept: what every new
  model or input shape costs after the first;
- cached: both caches kept, as in any later process that runs the same step.

Target (issue 7): under 5 s for the MLP step, cold.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import functools, sys, numpy as np, nnc
from nnc import Input, Linear, Tensor, Vec, fcrnn, relu, softmax, tanh, unroll_last, zero_state
from nnc.conv import Conv2d, flatten, max_pool
rng = np.random.default_rng(0)
name = sys.argv[1]
logits_loss = functools.partial(nnc.cross_entropy, from_logits=True)  # the models end at logits
if name == "mlp":
    model = Input(Vec[64]) >> Linear(64, 128) >> tanh >> Linear(128, 10)
    x, y, loss = rng.standard_normal((32, 64)).astype(np.float32), np.arange(32) % 10, logits_loss
elif name == "rnn":
    model = zero_state(unroll_last(fcrnn(1, 32))) >> Linear(32, 1)
    x = rng.standard_normal((16, 50, 1)).astype(np.float32)
    y, loss = rng.standard_normal((16, 1)).astype(np.float32), nnc.mse
else:
    model = (Input(Tensor[1, 8, 8]) >> Conv2d(1, 16, 3, padding=1) >> relu >> max_pool(2) >> flatten
             >> Linear(None, 10))
    x, y, loss = rng.standard_normal((32, 1, 8, 8)).astype(np.float32), np.arange(32) % 10, logits_loss
params = model.init(seed=0)
step = nnc.compile(nnc.train_step(model, loss=loss, opt=nnc.sgd(0.1)))
step(params, nnc.sgd(0.1).init(params), x, y)
(entry,) = step.specialisations.values()
print(entry.seconds)
"""

STEPS = {
    "mlp": "MLP 64-128-10 tanh, batch 32",
    "rnn": "Elman RNN, hidden 32, 50 steps",
    "cnn": "digits CNN, batch 32",
}


def seconds(step: str, nnc_cache: str, numba_cache: str) -> float:
    env = dict(os.environ, NNC_CACHE_DIR=nnc_cache, NUMBA_CACHE_DIR=numba_cache)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, step], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.split()[-1])


def main(argv: list[str]) -> None:
    rounds = 2 if "--quick" in argv else 5
    print(f"{'step':34} {'cold s':>8} {'new model s':>12} {'cached s':>9}")
    for step, label in STEPS.items():
        cold, new, cached = [], [], []
        for _ in range(rounds):
            with tempfile.TemporaryDirectory() as nnc_dir, tempfile.TemporaryDirectory() as numba_dir:
                cold.append(seconds(step, nnc_dir, numba_dir))
                cached.append(seconds(step, nnc_dir, numba_dir))
                with tempfile.TemporaryDirectory() as fresh:
                    new.append(seconds(step, fresh, numba_dir))
        print(
            f"{label:34} {statistics.median(cold):8.2f} {statistics.median(new):12.2f} "
            f"{statistics.median(cached):9.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
