"""Sixteen ``fit(compile=True)`` runs that differ only in a hyperparameter, in one fresh process.

Run: python benchmarks/hyperparameter_sweep.py [--what lr|momentum|dropout] [--runs 16]

Cold: the nnc cache directory starts empty (a temporary one), so every distinct compiled
step costs a Numba compilation. Hyperparameters are data (issues 20 and 21): the sixteen runs
share one compiled step, so the first pays the compilation and the others only trace.
Prints the total time, the first run's, and how many distinct steps were compiled.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--what", default="lr", choices=["lr", "momentum", "dropout"])
    parser.add_argument("--runs", type=int, default=16)
    args = parser.parse_args()
    os.environ["NNC_CACHE_DIR"] = tempfile.mkdtemp(prefix="nnc-sweep-")
    import numpy as np

    import nnc
    from nnc import Dropout, Input, Linear, Vec, tanh

    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 16)).astype(np.float32)
    y = (np.arange(256) % 4).astype(np.int64)
    times = []
    for i in range(args.runs):
        rate = 0.1 + 0.02 * i if args.what == "dropout" else 0.1
        model = Input(Vec[16]) >> Linear(16, 32) >> tanh >> Dropout(rate) >> Linear(32, 4)
        lr = 0.01 * (1 + i) if args.what == "lr" else 0.01
        momentum = 0.05 * i if args.what == "momentum" else 0.5
        start = time.perf_counter()
        nnc.fit(
            model,
            model.init(seed=0),
            (x, y),
            loss=lambda p, t: nnc.cross_entropy(p, t, from_logits=True),
            opt=nnc.sgd(lr, momentum=momentum),
            epochs=1,
            batch_size=64,
            progress=False,
            compile=True,
        )
        times.append(time.perf_counter() - start)
    modules = sorted(m for m in sys.modules if m.startswith("nnc_compiled_"))
    print(
        f"{args.runs} fits differing in {args.what}: {sum(times):.1f} s in all, first {times[0]:.1f} s, "
        f"others {min(times[1:]):.2f}-{max(times[1:]):.2f} s; {len(modules)} distinct compiled step(s)"
    )


if __name__ == "__main__":
    main()
