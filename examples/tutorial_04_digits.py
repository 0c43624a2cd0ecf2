# %% [markdown]
# # 4. Real data: handwritten digits
#
# scikit-learn ships 1797 scanned digits of 8x8 grey pixels, ten classes. Ten classes
# need ten outputs: the network ends in `softmax`, which turns ten scores into ten
# probabilities, and the loss is `nnc.cross_entropy` against integer labels. To measure
# what the network really learned we hold out images it never trains on: a validation
# set watched during training, and a test set used once at the end.
#
# Run as a script (`python examples/tutorial_04_digits.py`) or open as a notebook with
# jupytext. `NNC_EXAMPLE_FAST=1` trains for a few epochs only (for CI); the code path is
# the same. Pictures are written next to this file (or to `NNC_EXAMPLE_OUT`).

# %%
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import nnc
from nnc import Input, Linear, Vec, relu, softmax
from nnc.callbacks import EarlyStopping
from nnc.metrics import accuracy

FAST = os.environ.get("NNC_EXAMPLE_FAST") == "1"
HERE = Path(__file__).parent if "__file__" in globals() else Path.cwd()
OUT = Path(os.environ.get("NNC_EXAMPLE_OUT") or HERE)

# %% [markdown]
# ## The data
# Each image is a row of 64 numbers from 0 to 16. A quarter is set aside for the test,
# 15% of the rest for validation; both splits keep the ten classes in proportion.

# %%
digits = load_digits()
x = (digits.data / 16.0).astype(np.float32)
x_train, x_test, y_train, y_test = train_test_split(
    x, digits.target, test_size=0.25, random_state=0, stratify=digits.target
)
x_train, x_val, y_train, y_val = train_test_split(
    x_train, y_train, test_size=0.15, random_state=0, stratify=y_train
)
print(f"train {x_train.shape}, validation {x_val.shape}, test {x_test.shape}")
print("labels:", y_train[:12], "...")

# %%
fig = Figure(figsize=(8, 1.3), layout="constrained")
for ax, image, label in zip(fig.subplots(1, 10), digits.images, digits.target):
    ax.imshow(image, cmap="gray_r")
    ax.set_title(str(label))
    ax.axis("off")
fig.savefig(OUT / "tutorial_04_samples.png", dpi=110)

# %% [markdown]
# ![Ten digits](tutorial_04_samples.png)
#
# ## The model
# `Input(Vec[64])` declares the input type; `Linear(None, 64)` takes its input size
# from it. `softmax` maps `Vec[10]` to `Vec[10]` probabilities that sum to one.

# %%
model = Input(Vec[64]) >> Linear(None, 64) >> relu >> Linear(64, 10) >> softmax
print("signature:", model.signature)
print(nnc.summary(model))
print("drawn:", nnc.render(model, OUT / "tutorial_04_model.svg").name)

# %% [markdown]
# ![The MLP](tutorial_04_model.svg)
#
# ## Training with a validation set
# `fit` evaluates the loss and accuracy on the validation set after every epoch.
# `EarlyStopping` stops when the validation loss has not improved for 10 epochs and
# hands back the parameters of the best epoch.

# %%
params, history = nnc.fit(
    model,
    model.init(seed=0),
    (x_train, y_train),
    loss=nnc.cross_entropy,
    opt=nnc.adam(1e-3),
    epochs=4 if FAST else 100,
    batch_size=32,
    seed=0,
    validation=(x_val, y_val),
    metrics=[accuracy],
    callbacks=[EarlyStopping(patience=10, restore_best=True)],
    progress=False,
)
history.plot(OUT / "tutorial_04_curve.png")
print(history)

# %% [markdown]
# ![Learning curves](tutorial_04_curve.png)
#
# ## The test, once
# The test images were never seen, neither by the optimiser nor by early stopping.

# %%
probabilities = model(params, x_test)
test_accuracy = accuracy(probabilities, y_test)
print(f"test accuracy: {test_accuracy:.4f}")
if not FAST:
    assert test_accuracy > 0.95, test_accuracy

# %% [markdown]
# ## The mistakes
# Each image the model got wrong, with its prediction and (in brackets) the truth.

# %%
predicted = probabilities.argmax(axis=1)
wrong = np.flatnonzero(predicted != y_test)[:10]
fig = Figure(figsize=(8, 1.4), layout="constrained")
for ax in fig.subplots(1, 10):
    ax.axis("off")
for ax, i in zip(fig.axes, wrong):
    ax.imshow(x_test[i].reshape(8, 8), cmap="gray_r")
    ax.set_title(f"{predicted[i]} ({y_test[i]})")
fig.savefig(OUT / "tutorial_04_mistakes.png", dpi=110)
print(f"{(predicted != y_test).sum()} of {len(y_test)} test images are misclassified")

# %% [markdown]
# ![Misclassified test digits](tutorial_04_mistakes.png)
#
# Next, in tutorial 5: a network that sees the images as images.
