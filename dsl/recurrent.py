"""Recurrent models: stateful cells and the combinators that unroll, seed and feed them back.

A *cell* is a pure function ``(params, x, state) -> (y, new_state)``; its signature shows
the state: ``fcrnn(1, 30)`` is ``Vec[1] -> Vec[30], state Vec[30]``. Cells compose with
``>>`` with each other and with stateless models (a stateless model passes the state
through; the states of several cells pair up into a tuple).

Combinators turn cells into sequence models. Sequences are ``Seq[T]``: one example of
``Seq[Vec[n]]`` is an array of shape ``(time, n)``, a batch is ``(batch, time, n)``.

- ``unroll(cell)``: ``Seq[a] -> Seq[b]``, still stateful (state in, final state out);
- ``unroll_last(cell)``: ``Seq[a] -> b``, the output of the last step;
- ``zero_state(m)``, ``learned_state(m)``, ``fix_state(s0, m)``: a stateful model made
  stateless by starting from zeros, from a trained parameter, or from a given value;
- ``recurrently(f)``: a stateless ``f: (a, b) -> b`` as a cell ``a -> b, state b``;
- ``lagged(n, f)``: a cell that feeds ``f`` the last ``n`` inputs (AR(n) models);
- ``prime`` and ``feedback``: run a cell over a sequence, then generate from it.

Unrolling is one ``scan`` primitive, whatever the length, and its gradient
(backpropagation through time) is a reverse scan using memory linear in the length.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from nnc.backend.activations import logistic, relu, tanh
from nnc.backend.broadcasting import broadcast_to, dtype_of, shape_of
from nnc.backend.elementwise import add, mul, sub
from nnc.backend.errors import ShapeError, TypeMismatch
from nnc.backend.linalg import matmul
from nnc.backend.scan import scan
from nnc.backend.structural import concat, getitem, transpose
from nnc.backend.tree import tree_flatten, tree_unflatten

from .combinators import not_a_model_argument
from .layers import check_options
from .model import Model, ParamSpec, child_params, created_at_note
from .show import describe, describer, dims
from .source import UserLocation, user_location
from .types import (
    ArrayType,
    Dim,
    Mismatch,
    SeqType,
    Subst,
    TupleType,
    Type,
    TypeVar,
    Vec,
    array_type,
    bad_argument,
    dim_prod,
    example_shape,
    is_concrete,
    resolve,
    resolve_dim,
    show,
    size_argument,
    unify,
)

_ACTIVATION_FUNCTIONS = {"tanh": tanh, "logistic": logistic, "relu": relu}


def _batched(x: Any, t: Type) -> bool:
    """Whether ``x`` carries a leading batch axis beyond one example of type ``t``."""
    if isinstance(t, TupleType):
        return _batched(x[0], t.items[0])
    if isinstance(t, TypeVar):
        raise ShapeError(
            f"cannot tell a batch from one example for type {t!r}; declare the input type with nnc.Input"
        )
    return len(shape_of(x)) == t.rank + 1


def _require_model(name: str, model: Any) -> None:
    if not isinstance(model, Model):
        raise not_a_model_argument(name, user_location(3), model)


def _require_cell(name: str, model: Model) -> None:
    _require_model(name, model)
    if model.state_type is None:
        raise TypeMismatch(
            f"{name} needs a stateful model (a recurrent cell), but {model!r}{created_at_note(model)} "
            f"has no state ({model.signature}).\n  hint: build cells with fcrnn, LSTM, GRU, "
            "recurrently or lagged"
        )


def _require_stateless(name: str, model: Model) -> None:
    _require_model(name, model)
    if model.state_type is not None:
        raise TypeMismatch(
            f"{name} takes a stateless model, but {model!r}{created_at_note(model)} has "
            f"state {show([model.state_type])[0]}"
        )


def _type_leaves(t: Type) -> list:
    if isinstance(t, TupleType):
        return [leaf for item in t.items for leaf in _type_leaves(item)]
    return [t]


def _type_unflatten(t: Type, leaves: list) -> Any:
    """Values for the leaves of ``t``, nested in tuples the way ``t`` is."""
    it = iter(leaves)

    def build(t):
        return tuple(build(i) for i in t.items) if isinstance(t, TupleType) else next(it)

    return build(t)


def _cell_state(model: Model) -> Type:
    """The state type of a cell (one that :func:`_require_cell` has let through)."""
    assert model.state_type is not None, f"{model!r} is not a cell"
    return model.state_type


def _concrete_state_shapes(model: Model, name: str) -> list[tuple[int, ...]]:
    out = []
    for t in _type_leaves(_cell_state(model)):
        if not isinstance(t, ArrayType) or not is_concrete(t):
            raise TypeMismatch(
                f"{name}: the state {show([model.state_type])[0]} of {model!r}"
                f"{created_at_note(model)} has unknown sizes; give the cell's sizes "
                "or declare the input with nnc.Input"
            )
        out.append(example_shape(t))
    return out


def _state_tree(model: Model, leaves: list) -> Any:
    return _type_unflatten(_cell_state(model), leaves)


# ----------------------------------------------------------------------------- cells


def _dense(x, p, prefix=""):
    return add(matmul(x, p[prefix + "Wx"]), p[prefix + "b"])


def _fcrnn_forward(model: Model, params: Any, x: Any, h: Any) -> tuple:
    act = _ACTIVATION_FUNCTIONS[model.attr("activation")]
    h = act(add(_dense(x, params), matmul(h, params["Wh"])))
    return h, h


def _cell_sizes(kind: str, n_in: Any, n_hidden: Any, name: Any, created_at: UserLocation | None) -> tuple:
    """The sizes of a cell, checked where the user wrote it."""
    n_in = size_argument(
        n_in,
        kind,
        "n_in",
        created_at,
        optional=True,
        hint=f"n_in is the size of one step's input; {kind}(None, n) infers it",
    )
    n_hidden = size_argument(
        n_hidden, kind, "n_hidden", created_at, hint="n_hidden is the size of the state (and of the output)"
    )
    check_options(kind, created_at, True, name)
    return n_in, n_hidden


def _cell(
    kind: str,
    n_in: int | None,
    n_hidden: int,
    gates: int,
    forward: Callable,
    state: Type,
    attrs: tuple,
    name: str | None,
    created_at: UserLocation | None,
    extra: tuple = (),
) -> Model:
    d_in = Dim() if n_in is None else n_in
    width = gates * n_hidden
    specs = (
        ("Wx", ParamSpec((d_in, width), "glorot_uniform", fan=(d_in, width))),
        ("Wh", ParamSpec((n_hidden, width), "glorot_uniform", fan=(n_hidden, width))),
        ("b", ParamSpec((width,), "zeros")),
    ) + extra
    return Model(
        kind,
        Vec[d_in],
        Vec[n_hidden],
        forward,
        param_specs=specs,
        attrs=attrs,
        name=name,
        created_at=created_at,
        state_type=state,
    )


def fcrnn(n_in: int | None, n_hidden: int, activation: str = "tanh", *, name: str | None = None) -> Model:
    """A fully connected (Elman) recurrent cell: ``h' = act(x @ Wx + h @ Wh + b)``, output ``h'``.

    ``activation`` is ``"tanh"`` (default) or ``"logistic"``. Type:
    ``Vec[n_in] -> Vec[n_hidden], state Vec[n_hidden]``.

    >>> fcrnn(1, 30).signature
    Vec[1] -> Vec[30], state Vec[30]
    """
    created_at = user_location(2)
    n_in, n_hidden = _cell_sizes("fcrnn", n_in, n_hidden, name, created_at)
    if activation not in ("tanh", "logistic"):
        raise bad_argument("fcrnn", created_at, "activation", "'tanh' or 'logistic'", activation)
    return _cell(
        "fcrnn",
        n_in,
        n_hidden,
        1,
        _fcrnn_forward,
        Vec[n_hidden],
        (("activation", activation),),
        name,
        created_at,
    )


def _lstm_forward(model: Model, params: Any, x: Any, state: Any) -> tuple:
    h, c = state
    n = model.attr("hidden")
    z = add(_dense(x, params), matmul(h, params["Wh"]))
    i = logistic(z[..., 0:n])
    f = logistic(z[..., n : 2 * n])
    g = tanh(z[..., 2 * n : 3 * n])
    o = logistic(z[..., 3 * n : 4 * n])
    c = add(mul(f, c), mul(i, g))
    h = mul(o, tanh(c))
    return h, (h, c)


def _forget_bias(n_hidden: int) -> Callable:
    def init(rng, shape):
        b = np.zeros(shape)
        b[n_hidden : 2 * n_hidden] = 1.0  # Gers et al.: start by remembering
        return b

    return init


def LSTM(n_in: int | None, n_hidden: int, *, name: str | None = None) -> Model:
    """Long short-term memory (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).

    With ``z = x @ Wx + h @ Wh + b`` split into four: input gate ``i = σ(z_i)``, forget gate
    ``f = σ(z_f)``, candidate ``g = tanh(z_g)``, output gate ``o = σ(z_o)``;
    ``c' = f * c + i * g``, ``h' = o * tanh(c')``; output ``h'``. The forget bias starts at 1.
    Type: ``Vec[n_in] -> Vec[n_hidden], state (Vec[n_hidden], Vec[n_hidden])`` for ``(h, c)``.

    >>> LSTM(3, 8).signature
    Vec[3] -> Vec[8], state (Vec[8], Vec[8])
    """
    created_at = user_location(2)
    n_in, n_hidden = _cell_sizes("LSTM", n_in, n_hidden, name, created_at)
    model = _cell(
        "LSTM",
        n_in,
        n_hidden,
        4,
        _lstm_forward,
        TupleType((Vec[n_hidden], Vec[n_hidden])),
        (("hidden", n_hidden),),
        name,
        created_at,
    )
    specs = tuple(
        (k, replace(p, init=_forget_bias(n_hidden)) if k == "b" else p) for k, p in model.param_specs
    )
    return replace(model, param_specs=specs)


def _gru_forward(model: Model, params: Any, x: Any, h: Any) -> tuple:
    n = model.attr("hidden")
    zx = _dense(x, params)
    zh = matmul(h, params["Wh"])
    z = logistic(add(zx[..., 0:n], zh[..., 0:n]))
    r = logistic(add(zx[..., n : 2 * n], zh[..., n : 2 * n]))
    candidate = tanh(add(zx[..., 2 * n : 3 * n], matmul(mul(r, h), params["Uh"])))
    h = add(mul(z, h), mul(sub(1.0, z), candidate))
    return h, h


def _gru_reset_after_forward(model: Model, params: Any, x: Any, h: Any) -> tuple:
    n = model.attr("hidden")
    zx = _dense(x, params)
    zh = matmul(h, params["Wh"])
    z = logistic(add(zx[..., 0:n], zh[..., 0:n]))
    r = logistic(add(zx[..., n : 2 * n], zh[..., n : 2 * n]))
    candidate = tanh(add(zx[..., 2 * n : 3 * n], mul(r, add(zh[..., 2 * n : 3 * n], params["bh"]))))
    h = add(mul(z, h), mul(sub(1.0, z), candidate))
    return h, h


def GRU(n_in: int | None, n_hidden: int, *, reset: str = "before", name: str | None = None) -> Model:
    """Gated recurrent unit (Cho et al. 2014), in its original form, or PyTorch's with ``reset="after"``.

    Update gate ``z = σ(x Wz + h Uz + bz)``, reset gate ``r = σ(x Wr + h Ur + br)``,
    candidate ``h~ = tanh(x Wn + (r * h) Un + bn)``, ``h' = z * h + (1 - z) * h~``; output ``h'``.
    ``Wx`` and ``b`` hold the three input maps side by side (z, r, candidate), ``Wh`` the
    two gate maps of ``h`` (z, r), and ``Uh`` the candidate's map of ``r * h``.
    Type: ``Vec[n_in] -> Vec[n_hidden], state Vec[n_hidden]``.

    ``reset="after"`` applies the reset gate after the recurrent map, as ``torch.nn.GRU``
    (and cuDNN) do: ``h~ = tanh(x Wn + bn + r * (h Un + bhn))``. Then ``Wh`` holds all three
    maps of ``h`` (z, r, candidate), and ``bh`` the candidate's recurrent bias ``bhn``, which
    sits inside the product with ``r`` and so cannot be folded into ``b``; there is no ``Uh``.
    The two forms compute different functions; ``nnc.load_torch`` loads PyTorch's weights
    into the second.

    >>> GRU(2, 5).signature
    Vec[2] -> Vec[5], state Vec[5]
    >>> sorted(GRU(2, 5, reset="after").init(seed=0))
    ['Wh', 'Wx', 'b', 'bh']
    """
    created_at = user_location(2)
    n_in, n_hidden = _cell_sizes("GRU", n_in, n_hidden, name, created_at)
    if reset not in ("before", "after"):
        raise bad_argument("GRU", created_at, "reset", "'before' (Cho et al.) or 'after' (PyTorch's)", reset)
    if reset == "after":
        # attrs carry reset only here, so that the default GRU's checkpoints record what they always did
        return _cell(
            "GRU",
            n_in,
            n_hidden,
            3,
            _gru_reset_after_forward,
            Vec[n_hidden],
            (("hidden", n_hidden), ("reset", "after")),
            name,
            created_at,
            (("bh", ParamSpec((n_hidden,), "zeros")),),
        )
    extra = (("Uh", ParamSpec((n_hidden, n_hidden), "glorot_uniform", fan=(n_hidden, n_hidden))),)
    model = _cell(
        "GRU",
        n_in,
        n_hidden,
        3,
        _gru_forward,
        Vec[n_hidden],
        (("hidden", n_hidden),),
        name,
        created_at,
        extra,
    )
    # the recurrent gate map needs only the two gate blocks
    specs = tuple(
        (k, replace(p, shape=(n_hidden, 2 * n_hidden), fan=(n_hidden, 2 * n_hidden))) if k == "Wh" else (k, p)
        for k, p in model.param_specs
    )
    return replace(model, param_specs=specs)


@describer("fcrnn")
def _describe_fcrnn(model: Model) -> str:
    n_in, n_h = dims(model.param_specs[0][1].shape[0], model.param_specs[1][1].shape[0])
    act = model.attr("activation")
    return f"fcrnn({n_in} -> {n_h}" + ("" if act == "tanh" else f", {act}") + ")"


@describer("LSTM")
def _describe_lstm(model: Model) -> str:
    n_in, n_h = dims(model.param_specs[0][1].shape[0], model.attr("hidden"))
    return f"LSTM({n_in} -> {n_h})"


@describer("GRU")
def _describe_gru(model: Model) -> str:
    n_in, n_h = dims(model.param_specs[0][1].shape[0], model.attr("hidden"))
    return f"GRU({n_in} -> {n_h}" + (", reset='after')" if model.attr("reset") == "after" else ")")


# ----------------------------------------------------------------------------- unrolling

# per cell: its scan step for each (parameter structure, state structure)
_STEPS: weakref.WeakKeyDictionary[Model, dict[tuple, Callable]] = weakref.WeakKeyDictionary()


def _step_of(cell: Model, params_def: Any, state_def: Any) -> Callable:
    """The scan step of ``cell``: one function object per cell, so its traced body is reused."""
    steps = _STEPS.setdefault(cell, {})
    key = (params_def, state_def)
    if key not in steps:

        def step(consts, carry, xs):
            y, new = cell.forward(
                cell, tree_unflatten(params_def, consts), xs[0], tree_unflatten(state_def, carry)
            )
            return tree_flatten(new)[0], [y]

        steps[key] = step
    return steps[key]


def _time_major(x: Any, batched: bool) -> Any:
    if not batched:
        return x
    n = len(shape_of(x))
    return transpose(x, (1, 0) + tuple(range(2, n)))


def _run_unrolled(model: Model, params: Any, xs: Any, state: Any) -> tuple:
    (cell,) = model.children
    batched = _batched(xs, model.in_type)
    _require_steps(model, shape_of(xs), batched)
    p_leaves, p_def = tree_flatten(child_params(model, params)[0])
    s_leaves, s_def = tree_flatten(state)
    final, (ys,) = scan(_step_of(cell, p_def, s_def), p_leaves, s_leaves, [_time_major(xs, batched)])
    return ys, tree_unflatten(s_def, final), batched


def _require_steps(model: Model, shape: tuple, batched: bool) -> None:
    """A sequence of 0 steps has no last output and no step to run: a ShapeError naming the
    layer (its shape as the user gave it, batch first), not an index error deep inside."""
    if shape[1 if batched else 0] == 0:
        raise ShapeError(
            f"{model!r}{created_at_note(model)} got a sequence of 0 steps (input of shape {tuple(shape)}, "
            f"{'(batch, time, ...)' if batched else '(time, ...)'}); it needs at least one step\n"
            "  hint: leave empty sequences out of the data, or pad them to at least one step"
        )


def _unroll_forward(model: Model, params: Any, xs: Any, state: Any) -> tuple:
    ys, final, batched = _run_unrolled(model, params, xs, state)
    return _time_major(ys, batched), final


def _unroll_last_forward(model: Model, params: Any, xs: Any, state: Any) -> tuple:
    ys, final, _ = _run_unrolled(model, params, xs, state)
    return getitem(ys, -1), final


def _sequence_items(cell: Model, name: str) -> tuple[Type, Type]:
    for t in (cell.in_type, cell.out_type):
        if not isinstance(t, (ArrayType, TypeVar)):
            raise TypeMismatch(
                f"{name}: sequences of {show([t])[0]} are not supported; "
                f"{cell!r}{created_at_note(cell)} must map arrays to arrays"
            )
    return cell.in_type, cell.out_type


def unroll(cell: Model) -> Model:
    """Run a cell along a sequence: ``Seq[a] -> Seq[b]``, with the cell's state in and final state out.

    >>> from nnc import Linear
    >>> unroll(fcrnn(1, 8) >> Linear(8, 1)).signature
    Seq[Vec[1]] -> Seq[Vec[1]], state Vec[8]
    """
    _require_cell("unroll", cell)
    a, b = _sequence_items(cell, "unroll")
    return Model(
        "unroll",
        SeqType(a),
        SeqType(b),
        _unroll_forward,
        children=(cell,),
        attrs=(("transparent", True),),
        created_at=user_location(2),
        state_type=cell.state_type,
    )


def unroll_last(cell: Model) -> Model:
    """Run a cell along a sequence and keep the last output: ``Seq[a] -> b``, stateful.

    >>> from nnc import Linear
    >>> zero_state(unroll_last(fcrnn(1, 30) >> Linear(30, 1))).signature
    Seq[Vec[1]] -> Vec[1]
    """
    _require_cell("unroll_last", cell)
    a, b = _sequence_items(cell, "unroll_last")
    return Model(
        "unroll_last",
        SeqType(a),
        b,
        _unroll_last_forward,
        children=(cell,),
        attrs=(("transparent", True),),
        created_at=user_location(2),
        state_type=cell.state_type,
    )


# ----------------------------------------------------------------------------- initial states


def _with_initial(model: Model, params: Any, x: Any, make: Callable) -> Any:
    (inner,) = model.children
    batch = shape_of(_first(x))[0] if _batched(x, model.in_type) else None
    state = make(params, batch)
    y, _ = inner.forward(inner, child_params(model, params)[0], x, state)
    return y


def _first(x: Any) -> Any:
    return x[0] if isinstance(x, tuple) else x


def _zeros_for(model: Model, dtype: Any, batch: int | None) -> Any:
    shapes = _concrete_state_shapes(model, "zero_state")
    lead = () if batch is None else (batch,)
    return _state_tree(model, [np.zeros(lead + s, dtype) for s in shapes])


def _dtype_from(params: Any, x: Any) -> Any:
    for leaf in tree_flatten(params)[0] + tree_flatten(x)[0]:
        if np.dtype(dtype_of(leaf)).kind == "f":
            return dtype_of(leaf)
    return np.float32


def _zero_state_forward(model: Model, params: Any, x: Any) -> Any:
    (inner,) = model.children
    dtype = _dtype_from(params, x)
    return _with_initial(model, params, x, lambda p, b: _zeros_for(inner, dtype, b))


def zero_state(model: Model) -> Model:
    """A stateful model made stateless by starting every run from a zero state.

    >>> import numpy as np
    >>> from nnc import Linear
    >>> model = zero_state(unroll_last(fcrnn(1, 4) >> Linear(4, 1)))
    >>> model(model.init(seed=0), np.zeros((3, 10, 1))).shape   # (batch, time, features)
    (3, 1)
    """
    _require_cell("zero_state", model)
    _concrete_state_shapes(model, "zero_state")
    return Model(
        "zero_state",
        model.in_type,
        model.out_type,
        _zero_state_forward,
        children=(model,),
        attrs=(("transparent", True),),
        created_at=user_location(2),
    )


def _broadcast_state(value: Any, batch: int | None) -> Any:
    if batch is None:
        return value
    return broadcast_to(value, (batch,) + tuple(shape_of(value)))


def _learned_state_forward(model: Model, params: Any, x: Any) -> Any:
    (inner,) = model.children
    names = model.attr("state_names")
    return _with_initial(
        model, params, x, lambda p, b: _state_tree(inner, [_broadcast_state(p[n], b) for n in names])
    )


def learned_state(model: Model) -> Model:
    """A stateful model made stateless by a trained initial state (a parameter ``initial_state``).

    >>> from nnc import Linear
    >>> sorted((learned_state(unroll(fcrnn(1, 4))).init(seed=0)))
    ['Wh', 'Wx', 'b', 'initial_state']
    """
    _require_cell("learned_state", model)
    shapes = _concrete_state_shapes(model, "learned_state")
    names = ["initial_state"] if len(shapes) == 1 else [f"initial_state_{i}" for i in range(len(shapes))]
    specs = tuple((n, ParamSpec(s, "zeros")) for n, s in zip(names, shapes))
    return Model(
        "learned_state",
        model.in_type,
        model.out_type,
        _learned_state_forward,
        children=(model,),
        param_specs=specs,
        attrs=(("transparent", True), ("state_names", tuple(names))),
        created_at=user_location(2),
    )


def _fix_state_forward(model: Model, params: Any, x: Any) -> Any:
    value = model.attr("state")
    return _with_initial(
        model,
        params,
        x,
        lambda p, b: tree_unflatten(
            tree_flatten(value)[1], [_broadcast_state(v, b) for v in tree_flatten(value)[0]]
        ),
    )


def fix_state(state: Any, model: Model) -> Model:
    """A stateful model made stateless by always starting from the given ``state`` (one example's state).

    >>> import numpy as np
    >>> fix_state(np.ones(4), unroll_last(fcrnn(2, 4))).signature
    Seq[Vec[2]] -> Vec[4]
    """
    _require_cell("fix_state", model)
    shapes = _concrete_state_shapes(model, "fix_state")
    leaves = [np.asarray(v) for v in (state if isinstance(state, tuple) else (state,))]
    got = [v.shape for v in leaves]
    if got != shapes:
        raise TypeMismatch(
            f"fix_state at {user_location(2)}: the state of {model!r}{created_at_note(model)} is "
            f"{show([model.state_type])[0]} (shapes {shapes}), got shapes {got}"
        )
    value = tuple(leaves) if isinstance(state, tuple) else leaves[0]
    return Model(
        "fix_state",
        model.in_type,
        model.out_type,
        _fix_state_forward,
        children=(model,),
        attrs=(("transparent", True), ("state", value)),
        created_at=user_location(2),
    )


# ----------------------------------------------------------------------------- building cells


def _recurrently_forward(model: Model, params: Any, x: Any, state: Any) -> tuple:
    (inner,) = model.children
    y = inner.forward(inner, child_params(model, params)[0], (x, state))
    return y, y


def recurrently(model: Model) -> Model:
    """A stateless ``model: (a, b) -> b`` as a cell ``a -> b, state b``: its output is the new state.

    >>> from nnc import Input, Linear, Vec, concat, tanh
    >>> cell = recurrently(concat >> Linear(None, 4) >> tanh)
    >>> (Input(Vec[3]) >> cell).signature
    Vec[3] -> Vec[4], state Vec[4]
    """
    _require_stateless("recurrently", model)
    created_at = user_location(2)
    model = model.freshen()
    a, b = TypeVar("a"), TypeVar("b")
    if model.refine is not None:
        model = model.refine(model, TupleType((a, b)))
    s: Subst = {}
    try:
        unify(model.in_type, TupleType((a, b)), s)
        unify(resolve(b, s), model.out_type, s)
    except Mismatch as err:
        i, o = show([model.in_type, model.out_type])
        raise TypeMismatch(
            f"recurrently at {created_at or 'unknown place'}: the model must map (input, state) to a new "
            f"state of the same type, but\n  {model!r}{created_at_note(model)} maps {i} to {o}\n  {err}"
        ) from None
    model = model.subst(s)
    state = resolve(b, s)
    return Model(
        "recurrently",
        resolve(a, s),
        state,
        _recurrently_forward,
        children=(model,),
        attrs=(("transparent", True),),
        created_at=created_at,
        state_type=state,
    )


def _lagged_forward(model: Model, params: Any, x: Any, state: Any) -> tuple:
    (inner,) = model.children
    k = model.attr("width")
    window = concat([state, x], axis=-1)
    y = inner.forward(inner, child_params(model, params)[0], window)
    n = shape_of(window)[-1]
    return y, getitem(window, (Ellipsis, slice(k, n)))


def lagged(n: int, model: Model) -> Model:
    """A cell that feeds ``model`` the last ``n`` inputs, oldest first: AR(n) models.

    With inputs ``Vec[k]``, ``model`` takes ``Vec[n * k]`` and the state keeps the previous
    ``n - 1`` inputs (``Vec[(n - 1) * k]``). ``lagged(2, Linear(2, 1))`` predicts from
    ``(x[t-1], x[t])``.

    >>> from nnc import Linear
    >>> lagged(2, Linear(2, 1)).signature
    Vec[1] -> Vec[1], state Vec[1]
    """
    created_at = user_location(2)
    n = size_argument(
        n,
        "lagged",
        "n",
        created_at,
        hint="n is how many inputs the model sees: lagged(2, Linear(2, 1)) predicts from the last two",
    )
    _require_stateless("lagged", model)
    model = model.freshen()
    k = Dim("k")
    s: Subst = {}
    try:
        unify(model.in_type, Vec[dim_prod([n, k])], s)
    except Mismatch as err:
        raise TypeMismatch(
            f"lagged at {created_at or 'unknown place'}: {model!r}{created_at_note(model)} must take "
            f"Vec[{n} * k] (the last {n} inputs of size k), but takes "
            f"{show([model.in_type])[0]}\n  {err}"
        ) from None
    model = model.subst(s)
    width = resolve_dim(k, s)
    if not isinstance(width, int):
        raise TypeMismatch(
            f"lagged at {created_at or 'unknown place'}: the input size of {model!r} must "
            "be known to split it into lags"
        )
    return Model(
        "lagged",
        Vec[width],
        model.out_type,
        _lagged_forward,
        children=(model,),
        attrs=(("transparent", True), ("width", width), ("lags", n)),
        created_at=created_at,
        state_type=array_type(((n - 1) * width,)),
    )  # Vec[0] for n = 1: no past kept


@describer("lagged")
def _describe_lagged(model: Model) -> str:
    return f"lagged({model.attr('lags')}, {describe(model.children[0])})"


@describer("fix_state")
def _describe_fix_state(model: Model) -> str:
    return f"fix_state(..., {describe(model.children[0])})"


# ----------------------------------------------------------------------------- generation


def prime(cell: Model, params: Any, state: Any, xs: Any) -> tuple[Any, Any]:
    """Run ``cell`` over the sequence ``xs`` (time first, or ``(batch, time, ...)``) from ``state``.

    ``state=None`` starts from the cell's zero state (batched like ``xs``). Returns
    ``(last_output, final_state)``, ready for :func:`feedback`.

    >>> import numpy as np
    >>> from nnc import Linear
    >>> cell = fcrnn(1, 4) >> Linear(4, 1)
    >>> last, state = prime(cell, cell.init(seed=0), None, np.zeros((3, 10, 1)))  # 3 sequences
    >>> last.shape, state.shape
    ((3, 1), (3, 4))
    """
    _require_cell("prime", cell)
    called_at = user_location(2)
    shape = tuple(np.shape(xs))
    batched = _batched(xs, SeqType(cell.in_type)) if shape else False
    if shape and shape[1 if batched and len(shape) > 1 else 0] == 0:
        raise ShapeError(
            f"prime at {called_at or 'unknown place'}: the sequence xs of shape {shape} has 0 steps, "
            f"so {cell!r}{created_at_note(cell)} has nothing to run over\n"
            "  hint: to generate from a state without priming, call feedback(cell, params, state, "
            "x0, steps) directly"
        )
    if state is None:
        state = _zeros_for(cell, _dtype_from(params, xs), shape[0] if batched else None)
    return unroll_last(cell)(params, xs, state)


def feedback(cell: Model, params: Any, state: Any, x0: Any, steps: int) -> np.ndarray:
    """Generate ``steps`` outputs by feeding each output of ``cell`` back as its next input.

    ``state=None`` starts from the cell's zero state (batched like ``x0``). Returns the
    outputs stacked along time: ``(steps, ...)`` for one example, ``(batch, steps, ...)``
    for a batch; ``steps=0`` gives an empty array of that shape, as ``range(0)`` runs no
    step. The cell's output type must equal its input type.

    >>> import numpy as np
    >>> from nnc import Linear
    >>> cell = fcrnn(1, 4) >> Linear(4, 1)
    >>> feedback(cell, cell.init(seed=0), np.zeros(4), np.ones(1), steps=5).shape
    (5, 1)
    >>> feedback(cell, cell.init(seed=0), None, np.ones((2, 1)), steps=0).shape
    (2, 0, 1)
    """
    _require_cell("feedback", cell)
    called_at = user_location(2)
    steps = size_argument(
        steps,
        "feedback",
        "steps",
        called_at,
        minimum=0,
        hint="steps is how many outputs to generate",
        at="called at",
    )
    try:
        unify(cell.freshen().in_type, cell.freshen().out_type, {})
    except Mismatch:
        i, o = show([cell.in_type, cell.out_type])
        raise TypeMismatch(
            f"feedback: {cell!r}{created_at_note(cell)} maps {i} to {o}; its outputs can "
            "only be fed back if the types agree"
        ) from None
    batched = len(np.shape(x0)) == cell.in_type.rank + 1 if isinstance(cell.in_type, ArrayType) else False
    if state is None:
        state = _zeros_for(cell, _dtype_from(params, x0), np.shape(x0)[0] if batched else None)
    x, outputs = x0, []
    for _ in range(steps):
        x, state = cell(params, x, state)
        outputs.append(x)
    if not outputs:  # one step, discarded: the arguments are checked, and give the shape and dtype
        y = np.asarray(cell(params, x0, state)[0])
        return np.zeros(y.shape[:1] + (0,) + y.shape[1:] if batched else (0,) + y.shape, y.dtype)
    stacked = np.stack(outputs)
    return np.swapaxes(stacked, 0, 1) if batched else stacked
