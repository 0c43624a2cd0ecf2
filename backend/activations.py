"""Neural-network activations as primitives with hand-derived, stable gradient rules."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import reductions
from .broadcasting import shape_of
from .core import Eqn, bind, defemit, defgeneric, defprim, defscalar, defvjp
from .elementwise import STABLE_LOG_OF, add, exp, exp32, mul, sub
from .errors import ArgumentError
from .numba_codegen import FunctionWriter, literal, running_max

tanh_p = defprim("tanh", np.tanh)


def tanh(x) -> Any:
    """Elementwise hyperbolic tangent."""
    return bind(tanh_p, x)


defvjp(tanh_p, lambda g, out, x: (mul(g, sub(1.0, mul(out, out))),))
defgeneric(tanh_p, lambda xp, x: xp.tanh(x))

# A rational approximation of tanh for float32 (the minimax fit Eigen uses): within a few
# units in the last place, and unlike a call to libm's tanhf it vectorises, which makes it
# about ten times faster in a fused loop. float64 keeps the exact np.tanh.
_TANH32_P = (
    -2.76076847742355e-16,
    2.00018790482477e-13,
    -8.60467152213735e-11,
    5.12229709037114e-08,
    1.48572235717979e-05,
    6.37261928875436e-04,
    4.89352455891786e-03,
)
_TANH32_Q = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)


def _tanh32(arg: str) -> list[str]:
    """Statements, then the expression, of the float32 approximation of ``tanh(arg)``."""
    x, x2, p, q = (f"tanh32_{s}" for s in "xzpq")
    # a clamp written as conditions (min and max are each one more overload to compile); NaN passes
    lines = [
        f"{x} = np.float32({arg})",
        f"{x} = np.float32(-7.90531110763549805) if {x} < np.float32(-7.90531110763549805) else "
        f"(np.float32(7.90531110763549805) if {x} > np.float32(7.90531110763549805) else {x})",
        f"{x2} = {x} * {x}",
        f"{p} = np.float32({_TANH32_P[0]!r})",
    ]
    lines += [f"{p} = {p} * {x2} + np.float32({c!r})" for c in _TANH32_P[1:]]
    lines += [f"{q} = np.float32({_TANH32_Q[0]!r})"]
    lines += [f"{q} = {q} * {x2} + np.float32({c!r})" for c in _TANH32_Q[1:]]
    return lines + [f"{p} * {x} / {q}"]


def _tanh_scalar(x: str, dtype: np.dtype) -> str:
    return "\n".join(_tanh32(x)) if dtype == np.float32 else f"np.tanh({x})"


defscalar(tanh_p, _tanh_scalar)


def _logistic_impl(x):
    # 1/(1+exp(-x)) overflows for large -x; the tanh form is exact and never overflows.
    y = np.tanh(np.multiply(x, 0.5, dtype=x.dtype))
    y *= 0.5
    y += 0.5
    return y


def logistic_generic(xp, x):
    """The logistic function in the tanh form, with array-API namespace ``xp``."""
    return xp.tanh(x * 0.5) * 0.5 + 0.5


logistic_p = defprim("logistic", _logistic_impl)
defgeneric(logistic_p, logistic_generic)


def logistic(x) -> Any:
    """Elementwise logistic sigmoid ``1 / (1 + exp(-x))``."""
    return bind(logistic_p, x)


defvjp(logistic_p, lambda g, out, x: (mul(g, mul(out, sub(1.0, out))),))


def _logistic_scalar(x: str, dtype: np.dtype) -> str:
    half = literal(0.5, dtype)
    if dtype == np.float32:
        *lines, value = _tanh32(f"{half} * {x}")
        return "\n".join(lines + [f"{half} + {half} * ({value})"])
    return f"({half} + {half} * np.tanh({half} * {x}))"


defscalar(logistic_p, _logistic_scalar)


def _step_impl(x):
    return (x > 0).astype(x.dtype)


step_p = defprim("step", _step_impl, nondiff=True)
defgeneric(step_p, lambda xp, x: xp.astype(x > 0, x.dtype))


def _step_scalar(x: str, dtype: np.dtype) -> str:
    one, zero = literal(1, dtype), literal(0, dtype)
    return f"({one} if {x} > {zero} else {zero})"


defscalar(step_p, _step_scalar)


def step(x) -> Any:
    """Heaviside step: 1 where ``x > 0``, else 0, in ``x``'s dtype; carries no gradient."""
    return bind(step_p, x)


relu_p = defprim("relu", lambda x: np.maximum(x, 0, dtype=x.dtype))
defgeneric(relu_p, lambda xp, x: xp.maximum(x, xp.zeros_like(x)))


def _relu_scalar(x: str, dtype: np.dtype) -> str:
    """``np.maximum(x, 0)`` exactly: NaN stays NaN (it is not <= 0), -0.0 becomes 0.0."""
    zero = literal(0, dtype)
    return f"({zero} if {x} <= {zero} else {x})"


defscalar(relu_p, _relu_scalar)


def relu(x) -> Any:
    """Elementwise ``max(x, 0)``; the gradient at 0 is taken as 0."""
    return bind(relu_p, x)


defvjp(relu_p, lambda g, out, x: (mul(g, step(x)),))


def _softmax_impl(x, axis):
    # ndarray methods, not np.max/np.sum: the function wrappers cost microseconds on small arrays
    e = x - x.max(axis=axis, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=axis, keepdims=True)
    return e


def _log_softmax_impl(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    total = np.exp(shifted).sum(axis=axis, keepdims=True)
    shifted -= np.log(total, out=total)
    return shifted


def _softmax_generic(xp, x, axis):
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


def _log_softmax_generic(xp, x, axis):
    shifted = x - xp.max(x, axis=axis, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


softmax_p = defprim("softmax", _softmax_impl)
log_softmax_p = defprim("log_softmax", _log_softmax_impl)
defgeneric(softmax_p, _softmax_generic)
defgeneric(log_softmax_p, _log_softmax_generic)


def softmax(x, axis: int = -1) -> Any:
    """``exp(x) / sum(exp(x))`` along ``axis``, computed without overflow."""
    return bind(softmax_p, x, axis=axis % max(len(shape_of(x)), 1))


def log_softmax(x, axis: int = -1) -> Any:
    """``log(softmax(x))`` along ``axis``, computed stably."""
    return bind(log_softmax_p, x, axis=axis % max(len(shape_of(x)), 1))


# log(softmax(z)), in a loss or a user's function, is traced as the stable log_softmax(z):
# probabilities that underflow to 0 would otherwise give -inf.
STABLE_LOG_OF[softmax_p.name] = log_softmax


def _softmax_vjp(g, out, x, axis):
    inner = reductions.sum(mul(g, out), axis, keepdims=True)
    return (mul(out, sub(g, inner)),)


def _log_softmax_vjp(g, out, x, axis):
    total = reductions.sum(g, axis, keepdims=True)
    return (sub(g, mul(exp(out), total)),)


defvjp(softmax_p, _softmax_vjp)
defvjp(log_softmax_p, _log_softmax_vjp)


def _along_axis(writer: FunctionWriter, e: Eqn, body: list[str]) -> bool:
    """Loops over every axis but ``axis``; ``body`` lines see ``x``, ``o``, ``n`` and ``{at}``."""
    x, out = e.inputs[0], e.out
    shape, axis = x.shape, e.attrs["axis"]
    o = writer.name(out)
    writer.alloc(o, shape, out.dtype)
    outer = [k for k in range(len(shape)) if k != axis]
    idx = {k: f"i{k}" for k in outer}
    for depth, k in enumerate(outer):
        writer.emit(f"for {idx[k]} in range({shape[k]}):", depth + 1)
    at = ", ".join(idx.get(k, "j") for k in range(len(shape)))
    for line in body:
        writer.emit(
            line.format(
                x=writer.name(x),
                o=o,
                n=shape[axis],
                at=at,
                ninf=f"np.{np.dtype(out.dtype).name}(-np.inf)",
                zero=literal(0, out.dtype),
            ),
            len(outer) + 1,
        )
    return True


def _exp_lines(e: Eqn, arg: str, target: str, indent: str) -> list[str]:
    """Lines that set ``target`` to ``exp(arg)``: float32's vectorising form, else libm's."""
    if e.out.dtype != np.float32:
        return [f"{indent}{target} = np.exp({arg})"]
    *lines, value = exp32(arg)
    return [indent + line for line in lines] + [f"{indent}{target} = {value}"]


# m starts as -inf of the array's dtype: a float64 start would make Numba type m, x - m and its
# exp in float64
_LARGEST = ["m = {ninf}", "for j in range({n}):", f"    m = {running_max('m', '{x}[{at}]')}", "s = {zero}"]


def _emit_softmax(writer: FunctionWriter, e: Eqn) -> bool:
    body = [*_LARGEST, "for j in range({n}):"]
    body += _exp_lines(e, "{x}[{at}] - m", "{o}[{at}]", "    ")
    body += ["    s += {o}[{at}]", "for j in range({n}):", "    {o}[{at}] = {o}[{at}] / s"]
    return _along_axis(writer, e, body)


def _emit_log_softmax(writer: FunctionWriter, e: Eqn) -> bool:
    body = [*_LARGEST, "for j in range({n}):"]
    body += _exp_lines(e, "{x}[{at}] - m", "ex", "    ")
    body += ["    s += ex", "ls = np.log(s)", "for j in range({n}):", "    {o}[{at}] = {x}[{at}] - m - ls"]
    return _along_axis(writer, e, body)


defemit(softmax_p, _emit_softmax)
defemit(log_softmax_p, _emit_log_softmax)


# ----------------------------------------------------------------------------- erf, gelu, silu

_SQRT_HALF = 0.7071067811865476  # 1 / sqrt(2)
_TWO_OVER_SQRT_PI = 1.1283791670955126
_SQRT_TWO_OVER_PI = 0.7978845608028654
_GELU_CUBIC = 0.044715  # the tanh approximation's cubic term (Hendrycks and Gimpel, 2016)


def _scipy_erf(x):
    # scipy.special costs a tenth of a second to import: only a model that uses erf pays it
    from scipy.special import erf as scipy_erf

    return scipy_erf(x)


def _erf_impl(x):
    return np.asarray(_scipy_erf(x)).astype(x.dtype, copy=False)


# erf(x) = x P(x^2) / Q(x^2) on (-4, 4) and +-1 outside, our own fit (scripts/fit_erf.py: Lawson
# weighted least squares, degrees 6 and 5 in x^2): absolute error below 1.6e-8 everywhere (most
# of it is the clamp, erf(4) = 1 - 1.5e-8), so in float32 within one unit in the last place.
# Unlike libm's erf it has no branches, so a fused loop vectorises it: ten times faster.
_ERF_P = (
    1.1283791820905722,
    0.18471175978288285,
    0.05433243768106365,
    0.0038395415208625355,
    0.0003826782754478941,
    4.780135550965653e-06,
    -1.3664804898727567e-08,
)
_ERF_Q = (
    1.0,
    0.49703008022351364,
    0.11382658536664889,
    0.015453492441238089,
    0.0013095627497345839,
    6.400543859005209e-05,
)
_ERF_CLAMP = 4.0
ERF_GENERIC_ERROR = 1.6e-8  # the bound above, which the tests hold the array-API form to


def _horner(coefficients, y):
    total = coefficients[-1]
    for c in reversed(coefficients[:-1]):
        total = total * y + c
    return total


def erf_generic(xp, x):
    """erf with array-API operations alone (the standard has no erf): the rational form above,
    absolute error below 1.6e-8, so float32-exact and a close float64 approximation."""
    c = xp.clip(x, -_ERF_CLAMP, _ERF_CLAMP)
    y = c * c
    # exactly +-1 beyond the clamp (so gelu(-inf) is -inf * 0, NaN, as with scipy); NaN stays NaN
    return xp.where(xp.abs(x) >= _ERF_CLAMP, xp.sign(x), c * _horner(_ERF_P, y) / _horner(_ERF_Q, y))


erf_p = defprim("erf", _erf_impl)
defgeneric(erf_p, erf_generic)


def erf(x) -> Any:
    """The error function, elementwise: ``2 / sqrt(pi) * integral of exp(-t**2) from 0 to x``."""
    return bind(erf_p, x)


defvjp(erf_p, lambda g, out, x: (mul(g, mul(exp(mul(mul(x, x), -1.0)), _TWO_OVER_SQRT_PI)),))


def _erf32(arg: str) -> list[str]:
    """Statements, then the float64 expression, of the rational erf of float32 ``arg``."""
    x, y, p, q = (f"erf32_{s}" for s in "xypq")
    # in float64, which keeps the result within one float32 ulp
    lines = [f"{x} = np.float64({arg})", f"{y} = {x} * {x}", f"{p} = {_ERF_P[-1]!r}"]
    lines += [f"{p} = {p} * {y} + {c!r}" for c in reversed(_ERF_P[:-1])]
    lines += [f"{q} = {_ERF_Q[-1]!r}"]
    lines += [f"{q} = {q} * {y} + {c!r}" for c in reversed(_ERF_Q[:-1])]
    # a select, which vectorises; written so that NaN fails the test and stays NaN
    return lines + [f"(math.copysign(1.0, {x}) if abs({x}) >= {_ERF_CLAMP!r} else {x} * {p} / {q})"]


def _erf_scalar(x: str, dtype: np.dtype) -> str:
    if dtype == np.float32:
        *lines, value = _erf32(x)
        return "\n".join([*lines, f"np.float32({value})"])
    return f"np.float64(math.erf({x}))"


defscalar(erf_p, _erf_scalar)


def _gelu_impl(x, approximate):
    # the same order of operations as _gelu_fwd, so a trained model's forward is the same bits
    with np.errstate(over="ignore"):
        if approximate == "tanh":
            inner = np.tanh(_SQRT_TWO_OVER_PI * (x + _GELU_CUBIC * (x * x * x)))
            return (x * (0.5 * (1.0 + inner))).astype(x.dtype, copy=False)
        return (x * (0.5 * (1.0 + _scipy_erf(x * _SQRT_HALF)))).astype(x.dtype, copy=False)


def _gelu_generic(xp, x, approximate):
    if approximate == "tanh":
        return x * (0.5 * (1.0 + xp.tanh(_SQRT_TWO_OVER_PI * (x + _GELU_CUBIC * (x * x * x)))))
    return x * (0.5 * (1.0 + erf_generic(xp, x * _SQRT_HALF)))


gelu_p = defprim("gelu", _gelu_impl)
defgeneric(gelu_p, _gelu_generic)


def gelu(x, approximate: str = "none") -> Any:
    """The Gaussian error linear unit ``x * Phi(x)``, elementwise; ``approximate="tanh"`` is
    the tanh form ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x**3)))``, as in PyTorch."""
    if approximate not in ("none", "tanh"):
        raise ArgumentError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return bind(gelu_p, x, approximate=approximate)


def _gelu_inner(x, approximate):
    """The erf (or tanh) inside gelu's cdf ``(1 + inner) / 2``."""
    if approximate == "tanh":
        return tanh(mul(add(x, mul(mul(mul(x, x), x), _GELU_CUBIC)), _SQRT_TWO_OVER_PI))
    return erf(mul(x, _SQRT_HALF))


def _gelu_fwd(x, needed, approximate):
    """gelu on the gradient path: ``x * cdf``, saving the inner erf (or tanh) for the rule,
    so that the backward does not compute it a second time."""
    inner = _gelu_inner(x, approximate)
    return mul(x, mul(add(inner, 1.0), 0.5)), inner


def _gelu_vjp(g, out, x, approximate, saved=None):
    if approximate == "tanh":
        x2 = mul(x, x)
        inner = saved if saved is not None else _gelu_inner(x, approximate)
        d_inner = mul(add(mul(x2, 3.0 * _GELU_CUBIC), 1.0), _SQRT_TWO_OVER_PI)
        slope = add(mul(add(inner, 1.0), 0.5), mul(mul(mul(x, sub(1.0, mul(inner, inner))), d_inner), 0.5))
        return (mul(g, slope),)
    inner = saved if saved is not None else _gelu_inner(x, approximate)
    cdf = mul(add(inner, 1.0), 0.5)
    pdf = mul(exp(mul(mul(x, x), -0.5)), 0.3989422804014327)  # 1 / sqrt(2 pi)
    return (mul(g, add(cdf, mul(x, pdf))),)


defvjp(gelu_p, _gelu_vjp)
gelu_p.vjp_fwd = _gelu_fwd


def _gelu_scalar(x: str, dtype: np.dtype, approximate: str) -> str:
    t = np.dtype(dtype).name
    if approximate == "tanh":
        # libm's tanh, not the rational one: 1 + tanh cancels where tanh nears -1, and the
        # rational's few ulps there would be all of gelu's value
        inner = f"np.tanh(np.{t}({_SQRT_TWO_OVER_PI!r}) * ({x} + np.{t}({_GELU_CUBIC!r}) * {x} * {x} * {x}))"
        return f"{x} * (np.{t}(0.5) * (np.{t}(1.0) + {inner}))"
    if dtype == np.float32:
        *lines, inner = _erf32(f"np.float64({x}) * {_SQRT_HALF!r}")  # in float64: no rounding of the argument
        return "\n".join([*lines, f"np.float32(np.float64({x}) * (0.5 * (1.0 + {inner})))"])
    return f"{x} * (0.5 * (1.0 + math.erf({x} * {_SQRT_HALF!r})))"


defscalar(gelu_p, _gelu_scalar)


def silu(x) -> Any:
    """The sigmoid linear unit (swish) ``x * logistic(x)``, elementwise."""
    return mul(x, logistic(x))
