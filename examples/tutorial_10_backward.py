# %% [markdown]
# # 10. The backward pass, drawn
#
# Every `fit` so far called `nnc.grad`, and the gradients simply arrived. This step opens
# the box for the smallest network that has everything: two layers and a nonlinearity,
#
# $$h = \tanh(x W_1 + b_1), \qquad \hat y = h W_2 + b_2, \qquad L = \operatorname{mean}\big((\hat y - y)^2\big).$$
#
# We write the chain rule out by hand, check it against nnc, and then look at the pictures
# nnc draws of the same computation: the forward pass, the backward pass layer by layer
# (`nnc render --grad`), and the primitives of both (`nnc render --ops`).
#
# Run as a script (`python examples/tutorial_10_backward.py`) or open as a notebook with
# jupytext. Pictures are written next to this file (or to `NNC_EXAMPLE_OUT`).

# %%
import os
from pathlib import Path

import numpy as np

import nnc
from nnc import Linear, mse, tanh

HERE = Path(__file__).parent if "__file__" in globals() else Path.cwd()
OUT = Path(os.environ.get("NNC_EXAMPLE_OUT") or HERE)

rng = np.random.default_rng(0)
x = rng.standard_normal((8, 3))
y = rng.standard_normal((8, 1))
model = Linear(3, 4) >> tanh >> Linear(4, 1)
params = model.init(seed=0, dtype=np.float64)
print(model.signature)

# %% [markdown]
# ## The chain rule, by hand
#
# The backward pass visits the layers in reverse, each turning the gradient that reaches its
# output into the gradient of its input (and of its parameters). Write $g_v$ for
# $\partial L / \partial v$. For a batch of $n$ examples:
#
# 1. the loss: $g_{\hat y} = \frac{2}{n} (\hat y - y)$;
# 2. the second `Linear`, $\hat y = h W_2 + b_2$: $g_{W_2} = h^\top g_{\hat y}$,
#    $g_{b_2} = \sum_{\text{rows}} g_{\hat y}$, and $g_h = g_{\hat y} W_2^\top$;
# 3. `tanh`, $h = \tanh(a)$: $g_a = g_h \odot (1 - h^2)$ (it reads its own output, which the
#    forward pass keeps for it);
# 4. the first `Linear`, $a = x W_1 + b_1$: $g_{W_1} = x^\top g_a$, $g_{b_1} = \sum_{\text{rows}} g_a$.

# %%
W1, b1 = params["linear_0"]["W"], params["linear_0"]["b"]
W2, b2 = params["linear_1"]["W"], params["linear_1"]["b"]
a = x @ W1 + b1
h = np.tanh(a)
y_hat = h @ W2 + b2
g_y_hat = 2 * (y_hat - y) / y.size
g_W2, g_b2, g_h = h.T @ g_y_hat, g_y_hat.sum(0), g_y_hat @ W2.T
g_a = g_h * (1 - h**2)
g_W1, g_b1 = x.T @ g_a, g_a.sum(0)
by_hand = {"linear_0": {"W": g_W1, "b": g_b1}, "linear_1": {"W": g_W2, "b": g_b2}}

grads = nnc.grad(lambda p: mse(model(p, x), y))(params)
worst = max(
    float(np.max(np.abs(grads[layer][name] - by_hand[layer][name])))
    for layer in by_hand
    for name in ("W", "b")
)
print(f"largest difference between nnc's gradients and the chain rule by hand: {worst:.1e}")

# %% [markdown]
# ## The same numbers, layer by layer
#
# `nnc.inspect` runs the model once and reports, for every layer, its output and the
# gradient that reaches it: the $g_h$ and $g_a$ above.

# %%
report = nnc.inspect(model, params, x, y, loss=mse)
print(report)
reached_tanh = report.arrays["tanh_0"][1]
reached_linear = report.arrays["linear_0"][1]
print(f"gradient reaching tanh's output equals g_h: {np.allclose(reached_tanh, g_h)}")
print(f"gradient reaching the first Linear's output equals g_a: {np.allclose(reached_linear, g_a)}")

# %% [markdown]
# ## The pictures
#
# The forward picture is the one every step has drawn: layers as nodes, the types that flow
# between them on the edges.

# %%
nnc.render(model, OUT / "tutorial_10_forward.svg")

# %% [markdown]
# ![The forward pass](tutorial_10_forward.svg)
#
# The backward picture runs the other way: one node per layer's gradient step, in reverse
# order, each edge carrying the type of the gradient (the same type as the forward edge it
# mirrors), and the parameters' gradients leaving the steps of the layers that have them:
# steps 2 to 4 of the chain rule above.

# %%
nnc.render(model, OUT / "tutorial_10_backward.svg", grad=True)

# %% [markdown]
# ![The backward pass, layer by layer](tutorial_10_backward.svg)
#
# Underneath, nnc traced the model into primitives (products, additions, a `tanh`) and built
# the backward pass from each primitive's rule. The last picture shows both passes at that
# level, and which values of the forward pass the backward pass reads: the saved `tanh`
# output of step 3, the input `x` of step 4.

# %%
nnc.render(model, OUT / "tutorial_10_ops.svg", ops=True)

# %% [markdown]
# ![The primitives of the forward and backward passes](tutorial_10_ops.svg)
#
# ## When a gradient goes wrong
#
# A NaN in training has a birthplace. `nnc.find_nan` finds it: here a `sqrt` meets a 0 that a
# `relu` made, and its slope there is infinite. The forward pass is finite; the gradient
# step of the `sqrt` is where the infinity is born.

# %%
fragile = Linear(3, 4) >> nnc.relu >> nnc.lift(nnc.sqrt) >> Linear(4, 1)
fragile_params = fragile.init(seed=0, dtype=np.float64)
fragile_params["linear_0"]["W"][:] = -1.0  # every unit negative: relu gives exact zeros
fragile_params["linear_0"]["b"][:] = 0.0
origin = nnc.find_nan(fragile, fragile_params, np.abs(x), y, loss=mse)
print(origin.message)
