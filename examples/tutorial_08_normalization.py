# %% [markdown]
# # 8. Dropout and normalisation
#
# Two layers from the last decade of deep learning work differently during training and
# during evaluation. **Dropout** (Srivastava et al., 2014) sets a random part of its input
# to zero at every training step, so the network cannot rely on any single feature. It
# draws random numbers. **Batch normalisation** (Ioffe and Szegedy, 2015) rescales each
# channel using the mean and variance of the current batch, and keeps running averages of
# them to use at evaluation. It keeps statistics.
#
# Many libraries hide both: a global random generator, statistics updated inside the
# layer object, and a `training` flag that switches the mode. An nnc model is a pure
# function, so these are values you pass yourself. A *key* goes in. The *statistics* go
# in, and their new values come back out. The model used for evaluation is a separate
# model value, `nnc.inference(model)`.
#
# This notebook shows what each layer does. Then it trains the digits CNN of tutorial 5
# with and without `BatchNorm`, and a wide MLP with and without `Dropout`.
#
# Run as a script (`python examples/tutorial_08_normalization.py`) or open as a notebook
# with jupytext. `NNC_EXAMPLE_FAST=1` trains for a few epochs only (for CI); the code path
# is the same. Pictures are written next to this file (or to `NNC_EXAMPLE_OUT`).

# %%
import os
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import nnc
from nnc import (
    BatchNorm,
    Conv2d,
    Dropout,
    Input,
    LayerNorm,
    Linear,
    Tensor,
    Vec,
    flatten,
    max_pool,
    relu,
    softmax,
)
from nnc.metrics import accuracy

FAST = os.environ.get("NNC_EXAMPLE_FAST") == "1"
HERE = Path(__file__).parent if "__file__" in globals() else Path.cwd()
OUT = Path(os.environ.get("NNC_EXAMPLE_OUT") or HERE)

# %% [markdown]
# ## The data
# These are the digits of tutorials 4 and 5, split the same way. The split is done on
# example numbers, so the CNN (which takes `(1, 8, 8)` images) and the MLP (which takes
# rows of 64 pixels) see the same training, validation and test examples.

# %%
digits = load_digits()
images = (digits.images[:, None, :, :] / 16.0).astype(np.float32)
rows = images.reshape(len(images), 64)
train, test = train_test_split(np.arange(len(images)), test_size=0.25, random_state=0, stratify=digits.target)
train, val = train_test_split(train, test_size=0.15, random_state=0, stratify=digits.target[train])
y_train, y_val, y_test = digits.target[train], digits.target[val], digits.target[test]
print(f"train {len(train)}, validation {len(val)}, test {len(test)} examples")

# %% [markdown]
# ## Dropout draws random numbers
# `Dropout(rate)` sets each entry of its input to zero with probability `rate`, and
# multiplies the other entries by `1 / (1 - rate)`. The scaling keeps the expected value
# of every entry the same, so at evaluation dropout does nothing: it is the identity.
#
# Where do the random numbers come from? From a **key**, passed to the call.
# `nnc.key(seed)` makes one, and it is just a number (a 0-d `uint64` array). The same key
# always gives the same mask. The model's signature shows that it needs one: `, key`.

# %%
drop = Dropout(0.5)
print("signature:", drop.signature)
ones = np.ones((2, 10), np.float32)
print("key 0:\n", drop(ones, key=nnc.key(0)))
print("key 1:\n", drop(ones, key=nnc.key(1)))
assert (drop(ones, key=nnc.key(0)) == drop(ones, key=nnc.key(0))).all()  # same key, same mask
print("inference:\n", nnc.inference(drop)(ones))

# %% [markdown]
# There is no hidden random generator for the layer to fall back on. If you forget the
# key, nnc does not quietly pick a seed: it stops and names the layer.

# %%
try:
    drop(ones)
except nnc.NNCError as error:
    print(error)

# %% [markdown]
# Here is one digit as a network sees it through `Dropout(0.3)`, with four keys. In
# training, every step gets a new key (`fit` makes them from its `seed`), so every step
# sees a differently damaged image. At evaluation (`nnc.inference`) the image passes
# through unchanged.

# %%
drop_pixels = Dropout(0.3)
digit = rows[test[:1]]
shown = [digit] + [drop_pixels(digit, key=nnc.key(k)) for k in range(4)]
shown.append(nnc.inference(drop_pixels)(digit))
titles = ["input"] + [f"key {k}" for k in range(4)] + ["inference"]
fig = Figure(figsize=(7, 1.5), layout="constrained")
for ax, picture, title in zip(fig.subplots(1, 6), shown, titles):
    ax.imshow(picture.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1 / 0.7)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
fig.savefig(OUT / "tutorial_08_dropout.png", dpi=110)

# %% [markdown]
# ![A digit through dropout](tutorial_08_dropout.png)
#
# ## BatchNorm keeps running statistics
# In training, `BatchNorm(c)` takes each of its `c` channels, subtracts the batch mean and
# divides by the batch standard deviation. Then it multiplies by a learned `scale` and
# adds a learned `bias` (its two parameters). This keeps the inputs of the next layer in
# a steady range while the layers before it change, and training usually gets faster.
#
# At evaluation there may be no batch, only one image. So during training BatchNorm also
# keeps a **running** mean and variance: after every step,
# `running = 0.9 * running + 0.1 * batch` (`momentum=0.1`, as in PyTorch). These are not
# parameters, since no gradient trains them. In nnc they are a separate value, the
# statistics. `model.init_stats()` makes the first one. A training call takes it and
# gives back the next, and the one you passed in is left unchanged.

# %%
norm = Input(Vec[3]) >> BatchNorm(3)
print("signature:", norm.signature)
params, stats = norm.init(seed=0), norm.init_stats()
print("parameters:", {k: v.tolist() for k, v in params["batchnorm_0"].items()})
print("statistics:", {k: v.tolist() for k, v in stats["batchnorm_0"].items()})

batch = np.array([[1, 10, -3], [2, 20, -1], [3, 30, 1], [6, 60, 3]], np.float32)
y, new_stats = norm(params, batch, stats=stats)
print("normalised batch:\n", y.round(2))
print("new running mean:", new_stats["batchnorm_0"]["mean"].round(3))
print("new running var: ", new_stats["batchnorm_0"]["var"].round(3))
assert np.allclose(new_stats["batchnorm_0"]["mean"], 0.1 * batch.mean(axis=0))
assert np.allclose(new_stats["batchnorm_0"]["var"], 0.9 + 0.1 * batch.var(axis=0, ddof=1))
assert (stats["batchnorm_0"]["mean"] == 0).all()  # the old statistics are untouched

# %% [markdown]
# `nnc.inference(norm)` is the model for evaluation. It normalises with the statistics
# it is given and returns only its output, because it updates nothing. Its signature
# still says `, stats`, since it reads them. It works on a single example, which the
# training form refuses: one example has no batch mean.

# %%
evaluate = nnc.inference(norm)
print("inference signature:", evaluate.signature)
print("one example, inference:", evaluate(params, batch[0], stats=new_stats).round(3))
try:
    norm(params, batch[0], stats=new_stats)
except nnc.NNCError as error:
    print(error)

# %% [markdown]
# `LayerNorm(n)` normalises each example over its own `n` features, so it needs no
# batch and no statistics. It computes the same thing in training and in evaluation, and
# its signature has neither `, key` nor `, stats`. (`RMSNorm(n)` is the same idea without
# subtracting the mean.)

# %%
print("LayerNorm:", (Input(Vec[3]) >> LayerNorm(3)).signature)

# %% [markdown]
# ## The CNN, with and without BatchNorm
# This is the CNN of tutorial 5, and the same CNN with a `BatchNorm(16)` after the
# convolution. The convolution then gets `bias=False`: BatchNorm subtracts each channel's
# mean, so a bias added just before it has no effect. BatchNorm's own `bias` does that
# job instead.

# %%
cnn = (
    Input(Tensor[1, 8, 8])
    >> Conv2d(1, 16, 3, padding=1)
    >> relu
    >> max_pool(2)
    >> flatten
    >> Linear(None, 10)
    >> softmax
)
cnn_bn = (
    Input(Tensor[1, 8, 8])
    >> Conv2d(1, 16, 3, padding=1, bias=False)
    >> BatchNorm(16)
    >> relu
    >> max_pool(2)
    >> flatten
    >> Linear(None, 10)
    >> softmax
)
print("without:", cnn.signature)
print("with:   ", cnn_bn.signature)
print("statistics:", {path: v.shape for path, v in nnc.tree_paths(cnn_bn.init_stats())})
print(nnc.summary(cnn_bn))
print("drawn:", nnc.render(cnn_bn, OUT / "tutorial_08_cnn.svg").name)

# %% [markdown]
# ![The CNN with BatchNorm](tutorial_08_cnn.svg)
#
# The summary counts the 32 statistics (16 means, 16 variances) separately from the
# trainable parameters, and the picture marks the layer that keeps them.
#
# ## The MLP, with and without Dropout
# Dropout helps most when a network is big enough to memorise its training set. This MLP
# has two hidden layers of 512 units, about 300,000 parameters for about 1,100 training
# images. The version with dropout drops 20% of the input pixels and half of each hidden
# layer, as in the dropout paper. Dropout has no parameters and no statistics, so only
# the signature changes: `, key`. One key is enough for all three dropout layers. Each
# layer derives its own key from it and from its path in the model (`dropout_0`,
# `dropout_1`, `dropout_2`), so the three draw different masks, and a layer added at
# the end leaves the masks of the others as they were.

# %%
width = 512
mlp = (
    Input(Vec[64])
    >> Linear(None, width)
    >> relu
    >> Linear(width, width)
    >> relu
    >> Linear(width, 10)
    >> softmax
)
mlp_drop = (
    Input(Vec[64])
    >> Dropout(0.2)
    >> Linear(None, width)
    >> relu
    >> Dropout(0.5)
    >> Linear(width, width)
    >> relu
    >> Dropout(0.5)
    >> Linear(width, 10)
    >> softmax
)
print("without:", mlp.signature)
print("with:   ", mlp_drop.signature)
print("inference:", nnc.inference(mlp_drop).signature)
print(f"parameters: {nnc.summary(mlp_drop).total:,}")

# %% [markdown]
# ## Training
# `fit` does the bookkeeping. It starts from `model.init_stats()` (or the `stats=` you
# give it) and passes each step's new statistics on to the next step. It makes each
# step's key from `seed`, so the same seed gives the same run, bit for bit. After every
# epoch it measures the validation set with `nnc.inference(model)`, using the current
# statistics. A model that keeps statistics gets them back from `fit` as a third value:
# `params, stats, history`. Without statistics it is `params, history`.
#
# The `loss` that `fit` records is the average over the epoch's training steps, so it is
# measured in training mode: with dropout on, and with each batch's own statistics. To
# compare training and validation on equal terms we also ask for the cross-entropy as a
# metric. Metrics are computed after each epoch by `nnc.inference(model)`, on the
# training set (`cross_entropy`) and on the validation set (`val_cross_entropy`).

# %%
metrics = {"accuracy": accuracy, "cross_entropy": nnc.cross_entropy}
settings = dict(loss=nnc.cross_entropy, batch_size=32, seed=0, metrics=metrics, progress=False)
cnn_epochs = 2 if FAST else 20
cnn_data = dict(data=(images[train], y_train), validation=(images[val], y_val), epochs=cnn_epochs)
cnn_params, cnn_history = nnc.fit(cnn, cnn.init(seed=0), opt=nnc.adam(2e-3), **cnn_data, **settings)
bn_params, bn_stats, bn_history = nnc.fit(
    cnn_bn, cnn_bn.init(seed=0), opt=nnc.adam(2e-3), **cnn_data, **settings
)

mlp_epochs = 2 if FAST else 60
mlp_data = dict(data=(rows[train], y_train), validation=(rows[val], y_val), epochs=mlp_epochs)
mlp_params, mlp_history = nnc.fit(mlp, mlp.init(seed=0), opt=nnc.adam(1e-3), **mlp_data, **settings)
drop_params, drop_history = nnc.fit(
    mlp_drop, mlp_drop.init(seed=0), opt=nnc.adam(1e-3), **mlp_data, **settings
)
print("CNN          ", cnn_history)
print("CNN+BatchNorm", bn_history)
print("MLP          ", mlp_history)
print("MLP+Dropout  ", drop_history)

# %%
fig = Figure(figsize=(10, 3.8), layout="constrained")
left, right = fig.subplots(1, 2)
pairs = [
    (left, "CNN", [("without BatchNorm", cnn_history, "C0"), ("with BatchNorm", bn_history, "C3")]),
    (right, "wide MLP", [("without Dropout", mlp_history, "C0"), ("with Dropout", drop_history, "C3")]),
]
for ax, title, runs in pairs:
    for label, history, colour in runs:
        ax.plot(history.epochs, history["cross_entropy"], color=colour, label=f"{label}, training")
        ax.plot(
            history.epochs,
            history["val_cross_entropy"],
            color=colour,
            linestyle="--",
            label=f"{label}, validation",
        )
    ax.set(title=title, xlabel="epoch", ylabel="cross-entropy", yscale="log")
    ax.legend(fontsize=8)
fig.savefig(OUT / "tutorial_08_curves.png", dpi=110)

# %% [markdown]
# ![Training and validation loss, side by side](tutorial_08_curves.png)
#
# Solid lines are the loss on the training set, dashed lines on the validation set, both
# measured by the inference model after each epoch, on a log scale.
#
# **Left: BatchNorm.** With the same learning rate and the same number of steps, the CNN
# with BatchNorm learns faster: it reaches the loss the plain CNN ends with in about half
# the epochs, and its validation loss falls with its training loss.
#
# **Right: Dropout.** Without dropout, the wide MLP keeps driving its training loss down,
# a hundredfold between epoch 10 and epoch 60. Its validation loss, meanwhile, stops
# improving after about ten epochs and then creeps up. From there on the network is
# memorising the training images, and the gap between the solid and the dashed line
# keeps growing. With dropout, every step trains a different thinned network, and no unit
# can count on the others being there. The training loss falls more slowly, the gap
# stays much narrower, and the validation loss keeps improving to the end. The digits
# are an easy task, so the gain in test accuracy (below) is only a handful of images.
#
# ## The test, once, in inference mode
# Every model is evaluated with `nnc.inference(model)`: dropout becomes the identity and
# BatchNorm uses the running statistics that `fit` returned. For a model without
# dropout or normalisation, `nnc.inference(model)` is the model itself. A call ignores
# statistics it does not use, so one loop fits all four models.

# %%
runs = [
    ("CNN", cnn, cnn_params, None, images[test]),
    ("CNN with BatchNorm", cnn_bn, bn_params, bn_stats, images[test]),
    ("MLP", mlp, mlp_params, None, rows[test]),
    ("MLP with Dropout", mlp_drop, drop_params, None, rows[test]),
]
for name, model, params, stats, x_test in runs:
    probabilities = nnc.inference(model)(params, x_test, stats=stats)
    loss = float(nnc.cross_entropy(probabilities, y_test))
    print(f"test accuracy, {name}: {accuracy(probabilities, y_test):.4f} (loss {loss:.3f})")

# %% [markdown]
# Why must evaluation use the inference form? In training, BatchNorm normalises with the
# batch's own statistics, so the answer for one image depends on which other images
# share its batch. The inference form gives each image the same answer whatever its
# company (up to float rounding). Here the training form differs only a little, because
# after training the batch statistics are close to the running ones, but it is not the
# same function.

# %%
evaluate = nnc.inference(cnn_bn)
alone = evaluate(bn_params, images[test[:1]], stats=bn_stats)
in_a_batch = evaluate(bn_params, images[test[:100]], stats=bn_stats)[:1]
print(f"inference form, alone or in a batch of 100: differs by {np.abs(alone - in_a_batch).max():.0e}")
pair, _ = cnn_bn(bn_params, images[test[:2]], stats=bn_stats)
hundred, _ = cnn_bn(bn_params, images[test[:100]], stats=bn_stats)
print(f"training form, in a batch of 2 or of 100:  differs by {np.abs(pair[0] - hundred[0]).max():.0e}")

# %% [markdown]
# ## Keeping the statistics with the model
# The running statistics belong to the trained model, just like its parameters.
# `nnc.save` refuses to save a BatchNorm model without them, and
# `nnc.load(..., stats=True)` gives both back.

# %%
with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "cnn_bn.npz"
    nnc.save(path, cnn_bn, bn_params, bn_stats)
    loaded_params, loaded_stats = nnc.load(path, cnn_bn, stats=True)
same = evaluate(loaded_params, images[test], stats=loaded_stats)
assert (same == evaluate(bn_params, images[test], stats=bn_stats)).all()
print("reloaded: the same predictions, bit for bit")

# %% [markdown]
# ## What to remember
# - A model that draws random numbers says `, key` in its signature. Pass
#   `key=nnc.key(seed)`, and a new key for every step (`fit` does this for you).
# - A model that keeps running statistics says `, stats`. Start from `model.init_stats()`;
#   a training call returns `(output, new_stats)`. Save them with the parameters.
# - Evaluate with `nnc.inference(model)`, which is a model value like any other, not a
#   mode the model is switched into.
#
# The guide [randomness and running statistics](../randomness.md) shows how keys and
# statistics flow through `train_step`, `fit` and `nnc.compile`, and why nnc does not use
# hidden state.
