"""B-STaR monitors (pass@k, distinct correct, best-of-k, reward discrimination) and the balance
score, against direct transcriptions of the released code's logic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from introspect import adapt


def comb_pass(n, c, k, s=1):
    return sum(math.comb(c, j) * math.comb(n - c, k - j) for j in range(s, k + 1)) / math.comb(n, k)


def test_pass_at_k_matches_combinatorics():
    n = 16
    c = np.arange(n + 1)
    for k, ss in ((4, (1, 2, 3, 4)), (16, (1, 5))):
        for s in ss:
            ref = [comb_pass(n, int(ci), k, s) for ci in c]
            got = adapt.pass_at_k(num_correct=c, num_samples=n, k=k, min_correct=s)
            np.testing.assert_allclose(got, ref, atol=2e-5)
    # Chen et al.'s product form for s = 1
    ref = [1 - np.prod(1 - 4 / np.arange(n - ci + 1, n + 1)) for ci in c]
    np.testing.assert_allclose(adapt.pass_at_k(num_correct=c, num_samples=n, k=4), ref, atol=2e-5)


def test_distinct_correct_and_best_of_k():
    correct = np.array([[1, 1, 0, 1], [0, 0, 0, 0], [1, 0, 1, 1]])
    ids = np.array([[7, 7, 3, 2], [1, 2, 3, 4], [5, 6, 5, 8]])
    np.testing.assert_array_equal(
        adapt.distinct_correct(correct=correct, response_ids=ids), [2, 0, 2]
    )
    np.testing.assert_array_equal(adapt.distinct_correct(correct=correct), [3, 0, 3])
    rewards = np.array([[0.1, 0.9, 0.95, 0.2], [0.5, 0.5, 0.5, 0.5], [0.3, 0.3, 0.1, 0.0]])
    np.testing.assert_array_equal(adapt.best_of_k(rewards=rewards, correct=correct), [0, 0, 1])
    mask = np.array([[1, 1, 0, 1], [1, 1, 1, 1], [0, 1, 1, 1]], bool)
    np.testing.assert_array_equal(
        adapt.best_of_k(rewards=rewards, correct=correct, mask=mask), [1, 0, 0]
    )


@pytest.mark.parametrize("seed", range(3))
def test_reward_discrimination_matches_pairwise_count(seed):
    def roc_auc_score(y, r):  # Mann-Whitney: P(r_pos > r_neg) + P(tie) / 2
        pos, neg = r[y], r[~y]
        return np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg])

    rng = np.random.default_rng(seed)
    correct = rng.random((5, 12)) < 0.5
    correct[0] = True  # undefined row
    rewards = np.round(rng.normal(size=(5, 12)) + correct, 1)  # ties on purpose
    auc, defined = adapt.reward_discrimination(rewards=rewards, correct=correct)
    for q in range(5):
        if correct[q].all() or not correct[q].any():
            assert not defined[q] and auc[q] == 0.5
        else:
            assert defined[q]
            assert float(auc[q]) == pytest.approx(roc_auc_score(correct[q], rewards[q]), abs=1e-6)


def py_select(rewards, threshold, max_samples):
    """The released get_unique_trn_json selection: sort by score desc, keep > threshold."""
    out = np.zeros(rewards.shape, bool)
    for q, row in enumerate(rewards):
        order = sorted(range(len(row)), key=lambda j: row[j], reverse=True)  # stable
        taken = 0
        for j in order:
            if row[j] > threshold:
                out[q, j] = True
                taken += 1
                if max_samples is not None and taken >= max_samples:
                    break
    return out


def py_balance(selected, correct, ids, n_star=8):
    """The released cal_modi_acc_soft on the deduplicated (query, output) selection."""
    scores = []
    for q in range(selected.shape[0]):
        seen, num, tot = set(), 0, 0
        for j in np.flatnonzero(selected[q]):
            if ids[q, j] in seen:
                continue
            seen.add(ids[q, j])
            tot += 1
            num += int(correct[q, j])
        if tot == 0:
            continue
        ratio = num / tot
        scores.append(ratio if num >= n_star else num * ratio / n_star)
    return float(np.mean(scores)) if scores else 0.0


@pytest.mark.parametrize("seed", range(4))
def test_selection_and_balance_match_released_logic(seed):
    rng = np.random.default_rng(seed)
    q, n = 6, 20
    correct = rng.random((q, n)) < rng.random((q, 1))
    rewards = np.round(correct * 0.6 + rng.normal(size=(q, n)) * 0.5, 2)
    ids = rng.integers(0, 12, (q, n))
    for tau, cap, n_star in [(-1.0, None, 8), (0.2, 5, 8), (0.5, 3, 2), (2.5, None, 4)]:
        sel = np.asarray(adapt.select_by_reward(rewards=rewards, threshold=tau, max_per_query=cap))
        np.testing.assert_array_equal(sel, py_select(rewards, tau, cap))
        score, per_q, counted = adapt.balance_score(
            selected=sel, correct=correct, response_ids=ids, n_star=n_star
        )
        assert float(score) == pytest.approx(py_balance(sel, correct, ids, n_star), abs=1e-6)
        assert np.all((np.asarray(per_q) >= 0) & (np.asarray(per_q) <= 1))
        assert int(np.sum(counted)) == int(np.sum(sel.any(1)))


def test_search_picks_the_best_configuration():
    rng = np.random.default_rng(7)
    c_, q, n = 3, 5, 16
    correct = rng.random((c_, q, n)) < np.array([0.2, 0.5, 0.8])[:, None, None]
    rewards = correct * 1.0 + rng.normal(size=(c_, q, n)) * np.array([2.0, 0.3, 1.0])[:, None, None]
    taus = np.linspace(-1, 1, 9)
    scores, best_c, best_t = adapt.bstar_search(
        rewards=rewards, correct=correct, thresholds=taus, n_star=4, max_per_query=8
    )
    brute = np.array(
        [
            [py_balance(py_select(rewards[ci], t, 8), correct[ci], np.tile(np.arange(n), (q, 1)), 4)
             for t in taus]
            for ci in range(c_)
        ]
    )  # fmt: skip
    np.testing.assert_allclose(scores, brute, atol=1e-6)
    assert (int(best_c), int(best_t)) == np.unravel_index(np.argmax(brute), brute.shape)


def test_errors():
    with pytest.raises(ValueError, match="num_samples"):
        adapt.pass_at_k(num_correct=np.array([1]), num_samples=3, k=4)
    with pytest.raises(ValueError, match="min_correct"):
        adapt.pass_at_k(num_correct=np.array([1]), num_samples=8, k=2, min_correct=3)
    with pytest.raises(ValueError, match="num_correct"):
        adapt.pass_at_k(num_correct=np.array([9]), num_samples=8, k=2)
    with pytest.raises(ValueError, match="correct"):
        adapt.distinct_correct(correct=np.array([[0, 2]]))
    with pytest.raises(ValueError, match="response_ids"):
        adapt.distinct_correct(correct=np.array([[0, 1]]), response_ids=np.array([[0.5, 1.0]]))
    with pytest.raises(ValueError, match="correct"):
        adapt.best_of_k(rewards=np.zeros((2, 3)), correct=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="max_per_query"):
        adapt.select_by_reward(rewards=np.zeros((2, 3)), threshold=0.0, max_per_query=0)
    with pytest.raises(ValueError, match="n_star"):
        adapt.balance_score(selected=np.ones((2, 3)), correct=np.ones((2, 3)), n_star=0)
    with pytest.raises(ValueError, match="thresholds"):
        adapt.bstar_search(
            rewards=np.zeros((1, 2, 3)), correct=np.zeros((1, 2, 3)), thresholds=np.zeros((2, 2))
        )
