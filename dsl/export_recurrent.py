"""The ONNX form of recurrent models: a stateless wrapper (``zero_state``, ``learned_state``,
``fix_state``) around ``unroll`` or ``unroll_last`` of a cell.

A cell that is ``fcrnn``, ``LSTM`` or ``GRU`` (alone, or in a chain with stateless per-step
layers) becomes ONNX's ``RNN``, ``LSTM`` or ``GRU`` operator, whose equations are nnc's with
the weights re-laid (transposed; LSTM's gates reordered from nnc's i, f, g, o to ONNX's
i, o, f, c; GRU with ``linear_before_reset=0``, which is the original form nnc computes by
default: the reset gate multiplies ``h`` before its map ``Uh``; ``GRU(..., reset="after")``,
PyTorch's form, is ``linear_before_reset=1``). Every other cell (``recurrently``,
``lagged``, nested chains), and every cell in float64 (onnxruntime runs those operators
in float32 only), becomes a ``Scan`` loop whose body is one step of the cell.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .export_graph import At, Scope, cannot_export, children_at, flat, join, onnx_modules, restructure
from .export_layers import INT64_MAX, each, emit, layer, shape, slice_last
from .model import Model
from .types import ArrayType, TupleType, Type, TypeVar, example_shape

NATIVE = ("fcrnn", "LSTM", "GRU")


def _state_leaves(t: Type) -> list:
    if isinstance(t, TupleType):
        return [leaf for item in t.items for leaf in _state_leaves(item)]
    return [t]


def _first(x: Any) -> str:
    return flat(x)[0]


def _initial(s: Scope, m: Model, x: Any, at: At, leaves: list) -> Any:
    """The state for ``m``'s cell, batched like ``x``, from one example's state ``leaves``
    (names of arrays of each leaf's shape), and ``m``'s output."""
    ((inner, inner_at),) = children_at(m, at)
    assert inner.state_type is not None, "a stateless wrapper holds a stateful model"
    name = at.label(m.kind)
    batch = shape(s, _first(x), name, 0, 1)
    state = []
    for leaf, t in zip(leaves, _state_leaves(inner.state_type)):
        full = s.op("Concat", [batch, s.ints(example_shape(t), name)], name, axis=0)
        state.append(s.op("Expand", [leaf, full], name))
    y, _ = stateful(s, inner, x, restructure_state(inner.state_type, state), inner_at)
    return y


def restructure_state(t: Type, names: list) -> Any:
    it = iter(names)

    def build(t: Type) -> Any:
        return tuple(build(i) for i in t.items) if isinstance(t, TupleType) else next(it)

    return build(t)


@layer("zero_state")
def _zero_state(s: Scope, m: Model, x: Any, at: At) -> Any:
    assert m.children[0].state_type is not None, "zero_state holds a stateful model"
    types = _state_leaves(m.children[0].state_type)
    return _initial(s, m, x, at, [s.const(np.zeros(example_shape(t)), at.label(m.kind)) for t in types])


@layer("learned_state")
def _learned_state(s: Scope, m: Model, x: Any, at: At) -> Any:
    return _initial(s, m, x, at, [s.param(join(at.params, n)) for n in m.attr("state_names")])


@layer("fix_state")
def _fix_state(s: Scope, m: Model, x: Any, at: At) -> Any:
    leaves = flat(m.attr("state"))
    return _initial(s, m, x, at, [s.const(v, at.label(m.kind)) for v in leaves])


# ----------------------------------------------------------------------------- stateful sequence models


def stateful(s: Scope, m: Model, x: Any, state: Any, at: At) -> tuple[Any, Any]:
    """A stateful sequence model on ``x`` from ``state``: its output and final state."""
    if m.kind in ("unroll", "unroll_last"):
        ((cell, cell_at),) = children_at(m, at)
        return unrolled(s, cell, x, state, cell_at, last=m.kind == "unroll_last", name=at.label(m.kind))
    if m.kind == "serial":
        return _chain(
            s,
            m,
            x,
            state,
            at,
            lambda c, v, st, ca: stateful(s, c, v, st, ca),
            lambda c, v, ca: emit(s, c, v, ca),
        )
    raise cannot_export(m, f"{m.kind!r} is stateful here, and nnc has no ONNX form for it")


def _chain(s: Scope, m: Model, x: Any, state: Any, at: At, with_state: Any, without: Any) -> tuple[Any, Any]:
    """A stateful chain as nnc runs it: each stateful member takes its part of the state."""
    members = children_at(m, at)
    stateful_count = sum(c.state_type is not None for c, _ in members)
    parts = [state] if stateful_count == 1 else list(state)
    finals: list = []
    for child, child_at in members:
        if child.state_type is None:
            x = without(child, x, child_at)
        else:
            x, final = with_state(child, x, parts[len(finals)], child_at)
            finals.append(final)
    return x, finals[0] if len(finals) == 1 else tuple(finals)


def _native(s: Scope, cell: Model) -> bool:
    """Whether ``cell`` runs as ONNX recurrent operators: built-in cells, chained with
    stateless per-step layers, in float32."""
    if not s.native_cells:
        return False
    if cell.kind in NATIVE:
        return True
    return cell.kind == "serial" and all(
        c.kind in NATIVE if c.state_type is not None else isinstance(c.in_type, (ArrayType, TypeVar))
        for c in cell.children
    )


def unrolled(s: Scope, cell: Model, xs: str, state: Any, at: At, last: bool, name: str) -> tuple[Any, Any]:
    """``cell`` along the sequence ``xs`` (batch, time, ...): the outputs (or the last one)."""
    if not _native(s, cell):
        ys, final = _scan(s, cell, xs, state, at, name)
        return (
            s.op("Gather", [ys, s.const(np.asarray(-1), name, np.int64)], name, axis=1) if last else ys
        ), final
    members = children_at(cell, at) if cell.kind == "serial" else [(cell, at)]
    end = max(i for i, (c, _) in enumerate(members) if c.state_type is not None) + 1
    parts = [state] if sum(c.state_type is not None for c, _ in members) == 1 else list(state)
    finals: list = []
    h = xs
    for child, child_at in members[:end]:
        if child.state_type is None:
            h = each(s, child, h, child_at, name)
        else:
            h, final = _NATIVE_OPS[child.kind](s, child, h, parts[len(finals)], child_at)
            finals.append(final)
    if last:  # the layers after the last cell see the last step only
        h = s.op("Gather", [h, s.const(np.asarray(-1), name, np.int64)], name, axis=1)
    for child, child_at in members[end:]:
        h = emit(s, child, h, child_at) if last else each(s, child, h, child_at, name)
    return h, finals[0] if len(finals) == 1 else tuple(finals)


# ----------------------------------------------------------------------------- ONNX's RNN, LSTM and GRU


def _weights(at: At, reorder: list[int], gates: int) -> tuple:
    """Derivations of ONNX's W, R and B (one direction) from nnc's ``Wx``, ``Wh`` and ``b``."""

    def blocks(a: np.ndarray) -> np.ndarray:
        n = a.shape[0] // gates
        return np.concatenate([a[i * n : (i + 1) * n] for i in reorder])

    p = at.params
    return (
        (join(p, "onnx_W"), lambda v: blocks(np.asarray(v[join(p, "Wx")]).T)[None]),
        (join(p, "onnx_R"), lambda v: blocks(np.asarray(v[join(p, "Wh")]).T)[None]),
        (
            join(p, "onnx_B"),
            lambda v: np.concatenate(
                [blocks(np.asarray(v[join(p, "b")])), np.zeros(np.shape(v[join(p, "b")]))]
            )[None],
        ),
    )


def _run(s: Scope, op: str, m: Model, xs: str, states: list, weights: list, at: At, **attrs: Any) -> tuple:
    """ONNX's ``op`` on ``xs`` (batch, time, in) from the batch-first ``states``: the outputs
    (batch, time, hidden) and the final states, batch first."""
    name = at.label(m.kind)
    time_major = s.op("Transpose", [xs], name, perm=[1, 0, 2])
    initial = [s.op("Unsqueeze", [h, s.ints([0], name)], name) for h in states]
    ws = [s.param(p, d) for p, d in weights]
    outs = s.op(op, [time_major, *ws, "", *initial], name, outputs=1 + len(states), **attrs)
    ys = s.op("Transpose", [s.op("Squeeze", [outs[0], s.ints([1], name)], name)], name, perm=[1, 0, 2])
    return ys, [s.op("Squeeze", [o, s.ints([0], name)], name) for o in outs[1:]]


def _rnn(s: Scope, m: Model, xs: str, h: str, at: At) -> tuple:
    activation = {"tanh": "Tanh", "logistic": "Sigmoid"}[m.attr("activation")]
    n = m.param_specs[1][1].shape[0]
    ys, (final,) = _run(
        s, "RNN", m, xs, [h], list(_weights(at, [0], 1)), at, hidden_size=int(n), activations=[activation]
    )
    return ys, final


def _lstm(s: Scope, m: Model, xs: str, state: Any, at: At) -> tuple:
    n = m.attr("hidden")
    # nnc's gate blocks are i, f, g, o; ONNX's are i, o, f, c (c is nnc's candidate g)
    ys, (h, c) = _run(
        s, "LSTM", m, xs, list(state), list(_weights(at, [0, 3, 1, 2], 4)), at, hidden_size=int(n)
    )
    return ys, (h, c)


def _gru(s: Scope, m: Model, xs: str, h: str, at: At) -> tuple:
    n = m.attr("hidden")
    p = at.params
    w, r, b = _weights(at, [0, 1, 2], 3)
    if m.attr("reset", "before") == "after":
        # PyTorch's form, r * (h Un + bhn): ONNX's linear_before_reset=1, with Wh as R and bhn
        # as the candidate's part of R's bias
        def bias(v: dict) -> np.ndarray:
            recurrent = np.concatenate([np.zeros(2 * n), np.asarray(v[join(p, "bh")])])
            return np.concatenate([np.asarray(v[join(p, "b")]), recurrent])[None]

        b = (join(p, "onnx_B"), bias)
        ys, (final,) = _run(s, "GRU", m, xs, [h], [w, r, b], at, hidden_size=int(n), linear_before_reset=1)
        return ys, final
    # R stacks the gate maps of h (nnc's Wh, z then r) and the candidate's map of r * h (Uh)
    r = (
        join(p, "onnx_R"),
        lambda v: np.concatenate([np.asarray(v[join(p, "Wh")]).T, np.asarray(v[join(p, "Uh")]).T])[None],
    )
    ys, (final,) = _run(s, "GRU", m, xs, [h], [w, r, b], at, hidden_size=int(n), linear_before_reset=0)
    return ys, final


_NATIVE_OPS = {"fcrnn": _rnn, "LSTM": _lstm, "GRU": _gru}


# ----------------------------------------------------------------------------- Scan: one step of any cell


def _scan(s: Scope, cell: Model, xs: str, state: Any, at: At, name: str) -> tuple[str, Any]:
    onnx, helper = onnx_modules()
    body = Scope(s.export, "body", s)
    leaves = flat(state)
    formal = [body.fresh(f"{name}/state") for _ in leaves]
    x_t = body.fresh(f"{name}/x_t")
    y, new = step(body, cell, x_t, restructure(state, formal), at)
    outs = body.distinct(flat(new) + [y], formal + [x_t], name)
    elem = helper.np_dtype_to_tensor_dtype(s.dtype)
    graph = helper.make_graph(
        body.nodes,
        f"{name}/step",
        [helper.make_tensor_value_info(n, elem, None) for n in formal]
        + [helper.make_tensor_value_info(x_t, elem, None)],
        [helper.make_tensor_value_info(o, elem, None) for o in outs],
    )
    results = s.op(
        "Scan",
        leaves + [xs],
        name,
        outputs=len(outs),
        body=graph,
        num_scan_inputs=1,
        scan_input_axes=[1],
        scan_output_axes=[1],
    )
    return results[-1], restructure(state, results[:-1])


def step(s: Scope, cell: Model, x: str, state: Any, at: At) -> tuple[str, Any]:
    """One step of ``cell``: its output and new state."""
    fn = _STEPS.get(cell.kind)
    if fn is None:
        raise cannot_export(cell, f"nnc has no ONNX form for the recurrent cell {cell.kind!r}")
    return fn(s, cell, x, state, at)


def _dense(s: Scope, x: str, at: At, name: str) -> str:
    p = at.params
    return s.op("Add", [s.op("MatMul", [x, s.param(join(p, "Wx"))], name), s.param(join(p, "b"))], name)


def _fcrnn_step(s: Scope, m: Model, x: str, h: str, at: At) -> tuple:
    name = at.label(m.kind)
    z = s.op("Add", [_dense(s, x, at, name), s.op("MatMul", [h, s.param(join(at.params, "Wh"))], name)], name)
    h = s.op({"tanh": "Tanh", "logistic": "Sigmoid"}[m.attr("activation")], [z], name)
    return h, h


def _lstm_step(s: Scope, m: Model, x: str, state: Any, at: At) -> tuple:
    name, n = at.label(m.kind), m.attr("hidden")
    h, c = state
    z = s.op("Add", [_dense(s, x, at, name), s.op("MatMul", [h, s.param(join(at.params, "Wh"))], name)], name)
    i, f, g, o = (slice_last(s, z, k * n, (k + 1) * n, name) for k in range(4))
    i, f, o = (s.op("Sigmoid", [v], name) for v in (i, f, o))
    g = s.op("Tanh", [g], name)
    c = s.op("Add", [s.op("Mul", [f, c], name), s.op("Mul", [i, g], name)], name)
    h = s.op("Mul", [o, s.op("Tanh", [c], name)], name)
    return h, (h, c)


def _gru_step(s: Scope, m: Model, x: str, h: str, at: At) -> tuple:
    name, n, p = at.label(m.kind), m.attr("hidden"), at.params
    zx = _dense(s, x, at, name)
    zh = s.op("MatMul", [h, s.param(join(p, "Wh"))], name)
    z = s.op(
        "Sigmoid", [s.op("Add", [slice_last(s, zx, 0, n, name), slice_last(s, zh, 0, n, name)], name)], name
    )
    r = s.op(
        "Sigmoid",
        [s.op("Add", [slice_last(s, zx, n, 2 * n, name), slice_last(s, zh, n, 2 * n, name)], name)],
        name,
    )
    if m.attr("reset", "before") == "after":  # r * (h Un + bhn), PyTorch's form
        recurrent = s.op("Add", [slice_last(s, zh, 2 * n, 3 * n, name), s.param(join(p, "bh"))], name)
        reset = s.op("Mul", [r, recurrent], name)
    else:  # (r * h) Un, the original form
        reset = s.op("MatMul", [s.op("Mul", [r, h], name), s.param(join(p, "Uh"))], name)
    candidate = s.op("Tanh", [s.op("Add", [slice_last(s, zx, 2 * n, 3 * n, name), reset], name)], name)
    keep = s.op("Mul", [z, h], name)
    new = s.op("Mul", [s.op("Sub", [s.const(1.0, name), z], name), candidate], name)
    h = s.op("Add", [keep, new], name)
    return h, h


def _serial_step(s: Scope, m: Model, x: str, state: Any, at: At) -> tuple:
    return _chain(
        s, m, x, state, at, lambda c, v, st, ca: step(s, c, v, st, ca), lambda c, v, ca: emit(s, c, v, ca)
    )


def _recurrently_step(s: Scope, m: Model, x: str, state: Any, at: At) -> tuple:
    ((inner, inner_at),) = children_at(m, at)
    y = emit(s, inner, (x, state), inner_at)
    return y, y


def _lagged_step(s: Scope, m: Model, x: str, state: Any, at: At) -> tuple:
    ((inner, inner_at),) = children_at(m, at)
    name = at.label(m.kind)
    window = s.op("Concat", [state, x], name, axis=-1)
    y = emit(s, inner, window, inner_at)
    return y, slice_last(s, window, m.attr("width"), INT64_MAX, name)


_STEPS = {
    "fcrnn": _fcrnn_step,
    "LSTM": _lstm_step,
    "GRU": _gru_step,
    "serial": _serial_step,
    "recurrently": _recurrently_step,
    "lagged": _lagged_step,
}
