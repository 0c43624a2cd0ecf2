# %% [markdown]
# # 5. A convolutional network
#
# The MLP of tutorial 4 sees an image as 64 unrelated numbers: a stroke one pixel to
# the left is a different input altogether. A convolution slides small filters over
# the image, so the same stroke is recognised wherever it is. Images are typed
# `Tensor[channels, height, width]`; every layer's output size is computed, and
# checked, while the model is composed.
#
# Run as a script (`python examples/tutorial_05_convolution.py`) or open as a notebook
# with jupytext. `NNC_EXAMPLE_FAST=1` trains for two epochs only (for CI); the code path
# is the same. Pictures are written next to this file (or to `NNC_EXAMPLE_OUT`).

# %%
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import nnc
from nnc import Input, Linear, Tensor, relu, softmax
from nnc.conv import Conv2d, flatten, max_pool
from nnc.metrics import accuracy

FAST = os.environ.get("NNC_EXAMPLE_FAST") == "1"
HERE = Path(__file__).parent if "__file__" in globals() else Path.cwd()
OUT = Path(os.environ.get("NNC_EXAMPLE_OUT") or HERE)

# %% [markdown]
# ## Images as images
# One example is now a `(1, 8, 8)` array: one channel of 8x8 pixels. A batch is
# `(batch, 1, 8, 8)`.

# %%
digits = load_digits()
images = (digits.images[:, None, :, :] / 16.0).astype(np.float32)
x_train, x_test, y_train, y_test = train_test_split(
    images, digits.target, test_size=0.25, random_state=0, stratify=digits.target
)
x_train, x_val, y_train, y_val = train_test_split(
    x_train, y_train, test_size=0.15, random_state=0, stratify=y_train
)
print(f"train {x_train.shape}, validation {x_val.shape}, test {x_test.shape}")

# %% [markdown]
# ## The model
# 16 filters of 3x3 (padding 1 keeps the 8x8 size), a `relu`, 2x2 max pooling down to
# 4x4, then `flatten` to a vector and a linear read-out. `Linear(None, 10)` takes its
# input size from `flatten`, which takes it from the pooling: 16 x 4 x 4 = 256.

# %%
model = (
    Input(Tensor[1, 8, 8])
    >> Conv2d(1, 16, 3, padding=1)
    >> relu
    >> max_pool(2)
    >> flatten
    >> Linear(None, 10)
    >> softmax
)
print("signature:", model.signature)
print(nnc.summary(model))
print("drawn:", nnc.render(model, OUT / "tutorial_05_model.svg").name)

# %% [markdown]
# ![The CNN](tutorial_05_model.svg)
#
# A size that cannot work is refused while composing: after pooling, the maps are 4x4,
# too small for a 5x5 filter without padding.

# %%
try:
    Input(Tensor[1, 8, 8]) >> Conv2d(1, 16, 3, padding=1) >> max_pool(2) >> Conv2d(16, 16, 5)
except nnc.TypeMismatch as mismatch:
    print(mismatch)

# %% [markdown]
# ## Training
# The convolutions run as Numba kernels around BLAS products, compiled on first use
# and cached on disk, so the first epoch is the slowest.

# %%
params, history = nnc.fit(
    model,
    model.init(seed=0),
    (x_train, y_train),
    loss=nnc.cross_entropy,
    opt=nnc.adam(2e-3),
    epochs=2 if FAST else 25,
    batch_size=32,
    seed=0,
    validation=(x_val, y_val),
    metrics=[accuracy],
    progress=False,
)
print(history)
history.plot(OUT / "tutorial_05_curve.png")
test_accuracy = accuracy(model(params, x_test), y_test)
print(f"test accuracy: {test_accuracy:.4f}")
if not FAST:
    assert test_accuracy > 0.96, test_accuracy

# %% [markdown]
# ![Learning curves](tutorial_05_curve.png)
#
# On data this small the CNN and the MLP of tutorial 4 are about equally accurate
# (they differ by a handful of the 450 test images), but the CNN needs little more than
# half the parameters: each filter is shared by every position of the image.
#
# ## What the filters learned
# The 16 learned 3x3 filters of the first layer (red excites, blue inhibits), and the
# 16 feature maps they make of one test image.

# %%
filters = params["conv2d_0"]["W"][:, 0]
maps = (Input(Tensor[1, 8, 8]) >> Conv2d(1, 16, 3, padding=1) >> relu)(
    {"conv2d_0": params["conv2d_0"]}, x_test[:1]
)[0]
fig = Figure(figsize=(8, 1.2), layout="constrained")
axes = fig.subplots(2, 16)
limit = np.abs(filters).max()
for k in range(16):
    axes[0, k].imshow(filters[k], cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes[1, k].imshow(maps[k], cmap="gray_r")
    axes[0, k].axis("off")
    axes[1, k].axis("off")
fig.savefig(OUT / "tutorial_05_filters.png", dpi=110)
print("filters:", filters.shape, " feature maps of one image:", maps.shape)

# %% [markdown]
# ![Filters and feature maps](tutorial_05_filters.png)
#
# Next, in tutorial 6: sequences, and models with state.
