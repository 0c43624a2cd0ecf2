# %% [markdown]
# # 6. A recurrent model on a time series
#
# A recurrent model reads a sequence one step at a time and carries a state from step
# to step. In nnc the state is never hidden: a *cell* is a pure function
# `(params, x, state) -> (y, new_state)`, and its state type is part of its signature.
# `unroll` runs a cell over a sequence; `zero_state` starts it from zeros.
#
# We start with the simplest recurrent model, an autoregressive one, then train an
# Elman network to predict the next value of a noisy signal.
#
# Run as a script (`python examples/tutorial_06_time_series.py`) or open as a notebook
# with jupytext. `NNC_EXAMPLE_FAST=1` trains briefly (for CI); the code path is the same.
# Pictures are written next to this file (or to `NNC_EXAMPLE_OUT`).

# %%
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import nnc
from nnc import Linear, fcrnn, lagged, unroll, unroll_last, zero_state

FAST = os.environ.get("NNC_EXAMPLE_FAST") == "1"
HERE = Path(__file__).parent if "__file__" in globals() else Path.cwd()
OUT = Path(os.environ.get("NNC_EXAMPLE_OUT") or HERE)

# %% [markdown]
# ## An AR(2) model is a cell
# `lagged(2, Linear(2, 1))` is a cell that gives the linear model the last two inputs:
# `x[t+1] = a x[t-1] + b x[t] + c`. A sampled sine obeys such a law exactly,
# `x[t+1] = 2 cos(w) x[t] - x[t-1]`, so training should find `a = -1`, `b = 2 cos(w)`.
# Sequences are `(batch, time, features)` arrays.

# %%
omega = 0.3
wave = np.sin(omega * np.arange(80) + np.array([[0.0], [1.0], [2.0]]))[..., None]
inputs, targets = wave[:, :-1], wave[:, 1:]  # predict each next sample
cell = lagged(2, Linear(2, 1))
ar_model = zero_state(unroll(cell))
print("cell: ", cell.signature)
print("model:", ar_model.signature)

# %% [markdown]
# The first step sees a zero state instead of a real past, so it is left out of the
# loss. The loop is plain gradient descent on a pure loss function.


# %%
def ar_loss(p, x, t):
    return nnc.mse(ar_model(p, x)[:, 1:], t[:, 1:])


params = ar_model.init(seed=0, dtype=np.float64)
value_and_grad = nnc.value_and_grad(ar_loss)
ar_losses = []
for _ in range(300 if FAST else 1500):
    value, grads = value_and_grad(params, inputs, targets)
    params = nnc.tree_map(lambda p, g: p - 0.5 * g, params, grads)
    ar_losses.append(float(value))
print(f"loss after {len(ar_losses)} steps: {ar_losses[-1]:.2e}")
print("learned (a, b):", params["W"].ravel().round(4), " c:", params["b"].round(4))
print("exact   (a, b):", np.array([-1.0, 2 * np.cos(omega)]).round(4))
fig = Figure(figsize=(4.5, 3), layout="constrained")
ax = fig.subplots()
ax.plot(ar_losses)
ax.set(title="AR(2): training loss (mse)", xlabel="step", yscale="log")
ax.grid(alpha=0.3)
fig.savefig(OUT / "tutorial_06_ar_curve.png", dpi=110)
print("drawn:", nnc.render(ar_model, OUT / "tutorial_06_ar_model.svg").name)

# %% [markdown]
# ![The AR(2) model](tutorial_06_ar_model.svg) ![Its learning curve](tutorial_06_ar_curve.png)
#
# The loss falls to rounding error: the law is exact, and so is the fit.

# %% [markdown]
# ## An Elman network on a noisy signal
# Now a signal without an exact law: two sines and noise. From every window of 24
# samples the model predicts the next one. The last fifth of the signal is kept for
# validation, so the model is judged on a future it never saw.

# %%
rng = np.random.default_rng(0)
time = np.arange(1200)
signal = np.sin(2 * np.pi * time / 50) + 0.5 * np.sin(2 * np.pi * time / 17)
signal = (signal + 0.1 * rng.standard_normal(time.shape)).astype(np.float32)
window = 24
starts = np.arange(len(signal) - window)
x = np.stack([signal[s : s + window] for s in starts])[..., None]  # (n, 24, 1)
y = signal[starts + window][:, None]  # (n, 1)
cut = int(0.8 * len(x))
print("windows:", x.shape, " next values:", y.shape, f" (train {cut}, validation {len(x) - cut})")

# %% [markdown]
# `fcrnn(1, 16)` is an Elman cell with a state of 16 numbers; `>> Linear(16, 1)` reads
# a prediction from it at every step. `unroll_last` keeps only the last step's output,
# so the model maps a sequence to one value: `Seq[Vec[1]] -> Vec[1]`.

# %%
rnn = zero_state(unroll_last(fcrnn(1, 16) >> Linear(16, 1)))
print("model:", rnn, "\nsignature:", rnn.signature)
print("drawn:", nnc.render(rnn, OUT / "tutorial_06_model.svg").name)

# %% [markdown]
# ![The recurrent model](tutorial_06_model.svg)
#
# The dashed loop is the state, carried from one step to the next. Training
# differentiates through all 24 steps (backpropagation through time), with `fit`.

# %%
rnn_params, history = nnc.fit(
    rnn,
    rnn.init(seed=0),
    (x[:cut], y[:cut]),
    loss=nnc.mse,
    opt=nnc.adam(3e-3),
    epochs=3 if FAST else 40,
    batch_size=32,
    validation=(x[cut:], y[cut:]),
    seed=0,
    progress=False,
)
history.plot(OUT / "tutorial_06_curve.png")
print(history)

# %% [markdown]
# ![Learning curves](tutorial_06_curve.png)
#
# The noise alone has a mean squared error of 0.01: a validation loss close to that
# means the model predicts everything that can be predicted.

# %%
prediction = rnn(rnn_params, x[cut:])[:, 0]
fig = Figure(figsize=(9, 3), layout="constrained")
ax = fig.subplots()
ax.plot(time[cut + window :], y[cut:, 0], ".", markersize=3, label="signal", color="0.5")
ax.plot(time[cut + window :], prediction, label="one step ahead", color="C3")
ax.set(title="validation: predicting the next sample", xlabel="time")
ax.legend(loc="upper right")
fig.savefig(OUT / "tutorial_06_prediction.png", dpi=110)
print(f"validation mse: {np.mean((prediction - y[cut:, 0]) ** 2):.4f}")

# %% [markdown]
# ![Predictions on the validation part](tutorial_06_prediction.png)
#
# Next, in tutorial 7: feeding a model its own predictions to generate a sequence.
