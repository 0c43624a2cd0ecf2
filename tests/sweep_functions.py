"""Train functions for tests/test_sweep.py: in a module, so that worker processes
(the default pool's, a Dask cluster's) can import them by name."""

import os

import numpy as np

import nnc
from nnc import Linear, tanh


def quadratic(config, seed):
    """Cheap and exact: a bowl in log10(lr) and width, plus a seeded wobble."""
    noise = np.random.default_rng(seed).normal(scale=0.01)
    val_loss = (np.log10(config["lr"]) + 2) ** 2 + config["width"] / 1000 + noise
    return {"val_loss": val_loss, "accuracy": 1 - val_loss / 10}


def expected_quadratic(config, seed):
    return quadratic(config, seed)["val_loss"]


def tiny_fit(config, seed):
    """A real nnc model trained by ``fit``, every random number from ``seed``."""
    rng = np.random.default_rng(1234)  # the data: the same for every run
    x = rng.normal(size=(48, 2)).astype(np.float32)
    y = np.sin(x[:, :1] * 2 + x[:, 1:]).astype(np.float32)
    model = Linear(2, config["width"]) >> tanh >> Linear(config["width"], 1)
    params = model.init(seed=seed)
    params, history = nnc.fit(
        model,
        params,
        (x[:32], y[:32]),
        loss=nnc.mse,
        opt=nnc.adam(config["lr"]),
        epochs=3,
        batch_size=16,
        validation=(x[32:], y[32:]),
        seed=seed,
        progress=False,
    )
    return {"val_loss": history["val_loss"][-1], "loss": history["loss"][-1], "history": history}


def sometimes_fails(config, seed):
    """Raises for width 64; returns a NaN for lr 0.01; fine otherwise."""
    if config["width"] == 64:
        raise ValueError(f"width {config['width']} is not allowed")
    if config["lr"] == 0.01:
        return {"val_loss": float("nan"), "loss": 1.0}
    return quadratic(config, seed)


def bad_results(config, seed):
    kind = config["kind"]
    if kind == "list":
        return [0.5]
    if kind == "text":
        return {"val_loss": "low"}
    if kind == "inf":
        return {"val_loss": np.float32("inf")}
    if kind == "empty":
        return {}
    if kind == "history":
        return {"val_loss": 0.5, "history": {"loss": [2, 1.5]}}
    if kind == "bad history":
        return {"val_loss": 0.5, "history": [1.0, 2.0]}
    return {"val_loss": np.float32(0.25), "steps": np.array(7)}


def logged(config, seed):
    """``quadratic``, which also appends ``config seed`` to the file $NNC_SWEEP_LOG names."""
    with open(os.environ["NNC_SWEEP_LOG"], "a") as f:
        f.write(f"{config['lr']} {config['width']} {seed}\n")
    return quadratic(config, seed)


def interrupted_at_width_128(config, seed):
    """``logged``, but Ctrl-C (a KeyboardInterrupt) arrives during the runs of width 128."""
    if config["width"] == 128:
        raise KeyboardInterrupt
    return logged(config, seed)


def dies_at_width_64(config, seed):
    """The worker process dies (as when killed for memory) on width 64."""
    if config["width"] == 64:
        os._exit(3)
    return quadratic(config, seed)


def blas_threads(config, seed):
    """How many threads the worker's BLAS and OpenMP would use, and its environment's caps."""
    from threadpoolctl import threadpool_info

    import nnc  # noqa: F401  (numpy and nnc loaded, as in any train function)

    pools = threadpool_info()
    return {
        "blas_threads": max((p["num_threads"] for p in pools if p["user_api"] == "blas"), default=0),
        "most_threads": max((p["num_threads"] for p in pools), default=0),
        "omp_env": float(os.environ.get("OMP_NUM_THREADS", "0")),
        "openblas_env": float(os.environ.get("OPENBLAS_NUM_THREADS", "0")),
        "mkl_env": float(os.environ.get("MKL_NUM_THREADS", "0")),
        "pid": os.getpid(),
    }
