"""A transformer language model's training step (issue 17): nnc compiled and interpreted
against hand-written numpy, PyTorch eager and JAX jit, ratios printed in one run.

The model, d 64, 4 heads (head size 16), 4 pre-norm blocks, sequences of 16 tokens from a
vocabulary of 27, batch 32, float32::

    block = (residual(LayerNorm(d) >> SelfAttention(d, heads=4, causal=True) >> Dropout(0.1))
             >> residual(LayerNorm(d) >> Linear(d, 4 * d) >> gelu >> Linear(4 * d, d)))
    lm = (Embedding(vocab, d) >> PositionalEmbedding(max_len=16, dim=d) >> repeat(block, 4)
          >> LayerNorm(d) >> Linear(d, vocab) >> softmax)

one training step: cross-entropy of the next token at every position (the mean over the
batch's 32 x 16 positions), plain SGD (learning rate 0.1, no momentum) for every
contender, exact GELU (erf), LayerNorm's epsilon 1e-5, dropout on with a new mask every step.

Contenders, each doing that same work on the same shapes:

- nnc compiled: ``nnc.compile(nnc.train_step(lm, loss=nnc.cross_entropy, opt=nnc.sgd(0.1)))``,
  called as a user's loop calls it, the step's key ``nnc.fold_in(nnc.key(0), i)`` made on the host;
- nnc interpreted: the same ``train_step`` without ``nnc.compile``;
- numpy by hand: forward and backward written out (embedding lookup and its scatter-add,
  LayerNorm, the causal attention's products and softmax head by head, exact GELU with
  ``scipy.special.erf``, inverted dropout with masks drawn once per step from a numpy
  ``Generator`` at its start, cross-entropy from the logits, SGD);
- PyTorch eager (one thread): the layers written out, ``nn.Embedding``, a learned position
  table, ``nn.LayerNorm``, ``nn.Linear`` for the fused query/key/value projection (split into
  heads as nnc does) and the output projection, ``F.scaled_dot_product_attention(is_causal=True)``,
  ``F.dropout(training=True)``, ``F.gelu`` (exact), ``F.cross_entropy`` on the logits, SGD
  written out under ``no_grad`` (not ``nn.TransformerEncoderLayer``, whose fast path and
  parameter layout differ);
- JAX jit (one thread; optional: a line says when it is absent): the same math, the
  attention written out (``jnp.where`` on the causal mask, ``jax.nn.softmax``), each block's
  mask from ``jax.random.uniform`` of a key folded from ``jax.random.fold_in(key, i)``
  inside the jitted step.

The PyTorch and JAX weights are copied from nnc's initial parameters. Before timing, the
step is checked once: nnc compiled against interpreted (same key, dropout on: loss and
updated parameters equal to rounding), and numpy, PyTorch and JAX against nnc interpreted
on a copy of the model with dropout rate 0 (the same first loss and every updated
parameter, to rounding).

Timing is that of benchmarks/modern_step.py: alternating rounds, each starting one
contender later, two untimed steps before each turn, PyTorch and JAX each in a child
process, all processes pinned to one core; a ratio is the median over rounds of that
round's ratio. Every contender carries its parameters from step to step; after timing the
last losses are checked to be finite.

Targets (issue 17): compiled faster than JAX jit and than PyTorch eager; interpreted within
1.5x of numpy by hand.

Run: python benchmarks/transformer_step.py [--quick] [--blocks N]  (``--quick``: 5 rounds
instead of 15; ``--blocks``: the number of blocks, 4 by default). The first run compiles
the nnc step (minutes for 4 blocks; its time is printed); later runs load it from disk.
Optional baselines: pip install torch==2.13.0; pip install jax jaxlib.
"""

from __future__ import annotations

import math
import time

import numpy as np
from modern_step import (
    INV_SQRT_2PI,
    SQRT_HALF,
    Contender,
    arguments,
    carrying,
    child_checks,
    first_steps,
    jax_loop,
    keyed_loop,
    not_installed,
    pin_to_one_core,
    relative,
    run,
    serve_steps,
    started_children,
    step_targets,
    table,
    time_loops,
    torch_sgd,
)

import nnc
from nnc import (
    Dropout,
    Embedding,
    LayerNorm,
    Linear,
    PositionalEmbedding,
    SelfAttention,
    gelu,
    repeat,
    residual,
    softmax,
)

D, HEADS, VOCAB, STEPS, BATCH = 64, 4, 27, 16, 32
SIZE = D // HEADS  # each head's size
LR = 0.1
RATE = 0.1
EPS = 1e-5  # LayerNorm's epsilon, in nnc as in PyTorch
MASKED = -1e30  # a masked score, as nnc's attention writes it


def lm_model(blocks: int, rate: float = RATE):
    d = D
    block = residual(LayerNorm(d) >> SelfAttention(d, heads=HEADS, causal=True) >> Dropout(rate)) >> residual(
        LayerNorm(d) >> Linear(d, 4 * d) >> gelu >> Linear(4 * d, d)
    )
    return (
        Embedding(VOCAB, d)
        >> PositionalEmbedding(max_len=STEPS, dim=d)
        >> repeat(block, blocks)
        >> LayerNorm(d)
        >> Linear(d, VOCAB)
        >> softmax
    )


def data():
    """The same batch in every process: tokens ``x`` ``(batch, steps)`` and ``y``, the next
    token at each position."""
    rng = np.random.default_rng(0)
    text = rng.integers(0, VOCAB, (BATCH, STEPS + 1))
    return text[:, :-1], text[:, 1:]


def nnc_step(model):
    return nnc.train_step(model, loss=nnc.cross_entropy, opt=nnc.sgd(LR))


# The parameters' paths in nnc's tree (``nnc.tree_paths``): every contender keeps a flat
# dict of them, so that any two can be compared leaf by leaf.
EMB, POS = "embedding_0/W", "positionalembedding_0/P"
NORM_G, NORM_B, HEAD_W, HEAD_B = "layernorm_0/scale", "layernorm_0/bias", "linear_0/W", "linear_0/b"


def block_paths(i: int) -> dict[str, str]:
    att, mlp = f"repeat_0/{i}/residual_0/serial_0/", f"repeat_0/{i}/residual_1/serial_0/"
    return {
        "g1": att + "layernorm_0/scale",
        "be1": att + "layernorm_0/bias",
        "Wqkv": att + "selfattention_0/W_qkv",
        "bqkv": att + "selfattention_0/b_qkv",
        "Wout": att + "selfattention_0/W_out",
        "bout": att + "selfattention_0/b_out",
        "g2": mlp + "layernorm_0/scale",
        "be2": mlp + "layernorm_0/bias",
        "W1": mlp + "linear_0/W",
        "b1": mlp + "linear_0/b",
        "W2": mlp + "linear_1/W",
        "b2": mlp + "linear_1/b",
    }


def flat(params) -> dict[str, np.ndarray]:
    return {path: np.asarray(leaf) for path, leaf in nnc.tree_paths(params)}


def initial(blocks: int) -> dict[str, np.ndarray]:
    """nnc's initial parameters (seed 0), flat; every contender starts from them."""
    named = flat(lm_model(blocks).init(seed=0))
    expected = {EMB, POS, NORM_G, NORM_B, HEAD_W, HEAD_B} | {
        p for i in range(blocks) for p in block_paths(i).values()
    }
    assert set(named) == expected, f"nnc's parameter tree changed: {sorted(set(named) ^ expected)}"
    return named


def reference(blocks: int) -> dict:
    """nnc interpreted, one step from the initial parameters, dropout off: the values every
    other contender is checked against (``loss``, flat ``params``)."""
    x, y = data()
    model = lm_model(blocks, 0.0)
    params = model.init(seed=0)
    step = nnc_step(model)
    new, _, loss = step(params, step.opt.init(params), x, y, {}, nnc.key(0))
    return {"loss": float(loss), "params": flat(new)}


def difference(loss, named: dict, ref: dict) -> float:
    """The largest relative difference of the loss and of any updated parameter."""
    assert set(named) == set(ref["params"])
    return max(relative(loss, ref["loss"]), *(relative(named[p], ref["params"][p]) for p in named))


# ----------------------------------------------------------------------------- nnc


def nnc_contender(step, opt_state, blocks: int) -> Contender:
    """``step`` (a ``train_step``, compiled or not) in a loop, a new key each step."""
    x, y = data()
    return keyed_loop(step, lm_model(blocks).init(seed=0), opt_state, x, y)


# ----------------------------------------------------------------------------- numpy by hand


def _norm(x, g, b):
    centred = x - x.mean(axis=-1, keepdims=True)
    inv_std = 1.0 / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + EPS)
    xhat = centred * inv_std
    return xhat * g + b, (xhat, inv_std)


def _norm_back(dy, g, cache):
    xhat, inv_std = cache
    dxhat = dy * g
    dx = inv_std * (
        dxhat - dxhat.mean(axis=-1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True)
    )
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def numpy_lm(blocks: int, rate: float = RATE, seed: int = 0):
    """The model's SGD step written out in numpy, float32 throughout: ``step(params, x, y)
    -> (params, loss)`` on flat parameter dicts. Each step draws its dropout masks (one per
    block) at its start from ``default_rng(seed)``, for the forward and the backward."""
    from scipy.special import erf

    rng = np.random.default_rng(seed)
    keep_scale = np.float32(1.0 / (1.0 - rate)) if rate < 1 else np.float32(0.0)
    scale = np.float32(1.0 / math.sqrt(SIZE))
    bias = np.where(np.tril(np.ones((STEPS, STEPS), bool)), np.float32(0.0), np.float32(MASKED))
    paths = [block_paths(i) for i in range(blocks)]

    def step(p, x, y):
        b, t = x.shape
        n = b * t
        rows = np.arange(n)
        masks = (rng.random((blocks, n, D), dtype=np.float32) >= rate) * keep_scale
        h = (p[EMB][x] + p[POS][:t]).reshape(n, D)
        caches = []
        for i, k in enumerate(paths):
            a, norm1 = _norm(h, p[k["g1"]], p[k["be1"]])
            qkv = (a @ p[k["Wqkv"]] + p[k["bqkv"]]).reshape(b, t, 3, HEADS, SIZE).transpose(2, 0, 3, 1, 4)
            q, kk, v = qkv[0], qkv[1], qkv[2]  # (batch, heads, steps, size) each
            s = (q @ kk.transpose(0, 1, 3, 2)) * scale + bias
            s -= s.max(axis=-1, keepdims=True)
            e = np.exp(s)
            prob = e / e.sum(axis=-1, keepdims=True)
            mixed = (prob @ v).transpose(0, 2, 1, 3).reshape(n, D)
            h = h + (mixed @ p[k["Wout"]] + p[k["bout"]]) * masks[i]
            c, norm2 = _norm(h, p[k["g2"]], p[k["be2"]])
            f = c @ p[k["W1"]] + p[k["b1"]]
            cdf = 0.5 * (1.0 + erf(f * SQRT_HALF))
            act = f * cdf
            h = h + act @ p[k["W2"]] + p[k["b2"]]
            caches.append((a, norm1, q, kk, v, prob, mixed, c, norm2, f, cdf, act))
        u, norm_f = _norm(h, p[NORM_G], p[NORM_B])
        z = u @ p[HEAD_W] + p[HEAD_B]
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        prob = e / e.sum(axis=1, keepdims=True)
        labels = y.reshape(n)
        loss = -np.log(prob[rows, labels]).mean()
        dz = prob
        dz[rows, labels] -= 1.0
        dz /= n
        g = {HEAD_W: u.T @ dz, HEAD_B: dz.sum(axis=0)}
        dh, g[NORM_G], g[NORM_B] = _norm_back(dz @ p[HEAD_W].T, p[NORM_G], norm_f)
        for i in reversed(range(blocks)):
            k = paths[i]
            a, norm1, q, kk, v, prob, mixed, c, norm2, f, cdf, act = caches[i]
            # the feed-forward residual
            g[k["W2"]], g[k["b2"]] = act.T @ dh, dh.sum(axis=0)
            df = (dh @ p[k["W2"]].T) * (cdf + f * np.exp(-0.5 * f * f) * INV_SQRT_2PI)
            g[k["W1"]], g[k["b1"]] = c.T @ df, df.sum(axis=0)
            dx, g[k["g2"]], g[k["be2"]] = _norm_back(df @ p[k["W1"]].T, p[k["g2"]], norm2)
            dh = dh + dx
            # the attention residual
            datt = dh * masks[i]
            g[k["Wout"]], g[k["bout"]] = mixed.T @ datt, datt.sum(axis=0)
            dmixed = (datt @ p[k["Wout"]].T).reshape(b, t, HEADS, SIZE).transpose(0, 2, 1, 3)
            dprob = dmixed @ v.transpose(0, 1, 3, 2)
            dv = prob.transpose(0, 1, 3, 2) @ dmixed
            ds = prob * (dprob - (dprob * prob).sum(axis=-1, keepdims=True)) * scale
            dq, dk = ds @ kk, ds.transpose(0, 1, 3, 2) @ q
            dqkv = np.stack((dq, dk, dv)).transpose(1, 3, 0, 2, 4).reshape(n, 3 * D)
            g[k["Wqkv"]], g[k["bqkv"]] = a.T @ dqkv, dqkv.sum(axis=0)
            dx, g[k["g1"]], g[k["be1"]] = _norm_back(dqkv @ p[k["Wqkv"]].T, p[k["g1"]], norm1)
            dh = dh + dx
        demb = np.zeros_like(p[EMB])
        np.add.at(demb, x.reshape(n), dh)
        g[EMB] = demb
        dpos = np.zeros_like(p[POS])
        dpos[:t] = dh.reshape(b, t, D).sum(axis=0)
        g[POS] = dpos
        return {name: value - LR * g[name] for name, value in p.items()}, loss

    return step


def numpy_contender(blocks: int) -> Contender:
    x, y = data()
    return carrying(numpy_lm(blocks), initial(blocks), x, y)


# ----------------------------------------------------------------------------- PyTorch (child)


def torch_contenders(blocks: int) -> tuple[dict, dict]:
    """PyTorch's training loop and its check against nnc, by name; built in the child."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    x, y = (torch.tensor(a) for a in data())

    def linear(p, w, b):
        layer = torch.nn.Linear(*p[w].shape)
        with torch.no_grad():
            layer.weight.copy_(torch.tensor(p[w]).T)
            layer.bias.copy_(torch.tensor(p[b]))
        return layer

    def norm(p, g, b):
        layer = torch.nn.LayerNorm(D, eps=EPS)
        with torch.no_grad():
            layer.weight.copy_(torch.tensor(p[g]))
            layer.bias.copy_(torch.tensor(p[b]))
        return layer

    def build(rate: float):
        p = initial(blocks)
        emb = torch.nn.Embedding(VOCAB, D)
        with torch.no_grad():
            emb.weight.copy_(torch.tensor(p[EMB]))
        pos = torch.nn.Parameter(torch.tensor(p[POS]))
        layers = []
        for i in range(blocks):
            k = block_paths(i)
            layers.append(
                (
                    norm(p, k["g1"], k["be1"]),
                    linear(p, k["Wqkv"], k["bqkv"]),
                    linear(p, k["Wout"], k["bout"]),
                    norm(p, k["g2"], k["be2"]),
                    linear(p, k["W1"], k["b1"]),
                    linear(p, k["W2"], k["b2"]),
                )
            )
        final, head = norm(p, NORM_G, NORM_B), linear(p, HEAD_W, HEAD_B)
        leaves = [*emb.parameters(), pos, *final.parameters(), *head.parameters()]
        leaves += [t for group in layers for layer in group for t in layer.parameters()]

        def advance():
            b, t = x.shape
            h = emb(x) + pos[:t]
            for norm1, qkv, out, norm2, fc1, fc2 in layers:
                q, k, v = qkv(norm1(h)).view(b, t, 3, HEADS, SIZE).permute(2, 0, 3, 1, 4).unbind(0)
                mixed = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                h = h + F.dropout(out(mixed.transpose(1, 2).reshape(b, t, D)), rate, training=True)
                h = h + fc2(F.gelu(fc1(norm2(h)), approximate="none"))
            return torch_sgd(
                F.cross_entropy(head(final(h)).reshape(b * t, VOCAB), y.reshape(b * t)), leaves, LR
            )

        def named() -> dict[str, np.ndarray]:
            out = {EMB: emb.weight, POS: pos, NORM_G: final.weight, NORM_B: final.bias}
            out |= {HEAD_W: head.weight.T, HEAD_B: head.bias}
            for i, group in enumerate(layers):
                k = block_paths(i)
                norm1, qkv, proj, norm2, fc1, fc2 = group
                out |= {
                    k["g1"]: norm1.weight,
                    k["be1"]: norm1.bias,
                    k["g2"]: norm2.weight,
                    k["be2"]: norm2.bias,
                }
                for layer, w, bias in (
                    (qkv, "Wqkv", "bqkv"),
                    (proj, "Wout", "bout"),
                    (fc1, "W1", "b1"),
                    (fc2, "W2", "b2"),
                ):
                    out |= {k[w]: layer.weight.T, k[bias]: layer.bias}
            return {path: t.detach().numpy().copy() for path, t in out.items()}

        return Contender(advance), named

    def check() -> float:
        ref = reference(blocks)
        contender, named = build(0.0)
        contender.step()
        return difference(contender.last.item(), named(), ref)

    loop = build(RATE)[0]
    checks = {"check": check, "finite": lambda: float(math.isfinite(loop.last.item()))}
    return {"lm": loop}, checks


# ----------------------------------------------------------------------------- JAX (child)


def jax_contenders(blocks: int) -> tuple[dict, dict]:
    """JAX's jitted training step and its check against nnc, by name; built in the child."""
    import jax
    import jax.numpy as jnp

    x, y = (jnp.asarray(a) for a in data())
    paths = [block_paths(i) for i in range(blocks)]
    causal = jnp.asarray(np.tril(np.ones((STEPS, STEPS), bool)))

    def norm(x, g, b):
        centred = x - x.mean(axis=-1, keepdims=True)
        return centred / jnp.sqrt((centred * centred).mean(axis=-1, keepdims=True) + EPS) * g + b

    def loss_fn(p, x, y, key, rate):
        b, t = x.shape
        h = p[EMB][x] + p[POS][:t]
        for i, k in enumerate(paths):
            qkv = norm(h, p[k["g1"]], p[k["be1"]]) @ p[k["Wqkv"]] + p[k["bqkv"]]
            q, kk, v = qkv.reshape(b, t, 3, HEADS, SIZE).transpose(2, 0, 3, 1, 4)
            s = jnp.where(causal, (q @ kk.transpose(0, 1, 3, 2)) / math.sqrt(SIZE), MASKED)
            mixed = (jax.nn.softmax(s, axis=-1) @ v).transpose(0, 2, 1, 3).reshape(b, t, D)
            att = mixed @ p[k["Wout"]] + p[k["bout"]]
            if rate > 0:  # a Python number: fixed at tracing
                drop = jax.random.uniform(jax.random.fold_in(key, i), att.shape, jnp.float32) < rate
                att = jnp.where(drop, 0.0, att * (1.0 / (1.0 - rate)))
            h = h + att
            f = norm(h, p[k["g2"]], p[k["be2"]]) @ p[k["W1"]] + p[k["b1"]]
            h = h + jax.nn.gelu(f, approximate=False) @ p[k["W2"]] + p[k["b2"]]
        z = norm(h, p[NORM_G], p[NORM_B]) @ p[HEAD_W] + p[HEAD_B]
        logp = jax.nn.log_softmax(z, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, y[..., None], axis=-1))

    def make(rate: float):
        @jax.jit
        def step(p, x, y, key, i):
            value, grads = jax.value_and_grad(loss_fn)(p, x, y, jax.random.fold_in(key, i), rate)
            return {name: p[name] - LR * grads[name] for name in p}, value

        return jax_loop(step, {name: jnp.asarray(a) for name, a in initial(blocks).items()}, x, y)

    def check() -> float:
        ref = reference(blocks)
        contender, state = make(0.0)
        contender.step()
        return difference(float(contender.last), {n: np.asarray(a) for n, a in state["p"].items()}, ref)

    loop = make(RATE)[0]
    checks = {"check": check, "finite": lambda: float(math.isfinite(float(loop.last)))}
    return {"lm": loop}, checks


def serve(library: str, blocks: int) -> None:
    """The child's side: modern_step's :func:`serve_steps` with ``library``'s loop."""
    loops, checks = torch_contenders(blocks) if library == "torch" else jax_contenders(blocks)
    serve_steps({name: loop.step for name, loop in loops.items()}, checks)


# ----------------------------------------------------------------------------- report


def figures(blocks: int, rounds: int, number: int, children: dict) -> None:
    x, y = data()
    model = lm_model(blocks)
    step = nnc_step(model)
    compiled = nnc.compile(step)
    params = model.init(seed=0)
    print("nnc.compile: the first call (compiles, or loads from the disk cache) ...", flush=True)
    # checks: compiled against interpreted with dropout on; numpy, torch, jax against nnc with it off
    opt_state, notes, same = first_steps(step, compiled, params, x, y)
    ref = reference(blocks)
    np_params, np_loss = numpy_lm(blocks, rate=0.0)(initial(blocks), x, y)
    checks = [
        f"compiled vs interpreted (rate {RATE}, same key): {same:.1e}",
        f"numpy by hand vs nnc (rate 0): {difference(np_loss, np_params, ref):.1e}",
        *child_checks(children, "check"),
    ]
    print(
        f"check, max relative difference of the loss and every updated parameter: {'; '.join(checks)}",
        flush=True,
    )

    loops = {
        "nnc compiled": nnc_contender(compiled, opt_state, blocks),
        "nnc interpreted": nnc_contender(step, opt_state, blocks),
        "numpy by hand": numpy_contender(blocks),
    }
    samples = time_loops(loops, children, "lm", "finite", rounds, number=number)
    ratios = table(
        f"transformer LM, d {D}, {HEADS} heads, {blocks} block{'s' * (blocks != 1)}, sequence {STEPS}, "
        f"vocabulary {VOCAB}, Dropout({RATE}), cross-entropy, SGD({LR}), batch {BATCH}, float32 "
        f"({rounds} rounds of {number} steps)",
        samples,
        notes + not_installed(children, ("jax", "torch")),
    )
    step_targets(samples, ratios, children)


def main(argv: list[str]) -> None:
    parser = arguments(__doc__, 15, ("torch", "jax"))
    parser.add_argument("--blocks", type=int, default=4, help="the number of transformer blocks (4)")
    args = parser.parse_args(argv)
    if args.timing_child:
        serve(args.timing_child, args.blocks)
        return
    pin_to_one_core()
    start = time.perf_counter()
    with started_children(__file__, ("torch", "jax"), "--blocks", str(args.blocks)) as children:
        figures(args.blocks, args.rounds, max(1, 20 // args.blocks), children)
    print(f"whole run: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    run(main)
