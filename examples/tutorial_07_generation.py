# %% [markdown]
# # 7. Generating a sequence by feeding a model its own output
#
# A cell that predicts the next sample of a signal can also *generate* the signal:
# give it the start of a wave to set its state (`prime`), then feed each output back
# as the next input (`feedback`). We train an Elman cell with a linear read-out on a
# few sine waves, then let it continue a wave on its own.
#
# Run as a script (`python examples/tutorial_07_generation.py`) or open as a notebook
# with jupytext. `NNC_EXAMPLE_FAST=1` trains briefly (for CI); the code path is the same.
# Pictures are written next to this file (or to `NNC_EXAMPLE_OUT`).

# %%
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import nnc
from nnc import Linear, fcrnn, feedback, prime, unroll, zero_state

FAST = os.environ.get("NNC_EXAMPLE_FAST") == "1"
HERE = Path(__file__).parent if "__file__" in globals() else Path.cwd()
OUT = Path(os.environ.get("NNC_EXAMPLE_OUT") or HERE)

# %% [markdown]
# ## Training: predict every next sample
# Six sine waves of different phases, 80 samples each. The model reads a whole wave
# and predicts each next sample: `unroll` gives an output at every step, so the model
# is `Seq[Vec[1]] -> Seq[Vec[1]]`. Its output type equals its input type, which is what
# feeding back needs.

# %%
t = np.arange(80) * 0.25
wave = np.sin(t + np.linspace(0, 2, 6)[:, None])[..., None]  # (batch 6, time 80, 1)
cell = fcrnn(1, 16) >> Linear(16, 1)
model = zero_state(unroll(cell))
print("cell: ", cell.signature)
print("model:", model.signature)
print("drawn:", nnc.render(cell, OUT / "tutorial_07_model.svg", rankdir="LR").name)

# %% [markdown]
# ![The cell](tutorial_07_model.svg)

# %%
params, history = nnc.fit(
    model,
    model.init(seed=0, dtype=np.float64),
    (wave[:, :-1], wave[:, 1:]),
    loss=nnc.mse,
    opt=nnc.adam(0.01),
    epochs=60 if FAST else 400,
    batch_size=6,
    seed=0,
    progress=False,
)
history.plot(OUT / "tutorial_07_curve.png")
print(history)

# %% [markdown]
# ![Learning curve](tutorial_07_curve.png)
#
# ## Generating
# The parameters of `model` are those of `cell` (the wrappers add none), so the cell
# can run on its own. `prime` runs it over samples 0 to 39 of a fresh wave and returns
# its last output (its prediction of sample 40) and its state; `feedback` then runs 39
# more steps with no input but its own output: samples 41 to 79.

# %%
seed = np.sin(np.arange(40) * 0.25)[:, None]
last, state = prime(cell, params, np.zeros(16), seed)
rest = feedback(cell, params, state, last, steps=39)
generated = np.concatenate([last[None], rest])[:, 0]
truth = np.sin(np.arange(40, 80) * 0.25)
error = np.abs(generated - truth).max()
print(f"largest error over 40 generated steps: {error:.3f}")
if not FAST:
    assert error < 0.05, error

fig = Figure(figsize=(9, 3), layout="constrained")
ax = fig.subplots()
ax.plot(np.arange(40), seed[:, 0], color="0.4", label="given (prime)")
ax.plot(np.arange(40, 80), truth, color="0.7", linestyle="--", label="true continuation")
ax.plot(np.arange(40, 80), generated, color="C3", label="generated (feedback)")
ax.set(title="a sine wave continued by the model", xlabel="step")
ax.legend(loc="upper left", bbox_to_anchor=(1, 1))
fig.savefig(OUT / "tutorial_07_generated.png", dpi=110)

# %% [markdown]
# ![Generated continuation](tutorial_07_generated.png)
#
# That is the whole path: models are values, composed with `>>`, checked by their
# types, trained from a pure loss, and drawn with `nnc.render`. The guides go further:
# drawing models, training, recurrent models, and the design of nnc itself.
