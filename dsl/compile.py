"""``nnc.compile``: a pure function of arrays (a model, a training step) as one native function.

An nnc model is a pure composition whose whole graph is known before it runs, so nnc can
do what an eager framework cannot: trace the function once per input signature, turn the
graph (forward, backward and optimiser update alike) into one Numba function with fused
elementwise loops and no Python between the operations, and cache it per input shape and
dtype, in memory and on disk.

This module is the language's part of it: a model becomes ``predict(params, x)``. Tracing,
generating, loading and caching the code are the engine's, in :mod:`nnc.backend.native`.

>>> import numpy as np, nnc
>>> from nnc import Linear, tanh
>>> model = Linear(3, 2) >> tanh
>>> params = model.init(seed=0)
>>> predict = nnc.compile(model)
>>> x = np.ones((4, 3), np.float32)
>>> bool(np.allclose(predict(params, x), model(params, x), rtol=1e-6))
True
"""

from __future__ import annotations

from typing import Any

from nnc.backend.native import NativeFunction

from .model import Model


def compile(fn: Any, *, verbose: bool = False) -> NativeFunction:  # noqa: A001 - nnc.compile, by design
    """Compile a model or any pure function of arrays and parameter trees into native code.

    ``nnc.compile(model)`` gives ``predict(params, x)``; ``nnc.compile(nnc.train_step(...))``
    gives the whole training step (forward, backward and update) as one function. The result
    is specialised and cached per input signature (structure, shapes, dtypes) and equals the
    interpreted path to float rounding. ``verbose=True`` reports each compilation and its time.
    """
    if isinstance(fn, Model):
        model = fn
        if model.has_effects:  # the key and statistics are inputs of the compiled function too

            def predict_with_effects(params, x, key=None, stats=None):
                return model(params, x, key=key, stats=stats)

            return NativeFunction(predict_with_effects, verbose, repr(model))

        def predict(params, x):
            return model(params, x)

        return NativeFunction(predict, verbose, repr(model))
    if not callable(fn):
        raise TypeError(f"nnc.compile takes a model or a pure function, got {type(fn).__name__}")
    return NativeFunction(fn, verbose, getattr(fn, "__name__", type(fn).__name__))
