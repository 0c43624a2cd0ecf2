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
from dataclasses import dataclass
from typing import Any, Union

_counter = itertools.count()


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


DimLike = Union[int, Dim, DimExpr]


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
        return len(self.dims)

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
        item = as_type(item)
        if not isinstance(item, (ArrayType, TypeVar)):
            raise TypeError(f"Seq takes an array type such as Vec[n], got {item!r}")
        return SeqType(item)

    def __repr__(self) -> str:
        return "Seq"


Seq = _SeqConstructor()

Type = Union[ArrayType, TupleType, TypeVar, SeqType]


class _Constructor:
    def __init__(self, kind: str, rank: int | None):
        self.kind, self.rank = kind, rank

    def __getitem__(self, dims) -> ArrayType:
        dims = dims if isinstance(dims, tuple) else (dims,)
        if self.rank is not None and len(dims) != self.rank:
            raise TypeError(f"{self.kind} takes {self.rank} dimension(s), got {len(dims)}")
        return ArrayType(tuple(_dim(d) for d in dims), self.kind)

    def __repr__(self) -> str:
        return self.kind


def _dim(d: Any) -> DimLike:
    if d is None:
        return Dim()
    if isinstance(d, str):
        return Dim(d)
    if isinstance(d, (Dim, DimExpr)):
        return d
    if isinstance(d, int) and not isinstance(d, bool) and d >= 0:
        return int(d)
    raise TypeError(f"a dimension is a non-negative int, a name or None, got {d!r}")


Vec = _Constructor("Vec", 1)
Mat = _Constructor("Mat", 2)
Tensor = _Constructor("Tensor", None)


def array_type(dims) -> ArrayType:
    """The array type with these dimensions, named Vec or Mat when the rank says so."""
    dims = tuple(dims)
    return ArrayType(dims, {1: "Vec", 2: "Mat"}.get(len(dims), "Tensor"))


def as_type(t: Any) -> Type:
    """Accept a Python tuple of types as a :class:`TupleType`."""
    if isinstance(t, tuple):
        return TupleType(tuple(as_type(x) for x in t))
    if isinstance(t, (ArrayType, TupleType, TypeVar, SeqType)):
        return t
    raise TypeError(f"not an nnc type: {t!r} (use Vec[n], Mat[m, n], Tensor[...] or a tuple of them)")


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
    expr, other = (a, b) if isinstance(a, DimExpr) else (b, a)
    if isinstance(other, int):
        _solve(expr, other, s)
        return
    if isinstance(a, DimExpr) and isinstance(b, DimExpr) and a.op == b.op and \
            sorted(map(repr, a.terms)) == sorted(map(repr, b.terms)):
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
            raise Mismatch("a sequence cannot meet a single example (use unroll, unroll_last or "
                           "lagged to go between them)")
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
    return tuple(int(d) for d in t.dims)
