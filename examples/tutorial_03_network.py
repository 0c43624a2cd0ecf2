# %% [markdown]
# # 3. Composing a network
#
# Two interleaved half moons cannot be separated by a straight line, so logistic
# regression fails on them. A network is the same pieces composed further: a linear
# map into 16 hidden features, a `tanh`, and the logistic regression of tutorial 2 on
# top of those features. Types are checked at every `>>`, before any data flows.
#
# Run as a script (`python examples/tutorial_03_network.py`) or open as a notebook with
# jupytext. Pictures are written next to this file (or to `NNC_EXAMPLE_OUT`).

# %%
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.datasets import make_moons

import nnc
from nnc import Linear, logistic, tanh
from nnc.metrics import accuracy

FAST = os.environ.get("NNC_EXAMPLE_FAST") == "1"
HERE = Path(__file__).parent if "__file__" in globals() else Path.cwd()
OUT = Path(os.environ.get("NNC_EXAMPLE_OUT") or HERE)

# %%
points, labels = make_moons(n_samples=400, noise=0.15, random_state=0)
x = points.astype(np.float32)
t = labels[:, None].astype(np.float32)


def binary_cross_entropy(p, t):
    return -nnc.mean(t * nnc.log(p) + (1 - t) * nnc.log(1 - p))


def train(model, epochs):
    return nnc.fit(
        model,
        model.init(seed=0),
        (x, t),
        loss=binary_cross_entropy,
        opt=nnc.adam(0.02),
        epochs=epochs,
        batch_size=40,
        metrics=[accuracy],
        seed=0,
        progress=False,
    )


# %% [markdown]
# ## Logistic regression is not enough

# %%
linear = Linear(2, 1) >> logistic
linear_params, linear_history = train(linear, epochs=5 if FAST else 40)
print(f"logistic regression: accuracy {accuracy(linear(linear_params, x), t):.3f}")

# %% [markdown]
# ## A network: logistic regression on learned features
# `Linear(2, 16) >> tanh` turns each point into 16 features; the logistic regression
# reads those. The composed model still has type `Vec[2] -> Vec[1]`, and its parameters
# are named after the layers' positions: `linear_0`, `linear_1`.

# %%
network = Linear(2, 16) >> tanh >> Linear(16, 1) >> logistic
print("network:  ", network)
print("signature:", network.signature)
print("params:   ", {path: leaf.shape for path, leaf in nnc.tree_paths(network.init(seed=0))})
print("drawn:", nnc.render(network, OUT / "tutorial_03_model.svg").name)

# %% [markdown]
# ![The network](tutorial_03_model.svg)
#
# Pieces that do not fit are refused when they are composed, with both types and the
# line where the composition was written:

# %%
try:
    Linear(2, 16) >> tanh >> Linear(8, 1)
except nnc.TypeMismatch as mismatch:
    print(mismatch)

# %% [markdown]
# `Linear(None, 1)` would have taken its input size from what comes before it.
#
# ## Training

# %%
params, history = train(network, epochs=8 if FAST else 80)
history.plot(OUT / "tutorial_03_curve.png")
print(history)
print(f"network: accuracy {accuracy(network(params, x), t):.3f}")

# %% [markdown]
# ![Learning curves](tutorial_03_curve.png)
#
# ## Two decision boundaries

# %%
fig = Figure(figsize=(9, 3.8), layout="constrained")
grid = np.stack(np.meshgrid(np.linspace(-1.5, 2.5, 120), np.linspace(-1, 1.5, 100)), -1)
flat = grid.reshape(-1, 2).astype(np.float32)
for ax, (title, model, p) in zip(
    fig.subplots(1, 2), [("logistic regression", linear, linear_params), ("network", network, params)]
):
    probability = model(p, flat).reshape(grid.shape[:2])
    ax.contourf(grid[..., 0], grid[..., 1], probability, levels=20, cmap="RdBu_r", alpha=0.6)
    ax.contour(grid[..., 0], grid[..., 1], probability, levels=[0.5], colors="k")
    ax.scatter(x[:, 0], x[:, 1], c=labels, cmap="RdBu_r", s=6, edgecolors="none")
    ax.set(title=f"{title}: accuracy {accuracy(model(p, x), t):.2f}")
fig.savefig(OUT / "tutorial_03_boundaries.png", dpi=110)

# %% [markdown]
# ![Decision boundaries](tutorial_03_boundaries.png)
#
# Next, in tutorial 4: real data, ten classes, and a validation set.
