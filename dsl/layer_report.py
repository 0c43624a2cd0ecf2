"""``nnc.inspect``: what every layer of a model computes on a batch, and the gradients reaching it.

One call runs the model on ``x`` (and, given ``y`` and a ``loss``, its gradient), watching every
layer (see :mod:`nnc.probes`), and returns a :class:`Report`: a table per layer path of the
output's shape, mean, standard deviation, minimum, maximum, the fraction of zeros (after a
``relu``) or of saturated units (``|y| > 0.99`` after ``tanh``; below 0.01 or above 0.99 after
``logistic``) and how many entries are not finite; the same for the gradient reaching each
layer's output; and for each parameter its norm, its gradient's norm and the ratio of the
update to the weight (the gradient's norm times the learning rate over the weight's norm: the
number Karpathy's "recipe" watches, about 1e-3 when training is healthy).

>>> import numpy as np
>>> from nnc import Linear, relu, cross_entropy, softmax
>>> model = Linear(2, 3) >> relu >> Linear(3, 2) >> softmax
>>> x, y = np.ones((4, 2)), np.array([0, 1, 1, 0])
>>> report = inspect(model, model.init(seed=0), x, y, loss=cross_entropy)
>>> [row.path for row in report.layers]
['linear_0', 'relu_0', 'linear_1', 'softmax_0']
>>> report["relu_0"].output.shape
(4, 3)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnc.backend.autodiff import grad
from nnc.backend.errors import ShapeError
from nnc.backend.tree import tree_leaves, tree_paths

from .model import Model
from .probes import at_path, gradients, output_of, prepared, watch
from .types import SeqType

# Which layers' outputs say something by their zeros, and which by their saturation.
ZEROING = {"relu"}
SATURATING = {"tanh": (-0.99, 0.99), "logistic": (0.01, 0.99)}


@dataclass(frozen=True)
class Numbers:
    """A summary of one array: its shape, and mean, std, min and max of its finite entries."""

    shape: tuple
    mean: float
    std: float
    min: float
    max: float
    non_finite: int
    zeros: float | None = None  # the fraction of exact zeros, for a relu's output
    saturated: float | None = None  # the fraction of saturated units, for tanh's or logistic's

    @staticmethod
    def of(x: Any, kind: str = "") -> Numbers:
        a = np.asarray(x, dtype=np.float64)
        finite = a[np.isfinite(a)]
        nan = float("nan")
        stats = (
            (float(finite.mean()), float(finite.std()), float(finite.min()), float(finite.max()))
            if finite.size
            else (nan, nan, nan, nan)
        )
        zeros = float(np.mean(a == 0)) if kind in ZEROING and a.size else None
        saturated = None
        if kind in SATURATING and a.size:
            low, high = SATURATING[kind]
            saturated = float(np.mean((a < low) | (a > high)))
        return Numbers(tuple(a.shape), *stats, int(a.size - finite.size), zeros, saturated)

    def cells(self) -> list[str]:
        special = (
            f"{self.zeros:.0%} zero"
            if self.zeros is not None
            else f"{self.saturated:.0%} sat."
            if self.saturated is not None
            else ""
        )
        return [
            str(self.shape),
            *(f"{v:.3g}" for v in (self.mean, self.std, self.min, self.max)),
            special,
            str(self.non_finite) if self.non_finite else "",
        ]


@dataclass(frozen=True)
class LayerNumbers:
    """One layer of a :class:`Report`: its path, what it is, its output and the gradient reaching
    that output (``None`` without a loss, or where the loss reads the output itself: the last
    layers), and for a layer of sequences its output step by step."""

    path: str
    layer: str
    output: Numbers
    gradient: Numbers | None
    steps: tuple[Numbers, ...] = ()


@dataclass(frozen=True)
class ParamNumbers:
    """One parameter: its path and shape, the norms of it and of its gradient, and the ratio
    of the update (learning rate times gradient) to the weight."""

    path: str
    shape: tuple
    norm: float
    grad_norm: float | None
    update_ratio: float | None
    non_finite_grad: int


def _table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(r: list[str]) -> str:
        cells = (c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        return "  ".join(cells).rstrip()

    return "\n".join([line(head), "  ".join("-" * w for w in widths), *map(line, rows)])


_NUMBER_HEAD = ["shape", "mean", "std", "min", "max", "zero/sat.", "non-finite"]


@dataclass(frozen=True)
class Report:
    """What :func:`inspect` found; ``report["relu_0"]`` is one layer's row. Shown as tables."""

    layers: tuple[LayerNumbers, ...]
    params: tuple[ParamNumbers, ...]
    loss: float | None
    learning_rate: float
    # the arrays behind the numbers, by path: (output, gradient reaching it), for plot()
    arrays: dict = field(default_factory=dict, repr=False, compare=False)

    def __getitem__(self, path: str) -> LayerNumbers:
        for row in self.layers:
            if row.path == path:
                return row
        raise KeyError(f"no layer {path!r}; the layers are {', '.join(r.path for r in self.layers)}")

    def __repr__(self) -> str:
        parts = [
            "activations (each layer's output)",
            _table(["layer", ""] + _NUMBER_HEAD, [[r.path, r.layer] + r.output.cells() for r in self.layers]),
        ]
        reached = [[r.path, r.layer] + r.gradient.cells() for r in self.layers if r.gradient is not None]
        if reached:
            parts += [
                "",
                "gradients reaching each layer's output",
                _table(["layer", ""] + _NUMBER_HEAD, reached),
            ]
        if self.params and self.params[0].grad_norm is not None:
            rows = [
                [
                    p.path,
                    str(p.shape),
                    f"{p.norm:.3g}",
                    f"{p.grad_norm:.3g}",
                    "-" if p.update_ratio is None else f"{p.update_ratio:.2g}",
                    str(p.non_finite_grad) if p.non_finite_grad else "",
                ]
                for p in self.params
            ]
            parts += [
                "",
                f"parameters (update = {self.learning_rate:g} x gradient)",
                _table(["parameter", "shape", "norm", "grad norm", "update/weight", "non-finite"], rows),
            ]
        stepped = [r.path for r in self.layers if r.steps]
        if stepped:
            parts += ["", f"step by step: report.per_step(path) for {', '.join(stepped)}"]
        if self.loss is not None:
            parts += ["", f"loss {self.loss:.6g}"]
        return "\n".join(parts)

    def per_step(self, path: str) -> str:
        """The table of one sequence layer's output, a row per time step."""
        row = self[path]
        if not row.steps:
            raise KeyError(f"{path!r} ({row.layer}) does not output a sequence")
        return _table(
            ["step", ""] + _NUMBER_HEAD, [[str(t), ""] + n.cells() for t, n in enumerate(row.steps)]
        )

    def plot(self, path: str | os.PathLike | None = None) -> Any:
        """Histograms of each layer's output (top row) and of the gradient reaching it (bottom
        row), one column per layer. Returns a matplotlib ``Figure``; with ``path`` it is also
        written there (atomically). Needs matplotlib: ``pip install 'nnc[plot]'``."""
        try:
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError("Report.plot needs matplotlib: pip install 'nnc[plot]'") from None
        rows = 2 if any(r.gradient is not None for r in self.layers) else 1
        n = len(self.layers)
        fig = Figure(figsize=(2.6 * max(n, 1), 2.3 * rows), layout="constrained")
        for i, row in enumerate(self.layers):
            pairs = ((row.output, self.arrays[row.path][0]), (row.gradient, self.arrays[row.path][1]))
            for j, (numbers, values) in enumerate(pairs[:rows]):
                ax = fig.add_subplot(rows, n, j * n + i + 1)
                if numbers is not None and values is not None:
                    finite = values[np.isfinite(values)]
                    ax.hist(finite.ravel(), bins=30, color="#4c72b0" if j == 0 else "#dd8452")
                ax.set_title(f"{row.path}\n{'output' if j == 0 else 'gradient'}", fontsize=8)
                ax.tick_params(labelsize=7)
        if path is not None:
            from .checkpoint import write_atomically

            ext = os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
            write_atomically(path, lambda f: fig.savefig(f, format=ext, dpi=96))
        return fig


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_float(x: Any) -> Any:
    for v in tree_leaves(x):
        if np.asarray(v).dtype.kind == "f":
            return np.asarray(v)
    return None


def layer_gradient_norms(
    model: Model,
    params: Any,
    x: Any,
    y: Any,
    loss: Callable[[Any, Any], Any],
    *,
    key: Any = None,
    stats: Any = None,
    training: bool = True,
) -> dict[str, float]:
    """The norm of each layer's parameter gradients together, by layer path, in model order.

    >>> import numpy as np
    >>> from nnc import Linear, mse
    >>> model = Linear(1, 1, init="zeros") >> Linear(1, 1, init="zeros")
    >>> layer_gradient_norms(model, model.init(seed=0), np.ones((1, 1)), np.ones((1, 1)), mse)
    {'linear_0': 0.0, 'linear_1': 2.0}
    """
    run, key, stats = prepared(model, params, key, stats, training)

    def objective(p: Any) -> Any:
        return loss(output_of(run, p, x, key, stats), y)

    with np.errstate(all="ignore"):
        g = grad(objective)(params)
    squares: dict[str, float] = {}
    for path, leaf in tree_paths(g):
        layer = path.rsplit("/", 1)[0] if "/" in path else "(model)"
        squares[layer] = squares.get(layer, 0.0) + float(np.sum(np.square(np.asarray(leaf, np.float64))))
    return {layer: float(np.sqrt(total)) for layer, total in squares.items()}


def inspect(
    model: Model,
    params: Any,
    x: Any,
    y: Any = None,
    *,
    loss: Callable[[Any, Any], Any] | None = None,
    learning_rate: float = 1e-3,
    key: Any = None,
    stats: Any = None,
    training: bool = True,
) -> Report:
    """Every layer's output on ``x``, and with ``y`` and ``loss`` the gradients reaching it and
    the parameters' gradients (see the module). ``learning_rate`` scales the update in the
    update-to-weight ratio. The model runs as in training: dropout on (with ``key``, default
    ``nnc.key(0)``), normalisation on the batch's statistics; ``training=False`` runs its
    inference form (on ``stats``, for a model that keeps some).
    """
    if (y is None) != (loss is None):
        raise ShapeError("inspect: give both y and loss for the gradients, or neither")
    seen = watch(model, params, x, key=key, stats=stats, training=training, what="inspect")
    grads = None
    if loss is not None:
        grads = gradients(model, params, x, y, loss, seen, key=key, stats=stats, training=training)
    value = None
    if loss is not None:
        with np.errstate(all="ignore"):
            out = seen.outputs["(model)"] if "(model)" in seen.outputs else seen.outputs[seen.order[-1]]
            value = float(np.asarray(loss(out, y)))
    layers, arrays = [], {}
    for path in seen.entered:
        if path == "(model)" and len(seen.order) > 1:
            continue
        layer = seen.layers[path]
        out = _first_float(seen.outputs[path])
        if out is None:
            continue
        g = None if grads is None else grads.outputs.get(path)
        g = None if g is None else _first_float(g)
        steps: tuple[Numbers, ...] = ()
        if isinstance(layer.out_type, SeqType) and out.ndim >= 2 and layer.kind != "serial":
            steps = tuple(Numbers.of(out[:, t], layer.kind) for t in range(out.shape[1]))
        layers.append(
            LayerNumbers(
                path, repr(layer), Numbers.of(out, layer.kind), None if g is None else Numbers.of(g), steps
            )
        )
        arrays[path] = (out, g)
    param_rows = []
    for path, w in tree_paths(params):
        w = np.asarray(w, np.float64)
        gw = None if grads is None else at_path(grads.params, path)
        norm = float(np.linalg.norm(w))
        if gw is None:
            param_rows.append(ParamNumbers(path, w.shape, norm, None, None, 0))
            continue
        gw = np.asarray(gw, np.float64)
        g_norm = float(np.linalg.norm(gw[np.isfinite(gw)]))
        ratio = learning_rate * g_norm / norm if norm > 0 else None  # a bias that starts at 0
        param_rows.append(ParamNumbers(path, w.shape, norm, g_norm, ratio, int((~np.isfinite(gw)).sum())))
    return Report(tuple(layers), tuple(param_rows), value, float(learning_rate), arrays)
