"""signals.Inputs / estimate: every signal the inputs allow in one call, equal to the direct
calls; named signals with missing inputs name the missing fields; user estimators join."""

import numpy as np
import pytest

from introspect import signals


def _inputs(seed=0, n=5, t=6, k=4):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, t, 30)).astype(np.float32) * 2
    tokens = rng.integers(0, 30, (n, t))
    mask = rng.random((n, t)) < 0.8
    mask[:, 0] = True
    stats = signals.token_stats(logits, tokens)
    answers = [str(x) for x in rng.integers(0, 3, n)]
    samples = [[str(x) if x < 3 else None for x in rng.integers(0, 4, k)] for _ in range(n)]
    texts = ["I think it is 2", "Definitely 3", "maybe 1", "4", "probably 0"][:n]
    return stats, mask, answers, samples, texts


def test_estimate_equals_the_direct_calls():
    stats, mask, answers, samples, texts = _inputs()
    inp = signals.Inputs(stats=stats, mask=mask, vocab_size=30, answer_mask=mask,
                         texts=texts, answers=answers, sample_answers=samples)  # fmt: skip
    out = signals.estimate(inp)
    direct = signals.compute_all(stats, mask, vocab_size=30)
    for name, v in direct.items():
        np.testing.assert_allclose(out[name], v, rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(
        out["consistency"],
        [signals.consistency(a, s) for a, s in zip(answers, samples, strict=True)],
    )
    np.testing.assert_allclose(
        out["neg_num_distinct"], [signals.neg_num_distinct(s) for s in samples]
    )
    np.testing.assert_allclose(out["hedge"], signals.hedge_score(texts))
    assert "p_true" not in out and "verbalized" not in out
    assert signals.compute_all(inp).keys() == out.keys()
    # only what the inputs allow
    only_stats = signals.estimate(signals.Inputs(stats=stats, mask=mask, vocab_size=30))
    assert "consistency" not in only_stats and "answer_confidence" not in only_stats
    assert "self_certainty" in only_stats
    no_vocab = signals.estimate(signals.Inputs(stats=stats, mask=mask))
    assert "self_certainty" not in no_vocab and "neg_mean_entropy" in no_vocab


def test_named_signals_and_errors():
    stats, mask, answers, samples, _ = _inputs(1)
    inp = signals.Inputs(stats=stats, mask=mask)
    out = signals.estimate(inp, names=("neg_mean_entropy",))
    assert list(out) == ["neg_mean_entropy"]
    with pytest.raises(ValueError, match="'self_certainty' needs vocab_size in signals.Inputs"):
        signals.estimate(inp, names=("self_certainty",))
    with pytest.raises(ValueError, match="'consistency' needs answers, sample_answers"):
        signals.estimate(inp, names=("consistency",))
    with pytest.raises(ValueError, match="'p_true' cannot be computed from signals.Inputs"):
        signals.estimate(inp, names=("p_true",))
    with pytest.raises(ValueError, match="options for signals that are not computed"):
        signals.estimate(inp, names=("neg_mean_entropy",), options={"hedge": {}})
    with pytest.raises(ValueError, match="expected signals.Inputs"):
        signals.estimate({"stats": stats})
    with pytest.raises(ValueError, match="mask and vocab_size belong in the Inputs"):
        signals.compute_all(inp, mask)


def test_sample_classes_and_user_estimators():
    got = signals.sample_classes([["a", "b", "a", None], ["x", "X", None, None]])
    np.testing.assert_array_equal(got, [[0, 1, 0, 2], [0, 1, 2, 3]])
    same = signals.sample_classes([["x", "X"]], equivalent=lambda a, b: a.lower() == b.lower())
    np.testing.assert_array_equal(same, [[0, 0]])
    with pytest.raises(ValueError, match="the same k >= 1"):
        signals.sample_classes([["a"], ["a", "b"]])

    def neg_classes(x, *, scale=1.0):
        return [-scale * len(set(r)) for r in x.classes]

    signals.register("user_neg_classes_test", neg_classes, kind="samples", needs=("classes",),
                     from_inputs=neg_classes)  # fmt: skip
    try:
        inp = signals.Inputs(classes=got)
        out = signals.estimate(inp, options={"user_neg_classes_test": {"scale": 2.0}})
        np.testing.assert_allclose(out["user_neg_classes_test"], [-6.0, -8.0])
    finally:
        signals.SIGNALS.unregister("user_neg_classes_test")
    with pytest.raises(ValueError, match="from_inputs needs the Inputs fields"):
        signals.register("bad_test", neg_classes, kind="samples", from_inputs=neg_classes)


def test_sampling_estimators_through_estimate_are_the_negated_pure_functions():
    from introspect.signals import semantic

    rng = np.random.default_rng(3)
    n, k = 3, 5
    classes = rng.integers(0, 3, (n, k))
    ll = -rng.random((n, k)) * 4
    emb = rng.normal(size=(n, k, 4))
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    sim = np.clip(np.einsum("nid,njd->nij", emb, emb), 0, 1)
    texts = [["the cat sat", "a cat sat down", "dogs bark", "the cat sat", "cat"]] * n
    stats, mask, *_ = _inputs(4, n=n)
    greedy_sim = rng.random((n, k))
    inp = signals.Inputs(
        stats=stats, mask=mask, sample_logprobs=ll, classes=classes, similarity=sim,
        sample_texts=texts, greedy_similarity=greedy_sim,
    )  # fmt: skip
    out = signals.estimate(inp)
    want = {
        "semantic_entropy": semantic.semantic_entropy(ll, classes),
        "num_sem_sets": semantic.num_sem_sets(classes),
        "eigval_laplacian": semantic.eigval_laplacian(sim),
        "degree_matrix": semantic.degree_matrix(sim),
        "eccentricity": semantic.eccentricity(sim),
        "kernel_language_entropy": semantic.kernel_language_entropy(sim),
        "sentence_sar": semantic.sentence_sar(ll, sim),
        "lexical_similarity": semantic.lexical_similarity(texts),
        "cocoa_msp": semantic.cocoa(stats["logprob"], greedy_sim, mask, variant="msp"),
        "cocoa_mte": semantic.cocoa(stats["entropy"], greedy_sim, mask, variant="mte"),
    }
    for name, w in want.items():
        np.testing.assert_allclose(out[name], -np.asarray(w), rtol=1e-6, err_msg=name)
    # more distinct classes = less confident
    few = signals.estimate(signals.Inputs(classes=np.zeros((1, k), int)), names=("num_sem_sets",))
    many = signals.estimate(signals.Inputs(classes=np.arange(k)[None]), names=("num_sem_sets",))
    assert few["num_sem_sets"][0] > many["num_sem_sets"][0]


def test_density_estimators_through_estimate():
    from introspect.signals import density

    rng = np.random.default_rng(0)
    train = rng.normal(size=(200, 5))
    background = rng.normal(size=(200, 5)) * 2 + 1
    test = np.concatenate([rng.normal(size=(10, 5)), rng.normal(size=(3, 5)) + 8])
    rde_options = {"rde": {"n_components": 4, "kernel": "linear"}}
    names = ("mahalanobis", "rmd", "rde")
    fits = signals.fit_density(train, names, background=background, options=rde_options)
    out = signals.estimate(signals.Inputs(features=test, density=fits))
    want = -density.mahalanobis(fits["mahalanobis"], test)
    np.testing.assert_allclose(out["mahalanobis"], want, rtol=1e-6)
    np.testing.assert_allclose(out["rde"], -density.rde(fits["rde"], test), rtol=1e-6)
    for name in ("mahalanobis", "rmd", "rde"):
        assert out[name][10:].max() < out[name][:10].min(), name  # outliers: least confident
    assert "rmd" not in signals.estimate(
        signals.Inputs(features=test, density={"mahalanobis": fits["mahalanobis"]})
    )
    with pytest.raises(ValueError, match="'rmd' needs background"):
        signals.fit_density(train, ("rmd",))
    with pytest.raises(ValueError, match="needs density:rde"):
        signals.estimate(signals.Inputs(features=test, density={}), names=("rde",))


def test_attention_estimators_and_the_issue_names():
    from introspect.signals import attention

    rng = np.random.default_rng(5)
    stats, mask, *_ = _inputs(6, n=3, t=6)
    att = rng.random((3, 6, 2, 4))
    self_att = rng.random((3, 6, 4))
    inp = signals.Inputs(stats=stats, mask=mask, attention=att, self_attention=self_att)
    out = signals.compute_all(inp)
    np.testing.assert_allclose(out["rauq"], -attention.rauq(stats["logprob"], att, mask))
    np.testing.assert_allclose(out["attention_score"], -attention.attention_score(self_att))
    keep = ("mahalanobis", "rde", "rauq", "semantic_entropy", "num_sem_sets",
            "eigval_laplacian", "lexical_similarity", "pmi", "renyi", "fisher_rao")  # fmt: skip
    for name in keep:
        assert name in signals.estimable(), name
