"""Bootstrap confidence intervals for any metric (vmapped, seeded resampling)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from introspect import _checks as V

__all__ = ["BootstrapResult", "bootstrap_ci"]


class BootstrapResult(NamedTuple):
    """Percentile bootstrap interval of a metric.

    estimate: [] the metric on the full data.
    low, high: [] interval ends (percentiles (1 - level) / 2 and (1 + level) / 2 of resamples).
    std: [] standard deviation of the resampled metric (bootstrap standard error).
    samples: [num_resamples] the metric on each resample (NaN where it was undefined).
    num_invalid: [] number of resamples where the metric was NaN (e.g. one class only).
    """

    estimate: jax.Array
    low: jax.Array
    high: jax.Array
    std: jax.Array
    samples: jax.Array
    num_invalid: jax.Array


def _default_batch(num_resamples: int, n: int) -> int:
    # Keep about 2^24 resampled entries alive at a time.
    return max(1, min(num_resamples, (1 << 24) // max(n, 1)))


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 5, 6))
def _resampled(metric, xs, seed, num_resamples: int, batch_size: int, dtype, level: float):
    """(samples [R], low, high, std, number of NaN samples) of the metric on R resamples."""
    n = xs[0].shape[0]

    def one(key):
        idx = jax.random.randint(key, (n,), 0, n)
        return jnp.asarray(metric(*[x[idx] for x in xs]), dtype=dtype)

    keys = jax.random.split(jax.random.key(seed), num_resamples)
    samples = jax.lax.map(one, keys, batch_size=batch_size)
    ok = jnp.isfinite(samples)
    kept = jnp.where(ok, samples, jnp.nan)
    alpha = (1.0 - level) / 2.0
    low, high = jnp.nanquantile(kept, jnp.asarray([alpha, 1.0 - alpha], dtype=samples.dtype))
    return samples, low, high, jnp.nanstd(kept), jnp.sum(~ok)


def bootstrap_ci(
    metric: Callable[..., Any],
    *arrays: Any,
    num_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
    batch_size: int | None = None,
) -> BootstrapResult:
    """Percentile bootstrap confidence interval of `metric(*arrays)`.

    Resamples the rows of all `arrays` together (the same indices for each), with replacement,
    `num_resamples` times from `jax.random.key(seed)`, evaluates `metric` on each resample with
    `vmap` (in chunks of `batch_size` resamples) and takes percentiles. The metric must be a
    jax-traceable function of the arrays returning a scalar, e.g. `introspect.metrics.ece`, or
    `functools.partial(ece, num_bins=10)`; on resamples it runs with tracers, so the metrics of
    this package skip their value checks there (a degenerate resample gives NaN, which is
    counted in `num_invalid` and left out of the interval).

    Args:
      metric: callable(*arrays) -> [] scalar.
      *arrays: one or more arrays with the same leading dimension [n, ...]; pass a mask as one
        of them (and use it in `metric`) to resample padded data.
      num_resamples: number of bootstrap resamples, >= 1.
      confidence_level: interval coverage in (0, 1).
      seed: integer seed of the resampling.
      batch_size: resamples evaluated at once by vmap; None = as many as keep about 2^24
        resampled entries in memory.
    Returns:
      BootstrapResult.
    Raises:
      ValueError: no arrays, arrays empty or with different leading dimensions, bad options.
    """
    r = V.check_int_option(num_resamples, "num_resamples", 1)
    level = V.check_float_option(
        confidence_level, "confidence_level", 0.0, 1.0, lo_open=True, hi_open=True
    )
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    if not callable(metric):
        raise ValueError(f"metric: expected a callable returning a scalar, got {metric!r}")
    if not arrays:
        raise ValueError("arrays: none given; expected at least one array to resample")
    xs = [V.as_array(a, f"arrays[{i}]") for i, a in enumerate(arrays)]
    for i, x in enumerate(xs):
        if x.ndim == 0:
            raise ValueError(f"arrays[{i}]: is a scalar; expected an array with a leading axis [n]")
        V.check_not_empty(x, f"arrays[{i}]")
        if x.shape[0] != xs[0].shape[0]:
            raise ValueError(
                f"arrays[{i}]: leading dimension {x.shape[0]} differs from arrays[0]'s "
                f"{xs[0].shape[0]}; expected the same number of rows"
            )
    n = xs[0].shape[0]
    bs = (
        _default_batch(r, n) if batch_size is None else V.check_int_option(batch_size, "batch_size")
    )

    estimate = jnp.asarray(metric(*xs))
    if estimate.ndim != 0:
        raise ValueError(f"metric: returned shape {estimate.shape}; expected a scalar")

    samples, low, high, std, num_invalid = _resampled(
        metric, tuple(xs), jnp.asarray(seed % (1 << 32), jnp.uint32), r, bs, estimate.dtype, level
    )
    return BootstrapResult(
        estimate=estimate,
        low=low,
        high=high,
        std=std,
        samples=samples,
        num_invalid=num_invalid,
    )
