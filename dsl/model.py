"""Models are values: a typed, pure function from parameters and input to output.

A :class:`Model` holds its input and output types, a parameter spec, its children
(for combinators), a pure ``forward(model, params, x)`` and the place where the user
created it. Nothing in a model is ever mutated; composing, naming or resolving a
type gives a new model.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from nnc.backend.array_api import namespace_of, numpy_dtype, xp_dtype
from nnc.backend.broadcasting import shape_of
from nnc.backend.checks import all_finite, check_finite, check_index, non_finite_message
from nnc.backend.core import Tracer
from nnc.backend.errors import InitError, NonFiniteError, ShapeError, TypeMismatch
from nnc.backend.execute import quiet
from nnc.backend.structural import reshape
from nnc.backend.tree import tree_flatten, tree_paths

from .devices import match_inputs
from .effects import Effects, checked_key, checked_stats, collected, init_stats, with_calls
from .source import UserLocation, created_at_note, short_description, user_location
from .types import (
    ArrayType,
    Mismatch,
    SeqType,
    Subst,
    TupleType,
    Type,
    TypeVar,
    resolve,
    resolve_dim,
    show,
    unify,
    unify_dims,
)
from .types import freshen as freshen_types

_MISSING = object()
_EMPTY: dict = {}


class Shape(tuple):
    """A parameter's shape as a leaf of a tree (a plain tuple would be a subtree)."""


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its shape (dimensions may still be variables) and how to initialise it."""

    shape: tuple
    init: str | Callable[[np.random.Generator, tuple[int, ...]], np.ndarray] = "zeros"
    fan: tuple = ()  # (fan_in, fan_out) dimensions for scaled initialisers


@dataclass(frozen=True)
class Signature:
    """A model's type, shown as ``Vec[2] -> Vec[1]``."""

    input: Type
    output: Type
    state: Type | None = None
    # What a call takes and gives besides the input: "key" (it draws random numbers),
    # "stats" (it reads running statistics, and in training gives new ones back).
    effects: tuple[str, ...] = ()

    def __repr__(self) -> str:
        extra = "".join(f", {e}" for e in self.effects)
        if self.state is None:
            a, b = show([self.input, self.output])
            return f"{a} -> {b}{extra}"
        a, b, s = show([self.input, self.output, self.state])
        return f"{a} -> {b}, state {s}{extra}"

    __str__ = __repr__


@dataclass(frozen=True, eq=False)
class Model:
    """A typed pure function ``(params, x) -> y``. Build models with layers and combinators.

    >>> from nnc import Linear, tanh
    >>> model = Linear(3, 4) >> tanh
    >>> model.signature
    Vec[3] -> Vec[4]
    >>> sorted(model.init(seed=0)["linear_0"])
    ['W', 'b']
    """

    kind: str
    in_type: Type
    out_type: Type
    # (model, params, x) -> y; a stateful model's is (model, params, x, state) -> (y, new_state)
    forward: Callable[..., Any] = field(repr=False)
    children: tuple = ()
    param_specs: tuple = ()  # ((name, ParamSpec), ...): this model's own parameters
    attrs: tuple = ()  # ((name, value), ...): shown in repr and used by forward
    name: str | None = None
    created_at: UserLocation | None = None
    refine: Callable[[Model, Type], Model] | None = field(default=None, repr=False)
    state_type: Type | None = None  # a recurrent cell's state; None for stateless models
    effects: Effects | None = None  # a layer that draws random numbers or keeps statistics

    # ------------------------------------------------------------------ structure

    @property
    def signature(self) -> Signature:
        """The model's type: ``input -> output``."""
        effects = ("key",) * self.is_random + ("stats",) * self.keeps_stats
        return Signature(self.in_type, self.out_type, self.state_type, effects)

    def attr(self, key: str, default: Any = None) -> Any:
        return dict(self.attrs).get(key, default)

    @cached_property
    def has_params(self) -> bool:
        return bool(self.param_specs) or any(c.has_params for c in self.children)

    @cached_property
    def has_effects(self) -> bool:
        """Whether a layer in the model draws random numbers or keeps running statistics."""
        return self.effects is not None or any(c.has_effects for c in self.children)

    @cached_property
    def is_random(self) -> bool:
        """Whether a call (in training) takes a key: a layer in it draws random numbers."""
        return (self.effects is not None and self.effects.random) or any(c.is_random for c in self.children)

    @cached_property
    def keeps_stats(self) -> bool:
        """Whether a call takes running statistics (``model.init_stats()``)."""
        own = self.effects is not None and bool(self.effects.stat_specs)
        return own or any(c.keeps_stats for c in self.children)

    @cached_property
    def updates_stats(self) -> bool:
        """Whether a call gives new statistics back: it keeps some and is in training mode."""
        own = self.effects is not None and bool(self.effects.stat_specs) and not self.attr("inference", False)
        return own or any(c.updates_stats for c in self.children)

    @cached_property
    def child_paths(self) -> tuple[str, ...]:
        """A unique readable name for each child: ``linear_0``, ``tanh_0``, ``linear_1`` ..."""
        counts: dict[str, int] = {}
        out = []
        for c in self.children:
            inner = c
            while inner.transparent and inner.name is None:  # zero_state(fcrnn) is "fcrnn_0"
                inner = inner.children[0]
            base = c.name or inner.name or inner.kind.lower()
            if c.name is not None and base not in counts:
                counts[base] = 1
                out.append(base)
                continue
            n = counts.get(base, 0)
            counts[base] = n + 1
            out.append(f"{base}_{n}")
        return tuple(out)

    @property
    def transparent(self) -> bool:
        """A wrapper (like ``zero_state``) whose one child's parameters sit at its own level."""
        return bool(self.attr("transparent", False))

    @cached_property
    def param_keys(self) -> tuple:
        """The key of each child in the parameter dict: ``None`` for a child without parameters,
        ``""`` for the child of a transparent wrapper (its parameters are merged into ours)."""
        # a child with effects gets its slice too: its key and statistics travel in it
        if self.transparent:
            return tuple("" if c.has_params or c.has_effects else None for c in self.children)
        return tuple(
            p if c.has_params or c.has_effects else None for p, c in zip(self.child_paths, self.children)
        )

    def named(self, name: str | None) -> Model:
        """The same model under a name, used as its key in the parameters of a composition."""
        return replace(self, name=name)

    def __repr__(self) -> str:
        from .show import describe

        return describe(self)

    # A notebook shows a model as its picture: this is nnc.render.mimebundle, installed by
    # nnc.render, which draws models (and so imports this module, not the reverse).
    _repr_mimebundle_: ClassVar[Callable[..., dict]]

    # ------------------------------------------------------------------ types

    def subst(self, s: Subst) -> Model:
        """This model with solved type variables filled in, all the way down."""
        if not s:
            return self
        return replace(
            self,
            in_type=resolve(self.in_type, s),
            out_type=resolve(self.out_type, s),
            state_type=None if self.state_type is None else resolve(self.state_type, s),
            children=tuple(c.subst(s) for c in self.children),
            param_specs=tuple(
                (
                    k,
                    replace(
                        p,
                        shape=tuple(resolve_dim(d, s) for d in p.shape),
                        fan=tuple(resolve_dim(d, s) for d in p.fan),
                    ),
                )
                for k, p in self.param_specs
            ),
        )

    def _all_types(self) -> list:
        out = [self.in_type, self.out_type] + ([self.state_type] if self.state_type is not None else [])
        for _, p in self.param_specs:
            out.append(ArrayType(tuple(p.shape) + tuple(p.fan)))
        for c in self.children:
            out.extend(c._all_types())
        return out

    def freshen(self) -> Model:
        """This model with its type variables renamed apart, for one more use in a composition."""
        _, s = freshen_types(self._all_types())
        return self.subst(s)

    def __rshift__(self, other: Model) -> Model:
        if not isinstance(other, Model):
            raise not_a_model(other, user_location(2), left=self)
        return compose(self, other, user_location(2))

    def __rrshift__(self, other: Any) -> Model:
        # reached only when the left operand is not a model (numpy's ufuncs, a lambda, a number)
        raise not_a_model(other, user_location(2), right=self)

    # ------------------------------------------------------------------ parameters

    def init(self, seed: int = 0, dtype: Any = np.float32, device: Any = None) -> dict:
        """Fresh parameters: a nested dict of arrays keyed by readable, unique paths.

        Each parameter's random stream is derived from ``seed`` and its path, so the same
        seed always gives the same parameters, and adding a layer leaves the others alone.
        ``device`` (a name from ``nnc.devices()``; default: the one chosen by ``nnc.use``,
        else numpy) is where they live; the numbers are made by numpy, then moved, so
        every device starts from the same ones."""
        from .devices import current, get_device, to_device

        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InitError(
                f"{short_description(self)}.init: seed must be an int >= 0, got {seed!r}"
                + (
                    "\n  hint: write seed=0 (any int >= 0); the same seed always gives the same parameters"
                    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                    else ""
                )
            )
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise InitError(
                f"{short_description(self)}.init: dtype {dtype!r} is not a dtype; use np.float32 or np.float64"
            ) from None
        if dtype.kind != "f":
            raise InitError(f"parameters must be floating point (float32 or float64), got {dtype}")
        target = current() if device is None else get_device(device)
        params = _init(self, "", int(seed), dtype)
        return params if target.placement is None else to_device(params, target)

    @cached_property
    def param_shapes(self) -> dict:
        """The parameter structure with each leaf's shape (variables where sizes are unknown)."""
        out: dict = {k: Shape(p.shape) for k, p in self.param_specs}
        for key, c in zip(self.param_keys, self.children):
            if key == "":
                out.update(c.param_shapes)
            elif key is not None and c.has_params:
                out[key] = c.param_shapes
        return out

    def init_stats(self, dtype: Any = np.float32) -> dict:
        """Fresh running statistics, apart from the parameters: a nested dict keyed like them
        (``{}`` for a model that keeps none). BatchNorm's start as PyTorch's: mean 0, variance 1.

        >>> from nnc import BatchNorm, Linear
        >>> stats = (Linear(2, 3) >> BatchNorm(3)).init_stats()
        >>> stats["batchnorm_0"]["var"].tolist()
        [1.0, 1.0, 1.0]
        """
        return init_stats(self, np.dtype(dtype))

    @property
    def param_count(self) -> int:
        """How many numbers the parameters hold (all sizes must be known)."""
        total = 0
        for path, shape in tree_paths(self.param_shapes, ""):
            if not all(isinstance(d, int) for d in shape):
                raise InitError(f"parameter {path} has unknown size {shape}")
            total += int(np.prod(shape, dtype=np.int64))
        return total

    # ------------------------------------------------------------------ calling

    def apply(self, params: Any, x: Any) -> Any:
        """Run the model without boundary checks (what combinators call on their children)."""
        return self.forward(self, params, x)

    def __call__(
        self, params: Any, x: Any = _MISSING, state: Any = _MISSING, *, key: Any = None, stats: Any = None
    ) -> Any:
        """``model(params, x)``; a model without parameters may be called as ``model(x)``;
        a stateful model (a recurrent cell) as ``model(params, x, state) -> (y, new_state)``.

        A model that draws random numbers takes ``key=nnc.key(seed)``; one that keeps running
        statistics takes ``stats=`` (``model.init_stats()``) and, in training, gives the new
        ones back: ``y, stats = model(params, x, stats=stats)`` (see :mod:`nnc.effects`).
        A key or statistics the model does not use are ignored, so one loop fits every model.

        The input is checked against the input type and cast to the parameters' dtype."""
        if self.state_type is not None:
            if state is _MISSING:
                raise ShapeError(
                    f"{self!r} is stateful ({self.signature}): call it as "
                    "model(params, x, state) -> (y, new_state), or make it stateless with "
                    "zero_state(...) or learned_state(...)"
                )
        elif state is not _MISSING:
            raise ShapeError(f"{self!r} has no state; call it as model(params, x)")
        elif x is _MISSING:
            if self.has_params:
                raise ShapeError(f"{self!r} has parameters: call it as model(params, x)")
            params, x = _EMPTY, params
        if not self.has_effects:
            return call_checked(self, params, x, state)
        return _call_with_effects(self, params, x, state, key, stats)


def _call_with_effects(model: Model, params: Any, x: Any, state: Any, key: Any, stats: Any) -> Any:
    """A call of a model with effects: each layer finds its key and statistics in its slice of
    the parameters, and the statistics the layers update are gathered into one new tree."""
    key = checked_key(key, model) if model.is_random and key is not None else None
    if model.keeps_stats and stats is not None:
        stats = checked_stats(model, stats, _params_dtype(params))
    updates: dict = {}
    out = call_checked(model, params, x, state, calls=(key, stats, updates))
    if not model.updates_stats:
        return out
    new_stats = collected(updates)
    return (*out, new_stats) if model.state_type is not None else (out, new_stats)


# ----------------------------------------------------------------------------- composition


def end_layer(model: Model, end: str) -> Model:
    """The first (``end='first'``) or last layer data meets in a serial chain."""
    return path_to(model, end)[1]


def path_to(model: Model, end: str) -> tuple[str, Model]:
    """The path (``linear_0``) and the layer that data meets first or last in a serial chain."""
    parts = []
    while model.kind == "serial" and model.children:
        i = 0 if end == "first" else len(model.children) - 1
        parts.append(model.child_paths[i])
        model = model.children[i]
    return "/".join(parts), model


def not_a_model(
    other: Any, created_at: UserLocation | None, left: Model | None = None, right: Model | None = None
) -> TypeMismatch:
    """The error for ``model >> x`` or ``x >> model`` where ``x`` is not a model."""
    what = value_in_words(other)
    place = f" at {created_at}" if created_at else ""
    if left is not None:
        side = f"  {left!r}{created_at_note(left)} >> {what}"
    else:
        assert right is not None, "the model is on one side of >>"
        side = f"  {what} >> {right!r}{created_at_note(right)}"
    hint = non_model_hint(other)
    return TypeMismatch(f"cannot compose{place}: {what} is not an nnc model\n{side}\n  hint: {hint}")


def value_in_words(x: Any) -> str:
    """``x`` named in plain words for a message: ``numpy's np.tanh``, ``a lambda``, ``an array of
    shape (3,)``, ``the int 3``."""
    if isinstance(x, np.ufunc):
        return f"numpy's np.{x.__name__}"
    if callable(x):
        name = getattr(x, "__name__", type(x).__name__)
        return "a lambda" if name == "<lambda>" else f"the function {name}"
    if isinstance(x, np.ndarray) or type(x) is Tracer or namespace_of(x) is not None:
        return f"an array of shape {tuple(x.shape)}"
    return f"the {type(x).__name__} {x!r}"


def non_model_hint(x: Any) -> str:
    """What to write instead of ``x``, which is not a model, where a model belongs."""
    # the package's names, read where it is already loaded (an import would be a cycle)
    package = sys.modules.get("nnc")
    name = getattr(x, "__name__", None)
    model_form = getattr(package, name, None) if isinstance(name, str) and name.isidentifier() else None
    if model_form is not None and isinstance(model_form, Model):
        return f"use nnc.{name}, the model form of {name}"
    if callable(x):
        return (
            "only models compose with >>; use a model from nnc (nnc.tanh, nnc.relu, ...) or "
            "wrap your function as a model with nnc.lift(fn), written with nnc operations"
        )
    return "only models compose with >>: layers (nnc.Linear(...)), activations (nnc.tanh) and combinators"


def compose(f: Model, g: Model, created_at: UserLocation | None) -> Model:
    """``f >> g``: run ``f``, then ``g``; their types are unified now, before any data flows.

    Where a sequence meets a model of single examples (``Seq[Vec[d]] >> Linear(d, k)``, or
    ``Embedding(v, d) >> SelfAttention(d, ...)``), that model is applied at every step:
    ``each(model)`` is composed instead (see :func:`each`), and the types say so."""
    f, g = f.freshen(), g.freshen()
    s: Subst = {}
    refined = [g]
    try:
        _join(f, g, s, refined)
    except Mismatch as err:
        lifted = _lifted(f, g)
        if lifted is None:
            raise _composition_error(f, refined[-1], err, created_at) from None
        f, g = lifted
        s, refined = {}, [g]
        try:
            _join(f, g, s, refined)
        except Mismatch as again:
            raise _composition_error(f, refined[-1], again, created_at) from None
    g = refined[-1]
    parts = (f.children if f.kind == "serial" and f.name is None else (f,)) + (
        g.children if g.kind == "serial" and g.name is None else (g,)
    )
    parts = tuple(p.subst(s) for p in parts)
    return serial_of(parts, resolve(f.in_type, s), resolve(g.out_type, s), created_at)


def _join(f: Model, g: Model, s: Subst, refined: list) -> None:
    """Unify ``f``'s output with ``g``'s input into ``s``; ``g`` refined by what arrives is
    appended to ``refined`` (so that an error can show what it expected)."""
    if g.refine is not None:  # a refinement that cannot take what arrives is a mismatch too
        refined.append(g.refine(g, f.out_type))
    unify(f.out_type, refined[-1].in_type, s)


def _is_example_model(model: Model) -> bool:
    """A stateless model of single arrays (or indices), which :func:`each` can lift over steps."""
    return model.state_type is None and isinstance(model.in_type, ArrayType)


def _lifted(f: Model, g: Model) -> tuple[Model, Model] | None:
    """``(f, each(g))`` where a sequence meets a model of single examples, ``(each(f), g)`` where
    such a model feeds one that takes sequences; ``None`` where neither fits."""
    if isinstance(f.out_type, SeqType) and _is_example_model(g):
        return f, each(g)
    if isinstance(g.in_type, SeqType) and not isinstance(f.out_type, SeqType) and _is_example_model(f):
        if isinstance(f.out_type, (ArrayType, TypeVar)):
            return each(f), g
    return None


def _composition_error(f: Model, g: Model, err: Mismatch, created_at: UserLocation | None) -> TypeMismatch:
    left, right = end_layer(f, "last"), end_layer(g, "first")
    out_s, in_s = show([f.out_type, g.in_type])
    return TypeMismatch(
        f"cannot compose at {created_at or 'unknown place'}\n"
        f"  {left!r}{created_at_note(left)} outputs {out_s}\n"
        f"  {right!r}{created_at_note(right)} expects {in_s}\n"
        f"  {err}" + _mismatch_hint(right)
    )


def _each_forward(model: Model, params: Any, x: Any) -> Any:
    (inner,) = model.children
    shape = shape_of(x)
    rank = inner.in_type.rank
    lead = shape[: len(shape) - rank] if rank else shape
    n = int(np.prod(lead, dtype=np.int64))
    y = inner.forward(inner, child_params(model, params)[0], reshape(x, (n, *shape[len(lead) :])))
    return reshape(y, (*lead, *shape_of(y)[1:]))


def each(model: Model) -> Model:
    """``model`` applied at every step of a sequence: ``a -> b`` becomes ``Seq[a] -> Seq[b]``,
    with the same parameters at every step (the steps are one batch for ``model``).

    ``>>`` inserts it where a sequence meets a model of single examples, so it is rarely
    written out; its parameters sit where ``model``'s would.

    >>> from nnc import Input, Linear, Seq, Vec
    >>> each(Linear(3, 2)).signature
    Seq[Vec[3]] -> Seq[Vec[2]]
    >>> (Input(Seq[Vec[3]]) >> Linear(3, 2)).signature
    Seq[Vec[3]] -> Seq[Vec[2]]
    """
    if not isinstance(model, Model):
        raise TypeMismatch(
            f"each takes a model, got {value_in_words(model)}\n  hint: {non_model_hint(model)}"
        )
    if not _is_example_model(model):
        raise TypeMismatch(
            f"each applies a stateless model of single examples at every step, but "
            f"{short_description(model)} maps {show([model.in_type])[0]}"
            + (" and keeps a state (run a cell over a sequence with unroll)" if model.state_type else "")
        )
    return Model(
        "each",
        SeqType(model.in_type),
        SeqType(model.out_type),
        _each_forward,
        children=(model,),
        attrs=(("transparent", True),),
        created_at=model.created_at,
        refine=_refine_each if model.refine is not None else None,
    )


def _refine_each(model: Model, arriving: Type) -> Model:
    (inner,) = model.children
    if isinstance(arriving, SeqType) and inner.refine is not None:
        return each(inner.refine(inner, arriving.item))
    return model


def _mismatch_hint(right: Model) -> str:
    if right.kind == "Linear":
        return "\n  hint: Linear(None, n) infers its input size from what comes before it"
    return ""


def child_params(model: Model, params: Any) -> list:
    """The parameters of each child of ``model``, taken from ``model``'s parameters."""
    return [
        _EMPTY if k is None else params if k == "" else params[k] if c.has_params else params.get(k, _EMPTY)
        for k, c in zip(model.param_keys, model.children)
    ]


def serial_forward(model: Model, params: Any, x: Any) -> Any:
    """Each child on the output of the one before it (a chain's, and repeat's, forward)."""
    for child, p in zip(model.children, child_params(model, params)):
        x = child.forward(child, p, x)
    return x


def _stateful_serial_forward(model: Model, params: Any, x: Any, state: Any) -> Any:
    stateful = [c.state_type is not None for c in model.children]
    states = [state] if sum(stateful) == 1 else list(state)
    new_states, k = [], 0
    for child, p, has_state in zip(model.children, child_params(model, params), stateful):
        if has_state:
            x, s = child.forward(child, p, x, states[k])
            new_states.append(s)
            k += 1
        else:
            x = child.forward(child, p, x)
    return x, new_states[0] if len(new_states) == 1 else tuple(new_states)


def state_of(children: tuple) -> Type | None:
    """The state of a chain: its one stateful member's, or the tuple of all of them."""
    states = [c.state_type for c in children if c.state_type is not None]
    if not states:
        return None
    return states[0] if len(states) == 1 else TupleType(tuple(states))


def serial_of(children: tuple, in_type: Type, out_type: Type, created_at: UserLocation | None) -> Model:
    state = state_of(children)
    forward = serial_forward if state is None else _stateful_serial_forward
    return Model(
        "serial",
        in_type,
        out_type,
        forward,
        children=tuple(children),
        created_at=created_at,
        state_type=state,
    )


# ----------------------------------------------------------------------------- init


def _init(model: Model, path: str, seed: int, dtype: np.dtype) -> dict:
    out: dict = {}
    for name, spec in model.param_specs:
        full = f"{path}/{name}" if path else name
        shape = tuple(spec.shape)
        if not all(isinstance(d, int) for d in shape):
            raise InitError(
                f"cannot initialise {full} of {model!r}{created_at_note(model)}: its shape "
                f"{show([ArrayType(shape)])[0][len('Tensor') :]} is not known yet.\n"
                "  hint: compose it after a model whose output size is known, or start the "
                "model with nnc.Input(Vec[n])"
            )
        rng = np.random.default_rng([seed, zlib.crc32(full.encode())])
        value = _initialise(spec, shape, rng, full)
        out[name] = value.astype(dtype)
    for key, child in zip(model.param_keys, model.children):
        if key == "":
            out.update(_init(child, path, seed, dtype))
        elif key is not None and child.has_params:
            out[key] = _init(child, f"{path}/{key}" if path else key, seed, dtype)
    return out


def _initialise(spec: ParamSpec, shape: tuple, rng: np.random.Generator, path: str) -> np.ndarray:
    kind = spec.init
    if callable(kind):
        value = np.asarray(kind(rng, shape))
        if value.shape != shape:
            raise InitError(f"initialiser of {path} returned shape {value.shape}, expected {shape}")
        return value
    fan_in, fan_out = (spec.fan + (1, 1))[:2] if spec.fan else (1, 1)
    if kind == "zeros":
        return np.zeros(shape)
    if kind == "ones":
        return np.ones(shape)
    if kind == "normal":
        return rng.normal(0.0, 1.0, shape)
    if kind == "glorot_uniform":
        limit = np.sqrt(6.0 / max(fan_in + fan_out, 1))
        return rng.uniform(-limit, limit, shape)
    if kind == "he_normal":
        return rng.normal(0.0, np.sqrt(2.0 / max(fan_in, 1)), shape)
    if kind == "lecun_normal":
        return rng.normal(0.0, np.sqrt(1.0 / max(fan_in, 1)), shape)
    raise InitError(
        f"unknown initialiser {kind!r} for {path}; use 'glorot_uniform', 'he_normal', "
        "'lecun_normal', 'normal', 'zeros' or a function (rng, shape) -> array"
    )


# ----------------------------------------------------------------------------- boundary checks


def _params_dtype(params: Any) -> np.dtype | None:
    for leaf in tree_flatten(params)[0]:
        dt = getattr(leaf, "dtype", None)
        if dt is not None and numpy_dtype(dt).kind == "f":
            return numpy_dtype(dt)
    return None


def check_params(model: Model, params: Any) -> None:
    """Raise :class:`ShapeError` naming the first parameter whose path or shape is wrong."""
    expected = tree_paths(model.param_shapes)
    got = tree_paths(params)
    got_map = dict(got)
    for path, shape in expected:
        if path not in got_map:
            extra = [p for p, _ in got if p not in dict(expected)]
            raise ShapeError(
                f"parameters do not fit {short_description(model)}: missing {path!r}"
                + (f"; found unexpected {extra[:4]}" if extra else "")
                + "\n  hint: create them with model.init(seed=...) for this very model"
            )
        leaf = got_map[path]
        actual = tuple(np.shape(leaf)) if type(leaf) is not Tracer else leaf.shape
        if actual != tuple(shape):
            raise ShapeError(
                f"parameter {path!r} has shape {actual}, but {short_description(model)} expects "
                f"{tuple(shape)}\n  hint: were these parameters made for another model?"
            )
    if len(got) != len(expected):
        extra = [p for p, _ in got if p not in dict(expected)]
        raise ShapeError(f"parameters do not fit {short_description(model)}: unexpected {extra[:4]}")


def _as_array(x: Any, dtype: np.dtype | None, model: Model, what: str) -> Any:
    """``x`` as an array of the parameters' dtype, refused if it is not numbers or not finite."""
    return _converted(_numbers(x, dtype, model, what), dtype, model, what)


def _numbers(x: Any, dtype: np.dtype | None, model: Model, what: str) -> Any:
    """``x`` as an array (not yet cast: its shape is checked before its data is touched)."""
    if type(x) is not Tracer and not isinstance(x, np.ndarray) and namespace_of(x) is None:
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as err:
            raise ShapeError(f"{what} of {short_description(model)} is not an array: {err}") from None
    if numpy_dtype(x.dtype).kind not in "fiub":
        raise ShapeError(
            f"{what} of {short_description(model)} has dtype {x.dtype}; expected numbers ({dtype or 'float32'})"
        )
    return x


def _converted(x: Any, dtype: np.dtype | None, model: Model, what: str) -> Any:
    """``x`` cast to the parameters' dtype and passed through ``check_finite``: at once on
    arrays (numpy's, or another namespace's, which stay on their device), when the graph runs
    on traced values (grad, train_step, nnc.compile). Every model call is checked, on every
    path alike (``model(p, x / 255)`` too); a value a check has passed is not scanned twice."""
    kind = numpy_dtype(x.dtype).kind
    target = dtype or (numpy_dtype(x.dtype) if kind == "f" else np.dtype(np.float32))
    label = f"{what} of {short_description(model)}"
    if type(x) is Tracer:
        from nnc.backend.elementwise import cast

        x = cast(x, target)
        if x.var.producer is not None and x.var.producer.prim.name == "check_finite":
            return x
        return check_finite(x, what=label)
    if namespace_of(x) is not None:
        xp = x.__array_namespace__()
        if numpy_dtype(x.dtype) != target:
            x = xp.astype(x, xp_dtype(xp, target))
        return check_finite(x, what=label)
    if x.dtype != target:
        source = x
        with quiet():  # an overflowing cast is reported below, with the value the user gave
            x = x.astype(target)
        if not all_finite(x):
            raise NonFiniteError(_cast_message(label, source, x, target))
    return check_finite(x, what=label)


def _cast_message(what: str, source: np.ndarray, x: np.ndarray, target: np.dtype) -> str:
    if not all_finite(source):
        return non_finite_message(what, source)
    bad = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
    return (
        f"{what} holds {source[bad]} at index {bad}, which overflows {target}, the parameters' "
        "dtype; nnc refuses NaN and infinite inputs\n  hint: rescale the data, or use "
        "float64 parameters: model.init(seed, dtype=np.float64)"
    )


def match_input(t: Type, x: Any, s: Subst, model: Model, what: str, dtype) -> tuple[Any, int | None]:
    """Check ``x`` against type ``t``; returns the converted value and its batch size (None: single)."""
    if isinstance(t, TypeVar):
        if isinstance(x, (tuple, list)):
            return tuple(
                match_input(t, xi, s, model, f"{what}[{i}]", dtype)[0] for i, xi in enumerate(x)
            ), None
        return _as_array(x, dtype, model, what), None
    if isinstance(t, TupleType):
        if not isinstance(x, (tuple, list)) or len(x) != len(t.items):
            got = f"a tuple of {len(x)}" if isinstance(x, (tuple, list)) else "one array"
            raise ShapeError(
                f"{what} of {short_description(model)}: expected a tuple of {len(t.items)} "
                f"arrays of type {show([t])[0]}, got {got}"
            )
        vals, batches = [], set()
        for i, (ti, xi) in enumerate(zip(t.items, x)):
            v, b = match_input(ti, xi, s, model, f"{what}[{i}]", dtype)
            vals.append(v)
            batches.add(b)
        if len(batches) > 1:
            raise ShapeError(
                f"{what} of {short_description(model)}: the tuple's arrays disagree on the batch "
                f"axis (batch sizes {sorted(batches, key=str)})"
            )
        return tuple(vals), batches.pop()
    x = _numbers(x, dtype, model, what)
    shape = tuple(x.shape)
    if len(shape) not in (t.rank, t.rank + 1):
        raise ShapeError(_shape_message(t, shape, model, what, f"rank {len(shape)} fits neither"))
    batch = shape[0] if len(shape) == t.rank + 1 else None
    item = t.item if isinstance(t, SeqType) else t
    if isinstance(t, SeqType) and shape[len(shape) - t.rank] == 0:
        raise ShapeError(
            _shape_message(
                t, shape, model, what, "the sequence has 0 steps; a recurrent model needs at least one"
            )
        )
    if isinstance(item, TypeVar):
        return _converted(x, dtype, model, what), batch
    if item.is_index:
        return _indices(x, item, s, model, what), batch
    for i, (d, n) in enumerate(zip(item.dims, shape[len(shape) - item.rank :])):
        d = resolve_dim(d, s)
        if isinstance(d, int) and d != n:
            detail = f"axis {i - item.rank}: expected size {d}, got {n}"
            raise ShapeError(_shape_message(t, shape, model, what, detail))
        try:
            unify_dims(d, n, s)
        except Mismatch as err:
            raise ShapeError(_shape_message(t, shape, model, what, f"axis {i - item.rank}: {err}")) from None
    return _converted(x, dtype, model, what), batch


def _indices(x: Any, t: ArrayType, s: Subst, model: Model, what: str) -> Any:
    """``x`` if it holds integers that ``Index[v]`` allows (``0 <= x < v``), as they are: indices
    are never cast to the parameters' dtype."""
    dtype = numpy_dtype(x.dtype)
    v = resolve_dim(t.dims[0], s)
    if model.kind == "padded" and what.endswith("[1]"):  # padded(...)'s (sequences, lengths)
        if dtype.kind not in "iu":
            raise ShapeError(
                f"{what}, the lengths, of {short_description(model)} has dtype {dtype}, but lengths "
                "are integers: how many steps of each sequence are real, before its padding\n"
                "  hint: np.asarray(lengths, dtype=np.int64)"
            )
        return x  # their range depends on the sequences: padded checks it
    path, first = path_to(model, "first")
    while first.transparent and first.children:  # each(Embedding(...)) is the Embedding's doing
        first = first.children[0]
    label = f"{what} of {path + ': ' if path else ''}{first!r}{created_at_note(first)}"
    if dtype.kind not in "iu":
        raise ShapeError(
            f"{label} has dtype {dtype}, but {show([t])[0]} takes integers: a class or token in "
            f"[0, {v if isinstance(v, int) else 'n'})\n"
            "  hint: tokens are integer arrays, e.g. np.asarray(tokens, dtype=np.int64)"
        )
    if not isinstance(v, int):
        return x
    # a primitive, so that a traced call (grad, train_step, nnc.compile) checks it too
    return check_index(x, what=label, size=v, allowed=f"for {show([t])[0]}: indices must be 0..{v - 1}")


def _shape_message(t: ArrayType | SeqType, shape: tuple, model: Model, what: str, detail: str) -> str:
    path, first = path_to(model, "first")
    text = show([t])[0]
    item = t.item if isinstance(t, SeqType) else t
    inner = (
        "" if isinstance(item, ArrayType) and item.is_index else text[text.rindex("[") + 1 : text.index("]")]
    )
    if isinstance(t, SeqType):
        inner = "time, " + inner if inner else "time"
    single = f"({inner},)" if t.rank == 1 else f"({inner})"
    layer = f"{path}: {first!r}" if path else repr(first)
    return (
        f"{what} of shape {shape} does not fit {layer}{created_at_note(first)}, which expects {text}: "
        f"one example of shape {single} or a batch of shape {f'(batch, {inner})' if inner else '(batch,)'}\n  {detail}"
    )


def call_checked(model: Model, params: Any, x: Any, state: Any = _MISSING, calls: tuple | None = None) -> Any:
    """Call ``model`` after checking parameters, input (and state) at the boundary; ``calls``
    is ``(key, stats, updates)`` for a model with effects (see :func:`nnc.effects.with_calls`)."""
    if isinstance(x, dict) and not isinstance(params, dict):
        raise ShapeError(
            f"{short_description(model)} was called with its arguments swapped: the second argument is a "
            f"parameter dict and the first {value_in_words(params)}\n"
            "  hint: call it as model(params, x)"
        )
    if model.has_params:
        check_params(model, params)
    dtype = _params_dtype(params)
    s: Subst = {}
    x = match_inputs(params, x, short_description(model))
    x, batch = match_input(model.in_type, x, s, model, "input", dtype)
    if calls is not None:
        params = with_calls(model, params, *calls)
    if state is _MISSING:
        return model.forward(model, params, x)
    assert model.state_type is not None, "Model.__call__ passes a state to stateful models only"
    state = match_inputs(params, state, short_description(model))
    state, state_batch = match_input(model.state_type, state, s, model, "state", dtype)
    if state_batch != batch:
        raise ShapeError(
            f"state of {short_description(model)} has batch size {state_batch} but the input has {batch} "
            "(None means no batch axis); they must agree"
        )
    return model.forward(model, params, x, state)
