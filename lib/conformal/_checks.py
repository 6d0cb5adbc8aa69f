"""Input checks and exact rank arithmetic shared by the conformal routines.

Checks come in two kinds. Shape and option checks run at trace time, so they also run under
`jit`/`vmap`. Value checks (NaN, ranges, label ids) need concrete arrays: they run when the inputs
are concrete and are skipped (silently) for tracers. Every public function takes `validate=False`
to skip both kinds.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_ON_INFINITE = ("warn", "raise", "ignore")


class InfiniteThresholdWarning(UserWarning):
    """A conformal threshold is +inf: too few calibration points for the requested level.

    The threshold is still valid (an infinite threshold gives the trivial set/interval, which covers
    with probability 1), but it is almost never what the caller intended.
    """


class NoThresholdWarning(UserWarning):
    """No candidate threshold met the risk bound (CRC / Learn-then-Test)."""


def is_concrete(*xs: Any) -> bool:
    """True when none of `xs` is a JAX tracer (values can be inspected on the host)."""
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


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
    """Raise ValueError unless `value` (if concrete) is a scalar in the open interval (0, 1)."""
    if not is_concrete(value):
        return
    arr = np.asarray(value)
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar in (0, 1); got an array of shape {arr.shape}.")
    try:
        v = float(arr)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1); got {value!r}.") from None
    if not (0.0 < v < 1.0):
        raise ValueError(f"{name} must be in the open interval (0, 1); got {v!r}.")


def check_on_infinite(on_infinite: str) -> None:
    if on_infinite not in _ON_INFINITE:
        raise ValueError(f"on_infinite must be one of {_ON_INFINITE}; got {on_infinite!r}.")


def report_infinite(message: str, on_infinite: str) -> None:
    """Warn about (or raise for) an infinite threshold, as chosen by `on_infinite`."""
    if on_infinite == "raise":
        raise ValueError(message)
    if on_infinite == "warn":
        warnings.warn(message, InfiniteThresholdWarning, stacklevel=3)


def as_float_array(x: Any, name: str, *, ndim: int | None = None, min_ndim: int | None = None):
    """`jnp.asarray` plus a rank check and a floating dtype (integers are promoted)."""
    try:
        arr = jnp.asarray(x)
    except TypeError as e:
        raise ValueError(f"{name} must be an array of numbers; got {type(x).__name__}.") from e
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have rank {ndim}; got shape {tuple(arr.shape)}.")
    if min_ndim is not None and arr.ndim < min_ndim:
        raise ValueError(f"{name} must have rank >= {min_ndim}; got shape {tuple(arr.shape)}.")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float))
    return arr


def host_view(x) -> np.ndarray | None:
    """A NumPy view of a concrete array when that costs no device transfer, else None.

    Value checks then run in NumPy (no XLA compilation per input shape); arrays that live on an
    accelerator are checked with a small jitted reduction instead.
    """
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, jax.Array) and is_concrete(x):
        try:
            on_cpu = all(d.platform == "cpu" for d in x.devices())
        except Exception:  # noqa: BLE001 -- deleted / exotic arrays: fall back to the jit path
            return None
        if on_cpu:
            return np.asarray(x)
    return None


def as_int_array(x: Any, name: str, *, ndim: int | None = None):
    """`jnp.asarray` for integer ids (bools are accepted as 0/1)."""
    arr = jnp.asarray(x)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have rank {ndim}; got shape {tuple(arr.shape)}.")
    if arr.dtype == jnp.bool_:
        arr = arr.astype(jnp.int32)
    if not jnp.issubdtype(arr.dtype, jnp.integer):
        h = host_view(arr)
        if h is not None and h.size and not np.all(h == np.round(h)):
            raise ValueError(f"{name} must hold integer ids; got non-integer values.")
        arr = arr.astype(jnp.int32)
    return arr


def check_nonempty(x, name: str, axis: int = -1) -> None:
    if x.ndim == 0 or x.shape[axis] == 0:
        raise ValueError(
            f"{name} is empty (shape {tuple(x.shape)}): "
            "the calibration set needs at least one point."
        )


def check_same_shape(a, b, name_a: str, name_b: str) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape; "
            f"got {tuple(a.shape)} and {tuple(b.shape)}."
        )


@jax.jit
def _nan_mask(x):
    return jnp.isnan(x)


def check_no_nan(x, name: str) -> None:
    """Raise ValueError if a concrete `x` holds NaN (names the first offending index)."""
    if not is_concrete(x) or np.size(x) == 0:
        return
    h = host_view(x)
    if h is not None and not jnp.issubdtype(h.dtype, jnp.floating):
        return
    bad = np.isnan(h) if h is not None else np.asarray(_nan_mask(x))
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} contains {int(bad.sum())} NaN value(s) (first at index {first}); "
            "conformal routines need real-valued inputs."
        )


@jax.jit
def _prob_stats(p):
    return jnp.min(p), jnp.max(p), jnp.max(jnp.abs(jnp.sum(p, axis=-1) - 1.0))


def check_probs(probs, name: str = "probs", *, normalized: bool = True) -> None:
    """Concrete probabilities must be finite, in [0, 1] and (if `normalized`) sum to 1 per row."""
    if not is_concrete(probs) or probs.size == 0:
        return
    h = host_view(probs)
    if h is not None:
        lo, hi = float(h.min()), float(h.max())
        dev = float(np.abs(h.sum(-1) - 1.0).max()) if normalized else 0.0
    else:
        lo, hi, dev = (float(v) for v in _prob_stats(probs))
    if math.isnan(lo) or math.isnan(hi):
        check_no_nan(probs, name)
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name} must lie in [0, 1]; got values in [{lo:.6g}, {hi:.6g}].")
    tol = 1e-3 if probs.dtype == jnp.float16 else 1e-4 * max(1.0, probs.shape[-1] / 100)
    if normalized and dev > tol:
        raise ValueError(
            f"each row of {name} must sum to 1 (softmax output); the largest deviation is "
            f"{dev:.3g} > {tol:.1g}."
        )


def check_labels(labels, num_classes: int, name: str = "labels") -> None:
    """Concrete labels must be integer ids in [0, num_classes)."""
    if not is_concrete(labels) or labels.size == 0:
        return
    h = host_view(labels)
    lo, hi = (
        (int(h.min()), int(h.max()))
        if h is not None
        else (
            int(jnp.min(labels)),
            int(jnp.max(labels)),
        )
    )
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"{name} must be integer ids in [0, {num_classes}); got values in [{lo}, {hi}]."
        )


def any_true(x) -> bool:
    """bool(any(x)) for a concrete array, through NumPy when the array is on the host."""
    h = host_view(x)
    return bool(h.any()) if h is not None else bool(jnp.any(x))


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
    if is_concrete(alpha):
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
