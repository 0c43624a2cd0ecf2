# %% [markdown]
# # 2. Logistic regression: a composed model and `fit`
#
# Logistic regression is linear regression bent through the logistic function
# `1 / (1 + exp(-z))`, so that the output is the probability of the positive class.
# In nnc that is a composition: `Linear(2, 1) >> logistic`. We write its loss, the
# binary cross-entropy, as a plain function of nnc operations, and train with `fit`,
# which batches, shuffles from a seed and records a learning curve.
#
# Run as a script (`python examples/tutorial_02_logistic_regression.py`) or open as a
# notebook with jupytext. Pictures are written next to this file (or to `NNC_EXAMPLE_OUT`).

# %%
import os
from pathlib import Path

import numpy as np

import nnc
from nnc import Linear, logistic
from nnc.metrics import accuracy

FAST = os.environ.get("NNC_EXAMPLE_FAST") == "1"
HERE = Path(__file__).parent if "__file__" in globals() else Path.cwd()
OUT = Path(os.environ.get("NNC_EXAMPLE_OUT") or HERE)

# %% [markdown]
# ## Data
# Two clouds of points in the plane, 200 of each class. The labels are a column of
# 0s and 1s, shaped `(400, 1)` like the model's output: nnc never broadcasts a `(400,)`
# target against a `(400, 1)` prediction behind your back.

# %%
rng = np.random.default_rng(1)
centres = np.array([[-1.0, -0.5], [1.0, 0.7]])
labels = np.repeat([0, 1], 200)
x = (centres[labels] + 0.6 * rng.standard_normal((400, 2))).astype(np.float32)
t = labels[:, None].astype(np.float32)
print("x:", x.shape, " t:", t.shape, " positives:", int(t.sum()))

# %% [markdown]
# ## The model is a composition
# `>>` composes two models into one, checking that the first one's output type fits
# the second one's input type. `logistic` works on any type, so the result is
# `Vec[2] -> Vec[1]`.

# %%
model = Linear(2, 1) >> logistic
print("model:    ", model)
print("signature:", model.signature)
print("drawn:", nnc.render(model, OUT / "tutorial_02_model.svg", rankdir="LR").name)

# %% [markdown]
# ![Linear(2 -> 1) >> logistic](tutorial_02_model.svg)
#
# ## The loss is a function
# Binary cross-entropy, `-mean(t log p + (1 - t) log(1 - p))`, written with nnc's array
# functions so that it can be differentiated. Any `loss(prediction, target)` works
# with `fit`.


# %%
def binary_cross_entropy(p, t):
    return -nnc.mean(t * nnc.log(p) + (1 - t) * nnc.log(1 - p))


# %% [markdown]
# ## Training with `fit`
# `fit` runs the optimiser over shuffled batches for some epochs and returns the
# trained parameters and a `History` of the loss and metrics after each epoch.

# %%
params, history = nnc.fit(
    model,
    model.init(seed=0),
    (x, t),
    loss=binary_cross_entropy,
    opt=nnc.sgd(0.5),
    epochs=5 if FAST else 30,
    batch_size=40,
    metrics=[accuracy],
    seed=0,
    progress=False,
)
history.plot(OUT / "tutorial_02_curve.png")
print(history)
print(f"accuracy: {accuracy(model(params, x), t):.3f}")

# %% [markdown]
# ![Learning curves](tutorial_02_curve.png)
#
# ## What the model learned
# The decision boundary is where the probability crosses 0.5: the line
# `x W + b = 0`. Logistic regression can only ever draw a straight line.

# %%
from matplotlib.figure import Figure

fig = Figure(figsize=(4.5, 3.8), layout="constrained")
ax = fig.subplots()
grid = np.stack(np.meshgrid(np.linspace(-3, 3, 120), np.linspace(-3, 3, 120)), -1)
probability = model(params, grid.reshape(-1, 2).astype(np.float32)).reshape(120, 120)
ax.contourf(grid[..., 0], grid[..., 1], probability, levels=20, cmap="RdBu_r", alpha=0.6)
ax.contour(grid[..., 0], grid[..., 1], probability, levels=[0.5], colors="k")
ax.scatter(x[:, 0], x[:, 1], c=labels, cmap="RdBu_r", s=6, edgecolors="none")
ax.set(title="P(class 1) and the boundary p = 0.5", xlabel="x[0]", ylabel="x[1]")
fig.savefig(OUT / "tutorial_02_boundary.png", dpi=110)
print("W =", params["linear_0"]["W"].ravel().round(2), " b =", params["linear_0"]["b"].round(2))

# %% [markdown]
# ![Decision boundary](tutorial_02_boundary.png)
#
# Next, in tutorial 3: data that no straight line separates, and a network composed
# from the same pieces.
