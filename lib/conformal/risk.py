"""Choosing thresholds with a risk bound: conformal risk control and Learn-then-Test.

Both take a loss table losses[i, j] = L(x_i, y_i; lambda_j) on a calibration set for a grid of
candidate thresholds lambda_j.
"""

from __future__ import annotations

import math
import warnings
from functools import partial

import jax
import jax.numpy as jnp
from flax import struct
from jax.scipy.special import betainc, xlogy

from introspect import _checks as V
from introspect.conformal import thresholds as T

PVALUES = ("hoeffding", "hoeffding_bentkus")
FWER = ("fixed_sequence", "bonferroni")


def _check_table(losses, lambdas, *, lo, hi):
    """losses [n, L] in [lo, hi] and lambdas [L], n >= 1 and L >= 1, both free of NaN."""
    losses = V.as_float_array(losses, "losses", ndim=2)
    lambdas = V.as_float_array(lambdas, "lambdas", ndim=1)
    V.check_not_empty(lambdas, "lambdas")
    V.check_shape(losses, "losses", (None, lambdas.shape[0]), "[n, L] with L = len(lambdas)")
    V.check_not_empty(losses, "losses")
    V.check_no_nan(lambdas, "lambdas")
    V.check_range(losses, "losses", lo, hi, what=f"losses in [{lo:g}, {hi:g}]")
    return losses, lambdas


@struct.dataclass
class CRCResult:
    """Conformal risk control outcome.

    Attributes:
      threshold: scalar, the chosen lambda.
      index: scalar int, its position in `lambdas`.
      feasible: scalar bool; False when no grid point met the bound and the largest lambda was
        returned (the guarantee then needs L(lambda_max) <= alpha for every example).
      risk_bound: [L] the adjusted risk (n R_hat(lambda) + B) / (n + 1) per grid point.
    """

    threshold: jax.Array
    index: jax.Array
    feasible: jax.Array
    risk_bound: jax.Array


def crc_threshold(
    losses: jax.Array,
    lambdas: jax.Array,
    *,
    alpha: float,
    bound: float = 1.0,
    validate: bool = True,
) -> CRCResult:
    """Conformal risk control (Angelopoulos et al., 2022) for losses non-increasing in lambda.

    lambda_hat = the smallest lambda_j with (n / (n + 1)) R_hat(lambda_j) + B / (n + 1) <= alpha.
    Guarantee: if L(.; lambda) is non-increasing in lambda, bounded by B, L(.; lambda_max) <= alpha
    and the n calibration points and the test point are exchangeable, then
    E[L(x_test, y_test; lambda_hat)] <= alpha.

    Args:
      losses: [n, L] losses in [0, bound]; column j uses lambdas[j].
      lambdas: [L] strictly increasing grid.
      alpha: target risk, in (0, bound).
      bound: B, the upper bound of the loss.
      validate: checks of shapes, ranges and monotonicity (concrete inputs); False skips them.
    Returns:
      CRCResult.
    """
    if validate:
        bound = V.check_float_option(bound, "bound", 0.0, lo_open=True)
        losses, lambdas = _check_table(losses, lambdas, lo=0.0, hi=bound)
        if V.is_concrete(alpha):
            V.check_float_option(alpha, "alpha", 0.0, bound, lo_open=True, hi_open=True)
        if V.is_concrete(lambdas):
            xp, hl = V.host_or_device(lambdas)
            if bool(xp.any(xp.diff(hl) <= 0)):
                raise ValueError("lambdas: not strictly increasing; expected an increasing grid")
        if V.is_concrete(losses) and losses.shape[1] > 1:
            xp, hx = V.host_or_device(losses)
            worst = float(xp.max(xp.diff(hx, axis=1)))
            if worst > 1e-6 * bound:
                raise ValueError(
                    f"losses: increase by up to {worst:.3g} from one lambda to the next; CRC "
                    "expected losses non-increasing in lambda (losses[:, j + 1] <= losses[:, j])"
                )
    losses, lambdas = jnp.asarray(losses), jnp.asarray(lambdas)
    n = losses.shape[0]
    total, feasible, index = _crc_core(losses, jnp.asarray(alpha), jnp.asarray(bound))
    if validate and V.is_concrete(feasible) and not bool(feasible):
        warnings.warn(
            "crc_threshold: no lambda in the grid meets the bound; returning the largest lambda "
            "(valid only if its loss is <= alpha for every example). Extend the grid.",
            T.NoThresholdWarning,
            stacklevel=2,
        )
    return CRCResult(
        threshold=lambdas[index],
        index=index,
        feasible=feasible,
        risk_bound=(total + bound) / (n + 1),
    )


@jax.jit
def _crc_core(losses, alpha, bound):
    n, L = losses.shape
    total = jnp.sum(losses, axis=0)
    dtype = total.dtype
    slack = 16 * jnp.finfo(dtype).eps * (n + 1) * jnp.maximum(1.0, bound)
    ok = total + bound <= alpha.astype(dtype) * (n + 1) + slack
    feasible = jnp.any(ok)
    return total, feasible, jnp.where(feasible, jnp.argmax(ok), L - 1)


def hoeffding_pvalue(risk: jax.Array, *, n: int, alpha: float) -> jax.Array:
    """Hoeffding p-value for H0: R > alpha from the mean R_hat of n losses in [0, 1].

    p = exp(-2 n (alpha - R_hat)_+^2). Valid: P(p <= t) <= t under H0.

    Args:
      risk: [...] empirical risks; n: sample size; alpha: the risk level tested.
    Returns:
      [...] p-values in (0, 1].
    """
    risk = jnp.asarray(risk)
    gap = jnp.maximum(alpha - risk, 0.0)
    return jnp.exp(-2.0 * n * gap**2)


def binomial_cdf(k: jax.Array, *, n: int, p: float) -> jax.Array:
    """P(Binomial(n, p) <= k) for real k (floored), via the regularised incomplete beta.

    Args:
      k: [...] counts (any real; floored); n: number of trials (static); p: success probability.
    Returns:
      [...] probabilities.
    """
    k = jnp.asarray(k)
    k = k.astype(jnp.result_type(k.dtype, float))
    return _binomial_cdf(k, jnp.asarray(p, k.dtype), jnp.asarray(n, k.dtype))


@jax.jit
def _binomial_cdf(k, p, n):
    # n is traced (one compilation for every sample size).
    k = jnp.floor(k)
    kk = jnp.clip(k, 0, jnp.maximum(n - 1, 0))
    val = betainc(n - kk, kk + 1, (1.0 - p).astype(kk.dtype))
    return jnp.where(k < 0, 0.0, jnp.where(k >= n, 1.0, val))


def hoeffding_bentkus_pvalue(risk: jax.Array, *, n: int, alpha: float) -> jax.Array:
    """Hoeffding-Bentkus p-value (Bates et al. 2021; LTT) for H0: R > alpha, losses in [0, 1].

    p = min(exp(-n h1(min(R_hat, alpha), alpha)), e P(Binomial(n, alpha) <= ceil(n R_hat))),
    h1(a, b) = a log(a / b) + (1 - a) log((1 - a) / (1 - b)). Valid: P(p <= t) <= t under H0.

    Args:
      risk: [...] empirical risks R_hat; n: sample size; alpha: the level tested.
    Returns:
      [...] p-values in (0, 1].
    """
    risk = jnp.asarray(risk)
    risk = risk.astype(jnp.result_type(risk.dtype, float))
    return _hb_pvalue(risk, jnp.asarray(alpha, risk.dtype), jnp.asarray(n, risk.dtype))


@jax.jit
def _hb_pvalue(risk, alpha, n):
    a = jnp.minimum(risk, alpha)
    h1 = xlogy(a, a / alpha) + xlogy(1.0 - a, (1.0 - a) / (1.0 - alpha))
    hoeff = jnp.exp(-n * h1)
    # ceil(n R_hat) with a few ulps of slack: n R_hat is an integer for 0/1 losses.
    k = jnp.ceil(n * risk - 16 * jnp.finfo(risk.dtype).eps * n)
    bentkus = math.e * _binomial_cdf(k, alpha, n)
    return jnp.minimum(jnp.minimum(hoeff, bentkus), 1.0)


def fixed_sequence(pvalues: jax.Array, *, delta: float) -> jax.Array:
    """Fixed-sequence testing: reject H_0..H_j while every p-value so far is <= delta.

    Controls the family-wise error at delta for any (pre-specified) order. [L] -> [L] bool.
    """
    return jnp.cumprod(jnp.asarray(pvalues) <= delta, axis=-1).astype(bool)


def bonferroni(pvalues: jax.Array, *, delta: float) -> jax.Array:
    """Bonferroni: reject H_j iff p_j <= delta / L. Controls the family-wise error at delta."""
    pvalues = jnp.asarray(pvalues)
    return pvalues <= delta / pvalues.shape[-1]


@struct.dataclass
class LTTResult:
    """Learn-then-Test outcome.

    Attributes:
      valid: [L] bool, the certified lambdas (null "R(lambda) > alpha" rejected).
      pvalues: [L] the p-values.
      index: scalar int, the chosen lambda's position (-1 if none is valid).
      threshold: scalar, the chosen lambda (NaN if none is valid -- check `found`).
      found: scalar bool, whether any lambda was certified.
    """

    valid: jax.Array
    pvalues: jax.Array
    index: jax.Array
    threshold: jax.Array
    found: jax.Array


def learn_then_test(
    losses: jax.Array,
    lambdas: jax.Array,
    *,
    alpha: float,
    delta: float,
    pvalue: str = "hoeffding_bentkus",
    fwer: str = "fixed_sequence",
    validate: bool = True,
) -> LTTResult:
    """Learn-then-Test (Angelopoulos et al., 2021): every lambda with a certified risk <= alpha.

    For each lambda_j the null H_j: R(lambda_j) > alpha is tested with a p-value from the mean
    calibration loss; a family-wise-error procedure returns the rejected set. Give `lambdas` in
    the order from the most to the least conservative (the order fixed-sequence testing walks);
    the chosen lambda is the last certified one in that order.
    Guarantee: with i.i.d. calibration losses in [0, 1],
    P(R(lambda) <= alpha for every certified lambda) >= 1 - delta, so in particular
    P(R(lambda_hat) <= alpha) >= 1 - delta. No monotonicity is needed with "bonferroni".

    Args:
      losses: [n, L] losses in [0, 1]; column j uses lambdas[j].
      lambdas: [L] candidate thresholds (any order; see above).
      alpha: risk level in (0, 1); delta: error level in (0, 1).
      pvalue: "hoeffding" | "hoeffding_bentkus".
      fwer: "fixed_sequence" | "bonferroni".
    Returns:
      LTTResult.
    """
    V.check_choice(pvalue, "pvalue", PVALUES)
    V.check_choice(fwer, "fwer", FWER)
    if validate:
        losses, lambdas = _check_table(losses, lambdas, lo=0.0, hi=1.0)
        T.check_level(alpha, "alpha")
        T.check_level(delta, "delta")
    losses, lambdas = jnp.asarray(losses), jnp.asarray(lambdas)
    valid, pv, index, threshold, found = _ltt_core(
        losses, lambdas, jnp.asarray(alpha), jnp.asarray(delta), pvalue=pvalue, fwer=fwer
    )
    if validate and V.is_concrete(found) and not bool(found):
        warnings.warn(
            "learn_then_test: no lambda certified at this (alpha, delta); threshold is NaN. "
            "Abstain, or use more calibration data / a larger alpha.",
            T.NoThresholdWarning,
            stacklevel=2,
        )
    return LTTResult(valid=valid, pvalues=pv, index=index, threshold=threshold, found=found)


@partial(jax.jit, static_argnames=("pvalue", "fwer"))
def _ltt_core(losses, lambdas, alpha, delta, *, pvalue, fwer):
    n, L = losses.shape
    risk = jnp.mean(losses, axis=0)
    if pvalue == "hoeffding":
        pv = hoeffding_pvalue(risk, n=n, alpha=alpha)
    else:
        pv = _hb_pvalue(risk, alpha.astype(risk.dtype), jnp.asarray(n, risk.dtype))
    valid = (fixed_sequence if fwer == "fixed_sequence" else bonferroni)(pv, delta=delta)
    found = jnp.any(valid)
    index = jnp.where(found, L - 1 - jnp.argmax(valid[::-1]), -1)
    threshold = jnp.where(found, lambdas[jnp.maximum(index, 0)], jnp.nan)
    return valid, pv, index, threshold, found
