"""Exact conformal ranks and the reporting of infinite or missing thresholds.

What is specific to conformal prediction lives here: the rank ceil((n + 1)(1 - alpha)) in exact
arithmetic, the smallest calibration set with a finite threshold, the level check (a miscoverage
level in the open interval (0, 1), also passed as a tracer under `jit`), and the warnings for a
threshold that comes out +inf. Generic input checks (shapes, NaN, ranges, labels) are in
`introspect._checks`, shared with the other packages.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction
from typing import Any

import jax.numpy as jnp

from introspect import _checks as V

_ON_INFINITE = ("warn", "raise", "ignore")


class InfiniteThresholdWarning(UserWarning):
    """A conformal threshold is +inf: too few calibration points for the requested level.

    The threshold is still valid (an infinite threshold gives the trivial set/interval, which covers
    with probability 1), but it is almost never what the caller intended.
    """


class NoThresholdWarning(UserWarning):
    """No candidate threshold met the risk bound (CRC / Learn-then-Test)."""


def min_calibration_size(alpha: float) -> int:
    """Smallest n for which the split-conformal threshold at level `alpha` is finite.

    The threshold is finite iff ceil((n + 1)(1 - alpha)) <= n, i.e. n >= ceil(1 / alpha) - 1
    (computed with the same exact arithmetic as `conformal_rank`).
    """
    check_level(alpha, "alpha")
    n = max(0, math.ceil(1.0 / float(alpha)) - 2)
    while conformal_rank(n, alpha=alpha) > n:
        n += 1
    return n


def check_level(value: Any, name: str) -> None:
    """Raises ValueError unless a concrete `value` is a number in the open interval (0, 1);
    a traced level passes (it is checked where it is concrete)."""
    if V.is_concrete(value):
        V.check_float_option(value, name, 0.0, 1.0, lo_open=True, hi_open=True)


def check_on_infinite(on_infinite: str) -> None:
    V.check_choice(on_infinite, "on_infinite", _ON_INFINITE)


def report_infinite(message: str, on_infinite: str) -> None:
    """Warn about (or raise for) an infinite threshold, as chosen by `on_infinite`."""
    if on_infinite == "raise":
        raise ValueError(message)
    if on_infinite == "warn":
        warnings.warn(message, InfiniteThresholdWarning, stacklevel=3)


# ----------------------------------------------------------------------------------------------
# Exact rank arithmetic: ceil((n + 1)(1 - alpha)) = (n + 1) - floor((n + 1) alpha).


def _alpha_fraction(alpha: float) -> Fraction | None:
    """The short decimal fraction a user meant by `alpha` (0.1 -> 1/10), if there is one."""
    f = Fraction(alpha).limit_denominator(10_000)
    return f if float(f) == alpha else None


def _floor_times_alpha(m: int, alpha: float) -> int:
    """floor(m * alpha) for an integer m, treating alpha as the decimal it was typed as."""
    f = _alpha_fraction(alpha)
    if f is not None:
        return (m * f.numerator) // f.denominator
    x = m * alpha
    r = round(x)
    return r if abs(x - r) <= 1e-9 * max(1.0, abs(x)) else math.floor(x)


def conformal_rank(n: int, *, alpha: float) -> int:
    """k = ceil((n + 1)(1 - alpha)), the rank of the split-conformal order statistic.

    Computed exactly: alpha is read as the short decimal it was written as (0.1 means 1/10, so
    n = 9 gives k = 9, not 10 from the rounding of 0.9 * 10); other alphas use a 1e-9 relative
    tolerance. k > n means the threshold is +inf.
    """
    return (n + 1) - _floor_times_alpha(n + 1, float(alpha))


def conformal_rank_dynamic(n, alpha):
    """`conformal_rank` for a traced integer n (masks, Mondrian groups) or a traced alpha."""
    n = jnp.asarray(n)
    m = n + 1
    if V.is_concrete(alpha):
        a = float(alpha)
        f = _alpha_fraction(a)
        if f is not None:
            # floor(m * num / den) without overflow: m = q den + r.
            q, r = m // f.denominator, m % f.denominator
            return m - (q * f.numerator + (r * f.numerator) // f.denominator)
    dtype = jnp.result_type(float)
    tol = 1e-9 if dtype == jnp.float64 else 1e-6
    x = m.astype(dtype) * jnp.asarray(alpha, dtype)
    r = jnp.round(x)
    fl = jnp.where(jnp.abs(x - r) <= tol * jnp.maximum(1.0, jnp.abs(x)), r, jnp.floor(x))
    return m - fl.astype(m.dtype)
