# %% [markdown]
# # Handwritten digits with `fit`: an MLP, early stopping, curves and a checkpoint
#
# scikit-learn's digits are 1797 images of 8x8 pixels (values 0 to 16), ten classes.
# We standardise them, train a two-layer MLP with Adam, stop when the validation loss
# stops improving (going back to the best epoch), plot the curves to a PNG, and save
# the parameters to a checkpoint that loads back only into the same model.
#
# Run as a script (`python examples/digits_mlp.py`) or open as a notebook with jupytext.
# `NNC_EXAMPLE_FAST=1` trains for a few epochs only (for CI); the code path is the same.
# Files are written to `NNC_EXAMPLE_OUT` (default: the current directory).

# %%
import os

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import nnc
from nnc import Linear, relu, softmax
from nnc.callbacks import EarlyStopping, StopOnNaN
from nnc.checkpoint import load, save
from nnc.metrics import accuracy
from nnc.optim import adam
from nnc.train import fit

FAST = os.environ.get("NNC_EXAMPLE_FAST") == "1"
OUT = os.environ.get("NNC_EXAMPLE_OUT", ".")

# %% [markdown]
# Hold out a quarter of the images for the final test, and 15% of the rest for
# validation (what early stopping watches). Statistics for standardising come from the
# training images only.

# %%
digits = load_digits()
x, y = digits.data.astype(np.float32), digits.target
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
x_train, x_val, y_train, y_val = train_test_split(
    x_train, y_train, test_size=0.15, random_state=0, stratify=y_train
)
mean, scale = x_train.mean(axis=0), x_train.std(axis=0) + 1.0  # + 1: some pixels are always 0


def standardise(images):
    return ((images - mean) / scale).astype(np.float32)


x_train, x_val, x_test = standardise(x_train), standardise(x_val), standardise(x_test)
print(f"train {len(x_train)}, validation {len(x_val)}, test {len(x_test)} images")

# %% [markdown]
# The model is a value with a type; `fit` batches, shuffles from the seed, reports
# accuracy on both sets after each epoch and asks the callbacks whether to go on.

# %%
model = Linear(64, 128) >> relu >> Linear(128, 10) >> softmax
print("model:", model, " signature:", model.signature)

params, history = fit(
    model,
    model.init(seed=0),
    (x_train, y_train),
    loss=nnc.cross_entropy,
    opt=adam(1e-3),
    epochs=5 if FAST else 60,
    batch_size=32,
    seed=0,
    validation=(x_val, y_val),
    metrics=[accuracy],
    callbacks=[EarlyStopping(patience=8, restore_best=True), StopOnNaN()],
    progress=not FAST,
)
print(history)

# %% [markdown]
# Test accuracy, measured once, on images the training never saw.

# %%
test_accuracy = accuracy(model(params, x_test), y_test)
print(f"test accuracy: {test_accuracy:.4f}")
if not FAST:
    assert test_accuracy >= 0.97, test_accuracy

# %% [markdown]
# Curves of the loss and accuracy, training against validation.

# %%
curves = os.path.join(OUT, "digits_curves.png")
history.plot(curves)
print("curves written to", curves)

# %% [markdown]
# A checkpoint is an `.npz` file with the model's signature beside the arrays. It
# loads back into this model; another model is refused with what differs.

# %%
checkpoint = os.path.join(OUT, "digits.npz")
save(checkpoint, model, params)
restored = load(checkpoint, model)
assert accuracy(model(restored, x_test), y_test) == test_accuracy
try:
    load(checkpoint, Linear(64, 64) >> relu >> Linear(64, 10) >> softmax)
except nnc.NNCError as err:
    print("loading into another model:", str(err).splitlines()[0])
