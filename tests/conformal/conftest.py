"""Fixtures shared by the conformal tests: float64 and binomial-derived Monte-Carlo tolerances."""

import math

import jax
import pytest

from introspect.conformal import conformal_rank

# Number of standard deviations for every Monte-Carlo check: a two-sided false alarm
# probability of about 7e-6 per check under the normal approximation.
Z = 4.5


@pytest.fixture
def x64():
    """Run the test with float64 enabled; restores the previous setting afterwards."""
    with jax.enable_x64(True):
        yield


def split_coverage_stats(n: int, m: int, sims: int, alpha: float):
    """Exact mean and Monte-Carlo tolerance of split-conformal coverage over independent splits.

    With n calibration points and continuous scores, the coverage conditional on the calibration
    set is c ~ Beta(k, n + 1 - k), k = ceil((n + 1)(1 - alpha)), so E[c] = k / (n + 1). Given c, the
    m test indicators are Binomial(m, c). The law of total variance gives the variance of one
    split's test coverage, Var(c) + E[c (1 - c)] / m; the `sims` splits are independent, so the
    tolerance on their mean is Z * sqrt(that / sims).

    Returns:
      (expected coverage k / (n + 1), tolerance).
    """
    k = conformal_rank(n, alpha=alpha)
    a, b = k, n + 1 - k
    mean = a / (a + b)
    var_c = a * b / ((a + b) ** 2 * (a + b + 1))
    e_c1c = mean - (var_c + mean**2)
    return mean, Z * math.sqrt((var_c + e_c1c / m) / sims)


def binomial_tol(p: float, trials: int) -> float:
    """Z-sigma tolerance of a Bernoulli(p) frequency over independent trials."""
    return Z * math.sqrt(p * (1 - p) / trials)


@pytest.fixture
def coverage_stats():
    return split_coverage_stats


@pytest.fixture
def btol():
    return binomial_tol
