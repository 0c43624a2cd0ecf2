# %% [markdown]
# # Linear regression as a model
#
# `Linear(3, 1)` is the model `y = x @ W + b`. Fitting it by gradient descent on the
# mean squared error recovers the coefficients that generated the data.

# %%
import numpy as np

import nnc
from nnc import Linear

rng = np.random.default_rng(0)
true_W = np.array([[2.0], [-3.0], [0.5]])
true_b = np.array([1.0])
x = rng.standard_normal((200, 3))
y = x @ true_W + true_b + 0.01 * rng.standard_normal((200, 1))

model = Linear(3, 1)
params = model.init(seed=0, dtype=np.float64)
step = nnc.value_and_grad(lambda p, x, y: nnc.mse(model(p, x), y))
opt = nnc.sgd(0.1)
state = opt.init(params)
for i in range(300):
    value, grads = step(params, x, y)
    params, state = opt.update(params, grads, state)

print("loss      ", float(value))
print("learned W ", params["W"].ravel().round(3), " true W", true_W.ravel())
print("learned b ", params["b"].round(3), " true b", true_b)
