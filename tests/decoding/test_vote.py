"""Voting and selective answering on hand-made cases (ties included)."""

import numpy as np
import pytest

from introspect import decoding


def test_borda_hand_example():
    # Ranks by score: c(1) b(2) a(3) a(4) a(5); N = 5.
    answers = ["a", "a", "b", "a", "c"]
    scores = [0.1, 0.3, 0.8, 0.2, 0.9]
    # power 1: c = 5, b = 4, a = 3 + 2 + 1 = 6 -> a
    assert decoding.borda_vote(answers, scores, power=1.0) == "a"
    # power 0.3: c = 5^.3 = 1.62, b = 4^.3 = 1.52, a = 3^.3 + 2^.3 + 1 = 1.39 + 1.23 + 1 = 3.62
    assert decoding.borda_vote(answers, scores, power=0.3) == "a"
    # power 3: c = 125, b = 64, a = 27 + 8 + 1 = 36 -> c
    assert decoding.borda_vote(answers, scores, power=3.0) == "c"


def test_borda_power_zero_is_majority_and_ties():
    answers = ["x", "y", "y", "x", "z"]
    scores = [0.9, 0.1, 0.2, 0.3, 0.95]
    # x and y both twice; power 0 -> tie on totals -> the answer whose best sample ranks higher:
    # ranks: z(1) x(2) x(3) y(4) y(5) -> x
    assert decoding.borda_vote(answers, scores, power=0.0) == "x"
    assert decoding.majority_vote(["b", "a", "a", "b"]) == "b"  # tie -> first seen
    assert decoding.majority_vote(["b", "a", "a"]) == "a"
    # Equal scores keep input order in the ranking.
    assert decoding.borda_vote(["p", "q"], [1.0, 1.0], power=1.0) == "p"


def test_none_answers_never_win():
    assert decoding.borda_vote([None, "a", None], [0.9, 0.1, 0.8], power=1.0) == "a"
    assert decoding.majority_vote([None, None]) is None
    assert decoding.select_by_score(["a", "b"], [0.2, 0.7]) == "b"


def test_vote_errors():
    with pytest.raises(ValueError, match="scores has shape"):
        decoding.borda_vote(["a", "b"], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        decoding.borda_vote(["a"], [np.nan])
    with pytest.raises(ValueError, match="power"):
        decoding.borda_vote(["a"], [1.0], power=-1)
    with pytest.raises(ValueError, match="empty"):
        decoding.borda_vote([], [])


def test_selective_and_cascade():
    keep = decoding.selective_answer([0.2, 0.8, 0.5], threshold=0.5)
    assert keep.tolist() == [False, True, True]
    answers, deferred = decoding.cascade(
        ["a", "b", "c"], [0.2, 0.8, 0.5], ["A", "B", None], threshold=0.6
    )
    assert answers == ["A", "b", None] and deferred.tolist() == [True, False, True]
    with pytest.raises(ValueError, match="finite"):
        decoding.selective_answer([np.inf], threshold=0.5)
