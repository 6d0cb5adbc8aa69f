"""PMI / CPMI against LM-Polygraph's loops transcribed in numpy; the unconditional log-probs
against LM.forward on the answer alone; through signals.estimate."""

import numpy as np
import pytest

from introspect import signals


def _polygraph_pmi(lp, lm_lp):  # MeanPointwiseMutualInformation, uncertainty sign
    return -np.mean([lp[t] - (lm_lp[t] if t > 0 else 0) for t in range(len(lp))])


def _polygraph_cpmi(lp, lm_lp, ent, tau=0.0656, lambd=3.599):
    scores = []
    for t in range(len(lp)):
        s = lp[t]
        if t > 0 and ent[t] >= tau:
            s -= lambd * lm_lp[t]
        scores.append(s)
    return -np.mean(scores)


@pytest.mark.parametrize("seed", range(8))
def test_pmi_and_cpmi_match_lm_polygraph(seed):
    rng = np.random.default_rng(seed)
    n, t = 4, 7
    lengths = rng.integers(1, t + 1, n)
    mask = np.arange(t) < lengths[:, None]
    lp = -rng.random((n, t)) * 3
    lm_lp = -rng.random((n, t)) * 5
    ent = rng.random((n, t)) * 0.15  # straddles tau
    got_pmi = np.asarray(signals.pmi(lp, lm_lp, mask))
    got_cpmi = np.asarray(signals.cpmi(lp, lm_lp, ent, mask))
    for i in range(n):
        k = lengths[i]
        assert got_pmi[i] == pytest.approx(-_polygraph_pmi(lp[i, :k], lm_lp[i, :k]), rel=1e-5)
        want = -_polygraph_cpmi(lp[i, :k], lm_lp[i, :k], ent[i, :k])
        assert got_cpmi[i] == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="lm_logprob"):
        signals.pmi(lp, lm_lp[:, :3], mask)


def test_unconditional_logprobs_and_estimate(smollm):
    lm = smollm
    answers = [lm.tokenizer.encode("Paris is the capital", add_special_tokens=False),
               lm.tokenizer.encode("42", add_special_tokens=False)[:1]]  # fmt: skip
    got = signals.unconditional_logprobs(lm, answers)
    assert got.shape == (2, len(answers[0])) and np.all(got[1] == 0) and got[0, 0] == 0
    logits = np.asarray(lm.forward([answers[0]], hidden_layers=None).logits[0], np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
    logp -= logits.max(-1, keepdims=True)
    want = [logp[t - 1, answers[0][t]] for t in range(1, len(answers[0]))]
    np.testing.assert_allclose(got[0, 1:], want, atol=2e-4)
    # through estimate: the answer scored after a question
    prompt = lm.tokenizer.encode("What is the capital of France?", add_special_tokens=False)
    sc = lm.score([prompt, prompt], answers)
    stats, mask = signals.from_ragged(sc.logprobs, sc.stats)
    out = signals.estimate(signals.Inputs(stats=stats, mask=mask, lm_logprob=got),
                           names=("pmi", "cpmi"))  # fmt: skip
    np.testing.assert_allclose(out["pmi"], signals.pmi(stats["logprob"], got, mask), rtol=1e-6)
    want_c = signals.cpmi(stats["logprob"], got, stats["entropy"], mask)
    np.testing.assert_allclose(out["cpmi"], want_c, rtol=1e-6)
    assert np.all(np.isfinite(out["pmi"])) and not np.allclose(out["pmi"], out["cpmi"])
