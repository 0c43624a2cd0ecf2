"""Shape types for one example, with dimension variables and unification.

``Vec[n]``, ``Mat[m, n]`` and ``Tensor[c, h, w]`` describe one example; a leading batch
axis is implicit and may be absent. A dimension is an integer, a :class:`Dim` variable
(``Vec["n"]`` or ``None`` for "to be inferred"), or a sum or product of dimensions.
A tuple of types is the type of a tuple of arrays; ``Seq[T]`` is a sequence of ``T``
of any length. A :class:`TypeVar` stands for any type (elementwise layers are ``a -> a``).

>>> Vec[3], Mat[2, "n"], Tensor[1, 8, 8], (Vec[2], Vec[3])
(Vec[3], Mat[2, n], Tensor[1, 8, 8], (Vec[2], Vec[3]))
"""

from __future__ import annotations

import itertools
import math
import numbers
from dataclasses import dataclass
from typing import Any, Literal, overload

from nnc.backend.errors import ArgumentError, NNCError

from .source import UserLocation, user_location

_counter = itertools.count()


# ----------------------------------------------------------------------------- bad arguments


def describe_value(value: Any) -> str:
    """A value as an error message shows it: its repr, and its type where that is the news.

    >>> describe_value(0), describe_value(2.5), describe_value("3"), describe_value(None)
    ('0', '2.5 (float)', "'3' (str)", 'None')
    """
    if value is None or type(value) is int or isinstance(value, (ArrayType, TupleType, SeqType, TypeVar)):
        return repr(value)
    return f"{value!r} ({type(value).__name__})"


def bad_argument(
    layer: str,
    location: UserLocation | None,
    argument: str,
    expected: str,
    value: Any,
    hint: str = "",
    cls: type = ArgumentError,
    at: str = "created at",
) -> NNCError:
    """The error for ``layer``'s ``argument``: what it must be, what it got, where it was written
    (``at`` says how: a layer is "created at", a function "called at")."""
    place = f" ({at} {location})" if location else ""
    return cls(
        f"{layer}{place}: {argument} must be {expected}, got {describe_value(value)}"
        + (f"\n  hint: {hint}" if hint else "")
    )


def is_int(value: Any) -> bool:
    """A Python or numpy integer, not a bool (``True`` is an int to Python, never a size)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@overload
def size_argument(
    value: Any,
    layer: str,
    argument: str,
    location: UserLocation | None,
    *,
    optional: Literal[False] = False,
    minimum: int = 1,
    hint: str = "",
    at: str = "created at",
) -> int: ...


@overload
def size_argument(
    value: Any,
    layer: str,
    argument: str,
    location: UserLocation | None,
    *,
    optional: bool,
    minimum: int = 1,
    hint: str = "",
    at: str = "created at",
) -> int | None: ...


def size_argument(
    value: Any,
    layer: str,
    argument: str,
    location: UserLocation | None,
    *,
    optional: bool = False,
    minimum: int = 1,
    hint: str = "",
    at: str = "created at",
) -> int | None:
    """``value`` as an int size of at least ``minimum`` (``None`` too where ``optional``), or an
    :class:`ArgumentError` naming the layer, the argument and where it was written."""
    if value is None and optional:
        return None
    if is_int(value) and value >= minimum:
        return int(value)
    expected = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    if optional:
        expected += " or None (to infer it)"
    raise bad_argument(layer, location, argument, expected, value, hint, at=at)


class Dim:
    """A dimension variable: a size not known yet, solved by unification."""

    __slots__ = ("name", "id")

    def __init__(self, name: str | None = None):
        self.id = next(_counter)
        self.name = name

    def __repr__(self) -> str:
        return self.name or f"?{self.id}"


@dataclass(frozen=True)
class DimExpr:
    """A sum or product of dimensions, kept symbolic until its variables are solved."""

    op: str  # "+" or "*"
    terms: tuple

    def __repr__(self) -> str:
        return "(" + f" {self.op} ".join(map(repr, self.terms)) + ")"


DimLike = int | Dim | DimExpr


def dim_sum(terms) -> DimLike:
    return _combine("+", list(terms))


def dim_prod(terms) -> DimLike:
    return _combine("*", list(terms))


def _combine(op: str, terms: list) -> DimLike:
    known = [t for t in terms if isinstance(t, int)]
    unknown = [t for t in terms if not isinstance(t, int)]
    value = sum(known) if op == "+" else math.prod(known)
    if not unknown:
        return value
    neutral = 0 if op == "+" else 1
    rest = tuple(unknown) + ((value,) if value != neutral else ())
    return rest[0] if len(rest) == 1 else DimExpr(op, rest)


@dataclass(frozen=True)
class ArrayType:
    """The type of one example array: its dimensions, shown as Vec, Mat or Tensor."""

    dims: tuple
    kind: str = "Tensor"

    @property
    def rank(self) -> int:
        # Index[v]'s one dimension is its number of classes, not an axis: an example is one integer
        return 0 if self.kind == "Index" else len(self.dims)

    @property
    def is_index(self) -> bool:
        return self.kind == "Index"

    def __repr__(self) -> str:
        return f"{self.kind}[{', '.join(map(repr, self.dims))}]"


class TypeVar:
    """Any type at all; a polymorphic model's ``a -> a``."""

    __slots__ = ("name", "id")

    def __init__(self, name: str = "a"):
        self.id = next(_counter)
        self.name = name

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True)
class TupleType:
    """A tuple of types: what ``parallel`` takes and ``fanout`` produces."""

    items: tuple

    def __repr__(self) -> str:
        return "(" + ", ".join(map(repr, self.items)) + ")"


@dataclass(frozen=True)
class SeqType:
    """A sequence of examples of type ``item``, of any length: one example of ``Seq[Vec[n]]``
    is an array of shape ``(time, n)``; a batch is ``(batch, time, n)``."""

    item: Any

    @property
    def rank(self) -> int:
        return self.item.rank + 1

    def __repr__(self) -> str:
        return f"Seq[{self.item!r}]"


class _SeqConstructor:
    def __getitem__(self, item) -> SeqType:
        t = as_type(item, "Seq")
        if not isinstance(t, (ArrayType, TypeVar)):
            raise bad_argument("Seq", user_location(), "its item", "one array type such as Vec[n]", t)
        return SeqType(t)

    def __repr__(self) -> str:
        return "Seq"


Seq = _SeqConstructor()

Type = ArrayType | TupleType | TypeVar | SeqType


class _Constructor:
    def __init__(self, kind: str, rank: int | None):
        self.kind, self.rank = kind, rank

    def __getitem__(self, dims) -> ArrayType:
        dims = dims if isinstance(dims, tuple) else (dims,)
        if self.rank is not None and len(dims) != self.rank:
            raise ArgumentError(
                f"{self.kind} takes {self.rank} dimension(s), got {len(dims)}: "
                f"{self.kind}[{', '.join(map(repr, dims))}] at {user_location() or 'unknown place'}\n"
                "  hint: Vec[n] is a vector, Mat[m, n] a matrix, Tensor[c, h, w] any rank"
            )
        return ArrayType(tuple(_dim(d, i, self.kind) for i, d in enumerate(dims)), self.kind)

    def __repr__(self) -> str:
        return self.kind


def _dim(d: Any, axis: int, kind: str) -> DimLike:
    if d is None:
        return Dim()
    if isinstance(d, str):
        return Dim(d)
    if isinstance(d, (Dim, DimExpr)):
        return d
    if is_int(d) and d >= 1:
        return int(d)
    # the user's location is looked up only now: types are built often inside nnc, and the stack walk costs
    raise bad_argument(
        kind,
        user_location(),
        f"dimension {axis}",
        "a positive int, a name or None",
        d,
        f"a size is a positive int; a name ({kind}['n']) or None stands for one that is inferred",
    )


Vec = _Constructor("Vec", 1)
Mat = _Constructor("Mat", 2)
Tensor = _Constructor("Tensor", None)


class _IndexConstructor(_Constructor):
    """``Index[v]``: one integer in ``[0, v)``, a class or a token of a vocabulary of ``v``.
    An example is a 0-d integer array, a batch is ``(batch,)``; ``Seq[Index[v]]`` is ``(time,)``."""

    def __init__(self) -> None:
        super().__init__("Index", 1)


Index = _IndexConstructor()


def array_type(dims) -> ArrayType:
    """The array type with these dimensions, named Vec or Mat when the rank says so."""
    dims = tuple(dims)
    return ArrayType(dims, {1: "Vec", 2: "Mat"}.get(len(dims), "Tensor"))


def as_type(t: Any, layer: str = "nnc") -> Type:
    """``t`` as an nnc type, a Python tuple of types becoming a :class:`TupleType`; anything
    else is an :class:`ArgumentError` of ``layer``, naming where the user wrote it."""
    if isinstance(t, tuple):
        return TupleType(tuple(as_type(x, layer) for x in t))
    if isinstance(t, (ArrayType, TupleType, TypeVar, SeqType)):
        return t
    raise bad_argument(
        layer,
        user_location(),
        "the type",
        "an nnc type",
        t,
        "use Vec[n], Mat[m, n], Tensor[c, h, w], Seq[...] or a tuple of them",
    )


# ----------------------------------------------------------------------------- substitution


class Mismatch(Exception):
    """Raised by :func:`unify`; the composition turns it into a TypeMismatch."""


Subst = dict  # Dim | TypeVar -> DimLike | Type


def resolve_dim(d: DimLike, s: Subst) -> DimLike:
    while isinstance(d, Dim) and d in s:
        d = s[d]
    if isinstance(d, DimExpr):
        return _combine(d.op, [resolve_dim(t, s) for t in d.terms])
    return d


def resolve(t: Type, s: Subst) -> Type:
    """``t`` with every solved variable replaced."""
    if not s:
        return t
    if isinstance(t, TypeVar):
        return resolve(s[t], s) if t in s else t
    if isinstance(t, TupleType):
        return TupleType(tuple(resolve(x, s) for x in t.items))
    if isinstance(t, SeqType):
        return SeqType(resolve(t.item, s))
    return ArrayType(tuple(resolve_dim(d, s) for d in t.dims), t.kind)


def _occurs(v: Any, d: DimLike, s: Subst) -> bool:
    d = resolve_dim(d, s)
    if d is v:
        return True
    return isinstance(d, DimExpr) and any(_occurs(v, t, s) for t in d.terms)


def unify_dims(a: DimLike, b: DimLike, s: Subst) -> None:
    a, b = resolve_dim(a, s), resolve_dim(b, s)
    if a == b or a is b:
        return
    if isinstance(a, Dim):
        if _occurs(a, b, s):
            raise Mismatch(f"dimension {a!r} cannot equal {b!r}")
        s[a] = b
        return
    if isinstance(b, Dim):
        unify_dims(b, a, s)
        return
    if isinstance(a, int) and isinstance(b, int):
        raise Mismatch(f"size {a} differs from size {b}")
    if isinstance(a, DimExpr) and isinstance(b, int):
        _solve(a, b, s)
        return
    if isinstance(a, int) and isinstance(b, DimExpr):
        _solve(b, a, s)
        return
    if (
        isinstance(a, DimExpr)
        and isinstance(b, DimExpr)
        and a.op == b.op
        and sorted(map(repr, a.terms)) == sorted(map(repr, b.terms))
    ):
        return
    raise Mismatch(f"cannot tell whether {a!r} equals {b!r}; give the input type with nnc.Input")


def _solve(expr: DimExpr, value: int, s: Subst) -> None:
    unknown = [t for t in expr.terms if not isinstance(t, int)]
    known = [t for t in expr.terms if isinstance(t, int)]
    if len(unknown) != 1 or not isinstance(unknown[0], Dim):
        raise Mismatch(f"cannot solve {expr!r} = {value}; give the input type with nnc.Input")
    if expr.op == "+":
        rest = value - sum(known)
        if rest < 0:
            raise Mismatch(f"{expr!r} cannot equal {value}")
    else:
        div = math.prod(known)
        if div == 0 or value % div:
            raise Mismatch(f"{expr!r} cannot equal {value}")
        rest = value // div
    s[unknown[0]] = rest


def unify(a: Type, b: Type, s: Subst) -> None:
    """Make ``a`` and ``b`` equal by extending ``s``, or raise :class:`Mismatch` saying why."""
    a, b = resolve(a, s), resolve(b, s)
    if a is b:
        return
    if isinstance(a, TypeVar):
        s[a] = b
        return
    if isinstance(b, TypeVar):
        s[b] = a
        return
    if isinstance(a, SeqType) or isinstance(b, SeqType):
        if not (isinstance(a, SeqType) and isinstance(b, SeqType)):
            raise Mismatch(
                "a sequence cannot meet a single example (use unroll, unroll_last or "
                "lagged to go between them)"
            )
        try:
            unify(a.item, b.item, s)
        except Mismatch as err:
            raise Mismatch(f"sequence items: {err}") from None
        return
    if isinstance(a, TupleType) or isinstance(b, TupleType):
        if not (isinstance(a, TupleType) and isinstance(b, TupleType)):
            raise Mismatch("a tuple of arrays cannot meet a single array")
        if len(a.items) != len(b.items):
            raise Mismatch(f"a tuple of {len(a.items)} cannot meet a tuple of {len(b.items)}")
        for i, (x, y) in enumerate(zip(a.items, b.items)):
            try:
                unify(x, y, s)
            except Mismatch as err:
                raise Mismatch(f"item {i}: {err}") from None
        return
    if a.is_index != b.is_index:
        index, array = (a, b) if a.is_index else (b, a)
        raise Mismatch(
            f"integer indices ({index!r}) cannot meet an array of numbers ({array!r}); "
            "an Embedding maps indices to vectors"
        )
    if a.is_index:
        try:
            unify_dims(a.dims[0], b.dims[0], s)
        except Mismatch as err:
            raise Mismatch(f"number of classes: {err}") from None
        return
    if a.rank != b.rank:
        raise Mismatch(f"rank {a.rank} differs from rank {b.rank}")
    for i, (x, y) in enumerate(zip(a.dims, b.dims)):
        try:
            unify_dims(x, y, s)
        except Mismatch as err:
            raise Mismatch(f"axis {i}: {err}") from None


def free_vars(t: Type) -> list:
    """The variables (dimension and type) that ``t`` mentions, in order."""
    out: list = []

    def walk_dim(d):
        if isinstance(d, Dim):
            out.append(d)
        elif isinstance(d, DimExpr):
            for x in d.terms:
                walk_dim(x)

    def walk(t):
        if isinstance(t, TypeVar):
            out.append(t)
        elif isinstance(t, TupleType):
            for x in t.items:
                walk(x)
        elif isinstance(t, SeqType):
            walk(t.item)
        else:
            for d in t.dims:
                walk_dim(d)

    walk(t)
    return list(dict.fromkeys(out))


def freshen(types: list, s: Subst | None = None) -> tuple[list, Subst]:
    """Rename every variable in ``types`` apart (same names, new identities)."""
    s = {} if s is None else s
    for t in types:
        for v in free_vars(t):
            if v not in s:
                s[v] = TypeVar(v.name) if isinstance(v, TypeVar) else Dim(v.name)
    return [resolve(t, s) for t in types], s


def show(types: list) -> list[str]:
    """Render types for people: unnamed variables become n, m, k ... and a, b, c ...

    >>> show([Vec[None], Vec[None]])
    ['Vec[n]', 'Vec[m]']
    """
    dim_names = iter(["n", "m", "k", "p", "q", "r"] + [f"n{i}" for i in range(1, 100)])
    type_names = iter(["a", "b", "c", "d"] + [f"a{i}" for i in range(1, 100)])
    rename: Subst = {}
    used: set = set()
    for t in types:
        for v in free_vars(t):
            if v in rename:
                continue
            pool = type_names if isinstance(v, TypeVar) else dim_names
            name = v.name if v.name and v.name not in used else next(x for x in pool if x not in used)
            used.add(name)
            rename[v] = TypeVar(name) if isinstance(v, TypeVar) else Dim(name)
    return [repr(resolve(t, rename)) for t in types]


def is_concrete(t: Type) -> bool:
    return not free_vars(t)


def example_shape(t: ArrayType) -> tuple[int, ...]:
    """The shape of one example of a concrete array type."""
    if not is_concrete(t):
        raise ValueError(f"type {t!r} has unknown sizes")
    if t.is_index:
        return ()
    return tuple(int(d) for d in t.dims)
