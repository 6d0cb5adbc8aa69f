"""Signals against direct numpy computations of their formulas, and across entry points."""

import numpy as np
import pytest

from introspect import signals


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _case(seed, batch=4, length=7, vocab=50):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(batch, length, vocab)) * rng.uniform(0.5, 4)).astype(np.float32)
    tokens = rng.integers(0, vocab, size=(batch, length))
    mask = rng.random((batch, length)) < 0.7
    mask[:, 0] = True  # no empty rows
    return logits, tokens, mask


@pytest.mark.parametrize("seed", range(25))
def test_logit_signals_match_numpy(seed):
    logits, tokens, mask = _case(seed)
    p = _softmax(logits.astype(np.float64))
    py = np.take_along_axis(p, tokens[..., None], -1)[..., 0]
    ent = -(p * np.log(p)).sum(-1)
    vocab = logits.shape[-1]
    kl_u = -np.log(vocab) - np.log(p).mean(-1)  # KL(U || p) per position
    expect = {
        "mean_token_prob": [py[b][mask[b]].mean() for b in range(4)],
        "min_token_prob": [py[b][mask[b]].min() for b in range(4)],
        "max_token_prob": [py[b][mask[b]].max() for b in range(4)],
        "neg_mean_entropy": [-ent[b][mask[b]].mean() for b in range(4)],
        "neg_max_entropy": [-ent[b][mask[b]].max() for b in range(4)],
        "neg_perplexity": [-np.exp(-np.log(py[b][mask[b]]).mean()) for b in range(4)],
        "mean_logprob": [np.log(py[b][mask[b]]).mean() for b in range(4)],
        "self_certainty": [kl_u[b][mask[b]].mean() for b in range(4)],
        "answer_confidence": [py[b][mask[b]].mean() for b in range(4)],
    }
    for name, want in expect.items():
        fn = getattr(signals, name)
        kw = {"tokens": tokens} if signals.SIGNALS.meta(name, "needs_tokens") else {}
        got = np.asarray(fn(logits, mask, **kw))
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6, err_msg=name)
    prod = np.asarray(signals.answer_confidence(logits, mask, tokens=tokens, reduce="product"))
    np.testing.assert_allclose(prod, [py[b][mask[b]].prod() for b in range(4)], rtol=1e-4)


def test_shifted_self_certainty_reads_next_position():
    logits, _, mask = _case(0)
    mask[:, -1] = False
    shifted = signals.self_certainty(logits, mask, shifted=True)
    manual = signals.self_certainty(logits, np.pad(mask[:, :-1], ((0, 0), (1, 0))))
    np.testing.assert_allclose(shifted, manual)


def test_confidence_gain_matches_numpy():
    rng = np.random.default_rng(3)
    a, b = rng.random((2, 3, 6)) * 3
    mask = rng.random((3, 6)) < 0.6
    mask[:, 0] = True
    got = np.asarray(signals.confidence_gain(a, b, mask))
    np.testing.assert_allclose(got, [(a[i] - b[i])[mask[i]].mean() for i in range(3)], rtol=1e-6)


def test_registry_from_stats_equals_full_logits():
    logits, tokens, mask = _case(5)
    stats = signals.token_stats(logits, tokens)
    for name in signals.stats_signals():
        kw = {"vocab_size": logits.shape[-1]} if name == "self_certainty" else {}
        lk = {"tokens": tokens} if signals.SIGNALS.meta(name, "needs_tokens") else {}
        np.testing.assert_allclose(
            signals.compute(name, stats, mask, **kw),
            getattr(signals, name)(logits, mask, **lk),
            rtol=1e-6,
        )


def test_signal_errors():
    logits, tokens, mask = _case(1)
    with pytest.raises(ValueError, match="unknown signal 'nope'"):
        signals.compute("nope", {}, mask)
    with pytest.raises(ValueError, match="pass tokens"):
        signals.mean_token_prob(logits, mask)
    with pytest.raises(ValueError, match=r"\[batch, length, vocab\]"):
        signals.self_certainty(logits[0], mask)
    with pytest.raises(ValueError, match="logprob"):
        signals.compute("mean_token_prob", {"entropy": np.zeros(mask.shape)}, mask)
    with pytest.raises(ValueError, match="already registered"):
        signals.register("self_certainty", lambda s, m: m)
    with pytest.raises(ValueError, match="reduce"):
        signals.answer_confidence(logits, mask, tokens=tokens, reduce="median")


@pytest.mark.parametrize(
    "text, expect",
    [
        ("The answer is 4. Confidence: 80%", 0.8),
        ("Confidence: 0.35", 0.35),
        ("confidence level: 90", 0.9),
        ("Confidence: 7/10", 0.7),
        ("I am 95% confident it is Paris.", 0.95),
        ("<confidence>0.6</confidence>", 0.6),
        ("Confidence: 30%. On reflection, Confidence: 55%", 0.55),  # last statement wins
        ("**Confidence:** 70 percent", 0.7),
        ("No confidence given.", None),
        ("Confidence: 250%", None),
        ("The answer is 42.", None),
    ],
)
def test_parse_verbalized_confidence(text, expect):
    got = signals.parse_verbalized_confidence(text)
    assert (got is None and expect is None) or got == pytest.approx(expect)


def test_hedges_and_consistency():
    phrases, default = signals.load_hedge_lexicon()
    assert 0 <= default <= 1 and phrases["probably"] < phrases["definitely"]
    s = signals.hedge_score(["It is definitely 7.", "It might be 7, I'm not sure.", "7."])
    assert s[0] > s[2] > s[1]
    assert signals.consistency("4", ["4", "4", "5", None]) == 0.5
    assert signals.consistency(None, ["4"]) == 0.0
    assert (
        signals.neg_num_distinct(["4", "4.0", "5"], equivalent=lambda a, b: float(a) == float(b))
        == -2
    )
    assert signals.neg_cluster_entropy(["a", "a", "b", "b"]) == pytest.approx(-np.log(2))
    assert signals.neg_cluster_entropy(["a", "a"]) == 0.0
    with pytest.raises(ValueError, match="empty"):
        signals.consistency("4", [])
