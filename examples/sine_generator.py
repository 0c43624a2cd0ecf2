# %% [markdown]
# # Generating a sine wave by feeding a recurrent model its own output
#
# An Elman cell followed by a linear read-out learns to predict the next sample of a
# sine wave. Primed with the start of a wave, it then generates the rest on its own:
# each output is fed back as the next input.

# %%
import os

import numpy as np

import nnc
from nnc import Linear, fcrnn, feedback, prime, unroll, zero_state

steps = int(os.environ.get("NNC_EXAMPLE_STEPS", 600))
t = np.arange(80) * 0.25
wave = np.sin(t + np.linspace(0, 2, 6)[:, None])[..., None]  # (batch 6, time 80, 1)

cell = fcrnn(1, 16) >> Linear(16, 1)
model = zero_state(unroll(cell))
print("cell: ", cell.signature)
print("model:", model.signature)

# %% [markdown]
# Backpropagation through time with SGD and momentum, written as a plain loop over
# pure functions: the velocity is just another tree shaped like the parameters.

# %%
value_and_grad = nnc.value_and_grad(lambda p, x, y: nnc.mse(model(p, x), y))
params = cell.init(seed=0, dtype=np.float64)
velocity = nnc.tree_map(np.zeros_like, params)
for i in range(steps):
    value, grads = value_and_grad(params, wave[:, :-1], wave[:, 1:])
    velocity = nnc.tree_map(lambda v, g: 0.9 * v - 0.05 * g, velocity, grads)
    params = nnc.tree_map(lambda p, v: p + v, params, velocity)
print(f"training loss after {steps} steps: {float(value):.2e}")

# %% [markdown]
# Prime the state with 40 samples, then let the model run free for 40 more.

# %%
seed = np.sin(np.arange(40) * 0.25)[:, None]
last, state = prime(cell, params, np.zeros(16), seed)
generated = feedback(cell, params, state, last, steps=40)[:, 0]
truth = np.sin(np.arange(40, 80) * 0.25)
print("correlation with the true continuation:", round(float(np.corrcoef(generated, truth)[0, 1]), 4))
print("largest error:", round(float(np.abs(generated - truth).max()), 4))
for k in range(0, 40, 8):
    bar = " " * int(20 + 18 * generated[k])
    print(f"t={40 + k:3d} {generated[k]:+.3f} {bar}*")
