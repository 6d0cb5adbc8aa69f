"""Input helpers shared by the loss modules: coefficients and rank-checked arrays.

Numeric loss / advantage coefficients (beta, eps, kl_coef, gamma, ...) are traced values. A
coefficient is an ordinary argument of the computation, never a static one: a new value does
not recompile, and it can be scheduled (a step-dependent beta inside the jitted train step),
vmapped over or differentiated. Its range is checked at the public boundary when its value is
known (a Python number, a numpy scalar or a concrete jax array), with the same ValueError as
`introspect._checks.check_float_option`; on a tracer only its shape and dtype are checked.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from introspect import _checks as V


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
    if is_traced(value):
        return value
    lo = -np.inf if is_traced(lo) else lo
    hi = np.inf if is_traced(hi) else hi
    return V.check_float_option(value, name, lo, hi, lo_open=lo_open, hi_open=hi_open)


def is_traced(value: Any) -> bool:
    """True when `value` is a tracer (its value cannot be inspected)."""
    return isinstance(value, jax.core.Tracer)


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
    """`x` as an array (`introspect._checks.as_array`), checked for rank and non-emptiness."""
    a = V.as_array(x, name)
    if validate:
        V.check_rank(a, name, rank, what)
        V.check_not_empty(a, name)
    return a
