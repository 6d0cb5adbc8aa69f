"""Signals against direct numpy computations of their formulas, and across entry points."""

import jax
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
    # LM-Polygraph's RenyiNeg / FisherRao (alpha 0.5, temperature 2), signs flipped; the margin
    q = _softmax(logits.astype(np.float64) / 2)
    renyi = (np.log((q**0.5).sum(-1)) + (0.5 - 1) * np.log(vocab)) / (0.5 - 1)
    fr = 2 / np.pi * np.arccos(np.sqrt(q).sum(-1) * np.sqrt(1 / vocab))
    top = np.sort(p, -1)
    margin = top[..., -1] - top[..., -2]
    expect["renyi"] = [renyi[b][mask[b]].mean() for b in range(4)]
    expect["fisher_rao"] = [fr[b][mask[b]].mean() for b in range(4)]
    expect["max_prob_margin"] = [margin[b][mask[b]].mean() for b in range(4)]
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
        kw = {"vocab_size": logits.shape[-1]} if signals.SIGNALS.meta(name, "needs_vocab") else {}
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


# ------------------------------------------------------------------------------- NaN and bad input


def test_nan_logits_raise_at_a_response_position():
    logits, tokens, mask = _case(2)
    logits[1, 0, 3] = np.nan  # mask[:, 0] is True
    with pytest.raises(ValueError, match=r"logits: contains 1 NaN or \+inf value\(s\)"):
        signals.self_certainty(logits, mask)
    for name in signals.stats_signals():
        kw = {"tokens": tokens} if signals.SIGNALS.meta(name, "needs_tokens") else {}
        with pytest.raises(ValueError, match="logits: contains 1 NaN or"):
            getattr(signals, name)(logits, mask, **kw)


def test_nan_logits_outside_the_mask_are_ignored():
    logits, tokens, mask = _case(3)
    mask[2, 4] = False
    clean = {
        name: np.asarray(
            getattr(signals, name)(
                logits,
                mask,
                **({"tokens": tokens} if signals.SIGNALS.meta(name, "needs_tokens") else {}),
            )
        )
        for name in signals.stats_signals()
    }
    logits[2, 4, :] = np.nan  # padding may hold anything
    for name, want in clean.items():
        kw = {"tokens": tokens} if signals.SIGNALS.meta(name, "needs_tokens") else {}
        got = np.asarray(getattr(signals, name)(logits, mask, **kw))
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_infinite_logit_gives_nan_statistics_and_raises():
    logits, _, mask = _case(4)
    logits[0, 0, 1] = np.inf  # softmax is undefined: NaN entropy / logsumexp - mean_logit
    with pytest.raises(ValueError, match=r"logits: contains 1 NaN or \+inf"):
        signals.self_certainty(logits, mask)
    stats = signals.token_stats(logits)  # the statistics path sees the NaN entropy it produces
    with pytest.raises(ValueError, match=r"stats\['entropy'\]: contains 1 NaN"):
        signals.compute("neg_mean_entropy", stats, mask)
    logits, _, mask = _case(4)
    logits[1, 0, :] = -np.inf
    with pytest.raises(ValueError, match=r"logits: 1 position\(s\) where every logit is -inf"):
        signals.neg_max_entropy(logits, mask)
    logits[1, 0, 5] = 0.0  # -inf elsewhere is a banned token: fine
    assert np.all(np.isfinite(np.asarray(signals.neg_max_entropy(logits, mask))))


@pytest.mark.parametrize("name", signals.stats_signals())
def test_nan_statistics_raise_in_compute(name):
    logits, tokens, mask = _case(6)
    stats = {k: np.array(v) for k, v in signals.token_stats(logits, tokens).items()}
    for key in stats:
        stats[key][3, 0] = np.nan
    kw = {"vocab_size": logits.shape[-1]} if signals.SIGNALS.meta(name, "needs_vocab") else {}
    with pytest.raises(ValueError, match=r"stats\['\w+'\]: contains 1 NaN value\(s\)"):
        signals.compute(name, stats, mask, **kw)


def test_nan_statistics_raise_in_compute_all_and_masked_nan_is_ignored():
    logits, tokens, mask = _case(7)
    stats = {k: np.array(v) for k, v in signals.token_stats(logits, tokens).items()}
    want = signals.compute_all(stats, mask, vocab_size=logits.shape[-1])
    mask[0, 5] = False
    want = signals.compute_all(stats, mask, vocab_size=logits.shape[-1])
    padded = {k: v.copy() for k, v in stats.items()}
    for v in padded.values():
        v[0, 5] = np.nan
    got = signals.compute_all(padded, mask, vocab_size=logits.shape[-1])
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    padded["entropy"][1, 0] = np.nan
    with pytest.raises(ValueError, match=r"stats\['entropy'\]: contains 1 NaN"):
        signals.compute_all(padded, mask, vocab_size=logits.shape[-1])


def test_missing_statistic_is_a_value_error():
    _, _, mask = _case(8)
    with pytest.raises(ValueError, match="stats: has no 'entropy'"):
        signals.SIGNALS["neg_mean_entropy"]({"logprob": np.zeros(mask.shape)}, mask)


def test_bad_shapes_and_tokens():
    logits, tokens, mask = _case(9)
    with pytest.raises(ValueError, match=r"mask: has shape \(4, 6\); expected \(4, 7\)"):
        signals.self_certainty(logits, mask[:, :6])
    with pytest.raises(ValueError, match=r"tokens: has shape \(4, 6\); expected \(4, 7\)"):
        signals.mean_token_prob(logits, mask, tokens=tokens[:, :6])
    bad = tokens.copy()
    bad[0, 0] = logits.shape[-1]
    with pytest.raises(ValueError, match=r"tokens: 1 value\(s\) .*expected token ids in \[0, 50\)"):
        signals.mean_logprob(logits, mask, tokens=bad)
    with pytest.raises(ValueError, match=r"entropy_without and entropy_with: shapes differ"):
        signals.confidence_gain(np.zeros((4, 7)), np.zeros((4, 6)), mask)
    gain_in = np.zeros((4, 7))
    gain_in[2, 0] = np.nan
    with pytest.raises(ValueError, match="entropy_with: contains 1 NaN"):
        signals.confidence_gain(np.zeros((4, 7)), gain_in, mask)


def test_under_jit_shapes_are_checked_and_values_are_not():
    logits, _, mask = _case(10)
    fn = jax.jit(lambda z, m: signals.self_certainty(z, m))
    np.testing.assert_allclose(fn(logits, mask), signals.self_certainty(logits, mask), rtol=1e-6)
    logits[0, 0, 0] = np.nan
    assert np.isnan(np.asarray(fn(logits, mask))[0])  # tracers: the NaN check cannot run
    with pytest.raises(ValueError, match=r"logits: has shape \(4, 7\) \(rank 2\)"):
        fn(logits[..., 0], mask)


def test_text_signals_reject_non_strings():
    with pytest.raises(ValueError, match="texts: expected a sequence of strings"):
        signals.hedge_score("It is definitely 7.")
    with pytest.raises(ValueError, match="text: got int; expected a string"):
        signals.parse_verbalized_confidence(80)
