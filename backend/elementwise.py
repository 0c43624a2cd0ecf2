"""Elementwise primitives: arithmetic, exp/log, comparisons, casts.

Binary operations broadcast strictly: equal shapes, a scalar, the trailing axes of
the other operand (a bias ``(n,)`` added to a batch ``(B, n)``), or equal ranks with
size-1 axes (a ``keepdims`` reduction). Anything else, like ``(8, 1) - (8,)`` that
numpy would silently turn into ``(8, 8)``, raises :class:`ShapeError`.
"""

from __future__ import annotations

from numbers import Number
from typing import Any

import numpy as np

from .array_api import namespace_of, xp_dtype
from .broadcasting import dtype_of, shape_of, sum_to
from .core import Tracer, Var, bind, defgeneric, defprim, defscalar, defvjp
from .errors import ShapeError
from .numba_codegen import literal


def _is_float(dt: np.dtype) -> bool:
    return dt.kind == "f"


def operands(name: str, a: Any, b: Any) -> tuple[Any, Any]:
    """Make ``a`` and ``b`` ready for a binary primitive: weak scalars, strict broadcasting.

    Python numbers and integer arrays take the dtype of a floating partner, so
    ``x * 2`` or ``x + labels`` never upcasts a float32 ``x``.
    """
    a_num, b_num = isinstance(a, Number), isinstance(b, Number)
    if a_num and b_num:
        return np.asarray(a), np.asarray(b)
    if a_num:
        return np.asarray(a, dtype=_weak_dtype(a, dtype_of(b))), b
    if b_num:
        return a, np.asarray(b, dtype=_weak_dtype(b, dtype_of(a)))
    da, db = dtype_of(a), dtype_of(b)
    if _is_float(da) and not _is_float(db) and type(b) is not Tracer:
        b = np.asarray(b, dtype=da) if namespace_of(b) is None else cast(b, da)
    elif _is_float(db) and not _is_float(da) and type(a) is not Tracer:
        a = np.asarray(a, dtype=db) if namespace_of(a) is None else cast(a, db)
    check_broadcast(name, shape_of(a), shape_of(b))
    return a, b


def _weak_dtype(scalar: float, partner: np.dtype) -> np.dtype:
    if _is_float(partner) or isinstance(scalar, (bool, np.bool_)) or float(scalar).is_integer():
        return partner if partner.kind in "fiub" else np.asarray(scalar).dtype
    return np.dtype(np.float64) if partner.kind in "iub" else partner


def check_broadcast(name: str, sa: tuple, sb: tuple) -> None:
    if sa == sb or not sa or not sb:
        return
    if len(sa) == len(sb):
        if all(x == y or x == 1 or y == 1 for x, y in zip(sa, sb)):
            return
    else:
        short, long_ = (sa, sb) if len(sa) < len(sb) else (sb, sa)
        if long_[len(long_) - len(short) :] == short:
            return
    try:
        result = f"numpy would broadcast them to {np.broadcast_shapes(sa, sb)}"
    except ValueError:
        result = "they cannot be broadcast together"
    raise ShapeError(
        f"{name}: operand shapes {sa} and {sb} do not match; {result}.\n"
        "  nnc broadcasts only a scalar, matching trailing axes (a bias), or equal ranks with "
        "size-1 axes.\n  hint: reshape one operand so the ranks agree, e.g. t.reshape(-1, 1)"
    )


def _typed(expr: str, dtype: np.dtype) -> str:
    """``expr`` converted to the result's numeric ``dtype``. Operations on operands of one dtype
    keep it in Numba, but a power, a choice or a sign may come out in another, so their
    forms restate it; the others do not, since each conversion is more for Numba to compile."""
    return f"np.{dtype.name}({expr})" if dtype.kind in "fiu" else expr


def unbroadcast(g: Any, x: Any) -> Any:
    """Sum a cotangent back to the shape of the operand it belongs to, in that operand's dtype.

    The one helper every broadcasting rule uses."""
    shape, dtype = shape_of(x), dtype_of(x)
    if shape_of(g) != shape:
        g = sum_to(g, shape)
    if dtype_of(g) != dtype:
        g = cast(g, dtype)
    return g


# --------------------------------------------------------------------------- arithmetic

add_p = defprim("add", np.add)
sub_p = defprim("sub", np.subtract)
mul_p = defprim("mul", np.multiply)
div_p = defprim("div", np.true_divide)
neg_p = defprim("neg", np.negative)


def add(a, b):
    """Elementwise ``a + b`` (strict broadcasting)."""
    return bind(add_p, *operands("add", a, b))


def sub(a, b):
    """Elementwise ``a - b`` (strict broadcasting)."""
    return bind(sub_p, *operands("subtract", a, b))


def mul(a, b):
    """Elementwise ``a * b`` (strict broadcasting)."""
    return bind(mul_p, *operands("multiply", a, b))


def div(a, b):
    """Elementwise ``a / b`` (strict broadcasting)."""
    return bind(div_p, *operands("divide", a, b))


def neg(a):
    return bind(neg_p, a)


defvjp(add_p, lambda g, out, a, b: (unbroadcast(g, a), unbroadcast(g, b)))
defvjp(sub_p, lambda g, out, a, b: (unbroadcast(g, a), unbroadcast(neg(g), b)))
defvjp(mul_p, lambda g, out, a, b: (unbroadcast(mul(g, b), a), unbroadcast(mul(g, a), b)))
defvjp(div_p, lambda g, out, a, b: (unbroadcast(div(g, b), a), unbroadcast(neg(mul(g, div(out, b))), b)))
defvjp(neg_p, lambda g, out, a: (neg(g),))


for _prim, _name, _op in (
    (add_p, "add", "+"),
    (sub_p, "subtract", "-"),
    (mul_p, "multiply", "*"),
    (div_p, "divide", "/"),
):
    defgeneric(_prim, lambda xp, a, b, _name=_name: getattr(xp, _name)(a, b))
    defscalar(_prim, lambda a, b, dtype, _op=_op: f"{a} {_op} {b}")
defgeneric(neg_p, lambda xp, a: xp.negative(a))
defscalar(neg_p, lambda a, dtype: f"-{a}")


def _integer_pow_impl(x, n):
    if n == 2:
        return np.multiply(x, x)
    return np.power(x, n, dtype=x.dtype) if isinstance(x, np.ndarray) else np.power(x, n)


integer_pow_p = defprim("integer_pow", _integer_pow_impl)
pow_p = defprim("pow", np.power)


def power(a, b):
    """``a ** b``; an integer exponent becomes the cheaper, exact ``integer_pow``."""
    if isinstance(b, (int, np.integer)) and not isinstance(b, bool):
        if b == 1:
            return a
        return bind(integer_pow_p, a, n=int(b))
    return bind(pow_p, *operands("power", a, b))


def _integer_pow_vjp(g, out, x, n):
    if n == 0:
        return (None,)
    dx = x if n == 2 else power(x, n - 1)
    return (mul(g, mul(dx, float(n))),)


def _pow_vjp(g, out, a, b):
    ga = mul(g, mul(b, power(a, sub(b, 1.0))))
    gb = mul(g, mul(out, log(a)))
    return unbroadcast(ga, a), unbroadcast(gb, b)


defvjp(integer_pow_p, _integer_pow_vjp)
defvjp(pow_p, _pow_vjp)
defgeneric(integer_pow_p, lambda xp, x, n: x * x if n == 2 else x**n)
defgeneric(pow_p, lambda xp, a, b: xp.pow(a, b))


def _integer_pow_scalar(x: str, n: int, dtype: np.dtype) -> str:
    return _typed(_integer_pow_expr(x, n, literal(1, dtype) if dtype.kind == "f" else None), dtype)


def _integer_pow_expr(x: str, n: int, one: str | None) -> str:
    """``x ** n``; for floats a negative power is the reciprocal of the positive one, since
    Numba's ``0.0 ** -2`` raises ZeroDivisionError where numpy gives inf (as ``1 / 0.0`` does
    under the numpy error model). ``one`` is None for integers: numpy refuses their negative
    powers, and the raise sends ``nnc.compile`` to the interpreter, which says so."""
    if n < 0 and one is not None:
        return f"{one} / ({_integer_pow_expr(x, -n, one)})"
    return f"{x} * {x}" if n == 2 else f"{x} ** {n}"


defscalar(integer_pow_p, _integer_pow_scalar)
defscalar(pow_p, lambda a, b, dtype: _typed(f"{a} ** {b}", dtype))

# --------------------------------------------------------------------------- transcendental

exp_p = defprim("exp", np.exp)
log_p = defprim("log", np.log)
sqrt_p = defprim("sqrt", np.sqrt)
abs_p = defprim("abs", np.abs)


def exp(x):
    """Elementwise exponential."""
    return bind(exp_p, x)


# The stable form of log(f(z)) for a one-input primitive f, by f's name, registered by the
# family that defines f (activations: log(softmax(z)) is log_softmax(z)).
STABLE_LOG_OF: dict[str, Any] = {}


def log(x):
    """Elementwise natural logarithm.

    The log of a traced output of a primitive in ``STABLE_LOG_OF`` is rewritten to that
    primitive's stable form: ``log(softmax(z))`` is traced as ``log_softmax(z)``."""
    producer = x.var.producer if type(x) is Tracer else None
    if producer is not None and producer.prim.name in STABLE_LOG_OF:
        (source,) = producer.inputs  # a one-input primitive, whose output is traced: so is its input
        if type(source) is Var:
            return STABLE_LOG_OF[producer.prim.name](Tracer(x.trace, source), **producer.attrs)
    return bind(log_p, x)


def sqrt(x):
    """Elementwise square root."""
    return bind(sqrt_p, x)


def absolute(x):
    """Elementwise absolute value."""
    return bind(abs_p, x)


defvjp(exp_p, lambda g, out, x: (mul(g, out),))
defvjp(log_p, lambda g, out, x: (div(g, x),))
defvjp(sqrt_p, lambda g, out, x: (div(g, mul(out, 2.0)),))
defvjp(abs_p, lambda g, out, x: (mul(g, sign(x)),))
for _prim, _name in ((exp_p, "exp"), (log_p, "log"), (sqrt_p, "sqrt"), (abs_p, "abs")):
    defgeneric(_prim, lambda xp, x, _name=_name: getattr(xp, _name)(x))
    defscalar(_prim, lambda x, dtype, _name=_name: f"np.{_name}({x})")

# exp(x) for float32 as 2^k exp(r): k = round(x / ln 2), r = x - k ln 2 in two parts (Cody and
# Waite), exp(r) on |r| <= ln(2)/2 by Cephes' expf polynomial, and 2^k added to its exponent bits.
# Branch-free (every case a select), so unlike a call to libm's expf, which this machine has
# no vector form of, a loop vectorises it: five times faster. Within one unit in the last place
# of the exact result (numpy's own expf is within two), exactly inf above log(FLT_MAX), 0 below
# the smallest subnormal, subnormals below 2^-126 (scaled twice: k is split), NaN stays NaN.
# float64 keeps libm's exp.
_EXP32_P = (
    1.9875691500e-4,
    1.3981999507e-3,
    8.3334519073e-3,
    4.1665795894e-2,
    1.6666665459e-1,
    5.0000001201e-1,
)
_EXP32_MAX = 88.72283172607422  # the largest float32 whose exp is finite


def _f32(c: float) -> str:
    return f"np.float32({c!r})"


def exp32(arg: str) -> list[str]:
    """Statements, then the expression, of float32 ``exp(arg)`` (see ``_EXP32_P``); its names
    are ``exp32_*``, so a loop that needs two writes one after the other."""
    a, x, k, i, r, p, y = (f"exp32_{s}" for s in "axkirpy")
    low, deep = _f32(-104.0), _f32(-80.0)
    lines = [
        f"{a} = np.float32({arg})",
        # clamped (NaN passes) so that the exponent arithmetic stays in int32
        f"{x} = {low} if {a} < {low} else ({_f32(89.0)} if {a} > {_f32(89.0)} else {a})",
        f"{k} = np.floor({x} * {_f32(1.4426950408889634)} + {_f32(0.5)})",
        f"{r} = {x} - {k} * {_f32(0.693359375)} - {k} * {_f32(-2.12194440e-4)}",
        f"{p} = {_f32(_EXP32_P[0])}",
    ]
    lines += [f"{p} = {p} * {r} + {_f32(c)}" for c in _EXP32_P[1:]]
    lines += [
        f"{p} = {p} * {r} * {r} + {r} + {_f32(1.0)}",
        # 2^k into the exponent bits; below 2^-80, 2^(k + 64) and then one product by 2^-64,
        # which rounds into the subnormals exactly once
        f"{i} = np.int32(np.int32({k}) + (np.int32(64) if {x} < {deep} else np.int32(0)))",
        f"{i} = np.int32(np.float32({p}).view(np.int32) + {i} * np.int32(8388608))",
        f"{y} = np.int32({i}).view(np.float32)",
        f"{y} = {y} * {_f32(2.0**-64)} if {x} < {deep} else {y}",
    ]
    return lines + [f"({a} if {a} != {a} else (np.float32(np.inf) if {a} > {_f32(_EXP32_MAX)} else {y}))"]


defscalar(exp_p, lambda x, dtype: "\n".join(exp32(x)) if np.dtype(dtype) == np.float32 else f"np.exp({x})")

# --------------------------------------------------------------------------- non-differentiable


def _sign_impl(x):
    return np.sign(x)


sign_p = defprim("sign", _sign_impl, nondiff=True)
greater_p = defprim("greater", np.greater, nondiff=True)
less_p = defprim("less", np.less, nondiff=True)
equal_p = defprim("equal", np.equal, nondiff=True)


defgeneric(sign_p, lambda xp, x: xp.sign(x))
defscalar(sign_p, lambda x, dtype: _typed(f"np.sign({x})", dtype))
for _prim, _name, _op in ((greater_p, "greater", ">"), (less_p, "less", "<"), (equal_p, "equal", "==")):
    defgeneric(_prim, lambda xp, a, b, _name=_name: getattr(xp, _name)(a, b))
    defscalar(_prim, lambda a, b, dtype, _op=_op: f"{a} {_op} {b}")


def sign(x):
    """Elementwise sign (-1, 0, 1); carries no gradient."""
    return bind(sign_p, x)


def greater(a, b):
    """Elementwise ``a > b`` as booleans; carries no gradient."""
    return bind(greater_p, *operands("greater", a, b))


def less(a, b):
    """Elementwise ``a < b`` as booleans; carries no gradient."""
    return bind(less_p, *operands("less", a, b))


def equal(a, b):
    """Elementwise ``a == b`` as booleans; carries no gradient."""
    return bind(equal_p, *operands("equal", a, b))


def _cast_impl(x, dtype):
    return np.asarray(x).astype(dtype, copy=False)


cast_p = defprim("cast", _cast_impl)
defgeneric(cast_p, lambda xp, x, dtype: xp.astype(x, xp_dtype(xp, dtype), copy=False))
defscalar(cast_p, lambda x, dtype: f"np.{np.dtype(dtype).name}({x})")


def cast(x, dtype) -> Any:
    """``x`` converted to ``dtype``; the gradient is cast back."""
    dtype = np.dtype(dtype)
    if dtype_of(x) == dtype:
        return x
    return bind(cast_p, x, dtype=dtype)


defvjp(cast_p, lambda g, out, x, dtype: (cast(g, dtype_of(x)) if _is_float(dtype_of(x)) else None,))


where_p = defprim("where", np.where)
defgeneric(where_p, lambda xp, cond, a, b: xp.where(cond, a, b))
defscalar(where_p, lambda cond, a, b, dtype: _typed(f"({a} if {cond} else {b})", dtype))


def where(cond, a, b):
    """``a`` where ``cond`` holds, else ``b``; the gradient flows to the chosen side."""
    a, b = operands("where", a, b)
    check_broadcast("where", shape_of(cond), shape_of(a))
    return bind(where_p, cond, a, b)


def _where_vjp(g, out, cond, a, b):
    zero = np.zeros((), dtype_of(g))
    return None, unbroadcast(where(cond, g, zero), a), unbroadcast(where(cond, zero, g), b)


defvjp(where_p, _where_vjp)


def maximum(a, b):
    """Elementwise maximum; a NaN in either operand gives NaN, as ``np.maximum``; at ties the
    gradient goes to ``a``."""
    a, b = operands("maximum", a, b)
    return where(greater(b, a), b, _or_nan_of(b, a))


def minimum(a, b):
    """Elementwise minimum; a NaN in either operand gives NaN, as ``np.minimum``; at ties the
    gradient goes to ``a``."""
    a, b = operands("minimum", a, b)
    return where(less(b, a), b, _or_nan_of(b, a))


def _or_nan_of(b, a):
    """``a``, but ``b`` where ``b`` is NaN (a comparison with NaN is false, so ``where`` alone
    would drop it). A numpy ``b`` without NaN, a bound like ``tiny``, needs no second pass."""
    if isinstance(b, np.ndarray) and not np.isnan(b).any():
        return a
    return where(equal(b, b), a, b)
