# %% [markdown]
# # An autoregressive model of a time series
#
# `lagged(2, Linear(2, 1))` is a recurrent cell that feeds a linear model the last two
# inputs: an AR(2) model. A sampled sine wave obeys an exact AR(2) law,
# `x[t+1] = 2 cos(w) x[t] - x[t-1]`, so training should recover those coefficients.

# %%
import os

import numpy as np

import nnc
from nnc import Linear, lagged, unroll, zero_state

omega = 0.3
steps = int(os.environ.get("NNC_EXAMPLE_STEPS", 1500))
phases = np.array([[0.0], [1.0], [2.0]])
wave = np.sin(omega * np.arange(80) + phases)[..., None]  # (batch 3, time 80, 1 feature)
x, target = wave[:, :-1], wave[:, 1:]

cell = lagged(2, Linear(2, 1))
model = zero_state(unroll(cell))
print("cell: ", cell, " ", cell.signature)
print("model:", model, " ", model.signature)

# %% [markdown]
# The first step sees a zero state instead of a real past, so it is left out of the loss.

# %%
def loss(p, x, t):
    return nnc.mse(model(p, x)[:, 1:], t[:, 1:])


params = model.init(seed=0, dtype=np.float64)
value_and_grad = nnc.value_and_grad(loss)
opt = nnc.sgd(0.5)
state = opt.init(params)
for i in range(steps):
    value, grads = value_and_grad(params, x, target)
    params, state = opt.update(params, grads, state)

print(f"loss after {steps} steps: {float(value):.2e}")
print("learned (x[t-1], x[t]) coefficients:", params["W"].ravel().round(4))
print("exact coefficients:                  ", np.array([-1.0, 2 * np.cos(omega)]).round(4))
print("learned bias:", params["b"].round(4))
