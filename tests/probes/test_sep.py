"""Semantic-entropy probes: the best-split binarisation against a transcription of the authors'
notebook, the probe against scikit-learn's default LogisticRegression, the registered signal,
errors."""

from __future__ import annotations

import numpy as np
import pytest

from introspect import probes, signals


def reference_best_split(ents):
    """As `best_split` in OATML/semantic-entropy-probes train-latent-probe.ipynb."""
    splits = np.linspace(1e-10, ents.max(), 100)
    mses = []
    for split in splits:
        low, high = ents < split, ents >= split
        mse = np.sum((ents[low] - np.mean(ents[low])) ** 2) + np.sum(
            (ents[high] - np.mean(ents[high])) ** 2
        )
        mses.append(mse)
    return splits[np.argmin(mses)]


def semantic_entropies(rng, n, k=5):
    """Realistic SE values: entropies of cluster sizes of k samples (many exact zeros)."""
    out = []
    for _ in range(n):
        labels = rng.integers(0, rng.integers(1, k + 1), k)
        p = np.bincount(labels) / k
        p = p[p > 0]
        out.append(float(-(p * np.log(p)).sum()))
    return np.array(out)


@pytest.mark.parametrize("seed", range(10))
def test_best_split_matches_notebook(seed):
    rng = np.random.default_rng(seed)
    e = semantic_entropies(rng, int(rng.integers(5, 300)))
    e[0] = 0.0  # the notebook's split search needs a low group at the first candidate
    e[1] = max(e[1], 0.3)
    assert probes.best_split(e) == pytest.approx(reference_best_split(e), rel=0, abs=0)
    labels, t = probes.sep_labels(e)
    np.testing.assert_array_equal(labels, (e >= t).astype(np.float32))


def test_sep_matches_sklearn_default_logistic_regression(tmp_path):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    n, d = 300, 8
    x = (rng.standard_normal((n, d)) * rng.uniform(0.5, 2, d)).astype(np.float32)
    w = rng.standard_normal(d)
    se = np.clip(x @ w * 0.3 + 0.7 + 0.3 * rng.standard_normal(n), 0, None)
    labels, _ = probes.sep_labels(se)
    ref = LogisticRegression(tol=1e-10, max_iter=10_000).fit(x, labels)  # C=1, the paper's
    fit = probes.fit_sep(x, se, workdir=str(tmp_path))
    conf = probes.sep_confidence(fit, x)
    np.testing.assert_allclose(conf, ref.predict_proba(x)[:, 0], atol=2e-3)
    assert fit.spec["meta"]["sep_threshold"] == probes.best_split(se)

    inputs = signals.Inputs(features=x[:20], sep=fit)
    np.testing.assert_allclose(signals.estimate(inputs, names=("sep",))["sep"], conf[:20],
                               rtol=1e-6)  # fmt: skip


def test_last_position_kind():
    np.testing.assert_array_equal(probes.select_positions("last", prompt_len=3, total_len=9), [8])


def test_sep_errors(tmp_path):
    with pytest.raises(ValueError, match="every semantic entropy is 0"):
        probes.best_split(np.zeros(5))
    with pytest.raises(ValueError, match=">= 0"):
        probes.sep_labels(np.array([0.1, -1.0]))
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="one row per entropy"):
        probes.fit_sep(x, np.array([0.0, 1.0, 0.5]), workdir=str(tmp_path))
    with pytest.raises(ValueError, match="both low- and high-entropy"):
        probes.fit_sep(x, np.array([0.0, 1.0, 0.5, 0.2]), threshold=5.0, workdir=str(tmp_path))
    with pytest.raises(ValueError, match="needs features"):
        signals.estimate(signals.Inputs(sep=object()), names=("sep",))
