"""HUQ (signals.hybrid) against a loop transcription of the authors' rank combination; the
grid search; the registered signal through signals.estimate; errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

from introspect import metrics, signals
from introspect.signals import hybrid


def reference_huq(epistemic, aleatoric, t_min, t_max, alpha):
    """Element by element, as `total_uncertainty_linear_step` (utils_hybrid_ue.py) reads."""
    n = len(aleatoric)
    n_lowest, n_max = int(n * t_min), int(n * t_max)
    r_a, r_e = rankdata(aleatoric), rankdata(epistemic)
    subset = [i for i in range(n) if r_e[i] <= n_lowest]
    sub_rank = rankdata([aleatoric[i] for i in subset]) if subset else []
    out = []
    for i in range(n):
        value = (1 - alpha) * r_e[i] + alpha * r_a[i]
        if r_e[i] <= n_lowest:
            value = sub_rank[subset.index(i)]
            if r_a[i] > n_max:
                value = r_a[i]
        out.append(value)
    return np.array(out)


@pytest.mark.parametrize("seed", range(12))
def test_huq_matches_transcription(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    e = rng.normal(size=n)
    a = rng.normal(size=n)
    if seed % 3 == 0:  # ties
        e, a = np.round(e, 1), np.round(a, 1)
    t_min, t_max, alpha = rng.uniform(0, 0.5), rng.uniform(0.5, 1), rng.uniform()
    np.testing.assert_allclose(
        hybrid.huq(e, a, t_min=t_min, t_max=t_max, alpha=alpha),
        reference_huq(e, a, t_min, t_max, alpha),
    )


def test_huq_limits():
    rng = np.random.default_rng(0)
    e, a = rng.normal(size=30), rng.normal(size=30)
    np.testing.assert_array_equal(hybrid.huq(e, a, t_min=0, t_max=1, alpha=0), rankdata(e))
    np.testing.assert_array_equal(hybrid.huq(e, a, t_min=0, t_max=1, alpha=1), rankdata(a))


def test_fit_huq_improves_on_both_parts_when_each_sees_half():
    # Errors come from two sources: far-from-training points (epistemic sees them) and
    # ambiguous in-domain points (aleatoric sees them); the hybrid should beat each alone.
    rng = np.random.default_rng(3)
    n = 400
    far = rng.random(n) < 0.25
    ambiguous = (~far) & (rng.random(n) < 0.25)
    e = rng.normal(size=n) + 3 * far
    a = rng.normal(size=n) + 3 * ambiguous
    correct = (~(far | ambiguous)).astype(float)
    fit = hybrid.fit_huq(e, a, correct)
    assert fit["aurc"] <= min(fit["aurc_epistemic"], fit["aurc_aleatoric"]) + 1e-12
    assert fit["aurc"] < fit["aurc_epistemic"]
    u = hybrid.huq(e, a, t_min=fit["t_min"], t_max=fit["t_max"], alpha=fit["alpha"])
    assert float(metrics.aurc(-u, correct)) == pytest.approx(fit["aurc"])


def test_huq_signal_through_estimate():
    rng = np.random.default_rng(1)
    train, test = rng.normal(size=(200, 6)), rng.normal(size=(40, 6)) * 1.5
    logprob = -rng.random((40, 5))
    mask = np.ones((40, 5), bool)
    inputs = signals.Inputs(
        stats={"logprob": logprob}, mask=mask, features=test,
        density=signals.fit_density(train, names=("mahalanobis",)),
    )  # fmt: skip
    got = signals.estimate(inputs, names=("huq",), options={"huq": {"alpha": 0.3}})["huq"]
    md = np.asarray(signals.density.mahalanobis(inputs.density["mahalanobis"], test))
    want = -reference_huq(md, -logprob.mean(1), 0.1, 0.9, 0.3)
    np.testing.assert_allclose(got, want)
    assert signals.needs_of("huq") == ("features", "density:mahalanobis", "stats", "mask")
    assert inputs.has(signals.needs_of("huq"))


def test_huq_errors():
    with pytest.raises(ValueError, match="same n"):
        hybrid.huq(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        hybrid.huq(np.array([0.0, np.nan]), np.zeros(2))
    with pytest.raises(ValueError, match="alpha"):
        hybrid.huq(np.zeros(3), np.zeros(3), alpha=2)
    with pytest.raises(ValueError, match="0/1"):
        hybrid.fit_huq(np.zeros(3), np.zeros(3), np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="needs features"):
        signals.estimate(signals.Inputs(stats={"logprob": np.zeros((2, 2))}), names=("huq",))
