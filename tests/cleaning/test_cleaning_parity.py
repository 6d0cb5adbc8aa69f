"""Parity with cleanlab 2.9.0: identical confident joints, thresholds and flagged sets.

Shapes are chosen so that the whole file compiles a handful of programs: n is drawn inside one
padding bucket (897..1024 -> 1024 rows, 1793..2048 -> 2048), and the same (bucket, K) serves
every seed and every option. cleanlab's sort among exactly tied scores is NumPy's unstable
quicksort; the tie tests make it stable (lowest index first, the documented rule here) by
patching numpy.argsort for their duration.
"""

import warnings

import cleanlab.count as cl_count
import cleanlab.filter as cl_filter
import cleanlab.rank as cl_rank
import jax
import numpy as np
import pytest

from introspect import cleaning

SEEDS = range(20)
FILTERS = list(cleaning.FILTERS)
SMALL = (3, 897, 1024)  # K, n range (one padding bucket)
LARGE = (7, 1793, 2048)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab's "too few examples" warnings
        yield


def planted(seed, k, n_lo, n_hi, *, noise=0.2, imbalance=False, singleton=False, missing=False):
    """Softmax predictions of a noisy model around true labels, with flipped given labels."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(n_lo, n_hi + 1))
    prior = np.geomspace(1.0, 0.03, k) if imbalance else np.ones(k)
    true = rng.choice(k, n, p=prior / prior.sum())
    logits = rng.normal(size=(n, k)) * rng.uniform(0.5, 2.0)
    logits[np.arange(n), true] += rng.uniform(1.0, 4.0)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p = (p / p.sum(1, keepdims=True)).astype(np.float32)
    labels = true.copy()
    flip = rng.random(n) < noise
    labels[flip] = rng.integers(0, k, flip.sum())
    if singleton:  # the last class keeps exactly one example
        labels[labels == k - 1] = 0
        labels[rng.integers(n)] = k - 1
    if missing:  # class 1 never appears among the given labels
        labels[labels == 1] = 0
    return labels, p


def dirichlet(seed, k, n_lo, n_hi):
    """Unstructured predictions: random probability vectors, random labels."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(n_lo, n_hi + 1))
    p = rng.dirichlet(np.full(k, rng.uniform(0.2, 2.0)), n).astype(np.float32)
    return rng.integers(0, k, n), p


def _same_mask(ours, ref, what):
    ours = np.asarray(ours)
    assert ours.dtype == bool and ours.shape == ref.shape, what
    diff = np.flatnonzero(ours != ref)
    assert diff.size == 0, f"{what}: {diff.size} examples differ (first {diff[:10]})"


def _check_all_filters(labels, p, what, **options):
    for filter_by in FILTERS:
        opts = options if filter_by in FILTERS[:3] else {}
        ref = cl_filter.find_label_issues(labels, p, filter_by=filter_by, n_jobs=1, **opts)
        ours = cleaning.find_label_issues(labels, p, filter_by=filter_by, **opts)
        _same_mask(ours, ref, f"{what} filter_by={filter_by} {opts}")


@pytest.mark.parametrize(
    "case",
    [
        dict(shape=SMALL),
        dict(shape=LARGE, imbalance=True),
        dict(shape=LARGE, imbalance=True, singleton=True),
        dict(shape=SMALL, singleton=True, missing=False, noise=0.4),
    ],
    ids=["balanced-K3", "imbalanced-K7", "singleton-K7", "singleton-K3-noisy"],
)
def test_find_label_issues_planted_noise(case):
    case = dict(case)
    k, n_lo, n_hi = case.pop("shape")
    for seed in SEEDS:
        labels, p = planted(seed, k, n_lo, n_hi, **case)
        _check_all_filters(labels, p, f"seed {seed}")
        assert np.array_equal(
            np.asarray(cleaning.confident_joint(labels, p)),
            cl_count.compute_confident_joint(labels, p),
        ), f"seed {seed}"


def test_find_label_issues_random_predictions_and_missing_class():
    for seed in SEEDS:
        k, n_lo, n_hi = LARGE if seed % 2 else SMALL
        labels, p = dirichlet(seed, k, n_lo, n_hi)
        _check_all_filters(labels, p, f"dirichlet seed {seed}")
        labels, p = planted(seed, *LARGE, missing=True, imbalance=True)
        _check_all_filters(labels, p, f"missing class seed {seed}")


def test_options_match():
    for seed in range(6):
        labels, p = planted(seed, *LARGE, imbalance=True, singleton=seed % 2 == 0)
        removals = np.random.default_rng(seed).integers(0, 40, 7)
        cj = cl_count.compute_confident_joint(labels, p, calibrate=False)
        for opts in (
            dict(frac_noise=0.5),
            dict(frac_noise=0.83),
            dict(min_examples_per_class=0),
            dict(min_examples_per_class=60),
            dict(num_to_remove_per_class=removals),
            dict(confident_joint=cj),
        ):
            for filter_by in FILTERS[:3]:
                ref = cl_filter.find_label_issues(labels, p, filter_by=filter_by, n_jobs=1, **opts)
                ours = cleaning.find_label_issues(labels, p, filter_by=filter_by, **opts)
                _same_mask(ours, ref, f"seed {seed} {filter_by} {list(opts)}")


def test_confident_joint_thresholds_and_joint_estimate():
    for seed in range(10):
        labels, p = planted(seed, *LARGE, imbalance=True, missing=seed % 3 == 0)
        for calibrate in (True, False):
            ref = cl_count.compute_confident_joint(labels, p, calibrate=calibrate)
            ours = np.asarray(cleaning.confident_joint(labels, p, calibrate=calibrate))
            assert np.array_equal(ours, ref), (seed, calibrate)
        ref_t = cl_count.get_confident_thresholds(labels, p)
        ours_t = np.asarray(cleaning.confident_thresholds(labels, p))
        np.testing.assert_array_equal(ours_t, ref_t.astype(np.float32))
        np.testing.assert_allclose(
            np.asarray(cleaning.estimate_joint(labels, p)),
            cl_count.estimate_joint(labels, p),
            rtol=1e-6,
            atol=0,
        )
        raw = cl_count.compute_confident_joint(labels, p, calibrate=False)
        np.testing.assert_allclose(
            np.asarray(cleaning.estimate_joint(labels, confident_joint=raw)),
            cl_count.estimate_joint(labels, p, confident_joint=raw),
            rtol=1e-6,
            atol=0,
        )


def test_calibration_matches_on_arbitrary_joints():
    """The host-side calibration (float64 and NumPy's own argsort for the rounding) against
    cleanlab's, on random count matrices, K up to 24 (NumPy's quicksort is unstable past 16)."""
    rng = np.random.default_rng(0)
    for trial in range(200):
        k = int(rng.integers(2, 25))
        cj = rng.integers(0, rng.choice([3, 20, 500]), (k, k))
        if trial % 2:
            cj = np.asfortranarray(cj)  # the memory order changes cleanlab's float sums
        labels = rng.integers(0, k, int(rng.integers(k, 400)))
        ours = np.asarray(cleaning.calibrated_joint(cj, labels))
        assert np.array_equal(ours, cl_count.calibrate_confident_joint(cj, labels)), trial


@pytest.mark.parametrize("missing", [False, True], ids=["float32-thresholds", "float64-thresholds"])
def test_thresholds_at_the_boundary_count_like_cleanlab(missing):
    """Examples exactly at (and one float32 step around) threshold - 1e-6 fall where cleanlab puts
    them. The mean is NumPy's pairwise float32 sum; the subtraction and the comparison are in
    float32 when every class is present, in float64 when one is absent (cleanlab's dtypes)."""
    rng = np.random.default_rng(1)
    labels, p = planted(3, *LARGE, missing=missing)
    thresholds = cl_count.get_confident_thresholds(labels, p)
    assert thresholds.dtype == (np.float64 if missing else np.float32)
    for j in np.flatnonzero(thresholds < 1):  # an absent class has threshold 2
        cut = np.float32(thresholds[j] - 1e-6)
        rows = rng.choice(len(labels), 60, replace=False)
        for r, v in zip(rows, [cut, np.nextafter(cut, 1), np.nextafter(cut, 0)] * 20, strict=True):
            if labels[r] != j:
                p[r, j] = v
    np.testing.assert_array_equal(
        np.asarray(cleaning.confident_joint(labels, p, calibrate=False)),
        cl_count.compute_confident_joint(labels, p, calibrate=False),
    )
    _check_all_filters(labels, p, "boundary")


def test_accepts_what_cleanlab_accepts():
    """Rows need not sum to 1; values within 1e-6 outside [0, 1] pass; one class only is fine."""
    labels, p = planted(5, *SMALL)
    p = p * 0.9
    p[0, 0] = 1.0 + 5e-7
    p[1, 1] = -5e-7
    _check_all_filters(labels, p, "unnormalised")
    zeros = np.zeros_like(labels)  # cleanlab accepts one class when it is class 0 ...
    for filter_by in FILTERS[:4]:  # ... except in find_predicted_neq_given
        ref = cl_filter.find_label_issues(zeros, p, filter_by=filter_by, n_jobs=1)
        _same_mask(cleaning.find_label_issues(zeros, p, filter_by=filter_by), ref, filter_by)
    mask = np.asarray(cleaning.find_label_issues(np.full_like(labels, 2), p))
    assert mask.dtype == bool and mask.shape == labels.shape


@pytest.fixture
def stable_numpy_sort(monkeypatch):
    """cleanlab with stable sorts: among equal scores the lowest index first."""
    argsort = np.argsort

    def stable(a, axis=-1, kind=None, order=None, **kw):
        return argsort(a, axis=axis, kind="stable", order=order, **kw)

    monkeypatch.setattr(np, "argsort", stable)


@pytest.mark.parametrize("levels", [40, 8, 3])
def test_ties_go_to_the_lowest_index(stable_numpy_sort, levels):
    """Quantised probabilities (many exact ties at every cut; with 3 levels more than the peeling
    limit, exercising the bit-by-bit tie selection): identical to cleanlab with stable sorting."""
    for seed in range(8):
        labels, p = planted(seed, *(SMALL if seed % 2 else LARGE), imbalance=True)
        p = (np.round(p * levels) / levels).astype(np.float32)
        _check_all_filters(labels, p, f"levels {levels} seed {seed}")
        mask = cl_filter.find_label_issues(labels, p, n_jobs=1)
        for rank_by in cleaning.RANKINGS:
            ref = cl_rank.order_label_issues(mask, labels, p, rank_by=rank_by)
            ours = cleaning.rank_label_issues(labels, p, mask, rank_by=rank_by)
            np.testing.assert_array_equal(np.asarray(ours), ref)


def test_ranking_matches():
    for seed in range(10):
        labels, p = planted(seed, *SMALL)
        mask = cl_filter.find_label_issues(labels, p, n_jobs=1)
        for rank_by in cleaning.RANKINGS:
            ref = cl_filter.find_label_issues(labels, p, n_jobs=1, return_indices_ranked_by=rank_by)
            scores = cl_rank.get_label_quality_scores(labels, p, method=rank_by)
            ours = np.asarray(cleaning.rank_label_issues(labels, p, mask, rank_by=rank_by))
            np.testing.assert_array_equal(
                np.asarray(cleaning.label_quality_scores(labels, p, method=rank_by)), scores
            )
            # Same set, same scores in the same order; the order of exactly equal scores is
            # cleanlab's unstable sort (see test_ties_go_to_the_lowest_index).
            assert sorted(ours) == sorted(ref)
            np.testing.assert_array_equal(scores[ours], scores[ref])
            if len(np.unique(scores[ref])) == len(ref):
                np.testing.assert_array_equal(ours, ref)


def test_float64_with_x64_matches():
    with jax.enable_x64(True):
        for seed in range(6):
            labels, p32 = planted(seed, *SMALL, imbalance=True)
            p = p32.astype(np.float64)
            p /= p.sum(1, keepdims=True)
            _check_all_filters(labels, p, f"float64 seed {seed}")
            np.testing.assert_array_equal(
                np.asarray(cleaning.confident_joint(labels, p)),
                cl_count.compute_confident_joint(labels, p),
            )
