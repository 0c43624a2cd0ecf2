# %% [markdown]
# # XOR: a model is a value, training is a loop
#
# Two inputs, one output: XOR is the smallest problem a linear model cannot solve.
# We compose a two-layer network, check its type, and train it with plain SGD on
# gradients from nnc's reverse-mode autodiff.

# %%
import os

import numpy as np

import nnc
from nnc import Linear, logistic

model = Linear(2, 4) >> logistic >> Linear(4, 1) >> logistic
print("model:    ", model)
print("signature:", model.signature)

# %% [markdown]
# Parameters are an explicit nested dict, created from a seed.

# %%
params = model.init(seed=0)
print({path: leaf.shape for path, leaf in nnc.tree_paths(params)})

x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
t = np.array([[0], [1], [1], [0]], dtype=np.float32)


def loss(p, x, t):
    return nnc.mse(model(p, x), t)


# %% [markdown]
# A plain SGD loop: `value_and_grad` traces the loss once, then runs compiled code.

# %%
steps = int(os.environ.get("NNC_EXAMPLE_STEPS", 3000))
value_and_grad = nnc.value_and_grad(loss)
opt = nnc.sgd(2.0)
state = opt.init(params)
for step in range(steps + 1):
    value, grads = value_and_grad(params, x, t)
    params, state = opt.update(params, grads, state)
    if step % (steps // 5 or 1) == 0:
        print(f"step {step:5d}  loss {float(value):.5f}")

prediction = model(params, x)
print("inputs -> prediction:")
for xi, yi in zip(x, prediction):
    print(f"  {xi.astype(int)} -> {yi[0]:.3f}")

# %% [markdown]
# Finally, draw the model: `nnc render examples/xor.py` does the same from the command line.

# %%
from pathlib import Path

picture = Path(__file__).with_name("xor.svg") if "__file__" in globals() else Path("xor.svg")
try:
    print("drawn:", nnc.render(model, picture))
except nnc.GraphvizNotFound as missing:
    print(missing)
