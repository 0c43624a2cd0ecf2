# %% [markdown]
# # 1. Linear regression as a model
#
# In nnc a model is a value: it has an input type, an output type, a parameter spec
# and a pure function `model(params, x)`. The smallest useful one is `Linear(1, 1)`,
# the line `y = x W + b`. We fit it to noisy points by gradient descent on the mean
# squared error, with gradients from nnc's reverse-mode autodiff, and watch the loss fall.
#
# Run as a script (`python examples/tutorial_01_linear_regression.py`) or open as a
# notebook with jupytext. Pictures are written next to this file (or to `NNC_EXAMPLE_OUT`).

# %%
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import nnc
from nnc import Linear

HERE = Path(__file__).parent if "__file__" in globals() else Path.cwd()
OUT = Path(os.environ.get("NNC_EXAMPLE_OUT") or HERE)

# %% [markdown]
# ## Data
# Points on the line `y = 2x - 1`, with a little noise. `x` has shape `(200, 1)`: a batch
# of 200 examples, each a vector of one number.

# %%
rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, size=(200, 1))
y = 2.0 * x - 1.0 + 0.1 * rng.standard_normal((200, 1))
print("x:", x.shape, " y:", y.shape)

# %% [markdown]
# ## The model
# `Linear(1, 1)` maps `Vec[1]` to `Vec[1]`. Its parameters do not live inside it:
# `init` makes a fresh nested dict of arrays from a seed, and the model is called
# with them. Nothing is ever mutated.

# %%
model = Linear(1, 1)
print("model:    ", model)
print("signature:", model.signature)
params = model.init(seed=0, dtype=np.float64)
print("params:   ", {name: value.round(3).tolist() for name, value in params.items()})

# %% [markdown]
# `nnc.render` draws the model: one node with its type and parameter count.

# %%
print("drawn:", nnc.render(model, OUT / "tutorial_01_model.svg", rankdir="LR").name)

# %% [markdown]
# ![Linear(1 -> 1)](tutorial_01_model.svg)
#
# ## Training, by hand
# The loss is a plain function of the parameters. `nnc.value_and_grad(loss)` traces it
# once into a graph, differentiates the graph and returns a function giving the loss and
# its gradient, a dict shaped like `params`. Plain gradient descent is the loop below;
# `nnc.sgd(lr)` would do the same update.


# %%
def loss(params, x, y):
    return nnc.mse(model(params, x), y)


value_and_grad = nnc.value_and_grad(loss)
learning_rate = 0.5
losses = []
for _ in range(60):
    value, grads = value_and_grad(params, x, y)
    params = nnc.tree_map(lambda p, g: p - learning_rate * g, params, grads)
    losses.append(float(value))

print(f"loss: {losses[0]:.4f} at the start, {losses[-1]:.4f} after {len(losses)} steps")
print("learned W", params["W"].ravel().round(3), " b", params["b"].round(3), "  (true: 2, -1)")
assert abs(params["W"][0, 0] - 2.0) < 0.05 and abs(params["b"][0] + 1.0) < 0.05

# %% [markdown]
# ## The learning curve and the fit

# %%
fig = Figure(figsize=(9, 3.2), layout="constrained")
curve, fit_ax = fig.subplots(1, 2)
curve.plot(losses)
curve.set(title="training loss (mse)", xlabel="step", yscale="log")
curve.grid(alpha=0.3)
grid = np.linspace(-1, 1, 50)[:, None]
fit_ax.scatter(x[:, 0], y[:, 0], s=6, alpha=0.5, label="data")
fit_ax.plot(grid[:, 0], model(params, grid)[:, 0], color="C3", label="model")
fit_ax.set(title="the fitted line", xlabel="x", ylabel="y")
fit_ax.legend()
fig.savefig(OUT / "tutorial_01_curve.png", dpi=110)

# %% [markdown]
# ![Learning curve and fit](tutorial_01_curve.png)
#
# The loss drops to the noise level (0.01, the variance of the noise) in about ten
# steps. Next, in tutorial 2: logistic regression, the same
# line bent through a logistic function to give probabilities.
