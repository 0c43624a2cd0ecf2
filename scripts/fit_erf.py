"""Fit the rational erf of backend/activations.py and print its coefficients and error.

erf(x) is approximated on [0, 4] as x P(x^2) / Q(x^2), P of degree 6 and Q of degree 5 with
Q(0) = 1, by Lawson's iteration: weighted linear least squares on P - erf Q = 0 (weights
divided by the last Q, which makes the linear residual the actual error), each round's weights
multiplied by that round's error so the largest errors count most, which drives the fit
towards the equal-ripple (minimax) one. Outside (-4, 4) erf is taken as +-1.

Run: python scripts/fit_erf.py  (needs scipy; about a second)
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

CLAMP = 4.0
DEGREES = (6, 5)
ROUNDS = 60


def fit(p: int = DEGREES[0], q: int = DEGREES[1], rounds: int = ROUNDS):
    x = np.linspace(0.0, CLAMP, 40001)[1:]
    y, f = x * x, erf(x)
    numerator = x[:, None] * y[:, None] ** np.arange(p + 1)
    denominator = -(f[:, None] * y[:, None] ** np.arange(1, q + 1))
    design = np.concatenate([numerator, denominator], axis=1)
    last_q, weights = np.ones_like(y), np.ones_like(y)
    for _ in range(rounds):
        scale = np.sqrt(weights) / last_q
        solution = np.linalg.lstsq(design * scale[:, None], f * scale, rcond=None)[0]
        a, b = solution[: p + 1], np.concatenate([[1.0], solution[p + 1 :]])
        last_q = np.polyval(b[::-1], y)
        error = x * np.polyval(a[::-1], y) / last_q - f
        weights = weights * np.abs(error)
        weights /= weights.sum()
    return a, b


def evaluate(a, b, x):
    c = np.clip(x, -CLAMP, CLAMP)
    ratio = c * np.polyval(a[::-1], c * c) / np.polyval(b[::-1], c * c)
    return np.where(np.abs(x) >= CLAMP, np.sign(x), ratio)


def main() -> None:
    a, b = fit()
    x = np.linspace(-10.0, 10.0, 2_000_001)
    print("P =", tuple(float(v) for v in a))
    print("Q =", tuple(float(v) for v in b))
    print(f"max absolute error on [-10, 10]: {np.abs(evaluate(a, b, x) - erf(x)).max():.3g}")
    print(
        f"Q's smallest value on [0, {CLAMP**2:g}]: {np.polyval(b[::-1], np.linspace(0, CLAMP**2, 1000)).min():.3g}"
    )


if __name__ == "__main__":
    main()
