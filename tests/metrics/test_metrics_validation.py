"""Bad input at the public boundary: a ValueError naming the argument and the problem."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introspect import metrics as M

rng = np.random.default_rng(0)
CONF = rng.random(20)
CORRECT = (rng.random(20) < 0.5).astype(int)
CORRECT[:2] = [0, 1]
PROBS = np.full((20, 4), 0.25)
LABELS = rng.integers(0, 4, 20)

BINARY_FNS = [M.ece, M.ace, M.mce, M.rmsce, M.reliability_curve]
RANK_FNS = [M.auroc, M.auprc, M.aurc, M.excess_aurc, M.risk_coverage_curve]


def _with(arr, idx, value):
    out = np.array(arr, dtype=float)
    out[idx] = value
    return out


@pytest.mark.parametrize("fn", BINARY_FNS + RANK_FNS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_scores(fn, bad):
    with pytest.raises(ValueError, match=r"(confidences|scores).*NaN or inf"):
        fn(_with(CONF, 3, bad), CORRECT)


@pytest.mark.parametrize("fn", BINARY_FNS)
@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_confidences_outside_unit_interval(fn, bad):
    with pytest.raises(ValueError, match=r"confidences: 1 value\(s\) outside \[0, 1\]"):
        fn(_with(CONF, 0, bad), CORRECT)


@pytest.mark.parametrize("fn", BINARY_FNS + [M.auroc, M.auprc])
def test_labels_not_binary(fn):
    with pytest.raises(ValueError, match=r"(correct|labels): 1 value\(s\) are not 0 or 1"):
        fn(CONF, _with(CORRECT, 0, 2))


@pytest.mark.parametrize("fn", [M.aurc, M.excess_aurc, M.risk_coverage_curve])
def test_correctness_outside_unit_interval(fn):
    with pytest.raises(ValueError, match=r"correct: .*outside \[0, 1\]"):
        fn(CONF, _with(CORRECT, 0, 1.5))


@pytest.mark.parametrize("fn", [M.top_label_ece, M.classwise_ece, M.brier_score, M.nll])
def test_probs_not_summing_to_one(fn):
    bad = PROBS.copy()
    bad[5] = [0.5, 0.5, 0.5, 0.0]
    with pytest.raises(ValueError, match=r"probs: 1 row\(s\) do not sum to 1"):
        fn(bad, LABELS)


@pytest.mark.parametrize("fn", [M.top_label_ece, M.classwise_ece, M.brier_score, M.nll])
def test_class_labels_out_of_range(fn):
    with pytest.raises(ValueError, match=r"labels: 1 value\(s\) are not integer class indices"):
        fn(PROBS, _with(LABELS, 0, 4).astype(int))


@pytest.mark.parametrize("fn", [M.brier_score, M.nll])
def test_binary_probs_outside_unit_interval(fn):
    with pytest.raises(ValueError, match=r"probs: .*outside \[0, 1\]"):
        fn(_with(CONF, 1, 1.01), CORRECT)


@pytest.mark.parametrize("fn", BINARY_FNS + RANK_FNS + [M.brier_score, M.nll, M.spearman])
def test_shape_mismatch(fn):
    with pytest.raises(ValueError, match=r"shapes differ, \(20,\) vs \(19,\)"):
        fn(CONF, CORRECT[:19])


@pytest.mark.parametrize("fn", BINARY_FNS + RANK_FNS + [M.spearman])
def test_wrong_rank(fn):
    with pytest.raises(ValueError, match=r"rank 2.*expected a 1-D array"):
        fn(CONF.reshape(4, 5), CORRECT.reshape(4, 5))


@pytest.mark.parametrize("fn", BINARY_FNS + RANK_FNS + [M.brier_score, M.nll, M.top_label_ece])
def test_empty(fn):
    shape = (0, 3) if fn is M.top_label_ece else (0,)
    with pytest.raises(ValueError, match="is empty"):
        fn(np.zeros(shape), np.zeros((0,), dtype=int))


@pytest.mark.parametrize("labels", [np.ones(20, int), np.zeros(20, int)])
def test_auroc_single_class(labels):
    with pytest.raises(ValueError, match="labels: only one class present"):
        M.auroc(CONF, labels)


def test_auprc_without_positives():
    with pytest.raises(ValueError, match="labels: no positive label"):
        M.auprc(CONF, np.zeros(20, int))


def test_single_class_after_mask():
    mask = CORRECT == 1
    with pytest.raises(ValueError, match="only one class"):
        M.auroc(CONF, CORRECT, mask=mask)


@pytest.mark.parametrize("num_bins", [0, -3, 2.5, True, "15"])
def test_num_bins(num_bins):
    with pytest.raises(ValueError, match="num_bins: expected an integer >= 1"):
        M.ece(CONF, CORRECT, num_bins=num_bins)
    with pytest.raises(ValueError, match="num_bins"):
        M.reliability_curve(CONF, CORRECT, num_bins=num_bins)


def test_bad_options():
    with pytest.raises(ValueError, match="binning: expected one of 'uniform', 'quantile'"):
        M.ece(CONF, CORRECT, binning="adaptive")
    with pytest.raises(ValueError, match="norm: expected one of"):
        M.ece(CONF, CORRECT, norm="l3")
    with pytest.raises(ValueError, match="coverage"):
        M.selective_accuracy(CONF, CORRECT, coverage=0.0)
    with pytest.raises(ValueError, match="max_rejection"):
        M.prr(CONF, CORRECT, max_rejection=1.5)
    with pytest.raises(ValueError, match="max_rejection: .* rounds down to 0"):
        M.prr(CONF, CORRECT, max_rejection=0.01)
    with pytest.raises(ValueError, match="eps"):
        M.nll(CONF, CORRECT, eps=0.7)


def test_mask_problems():
    with pytest.raises(ValueError, match=r"mask: has shape \(19,\); expected \(20,\)"):
        M.ece(CONF, CORRECT, mask=np.ones(19, bool))
    with pytest.raises(ValueError, match="mask: selects no entries"):
        M.auroc(CONF, CORRECT, mask=np.zeros(20, bool))
    with pytest.raises(ValueError, match="mask: has values other than 0/1"):
        M.ece(CONF, CORRECT, mask=np.full(20, 2))


def test_constant_inputs():
    with pytest.raises(ValueError, match="x: is constant"):
        M.spearman(np.ones(20), CONF)
    with pytest.raises(ValueError, match="quality: all values are equal"):
        M.prr(CONF, np.ones(20))


def test_non_numeric_input():
    with pytest.raises(ValueError, match="confidences: .*numeric"):
        M.ece(["a"] * 20, CORRECT)
    with pytest.raises(ValueError, match="scores: got None"):
        M.auroc(None, CORRECT)


def test_validate_false_and_tracers_skip_value_checks():
    bad = _with(CONF, 0, 1.5)
    assert np.isfinite(float(M.ece(bad, CORRECT, validate=False)))
    # Inside jit the values are unknown: shapes are still checked, values are not.
    out = jax.jit(lambda c, y: M.ece(c, y))(jnp.asarray(bad), jnp.asarray(CORRECT))
    assert np.isfinite(float(out))
    with pytest.raises(ValueError, match="shapes differ"):
        jax.jit(lambda c, y: M.ece(c, y))(jnp.asarray(CONF), jnp.asarray(CORRECT[:19]))
