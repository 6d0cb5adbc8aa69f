"""Verbalized strategies and aggregations of Xiong et al. (ICLR 2024): the multistep parser and its
product rule, Avg-Conf and Pair-Rank against hand-computed cases and numpy transcriptions of the
paper's formulas (and of the authors' rank matrix), Pair-Rank recovering a known distribution."""

import numpy as np
import pytest

from introspect import signals
from introspect.signals.verbalized import (
    avg_conf,
    avg_conf_scores,
    multistep_confidence,
    pair_rank,
    pair_rank_counts,
    pair_rank_fit,
    pair_rank_scores,
    parse_multistep,
)

# ----------------------------------------------------------------------------- multistep

PAPER_STYLE = """Step 1: 37 has 3 tens and 73 has 7 tens, Confidence: 90%
Step 2: More tens means larger, so 73 is larger, Confidence: 80%
Final Answer and Overall Confidence (0-100): 73, 85%"""


@pytest.mark.parametrize(
    "text, steps, overall",
    [
        (PAPER_STYLE, (0.9, 0.8), 0.85),
        # markdown, a step without a confidence, a plain "Final Answer:" then its confidence
        (
            "**Step 1:** add. Confidence: 0.5\n**Step 2:** carry the one\n"
            "Final Answer: 12\nOverall Confidence: 60%",
            (0.5, None),
            0.6,
        ),
        # numbering out of sequence ends the steps (as in the authors' extraction)
        ("Step 1: a, Confidence: 90%\nStep 3: b, Confidence: 10%\n", (0.9,), None),
        # steps after the final answer are not steps; the last confidence in a step is its own
        (
            "Step 1: a (first 20%), Confidence: 70%\nFinal Answer and Overall Confidence (0-100):"
            " B, 40%\nStep 2: afterthought, Confidence: 5%",
            (0.7,),
            0.4,
        ),
        # no final line: no overall confidence (a step's own is not taken for it)
        ("Step 1: a, Confidence: 90%\nStep 2: b, Confidence: 70%", (0.9, 0.7), None),
        ("The answer is 5.", (), None),
        ("Final Answer and Overall Confidence (0-100): 5, 50%", (), 0.5),
    ],
)
def test_parse_multistep(text, steps, overall):
    got = parse_multistep(text)
    assert got.steps == pytest.approx(steps) if None not in steps else got.steps == steps
    assert got.overall == (pytest.approx(overall) if overall is not None else None)


def test_multistep_confidence_is_the_product_of_step_confidences():
    assert multistep_confidence(PAPER_STYLE) == pytest.approx(0.9 * 0.8)
    rng = np.random.default_rng(0)
    for _ in range(5):
        c = rng.integers(0, 101, size=rng.integers(1, 7))
        text = "\n".join(f"Step {i + 1}: ..., Confidence: {v}%" for i, v in enumerate(c))
        text += "\nFinal Answer and Overall Confidence (0-100): 1, 50%"
        assert multistep_confidence(text) == pytest.approx(np.prod(c / 100.0))
    # a step without a confidence: 100% by default (the authors' rule), or as told, or None
    text = "Step 1: a, Confidence: 50%\nStep 2: b\nFinal Answer: 3"
    assert multistep_confidence(text) == pytest.approx(0.5)
    assert multistep_confidence(text, missing=0.5) == pytest.approx(0.25)
    assert multistep_confidence(text, missing=None) is None
    assert multistep_confidence("no steps at all, Confidence: 90%") is None


def test_multistep_errors():
    with pytest.raises(ValueError, match="missing must lie in"):
        multistep_confidence(PAPER_STYLE, missing=1.5)
    with pytest.raises(ValueError, match="expected a string"):
        parse_multistep(None)


# ----------------------------------------------------------------------------- Avg-Conf


def _avg_conf_numpy(answers, confs, target):
    """The paper's Avg-Conf, sum_i 1[a_i = t] c_i / sum_i c_i, as in the authors'
    compute_avg_confidence (confidences in percent there; the ratio is scale-free)."""
    confs = np.asarray(confs, float) * 100
    agree = np.array([a is not None and a == target for a in answers])
    return confs[agree].sum() / np.sum(confs)


def test_avg_conf_hand_computed():
    answers = ["A", "B", "A", None]
    confs = [0.9, 0.6, 0.3, 0.2]
    assert avg_conf(answers, confs, "A") == pytest.approx(1.2 / 2.0)
    assert avg_conf(answers, confs, "B") == pytest.approx(0.6 / 2.0)
    assert avg_conf(answers, confs, "C") == 0.0
    assert avg_conf(answers, confs, None) == 0.0
    scores = avg_conf_scores(answers, confs)
    assert list(scores) == ["A", "B"]  # highest first; the unparsable answer has no entry
    assert scores == pytest.approx({"A": 0.6, "B": 0.3})
    # a single sample agreeing with the target: 1 whatever its confidence (> 0)
    assert avg_conf(["A"], [0.3], "A") == 1.0
    # ties keep their order of first appearance
    assert list(avg_conf_scores(["B", "A"], [0.5, 0.5])) == ["B", "A"]


@pytest.mark.parametrize("seed", range(8))
def test_avg_conf_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 12))
    answers = [None if rng.random() < 0.15 else str(rng.integers(0, 4)) for _ in range(k)]
    confs = rng.integers(0, 101, size=k) / 100.0
    if confs.sum() == 0:
        confs[0] = 0.5
    for target in ["0", "1", "2", "3"]:
        assert avg_conf(answers, confs, target) == pytest.approx(
            _avg_conf_numpy(answers, confs, target)
        )
    scores = avg_conf_scores(answers, confs)
    for a, v in scores.items():
        assert v == pytest.approx(_avg_conf_numpy(answers, confs, a))
    assert list(scores.values()) == sorted(scores.values(), reverse=True)


def test_avg_conf_all_zero_confidences_is_consistency():
    answers = ["A", "A", "B", None]
    assert avg_conf(answers, [0, 0, 0, 0], "A") == pytest.approx(0.5)
    assert avg_conf(answers, [0, 0, 0, 0], "A") == signals.consistency("A", answers)
    # equal confidences give the consistency too (the value the 0/0 case is given)
    assert avg_conf(answers, [0.3] * 4, "B") == signals.consistency("B", answers)


def test_avg_conf_equivalence():
    same = lambda a, b: a.strip().lower() == b.strip().lower()  # noqa: E731
    answers = ["Paris", "paris ", "Lyon"]
    assert avg_conf(answers, [0.5, 0.3, 0.2], "PARIS", equivalent=same) == pytest.approx(0.8)
    assert avg_conf_scores(answers, [0.5, 0.3, 0.2], equivalent=same) == pytest.approx(
        {"Paris": 0.8, "Lyon": 0.2}
    )


@pytest.mark.parametrize(
    "answers, confs, match",
    [
        ([], [], "no samples"),
        ("AB", [0.5, 0.5], "sequence of answers"),
        (["A", "B"], [0.5], "2 answers but 1 confidences"),
        (["A"], [1.5], r"in \[0, 1\]"),
        (["A"], [-0.1], r"in \[0, 1\]"),
        (["A"], [float("nan")], r"in \[0, 1\]"),
        (["A"], [None], "drop or fill None"),
        ([["A"]], [0.5], "hashable"),
    ],
)
def test_avg_conf_errors(answers, confs, match):
    with pytest.raises(ValueError, match=match):
        avg_conf(answers, confs, "A")
    with pytest.raises(ValueError, match=match):
        avg_conf_scores(answers, confs)


# ----------------------------------------------------------------------------- Pair-Rank


def _authors_rank_matrix(rankings, options):
    """numpy transcription of the authors' convert_to_rank_matrix (vis_aggregated_conf_top_k.py):
    walking each top-K list in order, an option's row gains 1 for every option not yet seen;
    the sum over lists is divided by their number."""
    n = len(options)
    index = {o: i for i, o in enumerate(options)}
    rank = np.zeros((n, n))
    for answers in rankings:
        mask = np.ones(n)
        for option in answers:
            mask[index[option]] = 0
            rank[index[option], :] += mask
    return rank / len(rankings)


def _nll_numpy(p, counts):
    """The paper's Pair-Rank objective, -sum_{u,v} 1[u before v] log(p_u / (p_u + p_v))."""
    ratio = p[:, None] / (p[:, None] + p[None, :])
    off = ~np.eye(len(p), dtype=bool)
    return -np.sum(counts[off] * np.log(ratio[off]))


def _mle_numpy(counts, iters=20000):
    """The same maximum-likelihood distribution by Hunter's (2004) MM iteration for
    Bradley-Terry: p_u <- wins_u / sum_v n_uv / (p_u + p_v), normalised."""
    both = counts + counts.T
    p = np.full(len(counts), 1.0 / len(counts))
    for _ in range(iters):
        p = counts.sum(1) / (both / (p[:, None] + p[None, :])).sum(1)
        p /= p.sum()
    return p


def _top_k_lists(p, k, num, rng):
    """num top-k lists drawn from the categorical p without replacement (Plackett-Luce, by the
    Gumbel top-k trick): P(u listed before v) = p_u / (p_u + p_v)."""
    keys = np.log(p) + rng.gumbel(size=(num, len(p)))
    return np.argsort(-keys, axis=1)[:, :k].tolist()


def test_pair_rank_counts_hand_computed():
    options, counts = pair_rank_counts([["A", "B"], ["B", "C"], ["A", "C"]])
    assert options == ["A", "B", "C"]
    # an answer missing from a list comes after every answer in it
    np.testing.assert_array_equal(counts, [[0, 2, 2], [1, 0, 2], [1, 1, 0]])
    # None guesses are dropped and repeats ignored
    _, again = pair_rank_counts([["A", None, "B"], ["B", "B", "C"], ["A", "C", "A"]])
    np.testing.assert_array_equal(again, counts)


@pytest.mark.parametrize("seed", range(5))
def test_pair_rank_counts_match_the_authors_rank_matrix(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(3, 7)), int(rng.integers(1, 4))
    rankings = [[f"o{i}" for i in r] for r in _top_k_lists(np.ones(n) / n, k, 30, rng)]
    options, counts = pair_rank_counts(rankings)
    np.testing.assert_allclose(counts / len(rankings), _authors_rank_matrix(rankings, options))


def test_pair_rank_hand_computed():
    # two answers: p_A / (p_A + p_B) = 3/4 maximises 3 log r + log(1 - r)
    rankings = [["A", "B"]] * 3 + [["B", "A"]]
    assert pair_rank(rankings, "A") == pytest.approx(0.75, abs=1e-4)
    assert pair_rank(rankings, "B") == pytest.approx(0.25, abs=1e-4)
    # a tie: uniform, in order of first appearance
    scores = pair_rank_scores([["A", "B"], ["B", "A"]])
    assert list(scores) == ["A", "B"] and scores == pytest.approx({"A": 0.5, "B": 0.5})
    # a cyclic, balanced set of lists: uniform
    cyc = pair_rank_scores([["A", "B", "C"], ["B", "C", "A"], ["C", "A", "B"]])
    assert cyc == pytest.approx({"A": 1 / 3, "B": 1 / 3, "C": 1 / 3}, abs=1e-5)
    # lists that always agree: the optimum is the vertex; the fit approaches it
    same = pair_rank_scores([["A", "B", "C"]] * 5)
    assert list(same) == ["A", "B", "C"] and same["A"] > 0.99
    assert pair_rank([["A", "B", "C"]] * 5, "A", steps=3000) > same["A"]


def _strongly_connected(counts):
    """Every answer reachable from every other along "comes before" edges: then the maximum
    likelihood is unique and inside the simplex (Hunter 2004, assumption 1)."""
    reach = (counts > 0) | np.eye(len(counts), dtype=bool)
    for _ in range(len(counts)):
        reach = (reach.astype(int) @ reach.astype(int)) > 0
    return bool(reach.all())


@pytest.mark.parametrize("seed", range(6))
def test_pair_rank_fit_is_the_maximum_likelihood(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 7))
    p = rng.dirichlet(np.full(n, 2.0))
    rankings = _top_k_lists(p, int(rng.integers(1, 4)), int(rng.integers(5, 60)), rng)
    _, counts = pair_rank_counts(rankings)
    fit = pair_rank_fit(counts)
    assert fit.sum() == pytest.approx(1.0)
    # no distribution explains the orderings better (the paper's objective, in numpy)
    others = rng.dirichlet(np.ones(len(fit)), size=500)
    assert _nll_numpy(fit, counts) <= min(_nll_numpy(q, counts) for q in others) + 1e-6
    if _strongly_connected(counts):
        mle = _mle_numpy(counts)
        assert _nll_numpy(fit, counts) == pytest.approx(_nll_numpy(mle, counts), abs=1e-4)
        np.testing.assert_allclose(fit, mle, atol=2e-3)


def test_pair_rank_fit_matches_the_mm_solution_on_connected_data():
    for seed in range(4):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(3, 7))
        p = rng.dirichlet(np.full(n, 2.0))
        _, counts = pair_rank_counts(_top_k_lists(p, 2, 300, rng))
        assert _strongly_connected(counts)
        np.testing.assert_allclose(pair_rank_fit(counts), _mle_numpy(counts), atol=1e-4)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 2, 3])
def test_pair_rank_recovers_a_known_distribution(seed, k):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 7))
    p = rng.dirichlet(np.full(n, 2.0))
    p = (p + 0.02) / (p + 0.02).sum()  # every answer appears now and then
    rankings = [[f"o{i}" for i in r] for r in _top_k_lists(p, k, 4000, rng)]
    scores = pair_rank_scores(rankings)
    got = np.array([scores.get(f"o{i}", 0.0) for i in range(n)])
    np.testing.assert_allclose(got, p, atol=0.03)
    assert pair_rank(rankings, f"o{int(np.argmax(p))}") == pytest.approx(got.max())


def test_pair_rank_edge_cases():
    assert pair_rank_scores([[None], [None, None]]) == {}
    assert pair_rank([[None]], "A") == 0.0
    assert pair_rank([["A"], ["A", None]], "A") == 1.0
    assert pair_rank([["A", "B"]], "Z") == 0.0
    assert pair_rank([["A", "B"]], None) == 0.0
    assert pair_rank_fit(np.zeros((3, 3))) == pytest.approx([1 / 3] * 3)
    assert pair_rank_fit(np.zeros((0, 0))).shape == (0,)
    same = lambda a, b: a.lower() == b.lower()  # noqa: E731
    merged = pair_rank_scores([["Paris", "Lyon"], ["paris", "Nice"]], equivalent=same)
    assert list(merged)[0] == "Paris" and set(merged) == {"Paris", "Lyon", "Nice"}
    assert pair_rank([["A", "B"]], "a", equivalent=same) == pair_rank([["A", "B"]], "A")


@pytest.mark.parametrize(
    "rankings, match",
    [
        ([], "no samples"),
        ("AB", "sequence of top-K lists"),
        (["AB"], "must be a list of answers"),
        ([[["A"]]], "hashable"),
    ],
)
def test_pair_rank_errors(rankings, match):
    with pytest.raises(ValueError, match=match):
        pair_rank(rankings, "A")


def test_pair_rank_fit_errors():
    with pytest.raises(ValueError, match="square"):
        pair_rank_fit(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        pair_rank_fit(-np.ones((2, 2)))
    with pytest.raises(ValueError, match="steps"):
        pair_rank_fit(np.ones((2, 2)), steps=-1)
