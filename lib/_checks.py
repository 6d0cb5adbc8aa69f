"""Input validation shared by every package (metrics, losses, conformal, calibrators, signals).

Every public entry point checks its input here and raises a ValueError that names the argument,
says what was wrong and what was expected. No package keeps a validation module of its own.

Two kinds of check:

* Shape and rank checks (`check_rank`, `check_min_rank`, `check_shape`, `check_same_shape`,
  `check_leading`, the shape part of `as_mask`) are chex assertions (`chex.assert_rank`,
  `chex.assert_shape`, ...). Shapes are static, so they also run at trace time on tracers inside
  `jit`/`vmap`; chex's AssertionError is turned into a ValueError with the argument's name and the
  expected shape. (`chex.disable_asserts()` switches them off together with every other chex
  assertion.)
* Value checks (NaN/inf, ranges, label values, rows summing to 1) run only on concrete arrays, at
  the public boundary: a function called inside `jit`/`vmap` with `validate=True` checks shapes
  and skips value checks. `validate=False` skips everything except the checks of static Python
  options.

`prepare_pair` and `prepare_labelled` are the two boundary preambles (two aligned [n] arrays;
per-example class scores with labels) that the metrics and the calibrators share.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(*arrays: Any) -> bool:
    """True when none of `arrays` is a tracer (values can be inspected)."""
    return not any(isinstance(a, jax.core.Tracer) for a in arrays)


def default_float() -> Any:
    """The default floating dtype (float64 when x64 is enabled, else float32)."""
    return jnp.result_type(float)


def as_float(x: Any) -> Any:
    """`x` unchanged when floating (float16/bfloat16 upcast to float32), else the default float."""
    if jnp.issubdtype(x.dtype, jnp.floating):
        if jnp.finfo(x.dtype).bits < 32:
            return x.astype(jnp.float32)
        return x
    return x.astype(default_float())


def as_array(x: Any, name: str) -> Any:
    """`x` as an array of a numeric or boolean dtype, or a ValueError naming `name`.

    Jax arrays (and tracers) are returned as they are. Anything else becomes a numpy array that
    stays on the host until a jitted computation receives it (value checks then run on the host
    without a transfer); 64-bit numpy input is narrowed to 32 bits when x64 is off, as
    `jnp.asarray` would do, so the dtype seen here is the dtype of the computation.
    """
    if x is None:
        raise ValueError(f"{name}: got None; expected an array")
    if isinstance(x, jax.Array):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name}: cannot be converted to a numeric array ({e})") from None
        if arr.dtype == object:
            raise ValueError(f"{name}: cannot be converted to a numeric array (dtype object)")
        if arr.dtype.itemsize == 8 and not _x64_enabled():
            if np.issubdtype(arr.dtype, np.integer):
                arr = arr.astype(np.int32)
            elif np.issubdtype(arr.dtype, np.floating):
                arr = arr.astype(np.float32)
    if not (jnp.issubdtype(arr.dtype, jnp.number) or arr.dtype == jnp.bool_):
        raise ValueError(f"{name}: dtype {arr.dtype} is not numeric; expected numbers")
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise ValueError(f"{name}: dtype {arr.dtype} is complex; expected real numbers")
    return arr


def compact_binary(y: Any) -> Any:
    """Validated 0/1 labels as bool (a quarter of int32's transfer); jax arrays unchanged."""
    if isinstance(y, np.ndarray) and y.dtype != np.bool_:
        return y != 0
    return y


def _x64_enabled() -> bool:
    return jnp.result_type(float) == jnp.float64


def _chex(assertion: Any, *args: Any, message: Any, **kwargs: Any) -> None:
    """Runs a chex shape assertion; its AssertionError becomes ValueError(message()).

    `message` is a callable, so the text is only formatted when the check fails.
    """
    try:
        assertion(*args, **kwargs)
    except AssertionError:
        raise ValueError(message()) from None


def check_rank(x: jax.Array, name: str, ranks: int | Sequence[int], what: str = "") -> None:
    """Raises unless `x.ndim` is one of `ranks`; `what` describes the expected shape."""
    ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)

    def message() -> str:
        want = what or " or ".join(f"rank {r}" for r in ranks)
        return f"{name}: has shape {tuple(x.shape)} (rank {x.ndim}); expected {want}"

    _chex(chex.assert_rank, x, ranks[0] if len(ranks) == 1 else set(ranks), message=message)


def check_min_rank(x: jax.Array, name: str, min_rank: int, what: str = "") -> None:
    """Raises unless `x.ndim >= min_rank` (`what` describes the expected shape, e.g. "[..., n]")."""

    def message() -> str:
        want = what or f"rank >= {min_rank}"
        return f"{name}: has shape {tuple(x.shape)} (rank {x.ndim}); expected {want}"

    _chex(chex.assert_shape, x, (...,) + (None,) * min_rank, message=message)


def check_shape(x: jax.Array, name: str, shape: Sequence[int | None], what: str = "") -> None:
    """Raises unless `x.shape` is `shape` (None = any size in that dimension)."""

    def message() -> str:
        want = what or str(tuple(shape))
        return f"{name}: has shape {tuple(x.shape)}; expected {want}"

    _chex(chex.assert_shape, x, tuple(shape), message=message)


def check_not_empty(x: jax.Array, name: str) -> None:
    if x.size == 0:
        raise ValueError(f"{name}: is empty (shape {tuple(x.shape)}); expected at least one entry")


def check_same_shape(a: jax.Array, b: jax.Array, name_a: str, name_b: str) -> None:
    _chex(
        chex.assert_equal_shape,
        [a, b],
        message=lambda: (
            f"{name_a} and {name_b}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}; "
            "expected the same shape"
        ),
    )


def check_leading(a: jax.Array, b: jax.Array, name_a: str, name_b: str, ndim: int = 1) -> None:
    """Raises unless the first `ndim` dimensions of `a` and `b` agree."""
    _chex(
        chex.assert_equal_shape_prefix,
        [a, b],
        prefix_len=ndim,
        message=lambda: (
            f"{name_a} and {name_b}: leading dimensions differ, {tuple(a.shape)} vs "
            f"{tuple(b.shape)}; expected the same first {ndim} dimension(s)"
        ),
    )


def as_float_array(
    x: Any, name: str, *, ndim: int | None = None, min_ndim: int | None = None
) -> jax.Array:
    """`as_array` + an optional rank check (exact `ndim` or at least `min_ndim`) + `as_float`."""
    arr = as_array(x, name)
    if ndim is not None:
        check_rank(arr, name, ndim)
    if min_ndim is not None:
        check_min_rank(arr, name, min_ndim)
    return as_float(arr)


def as_mask(mask: Any, shape: Sequence[int], name: str = "mask") -> jax.Array:
    """Boolean mask of `shape` (all True when `mask` is None); raises on a bad shape or values."""
    if mask is None:
        return jnp.ones(tuple(shape), dtype=bool)
    m = as_array(mask, name)
    check_shape(m, name, shape, f"{tuple(shape)} (the data's shape)")
    if m.dtype != jnp.bool_:
        if is_concrete(m):
            xp, mh = host_or_device(m)
            if not bool(xp.all((mh == 0) | (mh == 1))):
                raise ValueError(f"{name}: has values other than 0/1; expected a boolean mask")
        m = m != 0
    return m


def valid_or_ones(valid: jax.Array | None, shape: Sequence[int]) -> jax.Array:
    """`valid`, or an all-True mask of `shape` when it is None (use inside jit)."""
    return jnp.ones(tuple(shape), dtype=bool) if valid is None else valid


def check_any_valid(mask: jax.Array, name: str = "mask") -> None:
    if not is_concrete(mask):
        return
    xp, m = host_or_device(mask)
    if not bool(xp.any(m)):
        raise ValueError(f"{name}: selects no entries; expected at least one True")


# Value checks. Each check is one reduction written for an array module `xp`: numpy for arrays
# that live on the host (numpy input, CPU devices, small arrays), a jitted jax.numpy version for
# large arrays on an accelerator (so they are not copied to the host). Numpy needs no compile,
# which keeps the boundary cheap for the many shapes a test suite or a notebook uses.


def _bmask(xp, mask, x):
    if mask is None:
        return xp.asarray(True)
    mask = xp.asarray(mask)
    return xp.reshape(mask, mask.shape + (1,) * (x.ndim - mask.ndim))


def _finite(xp, x):
    if xp.issubdtype(x.dtype, xp.floating):
        return xp.isfinite(x)
    return xp.asarray(True)


def _range_impl(xp, x, m, lo, hi):
    finite = _finite(xp, x)
    out = ((x < lo) | (x > hi)) & finite & m
    xs = x.astype(xp.float64 if xp is np else xp.result_type(x.dtype, xp.float32))
    big = xp.asarray(xp.inf, dtype=xs.dtype)
    return (
        xp.sum(~finite & m),
        xp.sum(out),
        xp.min(xp.where(out, xs, big)),
        xp.max(xp.where(out, xs, -big)),
    )


def _nan_impl(xp, x, m):
    return (xp.sum(xp.isnan(x) & m),)


def _logits_impl(xp, x, m):
    # m is the position mask broadcast to [..., 1] (or a scalar True).
    bad = xp.sum((xp.isnan(x) | (x == xp.inf)) & m)
    dead = xp.all(x == -xp.inf, axis=-1) & (m if m.ndim == 0 else m[..., 0])
    return bad, xp.sum(dead)


def _binary_impl(xp, x, m):
    finite = _finite(xp, x)
    return xp.sum(~finite & m), xp.sum(finite & (x != 0) & (x != 1) & m)


def _class_impl(xp, x, m, num_classes):
    finite = _finite(xp, x)
    bad = (x < 0) | (x >= num_classes)
    if xp.issubdtype(x.dtype, xp.floating):
        bad = bad | (x != xp.round(x))
    return xp.sum(~finite & m), xp.sum(bad & finite & m)


def _simplex_impl(xp, p, m, tol):
    if m.ndim == p.ndim:  # the mask is per row, not per entry
        m = xp.reshape(m, m.shape[:-1])
    err = xp.abs(xp.sum(p, axis=-1) - 1.0)
    bad = (err > tol) & m
    return xp.sum(bad), xp.max(xp.where(bad, err, 0))


_JITTED = {
    "range": jax.jit(functools.partial(_range_impl, jnp), static_argnames=("lo", "hi")),
    "nan": jax.jit(functools.partial(_nan_impl, jnp)),
    "logits": jax.jit(functools.partial(_logits_impl, jnp)),
    "binary": jax.jit(functools.partial(_binary_impl, jnp)),
    "class": jax.jit(functools.partial(_class_impl, jnp), static_argnames=("num_classes",)),
    "simplex": jax.jit(functools.partial(_simplex_impl, jnp), static_argnames=("tol",)),
}
_IMPLS = {
    "range": _range_impl,
    "nan": _nan_impl,
    "logits": _logits_impl,
    "binary": _binary_impl,
    "class": _class_impl,
    "simplex": _simplex_impl,
}


def _on_host(x: Any) -> bool:
    if isinstance(x, np.ndarray) or x.size <= (1 << 20):
        return True
    try:
        return all(d.platform == "cpu" for d in x.devices())
    except Exception:  # noqa: BLE001 - any array type we cannot place: check on the host
        return True


def host_or_device(x: Any) -> tuple[Any, Any]:
    """(array module, array): numpy and a numpy view when `x` is on the host, else jnp and x."""
    if _on_host(x):
        return np, np.asarray(x)
    return jnp, x


def _host_fast_ok(kind: str, x: np.ndarray, mask: Any, kwargs: dict) -> bool:
    """Cheap whole-array passes (no temporaries of the array's size for the common case) that
    prove the input is fine, masked or not; on any doubt the detailed (masked) check runs."""
    # A whole array that passes passes under any mask too (padding is usually benign), so the
    # mask is only needed when this pass finds something.
    if x.size == 0:
        return False
    floating = np.issubdtype(x.dtype, np.floating)
    if kind == "nan":
        return not np.isnan(x.min())  # min propagates NaN: one pass, no temporaries
    if kind == "logits":  # no NaN, no +inf, no -inf at all (so no position without a finite one)
        return bool(np.isfinite(x.min() + x.max()))
    if floating and not np.isfinite(x.min() + x.max()):  # NaN or inf anywhere
        return False
    if kind == "range":
        return bool(x.min() >= kwargs["lo"] and x.max() <= kwargs["hi"])
    if kind == "binary":
        if x.min() < 0 or x.max() > 1:
            return False
        return True if not floating else bool(np.all((x == 0) | (x == 1)))
    if kind == "class":
        if x.min() < 0 or x.max() >= kwargs["num_classes"]:
            return False
        return True if not floating else bool(np.all(x == np.round(x)))
    return False


_NOTHING_FOUND = {"range": (0, 0, 0.0, 0.0), "nan": (0,), "simplex": (0, 0.0), "logits": (0, 0)}


def _run(kind: str, x: Any, mask: Any, *args: Any, **kwargs: Any) -> tuple:
    if x.size == 0:  # nothing to check (reductions of empty arrays have no identity)
        return _NOTHING_FOUND.get(kind, (0, 0))
    if _on_host(x):
        xn = np.asarray(x)
        if _host_fast_ok(kind, xn, mask, kwargs):
            return _NOTHING_FOUND.get(kind, (0, 0))
        return _IMPLS[kind](np, xn, _bmask(np, mask, xn), *args, **kwargs)
    return _JITTED[kind](x, _bmask(jnp, mask, x), *args, **kwargs)


def _raise_nonfinite(count: int, name: str) -> None:
    if count:
        raise ValueError(f"{name}: contains {count} NaN or inf value(s); expected finite numbers")


def check_finite(x: jax.Array, name: str, mask: jax.Array | None = None) -> None:
    """Raises if any (unmasked) entry of `x` is NaN or inf."""
    if not is_concrete(x, mask) or not jnp.issubdtype(x.dtype, jnp.floating):
        return
    nonfinite, _, _, _ = _run("range", x, mask, lo=-np.inf, hi=np.inf)
    _raise_nonfinite(int(nonfinite), name)


def check_no_nan(x: jax.Array, name: str, mask: jax.Array | None = None) -> None:
    """Raises if any (unmasked) entry of `x` is NaN; +-inf is allowed (e.g. an infinite
    conformal threshold, a -inf logit of a banned token). Names the first offending index."""
    if not is_concrete(x, mask) or not jnp.issubdtype(x.dtype, jnp.floating) or x.size == 0:
        return
    (count,) = _run("nan", x, mask)
    if int(count):
        bad = np.isnan(np.asarray(x))
        if mask is not None:
            bad &= np.asarray(_bmask(np, np.asarray(mask), bad))
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name}: contains {int(count)} NaN value(s) (first at index {first}); "
            "expected numbers (not NaN)"
        )


def check_logits(x: jax.Array, name: str, mask: jax.Array | None = None) -> None:
    """Raises unless softmax(x) over the last axis is defined at every (unmasked) position: no NaN,
    no +inf, and at least one finite logit per position; -inf is allowed (a banned token).

    x: [..., vocab]; mask: optional [...] (per position, not per logit).
    """
    if not is_concrete(x, mask) or not jnp.issubdtype(x.dtype, jnp.floating) or x.size == 0:
        return
    bad, dead = (int(v) for v in _run("logits", x, mask))
    if bad:
        raise ValueError(
            f"{name}: contains {bad} NaN or +inf value(s); expected real logits (-inf allowed)"
        )
    if dead:
        raise ValueError(
            f"{name}: {dead} position(s) where every logit is -inf; expected at least one "
            "finite logit per position (softmax is undefined otherwise)"
        )


def check_range(
    x: jax.Array,
    name: str,
    lo: float,
    hi: float,
    mask: jax.Array | None = None,
    what: str | None = None,
) -> None:
    """Raises if any (unmasked) entry of `x` is NaN/inf or lies outside [lo, hi]."""
    if not is_concrete(x, mask):
        return
    nonfinite, n_out, lo_seen, hi_seen = _run("range", x, mask, lo=float(lo), hi=float(hi))
    _raise_nonfinite(int(nonfinite), name)
    if int(n_out):
        desc = what or f"values in [{lo:g}, {hi:g}]"
        raise ValueError(
            f"{name}: {int(n_out)} value(s) outside [{lo:g}, {hi:g}] "
            f"(from {float(lo_seen):g} to {float(hi_seen):g}); expected {desc}"
        )


def check_probabilities(x: jax.Array, name: str, mask: jax.Array | None = None) -> None:
    check_range(x, name, 0.0, 1.0, mask, what="probabilities in [0, 1]")


def check_binary(x: jax.Array, name: str, mask: jax.Array | None = None) -> None:
    """Raises unless every (unmasked) entry of `x` is 0 or 1 (or a bool)."""
    if x.dtype == jnp.bool_ or not is_concrete(x, mask):
        return
    nonfinite, bad = _run("binary", x, mask)
    _raise_nonfinite(int(nonfinite), name)
    if int(bad):
        raise ValueError(
            f"{name}: {int(bad)} value(s) are not 0 or 1; expected binary labels "
            "(1 = positive/correct, 0 = negative/wrong)"
        )


def check_class_labels(
    x: jax.Array,
    name: str,
    num_classes: int,
    mask: jax.Array | None = None,
    what: str | None = None,
) -> None:
    """Raises unless every (unmasked) entry is an integer class index in [0, num_classes).

    `what` describes the expected values (default: labels for the classes of probs).
    """
    if x.dtype == jnp.bool_:
        raise ValueError(f"{name}: dtype bool; expected integer class indices")
    if not is_concrete(x, mask):
        return
    nonfinite, bad = _run("class", x, mask, num_classes=int(num_classes))
    _raise_nonfinite(int(nonfinite), name)
    if int(bad):
        desc = what or f"labels for the {num_classes} classes of probs"
        raise ValueError(
            f"{name}: {int(bad)} value(s) are not integer class indices in "
            f"[0, {num_classes}); expected {desc}"
        )


def as_class_labels(x: Any, name: str, num_classes: int, what: str | None = None) -> Any:
    """Labels [n] as int32 after the checks: rank 1 and (concrete) integer ids in
    [0, num_classes). Booleans are read as 0/1."""
    y = as_array(x, name)
    check_rank(y, name, 1, "a 1-D array [n] of integer ids")
    if y.dtype == jnp.bool_:
        y = y.astype(jnp.int32)
    check_class_labels(y, name, num_classes, what=what or f"class ids in [0, {num_classes})")
    return y.astype(jnp.int32)


def simplex_tolerance(dtype: Any) -> float:
    """Tolerance on |sum(p) - 1|: sqrt(machine epsilon) of `dtype` (3.5e-4 float32, 1.5e-8 f64)."""
    return float(np.sqrt(np.finfo(np.dtype(dtype)).eps))


def check_simplex(p: jax.Array, name: str, mask: jax.Array | None = None) -> None:
    """Raises unless every (unmasked) row of `p` (last axis) is a probability vector."""
    check_probabilities(p, name, mask)
    if not is_concrete(p, mask):
        return
    pf = as_float(p)
    tol = simplex_tolerance(pf.dtype)
    n_bad, worst = _run("simplex", pf, mask, tol=tol)
    if int(n_bad):
        raise ValueError(
            f"{name}: {int(n_bad)} row(s) do not sum to 1 (largest error {float(worst):.3g} > "
            f"tolerance {tol:.2g}); expected probability vectors over the last axis (apply "
            "softmax to logits first)"
        )


def check_int_option(value: Any, name: str, minimum: int = 1) -> int:
    """Checks a static integer option (always, regardless of `validate`)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def check_float_option(
    value: Any,
    name: str,
    lo: float = -np.inf,
    hi: float = np.inf,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """Checks a static real option lies in the interval; returns it as a Python float."""
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {value!r}") from None
    bad = not np.isfinite(v) or v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi)
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ValueError(
            f"{name}: expected a finite number in {left}{lo:g}, {hi:g}{right}, got {v}"
        )
    return v


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        opts = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name}: expected one of {opts}, got {value!r}")
    return value


# Boundary preambles shared by the packages.

_VALUE_KINDS = ("finite", "probability", "unit", "binary", None)


def check_values(x: jax.Array, name: str, kind: str | None, mask: jax.Array | None = None) -> None:
    """One named value check: "finite", "probability" (in [0, 1]), "unit" (values in [0, 1],
    e.g. graded correctness), "binary" (0/1) or None (no check)."""
    if kind == "finite":
        check_finite(x, name, mask)
    elif kind == "probability":
        check_probabilities(x, name, mask)
    elif kind == "unit":
        check_range(x, name, 0.0, 1.0, mask, what="values in [0, 1] (1 = correct)")
    elif kind == "binary":
        check_binary(x, name, mask)
    elif kind is not None:
        raise ValueError(f"kind: expected one of {_VALUE_KINDS}, got {kind!r}")


def prepare_pair(
    x: Any,
    y: Any,
    mask: Any = None,
    *,
    names: tuple[str, str] = ("scores", "labels"),
    kinds: tuple[str | None, str | None] = ("finite", "binary"),
    validate: bool = True,
) -> tuple[jax.Array, Any, jax.Array | None]:
    """Two aligned 1-D arrays x [n], y [n] (and an optional mask [n]) at a public boundary.

    Checks (when `validate`): ranks, non-empty, equal shapes, a mask that selects something, then
    the values of x and y by `kinds` (see `check_values`) on the unmasked entries.
    Returns:
      (x as a float array [n], y [n] (binary labels as bool), mask [n] bool or None).
    """
    x_name, y_name = names
    xa = as_array(x, x_name)
    ya = as_array(y, y_name)
    if validate:
        check_rank(xa, x_name, 1, "a 1-D array [n]")
        check_not_empty(xa, x_name)
        check_same_shape(xa, ya, x_name, y_name)
    m = None if mask is None else as_mask(mask, xa.shape)
    if validate:
        if m is not None:
            check_any_valid(m)
        check_values(xa, x_name, kinds[0], m)
        check_values(ya, y_name, kinds[1], m)
        if kinds[1] == "binary":
            ya = compact_binary(ya)
    return as_float(xa), ya, m


def prepare_labelled(
    x: Any,
    labels: Any,
    mask: Any = None,
    *,
    name: str = "probs",
    kind: str = "probs",
    allow_binary: bool = False,
    validate: bool = True,
) -> tuple[jax.Array, Any, jax.Array | None]:
    """Per-example class scores with their labels, at a public boundary.

    Multiclass: x [n, num_classes] and labels [n] integer class indices. With `allow_binary`,
    also x [n] (the positive class) and labels [n] in {0, 1}.
    kind: "probs" (rows are probability vectors; binary x: probabilities in [0, 1]) or
      "logits" (finite numbers).
    Returns:
      (x as a float array, labels (as given), mask [n] bool or None).
    """
    xa = as_array(x, name)
    y = as_array(labels, "labels")
    if validate:
        if allow_binary:
            check_rank(xa, name, (1, 2), "[n] (binary) or [n, num_classes]")
        else:
            check_rank(xa, name, 2, "a 2-D array [n, num_classes]")
        check_not_empty(xa, name)
        check_rank(y, "labels", 1, "a 1-D array [n] of labels")
        if xa.ndim == 1:
            check_same_shape(xa, y, name, "labels")
        else:
            check_leading(xa, y, name, "labels")
    m = None if mask is None else as_mask(mask, xa.shape[:1])
    if validate:
        if m is not None:
            check_any_valid(m)
        if kind == "logits":
            check_finite(xa, name, m)
        elif kind != "probs":
            raise ValueError(f"kind: expected 'probs' or 'logits', got {kind!r}")
        elif xa.ndim == 2:
            check_simplex(xa, name, m)
        else:
            check_probabilities(xa, name, m)
        if xa.ndim == 1:
            check_binary(y, "labels", m)
        else:
            check_class_labels(y, "labels", xa.shape[1], m)
    return as_float(xa), y, m


# ----------------------------------------------------------------------------------------------
# Coefficients (loss / advantage hyperparameters): traced values, range-checked when concrete.
# A coefficient is an ordinary argument of the computation, never a static one: a new value does
# not recompile, and it can be scheduled, vmapped over or differentiated.
# ----------------------------------------------------------------------------------------------


def coefficient(
    value: Any,
    name: str,
    lo: Any = -np.inf,
    hi: Any = np.inf,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float | jax.Array:
    """A scalar coefficient: a range-checked Python float when concrete, else the tracer.

    Args:
      value: a Python number, a numpy/jax scalar, or a scalar tracer.
      name: the argument's name, for the error message.
      lo, hi: the allowed interval; a bound that is itself a tracer (e.g. the lower bound of
        beta is alpha) is not applied.
      lo_open, hi_open: exclude the bound.
    Returns:
      [] the value: a Python float (concrete input) or the tracer as it is.
    Raises:
      ValueError: a concrete value outside the interval, NaN/inf, a bool, or a value that is
        not a scalar (vmap over a vector of coefficients instead).
    """
    if isinstance(value, (bool, str)) or value is None:
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if hasattr(value, "dtype") and hasattr(value, "shape"):  # numpy/jax arrays and tracers
        if value.shape != ():
            raise ValueError(
                f"{name}: has shape {tuple(value.shape)}; expected a scalar (to use several "
                "values, jax.vmap over them)"
            )
        if not jnp.issubdtype(value.dtype, jnp.number) or jnp.issubdtype(
            value.dtype, jnp.complexfloating
        ):
            raise ValueError(f"{name}: dtype {value.dtype}; expected a real number")
    if not is_concrete(value):
        return value
    lo = -np.inf if not is_concrete(lo) else lo
    hi = np.inf if not is_concrete(hi) else hi
    return check_float_option(value, name, lo, hi, lo_open=lo_open, hi_open=hi_open)


def as_dtype(*coefs: Any, dtype: Any) -> Any:
    """Each coefficient in the computation's float `dtype`; one value or a tuple.

    Python floats stay Python floats (weakly typed, so they take the array's dtype exactly as a
    literal would); tracers are cast, so a float64 schedule does not promote float32 losses.
    """
    out = tuple(c if isinstance(c, float) else jnp.asarray(c, dtype=dtype) for c in coefs)
    return out[0] if len(out) == 1 else out


def checked_array(
    x: Any, name: str, rank: int | tuple[int, ...], what: str, validate: bool
) -> jax.Array:
    """`x` as an array (`as_array`), checked for rank and non-emptiness."""
    a = as_array(x, name)
    if validate:
        check_rank(a, name, rank, what)
        check_not_empty(a, name)
    return a
