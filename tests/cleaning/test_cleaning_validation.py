"""Bad input at the public boundary: a ValueError that names the argument (raised before any
computation is compiled)."""

import numpy as np
import pytest

from introspect import cleaning

rng = np.random.default_rng(0)
P = rng.dirichlet(np.ones(3), 40).astype(np.float32)
Y = rng.integers(0, 3, 40)
Y[:3] = [0, 1, 2]
CALLS = {
    "find_label_issues": lambda y, p: cleaning.find_label_issues(y, p),
    "confident_joint": lambda y, p: cleaning.confident_joint(y, p),
    "confident_thresholds": lambda y, p: cleaning.confident_thresholds(y, p),
    "estimate_joint": lambda y, p: cleaning.estimate_joint(y, p),
    "label_quality_scores": lambda y, p: cleaning.label_quality_scores(y, p),
    "rank_label_issues": lambda y, p: cleaning.rank_label_issues(y, p, np.zeros(len(p), bool)),
}


def _with(arr, idx, value, dtype=None):
    out = np.array(arr, dtype=dtype or arr.dtype)
    out[idx] = value
    return out


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
@pytest.mark.parametrize(
    "labels, probs, match",
    [
        (_with(Y, 4, 3), P, r"labels: 1 value\(s\) are not integer class indices in \[0, 3\)"),
        (_with(Y, 4, -1), P, r"labels: 1 value\(s\) are not integer class indices"),
        (_with(Y, 4, 1.5, float), P, r"labels: 1 value\(s\) are not integer class indices"),
        (Y[:, None], P, r"labels: has shape \(40, 1\)"),
        (Y[:-1], P, r"pred_probs and labels: leading dimensions differ"),
        (Y, P[:, 0], r"pred_probs: has shape \(40,\) \(rank 1\); expected a 2-D array"),
        (Y, P[None], r"pred_probs: has shape \(1, 40, 3\)"),
        (np.zeros(40, int), P[:, :1], r"pred_probs: has 1 column\(s\).*expected K >= 2"),
        (Y[:0], P[:0], r"pred_probs: is empty"),
        (Y, _with(P, (2, 1), np.nan), r"pred_probs: contains 1 NaN or inf"),
        (Y, _with(P, (2, 1), np.inf), r"pred_probs: contains 1 NaN or inf"),
        (Y, _with(P, (2, 1), 1.01), r"pred_probs: 1 value\(s\) outside \[-1e-06, 1\]"),
        (Y, _with(P, (2, 1), -0.01), r"pred_probs: 1 value\(s\) outside"),
        (Y, P.astype(object), r"pred_probs: cannot be converted to a numeric array"),
        (None, P, r"labels: got None"),
    ],
    ids=[
        "label-K",
        "label-negative",
        "label-fraction",
        "labels-2d",
        "n-mismatch",
        "probs-1d",
        "probs-3d",
        "one-class-column",
        "empty",
        "nan",
        "inf",
        "above-one",
        "negative",
        "object",
        "labels-none",
    ],
)
def test_bad_inputs(call, labels, probs, match):
    with pytest.raises(ValueError, match=match):
        call(labels, probs)


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(filter_by="prune_by_noise"), r"filter_by: expected one of"),
        (dict(filter_by="low_self_confidence"), r"filter_by: expected one of"),
        (dict(frac_noise=1.5), r"frac_noise: expected a finite number in \[0, 1\]"),
        (dict(frac_noise=-0.1), r"frac_noise"),
        (dict(frac_noise=np.nan), r"frac_noise"),
        (dict(min_examples_per_class=-1), r"min_examples_per_class: expected an integer >= 0"),
        (dict(min_examples_per_class=1.5), r"min_examples_per_class: expected an integer"),
        (dict(num_to_remove_per_class=[1, 2]), r"num_to_remove_per_class: has shape \(2,\)"),
        (dict(num_to_remove_per_class=[1, -2, 0]), r"num_to_remove_per_class: expected non-neg"),
        (
            dict(num_to_remove_per_class=[1, 2, 0], filter_by="confident_learning"),
            r"num_to_remove_per_class: not supported with filter_by='confident_learning'",
        ),
        (dict(confident_joint=np.ones((2, 2))), r"confident_joint: has shape \(2, 2\); expected"),
        (dict(confident_joint=-np.ones((3, 3))), r"confident_joint: expected non-negative"),
        (dict(confident_joint=np.full((3, 3), 0.5)), r"confident_joint: expected non-negative"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        cleaning.find_label_issues(Y, P, **options)


def test_bad_ranking_and_joint_arguments():
    with pytest.raises(ValueError, match=r"rank_by: expected one of"):
        cleaning.rank_label_issues(Y, P, np.zeros(40, bool), rank_by="confidence_weighted_entropy")
    with pytest.raises(ValueError, match=r"mask: has shape \(39,\)"):
        cleaning.rank_label_issues(Y, P, np.zeros(39, bool))
    with pytest.raises(ValueError, match=r"mask: has values other than 0/1"):
        cleaning.rank_label_issues(Y, P, np.full(40, 2))
    with pytest.raises(ValueError, match=r"method: expected one of"):
        cleaning.label_quality_scores(Y, P, method="entropy")
    with pytest.raises(ValueError, match=r"pred_probs: got None"):
        cleaning.estimate_joint(Y)
    with pytest.raises(ValueError, match=r"confident_joint: has shape \(3,\)"):
        cleaning.calibrated_joint(np.ones(3), Y)
    with pytest.raises(ValueError, match=r"labels: 1 value\(s\) are not integer class indices"):
        cleaning.calibrated_joint(np.ones((3, 3)), _with(Y, 0, 5))
