"""High-confidence bounds and tests: Hoeffding / Student-t bounds, HC-RLHF's safety test, LCB.

The Student-t quantile is computed on the host with scipy from the (static) sample size, so
`delta` must be a concrete Python number; everything else is `jnp` and works under `jit`/`vmap`
over the sample axis' batch dimensions ([..., n] inputs give [...] outputs).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct
from scipy import stats

from introspect import _checks as V
from introspect.conformal import thresholds as T


def _samples(x, name, validate, min_n=1):
    if validate:
        x = V.as_float_array(x, name, min_ndim=1)
        if x.shape[-1] < min_n:
            raise ValueError(
                f"{name}: has shape {tuple(x.shape)}; expected [..., n] with at least {min_n} "
                "sample(s) on the last axis"
            )
        V.check_no_nan(x, name)
    return jnp.asarray(x)


def _concrete_delta(delta, validate):
    if not V.is_concrete(delta):
        raise ValueError("delta: got a tracer; expected a concrete number (used on the host)")
    if validate:
        T.check_level(delta, "delta")
    return float(delta)


def t_quantile(delta: float, n: int) -> float:
    """The (1 - delta) quantile of Student's t with n - 1 degrees of freedom (host, scipy)."""
    return float(stats.t.ppf(1.0 - delta, n - 1))


def hoeffding_ucb(
    x: jax.Array,
    *,
    delta: float,
    lower: float = 0.0,
    upper: float = 1.0,
    validate: bool = True,
) -> jax.Array:
    """Hoeffding upper confidence bound on the mean of i.i.d. values in [lower, upper].

    UCB = mean + (upper - lower) sqrt(log(1 / delta) / (2 n)).
    Guarantee: P(E[X] <= UCB) >= 1 - delta for any distribution on [lower, upper].

    Args:
      x: [..., n] samples.
      delta: in (0, 1).
      lower, upper: known range of the values (checked for concrete inputs).
    Returns:
      [...] bounds.
    """
    x = _samples(x, "x", validate)
    delta = _concrete_delta(delta, validate)
    if validate:
        if not upper > lower:
            raise ValueError(f"lower, upper: got {lower}, {upper}; expected lower < upper")
        V.check_range(x, "x", lower, upper, what="values in [lower, upper] for Hoeffding")
    n = x.shape[-1]
    return jnp.mean(x, -1) + (upper - lower) * math.sqrt(math.log(1.0 / delta) / (2.0 * n))


def hoeffding_lcb(
    x: jax.Array,
    *,
    delta: float,
    lower: float = 0.0,
    upper: float = 1.0,
    validate: bool = True,
) -> jax.Array:
    """Hoeffding lower confidence bound: mean - (upper - lower) sqrt(log(1 / delta) / (2 n)).

    Guarantee: P(E[X] >= LCB) >= 1 - delta for values in [lower, upper]. x: [..., n] -> [...].
    """
    x = _samples(x, "x", validate)
    ucb_neg = hoeffding_ucb(-x, delta=delta, lower=-upper, upper=-lower, validate=validate)
    return -ucb_neg


def student_t_ucb(x: jax.Array, *, delta: float, validate: bool = True) -> jax.Array:
    """Student-t upper confidence bound: mean + s / sqrt(n) * t_{1 - delta, n - 1}.

    Guarantee: exact P(E[X] <= UCB) >= 1 - delta for Gaussian data; asymptotically (CLT) for
    other distributions with finite variance -- HC-RLHF's default bound.

    Args:
      x: [..., n] samples, n >= 2.
      delta: in (0, 1), a concrete number.
    Returns:
      [...] bounds.
    """
    x = _samples(x, "x", validate, min_n=2)
    delta = _concrete_delta(delta, validate)
    n = x.shape[-1]
    sd = jnp.std(x, axis=-1, ddof=1)
    return jnp.mean(x, -1) + sd / math.sqrt(n) * t_quantile(delta, n)


def student_t_lcb(x: jax.Array, *, delta: float, validate: bool = True) -> jax.Array:
    """Student-t lower confidence bound: mean - s / sqrt(n) * t_{1 - delta, n - 1}.

    Guarantee: P(E[X] >= LCB) >= 1 - delta (exact for Gaussian data). x: [..., n] -> [...].
    """
    return -student_t_ucb(-_samples(x, "x", validate, min_n=2), delta=delta, validate=validate)


_BOUNDS = ("student_t", "hoeffding")


@struct.dataclass
class SafetyTestResult:
    """HC-RLHF safety test outcome.

    Attributes:
      accept: [...] bool, True iff ucb <= limit.
      ucb: [...] the upper confidence bound on the mean cost.
    """

    accept: jax.Array
    ucb: jax.Array


def safety_test(
    costs: jax.Array,
    *,
    limit: float,
    delta: float,
    bound: str = "student_t",
    lower: float = 0.0,
    upper: float = 1.0,
    validate: bool = True,
) -> SafetyTestResult:
    """HC-RLHF's high-confidence safety test on held-out data: accept iff UCB(cost) <= limit.

    Guarantee: if the true mean cost exceeds `limit`, the test accepts with probability <= delta
    (exactly for bound="hoeffding" with costs in [lower, upper]; for Gaussian costs -- and
    approximately by the CLT otherwise -- with bound="student_t").

    Args:
      costs: [..., n] per-example costs on the safety (held-out) split.
      limit: the cost limit.
      delta: allowed probability of accepting an unsafe model, in (0, 1).
      bound: "student_t" | "hoeffding".
      lower, upper: cost range for Hoeffding.
    Returns:
      SafetyTestResult(accept [...], ucb [...]).
    """
    V.check_choice(bound, "bound", _BOUNDS)
    if bound == "student_t":
        ucb = student_t_ucb(costs, delta=delta, validate=validate)
    else:
        ucb = hoeffding_ucb(costs, delta=delta, lower=lower, upper=upper, validate=validate)
    return SafetyTestResult(accept=ucb <= limit, ucb=ucb)


def candidate_ucb(
    costs: jax.Array,
    *,
    n_safety: int,
    delta: float,
    bound: str = "student_t",
    lower: float = 0.0,
    upper: float = 1.0,
    validate: bool = True,
) -> jax.Array:
    """Pessimistic constraint for candidate selection (Seldonian / HC-RLHF optimisation step).

    Predicts the safety test's bound from candidate data, inflating the width so that the chosen
    model is likely to pass later: mean + 2 s / sqrt(n_safety) t_{1 - delta, n_safety - 1}
    (Student-t), or mean + 2 (upper - lower) sqrt(log(1 / delta) / (2 n_safety)) (Hoeffding).
    A heuristic for optimisation; the guarantee comes from `safety_test` on held-out data.

    Args:
      costs: [..., n] costs on the candidate split.
      n_safety: size of the held-out safety split.
    Returns:
      [...] predicted upper bounds.
    """
    V.check_choice(bound, "bound", _BOUNDS)
    n_safety = V.check_int_option(n_safety, "n_safety", 2)
    x = _samples(costs, "costs", validate, min_n=2)
    delta = _concrete_delta(delta, validate)
    mean = jnp.mean(x, -1)
    if bound == "student_t":
        sd = jnp.std(x, axis=-1, ddof=1)
        return mean + 2.0 * sd / math.sqrt(n_safety) * t_quantile(delta, n_safety)
    return mean + 2.0 * (upper - lower) * math.sqrt(math.log(1.0 / delta) / (2.0 * n_safety))


def lcb(
    means: jax.Array,
    counts: jax.Array,
    *,
    delta: float,
    c: float = 1.0,
    validate: bool = True,
) -> jax.Array:
    """Pessimistic value: mean - c sqrt(log(1 / delta) / n), -inf where n == 0.

    With c = (value range) / sqrt(2) this is a Hoeffding lower bound per action (P(true mean >=
    LCB) >= 1 - delta each; union-bound delta over the actions for all at once).

    Args:
      means: [..., A] empirical mean value per action.
      counts: [..., A] number of observations per action.
      delta: in (0, 1); c >= 0: bonus scale.
    Returns:
      [..., A] lower bounds.
    """
    if validate:
        means = V.as_float_array(means, "means", min_ndim=1)
        counts = V.as_array(counts, "counts")
        V.check_same_shape(means, counts, "means", "counts")
        T.check_level(delta, "delta")
        V.check_no_nan(means, "means")
        V.check_range(counts, "counts", 0.0, float("inf"), what="counts >= 0")
        V.check_float_option(c, "c", 0.0)
    means = jnp.asarray(means)
    counts = jnp.asarray(counts).astype(means.dtype)
    bonus = c * jnp.sqrt(jnp.log(1.0 / jnp.asarray(delta, means.dtype)) / jnp.maximum(counts, 1))
    return jnp.where(counts > 0, means - bonus, -jnp.inf)


def lcb_action(
    means: jax.Array,
    counts: jax.Array,
    *,
    delta: float,
    c: float = 1.0,
    validate: bool = True,
) -> jax.Array:
    """The pessimistic (offline-RL) action rule: argmax over actions of `lcb`.

    Guarantee: with c as in `lcb` and delta / A per action, with probability >= 1 - delta the
    chosen action's true value is >= its LCB, which is >= the LCB of every other action.

    Args:
      means, counts: [..., A].
    Returns:
      [...] int index of the chosen action.
    """
    return jnp.argmax(lcb(means, counts, delta=delta, c=c, validate=validate), axis=-1)
