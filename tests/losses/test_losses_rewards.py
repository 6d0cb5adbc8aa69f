"""RLCR parser and reward, CRew reward and pairs, HyperClick spatial confidence."""

import math

import jax
import numpy as np
import pytest

from introspect import losses as L


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


GOOD = (
    "<think>6 * 7</think> <answer>42</answer> <analysis>checked twice</analysis> "
    "<confidence>0.8</confidence>"
)


@pytest.mark.parametrize(
    "text, allow_percent, want",
    [
        (GOOD, False, ("42", 0.8, True)),
        (
            "<answer> 7 </answer><analysis>a</analysis><confidence> .25 </confidence>",
            False,
            ("7", 0.25, True),
        ),
        (
            "<answer>1</answer><analysis>a</analysis><confidence>1</confidence>",
            False,
            ("1", 1.0, True),
        ),
        (
            "<answer>1</answer><analysis>a</analysis><confidence>0</confidence>",
            False,
            ("1", 0.0, True),
        ),
        (
            "<answer>1</answer><analysis>a</analysis><confidence>80%</confidence>",
            False,
            ("1", None, False),
        ),
        (
            "<answer>1</answer><analysis>a</analysis><confidence>80 %</confidence>",
            True,
            ("1", 0.8, True),
        ),
        (
            "<answer>1</answer><analysis>a</analysis><confidence>80</confidence>",
            True,
            ("1", None, False),
        ),
        (
            "<answer>1</answer><analysis>a</analysis><confidence>1.2</confidence>",
            False,
            ("1", None, False),
        ),
        (
            "<answer>1</answer><analysis>a</analysis><confidence>-0.1</confidence>",
            False,
            ("1", None, False),
        ),
        (
            "<answer>1</answer><analysis>a</analysis><confidence>high</confidence>",
            False,
            ("1", None, False),
        ),
        (
            "<answer>1</answer><analysis>a</analysis><confidence>nan</confidence>",
            False,
            ("1", None, False),
        ),
        ("<answer>1</answer><analysis>a</analysis>", False, ("1", None, False)),
        ("<analysis>a</analysis><confidence>0.5</confidence>", False, (None, 0.5, False)),
        ("<answer>1</answer><confidence>0.5</confidence>", False, ("1", 0.5, False)),
        # The last match of every tag wins.
        (
            "<answer>1</answer><confidence>0.1</confidence><answer>2</answer><analysis>x"
            "</analysis><confidence>0.9</confidence>",
            False,
            ("2", 0.9, True),
        ),
        (
            "<answer>multi\nline</answer><analysis>\n</analysis><confidence>5e-1</confidence>",
            False,
            ("multi\nline", 0.5, True),
        ),
    ],
)
def test_parse_rlcr(text, allow_percent, want):
    got = L.parse_rlcr(text, allow_percent=allow_percent, require_think=False)
    assert (got.answer, got.confidence, got.format_ok) == want


def test_parse_rlcr_needs_the_papers_tag_order():
    body = "<answer>4</answer><analysis>a</analysis><confidence>0.6</confidence>"
    assert L.parse_rlcr("<think>2+2</think>" + body).format_ok
    assert not L.parse_rlcr(body).format_ok  # no </think>
    assert L.parse_rlcr(body, require_think=False).format_ok
    for bad in (
        "<answer>4</answer><think>x</think><analysis>a</analysis><confidence>0.6</confidence>",
        "<think>x</think><analysis>a</analysis><answer>4</answer><confidence>0.6</confidence>",
        "<think>x</think><answer>4</answer><confidence>0.6</confidence><analysis>a</analysis>",
    ):
        got = L.parse_rlcr(bad)
        assert (got.answer, got.confidence, got.format_ok) == ("4", 0.6, False), bad
    # without the analysis requirement, its position does not matter
    assert L.parse_rlcr(
        "<think>x</think><answer>4</answer><confidence>0.6</confidence>", require_analysis=False
    ).format_ok


def test_parse_rlcr_options_and_batch():
    text = "<think>t</think><answer>1</answer><confidence>0.5</confidence>"
    assert L.parse_rlcr(text, require_analysis=False).format_ok
    answers, conf, ok = L.parse_rlcr_batch([GOOD, "nothing here"])
    assert answers == ["42", None]
    np.testing.assert_allclose(conf, [0.8, 0.0])
    np.testing.assert_array_equal(ok, [True, False])
    with pytest.raises(ValueError, match="text: expected a string"):
        L.parse_rlcr(None)


def test_rlcr_reward():
    correct = np.array([1, 1, 0, 0, 1])
    conf = np.array([0.8, 0.2, 0.8, 0.1, np.nan])
    ok = np.array([True, True, True, True, False])
    want = [1 - 0.04, 1 - 0.64, -0.64, -0.01, -0.5]
    got = L.rlcr_reward(correct=correct, confidence=conf, format_ok=ok, format_penalty=0.5)
    np.testing.assert_allclose(got, want)
    # Calibrated reporting maximises the expected reward: E over y ~ Bernoulli(p).
    qs = np.linspace(0, 1, 101)
    for p in (0.0, 0.3, 0.75, 1.0):
        r1 = L.rlcr_reward(correct=np.ones(101), confidence=qs, format_ok=np.ones(101, bool))
        r0 = L.rlcr_reward(correct=np.zeros(101), confidence=qs, format_ok=np.ones(101, bool))
        assert qs[np.argmax(p * np.asarray(r1) + (1 - p) * np.asarray(r0))] == pytest.approx(p)
    with pytest.raises(ValueError, match=r"confidence: .*outside \[0, 1\]"):
        L.rlcr_reward(correct=[1], confidence=[1.5], format_ok=[True])
    with pytest.raises(ValueError, match="format_penalty"):
        L.rlcr_reward(correct=[1], confidence=[0.5], format_ok=[True], format_penalty=-1)
    with pytest.raises(ValueError, match="correct and confidence: shapes differ"):
        L.rlcr_reward(correct=[1, 0], confidence=[0.5], format_ok=[True, True])
    with pytest.raises(ValueError, match="scale"):
        L.rlcr_reward(correct=[1], confidence=[0.5], format_ok=[True], scale="nature")


def test_rlcr_reward_matches_the_papers_scale():
    """Default penalty 2: the library reward is 2 * (paper - 1) on every completion, so a
    malformed answer never beats a formatted one (the paper gives it 0)."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        c = rng.integers(0, 2, 50)
        q = rng.random(50)
        ok = rng.random(50) < 0.7
        lib = np.asarray(L.rlcr_reward(correct=c, confidence=q, format_ok=ok))
        paper = np.asarray(L.rlcr_reward(correct=c, confidence=q, format_ok=ok, scale="paper"))
        want = np.where(ok, 0.5 * ok + 0.5 * c + 0.5 * (1 - (c - q) ** 2), 0.0)
        np.testing.assert_allclose(paper, want, atol=1e-12)
        np.testing.assert_allclose(lib, 2 * (paper - 1), atol=1e-12)
        assert lib[~ok].max(initial=-2) <= lib[ok].min(initial=-1)
        np.testing.assert_allclose(
            L.grpo_advantages(rewards=lib.reshape(5, 10)),
            L.grpo_advantages(rewards=paper.reshape(5, 10)),
            atol=1e-5,
        )


def test_crew_reward():
    lp = np.log(np.array([[0.5, 0.8, 0.3], [0.9, 0.1, 0.1]]))
    mask = np.array([[1, 1, 0], [0, 0, 0]], bool)
    np.testing.assert_allclose(L.crew_reward(answer_logprobs=lp, mask=mask), [0.65, 0.0])
    np.testing.assert_allclose(
        L.crew_reward(answer_logprobs=lp, mask=mask, reduction="product"), [0.4, 0.0]
    )
    np.testing.assert_allclose(
        L.crew_reward(answer_logprobs=lp, mask=mask, reduction="geometric"), [math.sqrt(0.4), 0]
    )
    with pytest.raises(ValueError, match="answer_logprobs: .*log-probabilities <= 0"):
        L.crew_reward(answer_logprobs=np.ones((1, 2)), mask=np.ones((1, 2), bool))
    with pytest.raises(ValueError, match="reduction"):
        L.crew_reward(answer_logprobs=lp, mask=mask, reduction="max")


def test_crew_preference_pairs():
    conf = np.array(
        [
            [0.9, 0.7, 0.95, 0.2],  # correct: 0, 2 -> chosen 2; wrong: 1, 3 -> rejected 1
            [0.3, 0.6, 0.5, 0.4],  # all correct -> chosen 1, rejected least confident 0
            [0.3, 0.6, 0.5, 0.4],  # none correct -> no pair
            [0.5, 0.5, 0.1, 0.1],  # all correct and equally confident (mask hides 2, 3)
        ]
    )
    correct = np.array([[1, 0, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 1, 0, 0]])
    mask = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]], bool)
    chosen, rejected, valid = L.crew_preference_pairs(confidence=conf, correct=correct, mask=mask)
    assert list(np.asarray(chosen[:2])) == [2, 1]
    assert list(np.asarray(rejected[:2])) == [1, 0]
    assert list(np.asarray(valid)) == [True, True, False, False]


def test_hyperclick():
    box = np.array([[0.0, 0.0, 60.0, 30.0]] * 3)
    point = np.array([[40.0, 20.0], [30.0, 15.0], [70.0, 15.0]])
    spatial = L.hyperclick_spatial_confidence(point=point, box=box)
    np.testing.assert_allclose(spatial, [math.exp(-1.0), 1.0, 0.0])
    conf = np.array([0.4, 1.0, 0.3])
    reward = L.hyperclick_reward(point=point, box=box, confidence=conf)
    np.testing.assert_allclose(
        reward, [1 + 1 - (0.4 - math.exp(-1)) ** 2, 2.0, 0 + 1 - 0.09], atol=1e-12
    )
    # The calibration term is maximised by stating the spatial confidence.
    qs = np.linspace(0, 1, 1001)
    r = L.hyperclick_reward(
        point=np.repeat(point[:1], 1001, 0), box=np.repeat(box[:1], 1001, 0), confidence=qs
    )
    assert qs[np.argmax(np.asarray(r))] == pytest.approx(math.exp(-1), abs=1e-3)
    with pytest.raises(ValueError, match="box: some boxes have x1 <= x0"):
        L.hyperclick_spatial_confidence(point=point[:1], box=np.array([[5.0, 0, 5.0, 10]]))
    with pytest.raises(ValueError, match=r"point: has shape \(3, 3\)"):
        L.hyperclick_spatial_confidence(point=np.zeros((3, 3)), box=box)
    with pytest.raises(ValueError, match="sigma_scale"):
        L.hyperclick_spatial_confidence(point=point, box=box, sigma_scale=0)
