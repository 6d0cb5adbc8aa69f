"""Bootstrap intervals (seeded, vmapped) and the PNG plots."""

import functools

import jax
import numpy as np
import pytest
from matplotlib.figure import Figure

from introspect import metrics as M

N = 256


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def test_bootstrap_of_a_mean_matches_theory():
    rng = np.random.default_rng(0)
    p = rng.random(N)
    y = (rng.random(N) < p).astype(float)
    res = M.bootstrap_ci(M.brier_score, p, y, num_resamples=400, seed=3)
    per_sample = (p - y) ** 2
    assert float(res.estimate) == pytest.approx(per_sample.mean(), abs=1e-12)
    se = per_sample.std() / np.sqrt(N)
    assert float(res.std) == pytest.approx(se, rel=0.15)
    assert float(res.low) < float(res.estimate) < float(res.high)
    assert float(res.high - res.low) == pytest.approx(2 * 1.96 * se, rel=0.2)
    assert res.samples.shape == (400,) and int(res.num_invalid) == 0
    # Seeded: same seed, same samples; chunking does not change them.
    again = M.bootstrap_ci(M.brier_score, p, y, num_resamples=400, seed=3, batch_size=64)
    np.testing.assert_allclose(np.asarray(again.samples), np.asarray(res.samples), atol=1e-12)
    other = M.bootstrap_ci(M.brier_score, p, y, num_resamples=400, seed=4)
    assert not np.allclose(np.asarray(other.samples), np.asarray(res.samples))


def test_bootstrap_any_metric_and_invalid_resamples():
    rng = np.random.default_rng(1)
    conf = rng.random(N)
    correct = (rng.random(N) < conf).astype(float)
    res = M.bootstrap_ci(
        functools.partial(M.ece, num_bins=10), conf, correct, num_resamples=100, seed=0
    )
    assert np.all(np.isfinite(np.asarray(res.samples)))
    # Eight samples, one positive: many resamples miss it, and AUROC is NaN there.
    s = np.linspace(0, 1, 8)
    y = np.array([0, 0, 0, 0, 0, 0, 0, 1])
    res = M.bootstrap_ci(M.auroc, s, y, num_resamples=200, seed=0)
    assert 0 < int(res.num_invalid) < 200
    assert np.isfinite(float(res.low)) and float(res.high) <= 1.0


def test_bootstrap_bad_input():
    x = np.random.default_rng(2).random(10)
    with pytest.raises(ValueError, match="num_resamples"):
        M.bootstrap_ci(M.brier_score, x, x > 0.5, num_resamples=0)
    with pytest.raises(ValueError, match="confidence_level"):
        M.bootstrap_ci(M.brier_score, x, x > 0.5, confidence_level=1.0)
    with pytest.raises(ValueError, match="leading dimension"):
        M.bootstrap_ci(M.brier_score, x, x[:5] > 0.5)
    with pytest.raises(ValueError, match="arrays"):
        M.bootstrap_ci(M.brier_score)
    with pytest.raises(ValueError, match="confidences"):  # the metric validates the full data
        M.bootstrap_ci(M.ece, x * 2, x > 0.5)


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plots_write_png(tmp_path):
    rng = np.random.default_rng(3)
    conf = rng.random(N)
    correct = (rng.random(N) < conf).astype(int)
    paths = {
        "rel": tmp_path / "sub" / "reliability.png",
        "rc": tmp_path / "risk_coverage.png",
        "hist": tmp_path / "hist.png",
    }
    figs = [
        M.plot_reliability_diagram(conf, correct, num_bins=10, path=paths["rel"]),
        M.plot_risk_coverage(conf, correct, path=paths["rc"]),
        M.plot_confidence_histogram(conf, correct, path=paths["hist"]),
    ]
    assert all(isinstance(f, Figure) for f in figs)
    for p in paths.values():
        assert p.exists() and _is_png(p)
    assert not [p for p in tmp_path.rglob("*.png") if p not in paths.values()]  # no temp left
    with pytest.raises(ValueError, match="confidences"):
        M.plot_reliability_diagram(conf + 1, correct)
