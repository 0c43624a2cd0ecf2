# %% [markdown]
# # 9. Names, one character at a time
#
# A *language model* gives the probability of the next token given the ones before it; sampling
# from it, one token at a time, writes new text. Here the tokens are characters and the texts
# are 32,033 first names, and we build four models of them the way a course does, each looking
# further back than the last: a bigram table (the previous character), an MLP (the previous
# three), an LSTM (everything before, squeezed into a state) and a small transformer (everything
# before, attended to directly). All four are trained on the same split with `nnc.fit`,
# measured in the same unit, nats per character on held-out names, and sampled with
# `nnc.generate`.
#
# Run as a script (`python examples/tutorial_09_names.py`) or open as a notebook with jupytext.
# `NNC_EXAMPLE_FAST=1` trains on 2,000 names for two epochs (for CI); the code
# path is the same. Pictures are written next to this file (or to `NNC_EXAMPLE_OUT`).

# %%
import functools
import importlib.resources
import math
import os
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

import nnc
from nnc import (
    LSTM,
    Dropout,
    Embedding,
    LayerNorm,
    Linear,
    PositionalEmbedding,
    SelfAttention,
    gelu,
    lagged,
    repeat,
    residual,
    softmax,
    tanh,
    unroll,
    zero_state,
)

FAST = os.environ.get("NNC_EXAMPLE_FAST") == "1"
HERE = Path(__file__).parent if "__file__" in globals() else Path.cwd()
OUT = Path(os.environ.get("NNC_EXAMPLE_OUT") or HERE)

# %% [markdown]
# ## The data
# `names.txt` ships with nnc (`nnc/data/`, from Andrej Karpathy's makemore, MIT licence): the
# most common US first names of 2018, lower case a-z. The names are shuffled once by
# `np.random.default_rng(SEED).permutation` with `SEED = 2018` and cut 80/10/10 into training,
# validation and test names; every model below uses this split. (With fast settings the
# models train on the first 2,000 training names and are measured on the first 1,000 test
# names: the same split, less of it.)

# %%
SEED = 2018
text = (importlib.resources.files("nnc") / "data" / "names.txt").read_text(encoding="utf-8")
names = text.split()
order = np.random.default_rng(SEED).permutation(len(names))
names = [names[i] for i in order]
n_train, n_val = int(0.8 * len(names)), int(0.1 * len(names))
train_names = names[:n_train]
val_names = names[n_train : n_train + n_val]
test_names = names[n_train + n_val :]
print(f"{len(names)} names: {len(train_names)} training, {len(val_names)} validation, {len(test_names)} test")
print("the first training names:", ", ".join(train_names[:8]))
if FAST:
    train_names, val_names, test_names = train_names[:2000], val_names[:500], test_names[:1000]

# %% [markdown]
# ## Tokens
# 27 tokens: `.` is 0 and marks both the start and the end of a name, `a` to `z` are 1 to 26.
# The longest name has 15 letters, so a name and one marker fit in 16 tokens. A sequence model
# reads the input `.` + name and predicts, at every step, the next token: the target is
# name + `.`. Both are padded to 16 tokens, the input with `.` and the target with `-1`.
#
# The padding must not count: a model that learns "after the end comes more padding" would
# look better than it is. `nnc.cross_entropy(..., ignore=-1)` leaves out every position whose
# label is -1, and averages over the others, so each loss below is the mean over the real
# characters (the letters and each name's final `.`): nats per character. The padded inputs
# are never seen by a real position either: every model here reads left to right only (the
# transformer's attention is causal), so step `t` depends on the tokens up to `t` alone.

# %%
CHARS = ".abcdefghijklmnopqrstuvwxyz"
VOCAB, STEPS, IGNORE = len(CHARS), 16, -1


def encode(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of shape (len(names), 16): '.' + name and name + '.', padded."""
    x = np.zeros((len(names), STEPS), np.int64)
    y = np.full((len(names), STEPS), IGNORE, np.int64)
    for row, name in enumerate(names):
        tokens = [CHARS.index(c) for c in name]
        x[row, 1 : len(tokens) + 1] = tokens
        y[row, : len(tokens) + 1] = tokens + [0]
    return x, y


def decode(tokens) -> str:
    """The name in a row of generated tokens: the letters after the leading '.', up to the next '.'."""
    letters = "".join(CHARS[t] for t in tokens[1:])
    return letters.split(".")[0]


x_train, y_train = encode(train_names)
x_val, y_val = encode(val_names)
x_test, y_test = encode(test_names)
print("input ", x_train[0], "\ntarget", y_train[0], f"  ({train_names[0]!r})")
loss = functools.partial(nnc.cross_entropy, ignore=IGNORE)
print(f"a uniform guess: log(27) = {math.log(VOCAB):.3f} nats per character")

# %% [markdown]
# Four helpers: the number of parameters, the test loss (on the inference form of a model, `nnc.inference`, which only
# matters for the transformer's dropout), ten sampled names, and a timed `fit`. `nnc.generate`
# continues a prompt one token at a time, drawing token `i` with `nnc.fold_in(key, i)`: here ten
# prompts of one `.` each, continued by 15 tokens at temperature 1 (the model's own
# probabilities), cut at the first `.`.

# %%
results, histories, samples = {}, {}, {}


def size(params) -> int:
    return sum(int(np.size(leaf)) for leaf in nnc.tree_leaves(params))


def test_loss(model, params) -> float:
    return float(loss(nnc.inference(model)(params, x_test), y_test))


def sample(model, params, seed: int = 0) -> list[str]:
    rows = nnc.generate(
        model, params, np.zeros((10, 1), np.int64), STEPS - 1, temperature=1.0, key=nnc.key(seed)
    )
    return [decode(row) for row in rows]


def train(label, model, params, data, validation, on_names=None, **settings):
    start = time.perf_counter()
    params, history = nnc.fit(model, params, data, validation=validation, progress=False, seed=0, **settings)
    seconds = time.perf_counter() - start
    results[label] = (size(params), test_loss(on_names or model, params))
    histories[label] = history
    samples[label] = sample(model, params)
    print(f"{label}: {len(history)} epochs in {seconds:.0f} s; {history}")
    print(f"test loss, {label}: {results[label][1]:.4f} nats/char")
    print(f"samples, {label}: {', '.join(samples[label])}")
    return params


# %% [markdown]
# ## 1. A bigram table
# The simplest model looks at the previous character only: a table of 27 x 27 scores, row `a`
# holding the scores of every character that may follow `a`. That is `Embedding(27, 27)`, a
# learned vector of 27 numbers per token, followed by `softmax`: `Index[27] -> Vec[27]`.
#
# Its data are the (previous, next) pairs of the training names, padding left out; `fit` sees
# a batch of pairs as it would any classification data. Counting the pairs gives the answer
# directly: the maximum-likelihood table is the counts of each row, normalised (plus one, so
# that no pair has probability 0). Gradient descent should find the same table; Adam's step
# shrinks along half a cosine (`nnc.cosine_decay`) so that it settles there. The test
# loss is measured on the padded test names, as for the other models, by
# `nnc.each(bigram)`: the same table at every step, `Seq[Index[27]] -> Seq[Vec[27]]`, with
# the same parameters (`>>` inserts `each` itself where a sequence meets a model of one
# token, as in the models below).

# %%
real = y_train != IGNORE
pairs = (x_train[real], y_train[real])
counts = np.ones((VOCAB, VOCAB))
np.add.at(counts, pairs, 1)
table = counts / counts.sum(axis=1, keepdims=True)
test_real = y_test != IGNORE
counted = float(-np.log(table[x_test[test_real], y_test[test_real]]).mean())
print(f"{len(pairs[0])} training pairs; the counted table: {counted:.4f} nats/char on test")

bigram = Embedding(VOCAB, VOCAB) >> softmax
print("signature:", bigram.signature)
print("drawn:", nnc.render(bigram, OUT / "tutorial_09_bigram.svg", rankdir="LR").name)
bigram_params = train(
    "bigram",
    bigram,
    bigram.init(seed=0),
    pairs,
    (x_val[y_val != IGNORE], y_val[y_val != IGNORE]),
    on_names=nnc.each(bigram),
    loss=nnc.cross_entropy,
    opt=nnc.adam(nnc.cosine_decay(0.1, steps=10 * math.ceil(len(pairs[0]) / 1024))),
    epochs=10,
    batch_size=1024,
)

# %% [markdown]
# ![The bigram](tutorial_09_bigram.svg)
#
# `generate` runs a model of one token, `Index[27] -> Vec[27]`, at every step of its prompt,
# so the bigram is sampled like the sequence models below. Its names are short and odd: one
# character of memory is not much.
#
# ## 2. An MLP over the last three characters
# Bengio et al. (2003): embed each of the last three characters in a small vector (10 numbers),
# join the three vectors, and predict the next character with a hidden layer of 200 `tanh`
# units. In nnc, `Embedding(27, 10)` maps a sequence of tokens to a sequence of vectors
# (`>>` runs it at every step), and `lagged(3, mlp)` is a cell that hands `mlp` its last
# three inputs, oldest first, as one `Vec[30]`; its state keeps the two before the current
# one. `zero_state(unroll(...))` runs the cell along the name from a state of zeros, so the
# MLP sees zero vectors where a name has no earlier characters. The model is then a sequence
# model like the next two, trained on the padded names with the same loss: each step is one
# (three characters, next character) example. `softmax` comes last, outside the cell, as in
# the other models: `generate` looks for it there to know that the model gives
# probabilities rather than logits.

# %%
mlp_head = Linear(30, 200) >> tanh >> Linear(200, VOCAB)
mlp = Embedding(VOCAB, 10) >> zero_state(unroll(lagged(3, mlp_head))) >> softmax
print("the cell:", lagged(3, mlp_head).signature)
print("signature:", mlp.signature)
print("drawn:", nnc.render(mlp, OUT / "tutorial_09_mlp.svg").name)
mlp_params = train(
    "MLP",
    mlp,
    mlp.init(seed=0),
    (x_train, y_train),
    (x_val, y_val),
    loss=loss,
    opt=nnc.adam(3e-3),
    epochs=2 if FAST else 10,
    batch_size=64,
)

# %% [markdown]
# ![The MLP](tutorial_09_mlp.svg)
#
# ## 3. An LSTM
# A recurrent cell reads the whole name so far: an `LSTM` (Hochreiter and Schmidhuber, 1997)
# keeps a state of 128 numbers (and as many in its memory cell) that it updates at each
# character. Each step's output goes through `Linear(128, 27) >> softmax`.

# %%
lstm = Embedding(VOCAB, 32) >> zero_state(unroll(LSTM(32, 128))) >> Linear(128, VOCAB) >> softmax
print("signature:", lstm.signature)
print("drawn:", nnc.render(lstm, OUT / "tutorial_09_lstm.svg").name)
lstm_params = train(
    "LSTM",
    lstm,
    lstm.init(seed=0),
    (x_train, y_train),
    (x_val, y_val),
    loss=loss,
    opt=nnc.adam(3e-3),
    epochs=2 if FAST else 3,
    batch_size=64,
)

# %% [markdown]
# ![The LSTM](tutorial_09_lstm.svg)
#
# ## 4. A transformer
# A transformer (Vaswani et al., 2017) lets every step look at every earlier step at once:
# `SelfAttention(d, heads=4, causal=True)` takes, for each position, a weighted mean of the
# positions up to it, with weights computed from the vectors themselves. Attention sees the
# steps as a set, so `PositionalEmbedding` adds a learned vector per position. A block is
# attention and then a two-layer MLP, each behind a `LayerNorm` and around a residual
# connection (the "pre-norm" layout of GPT-2); `repeat(block, 4)` stacks four independent
# copies. `Dropout(0.1)` after attention makes the model draw random numbers in training:
# `fit` gives each step its own key, and `nnc.inference` (the test loss, `generate`) drops
# nothing.

# %%
d = 64
block = residual(LayerNorm(d) >> SelfAttention(d, heads=4, causal=True) >> Dropout(0.1)) >> residual(
    LayerNorm(d) >> Linear(d, 4 * d) >> gelu >> Linear(4 * d, d)
)
lm = (
    Embedding(VOCAB, d)
    >> PositionalEmbedding(max_len=STEPS, dim=d)
    >> repeat(block, 4)
    >> LayerNorm(d)
    >> Linear(d, VOCAB)
    >> softmax
)
print("signature:", lm.signature)
print(f"parameters: {size(lm.init(seed=0)):,}")
print("drawn:", nnc.render(lm, OUT / "tutorial_09_transformer.svg").name)
lm_params = train(
    "transformer",
    lm,
    lm.init(seed=0),
    (x_train, y_train),
    (x_val, y_val),
    loss=loss,
    opt=nnc.adam(2e-3),
    epochs=2 if FAST else 4,
    batch_size=64,
)

# %% [markdown]
# ![The transformer](tutorial_09_transformer.svg)
#
# ## The four side by side
# Nats per character on the test names (lower is better; `exp` of it is the *perplexity*, the
# number of equally likely characters the model is, on average, choosing from).

# %%
print(f"{'model':<12} {'parameters':>10}  {'test loss (nats/char)':>21}  {'perplexity':>10}")
print(f"{'uniform':<12} {0:>10,}  {math.log(VOCAB):>21.4f}  {VOCAB:>10.2f}")
print(f"{'counting':<12} {VOCAB * VOCAB:>10,}  {counted:>21.4f}  {math.exp(counted):>10.2f}")
for label, (count, value) in results.items():
    print(f"{label:<12} {count:>10,}  {value:>21.4f}  {math.exp(value):>10.2f}")
known = set(names)
for label, names_drawn in samples.items():
    new = [name for name in names_drawn if name not in known]
    print(f"{label:>12}: {', '.join(names_drawn)}  ({len(new)} of 10 not in the data)")

fig = Figure(figsize=(8, 4), layout="constrained")
ax = fig.subplots()
for (label, history), colour in zip(histories.items(), ["C0", "C1", "C2", "C3"]):
    ax.plot(history.epochs, history["loss"], color=colour, linestyle="--", alpha=0.6)
    ax.plot(history.epochs, history["val_loss"], color=colour, marker="o", label=label)
ax.axhline(counted, color="0.5", linestyle=":", label="counted bigram (test)")
ax.set(xlabel="epoch", ylabel="nats per character", title="validation (solid) and training (dashed) loss")
ax.xaxis.set_major_locator(MaxNLocator(integer=True))
ax.legend()
fig.savefig(OUT / "tutorial_09_curves.png", dpi=110)

# %% [markdown]
# ![Learning curves](tutorial_09_curves.png)
#
# Looking further back pays: the MLP's three characters take a third of a nat per character
# off the bigram's one, and the LSTM and the transformer, which see the whole name so far,
# take off more. Their names look more like names: the bigram's are strings of plausible
# pairs, the others' mostly pronounceable, several of them real names. The training loss
# (dashed) is the mean over an epoch's batches while the parameters moved, and it includes
# dropout for the transformer, so it sits above the validation loss early on.
#
# With the full settings (all 25,626 training names; the bigram and the MLP 10 epochs, the
# LSTM 3, the transformer 4) this notebook ran in about 16 minutes on a 2-core CPU shared
# with other work: bigram 1 s, MLP 45 s, LSTM 201 s, transformer 676 s. It printed:
#
# | model | parameters | test loss (nats/char) | perplexity |
# | --- | ---: | ---: | ---: |
# | uniform | 0 | 3.2958 | 27.00 |
# | counting | 729 | 2.4529 | 11.62 |
# | bigram | 729 | 2.4538 | 11.63 |
# | MLP | 11,897 | 2.1383 | 8.49 |
# | LSTM | 86,779 | 2.0156 | 7.50 |
# | transformer | 204,571 | 2.0391 | 7.68 |
#
# and the transformer's samples `saming, itza, augemin, yanika, amina, elmis, abdielunna,
# ozillah, christi, wildor`. After four epochs (1,604 steps of 64 names) the transformer sits
# just behind the LSTM: it has more to learn, and more to learn it from. Train longer
# (`epochs=`), or compile the step (`nnc.fit(..., compile=True)`, which compiles for a few
# minutes first and then runs each step as native code), to go further.
