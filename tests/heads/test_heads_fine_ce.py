"""FineCE: positions and soft labels, BCI against a loop transcription of its formula and its
properties, the data builder on a tiny LM (prefix KV reuse against plain generation), the
soft-label estimator, errors."""

from __future__ import annotations

import numpy as np
import pytest
from heads_word_lm import make_word_lm

from introspect import heads


@pytest.fixture(scope="module")
def word_lm():
    return make_word_lm(0)


def reference_bci(c, m, weight, depth, decay):
    """Loop transcription of the documented BCI formula."""
    out = c.astype(np.float64).copy()
    n, t = c.shape
    for i in range(n):
        for s in range(t):
            if not m[i, s]:
                continue
            num = den = 0.0
            for j in range(1, depth + 1):
                if s + j < t and m[i, s + j]:
                    num += decay ** (j - 1) * c[i, s + j]
                    den += decay ** (j - 1)
            if den > 0:
                out[i, s] = (1 - weight) * c[i, s] + weight * num / den
    return out


def test_bci_matches_transcription():
    for seed in range(20):
        rng = np.random.default_rng(seed)
        t = (1, 7)[seed % 2]
        c = rng.uniform(size=(4, t)).astype(np.float32)
        m = rng.uniform(size=(4, t)) < 0.8
        weight, depth, decay = rng.uniform(), 1 + seed % 3, rng.uniform(0.1, 1.0)
        got = heads.backward_confidence_integration(
            c, mask=m, weight=weight, depth=depth, decay=decay
        )
        np.testing.assert_allclose(got, reference_bci(c, m, weight, depth, decay), atol=1e-6)


def test_bci_properties():
    rng = np.random.default_rng(0)
    c = rng.uniform(size=(5, 7)).astype(np.float32)
    np.testing.assert_allclose(heads.backward_confidence_integration(c, weight=0.0), c)
    out = np.asarray(heads.backward_confidence_integration(c, weight=0.7, depth=3))
    np.testing.assert_allclose(out[:, -1], c[:, -1])  # nothing follows the last estimate
    assert np.all(out >= c.min(1, keepdims=True) - 1e-6)
    assert np.all(out <= c.max(1, keepdims=True) + 1e-6)
    const = np.full((2, 4), 0.3, np.float32)
    np.testing.assert_allclose(heads.backward_confidence_integration(const, depth=2), const)


def test_positions_and_labels():
    np.testing.assert_array_equal(heads.prefix_positions(10), [0, 2, 5, 7])
    np.testing.assert_array_equal(heads.prefix_positions(10, every=4), [0, 4, 8])
    np.testing.assert_array_equal(heads.prefix_positions(1), [0])
    np.testing.assert_array_equal(
        heads.entropy_positions([0.1, 2.0, 0.3, 1.5], threshold=1.0), [1, 3]
    )
    correct = np.array([[1, 0, 1, 1], [0, 0, 0, 1]])
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    np.testing.assert_allclose(heads.soft_labels(correct), [0.75, 0.25])
    np.testing.assert_allclose(heads.soft_labels(correct, mask=mask), [0.75, 0.0])


def test_errors():
    with pytest.raises(ValueError, match="answer_len"):
        heads.prefix_positions(0)
    with pytest.raises(ValueError, match="fractions"):
        heads.prefix_positions(5, fractions=(1.0,))
    with pytest.raises(ValueError, match="no valid sample"):
        heads.soft_labels(np.ones((2, 3)), mask=np.zeros((2, 3), bool))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        heads.soft_labels(np.full((1, 2), 2.0))
    with pytest.raises(ValueError, match=r"\[n, T\]"):
        heads.backward_confidence_integration(np.ones(3))
    with pytest.raises(ValueError, match="weight"):
        heads.backward_confidence_integration(np.ones((1, 3)), weight=1.5)
    with pytest.raises(ValueError, match="depth"):
        heads.backward_confidence_integration(np.ones((1, 3)), depth=0)
    with pytest.raises(ValueError, match=r"confidence must be in \[0, 1\]"):
        heads.backward_confidence_integration(np.full((1, 3), 1.5))


def test_build_data_on_tiny_lm(word_lm):
    lm, tok = word_lm, word_lm.tokenizer
    prompts = [tok.encode(q) for q in ("question what is two plus two ?", "question is it ten ?")]
    answers = [tok.encode("i think it is four"), tok.encode("no it is not")]

    def grade(i, text):
        return "yes" in text.split() or "sure" in text.split()

    ids = tok.encode("i think ? it is ? yes")
    np.testing.assert_array_equal(heads.paragraph_end_positions(tok, ids, cue="?"), [0, 3, 6])
    np.testing.assert_array_equal(heads.paragraph_end_positions(tok, ids[:6], cue="?"), [0, 3])

    kw = dict(fractions=(0.0, 0.5), num_samples=4, max_new_tokens=5, seed=3, keep_texts=True)
    data = heads.build_fine_ce_data(lm, prompts, answers, grade, **kw)
    rows = sum(len(heads.prefix_positions(len(a), fractions=(0.0, 0.5))) for a in answers)
    assert data.features.shape == (rows, lm.config.hidden_size)
    np.testing.assert_allclose(data.labels * 4, data.num_correct)
    assert len(data.completions) == rows and all(len(c) == 4 for c in data.completions)
    assert len({c for cs in data.completions for c in cs}) > rows  # samples differ

    # Nearly greedy sampling: every completion is the greedy continuation of prompt + prefix,
    # and the features are the prefix's last hidden state, both read by an independent path
    # (plain generation from the concatenated prompt, hidden state at step 0).
    cold = heads.build_fine_ce_data(lm, prompts, answers, grade, **{**kw, "temperature": 1e-4})
    ref = lm.generate(
        [prompts[i] + answers[i][:p] for i, p in zip(cold.example, cold.prefix_len, strict=True)],
        max_new_tokens=5,
        hidden_layers=[-1],
        hidden_steps=[0],
    )
    for r in range(rows):
        assert set(cold.completions[r]) == {tok.decode(ref.tokens[r], skip_special_tokens=True)}
        np.testing.assert_allclose(cold.features[r], ref.hidden_states[0, r, 0], atol=2e-4)
        assert cold.labels[r] in (0.0, 1.0)

    with pytest.raises(ValueError, match="temperature"):
        heads.build_fine_ce_data(lm, prompts, answers, grade, temperature=0.0)
    with pytest.raises(ValueError, match="positions"):
        heads.build_fine_ce_data(lm, prompts, answers, grade, positions=[[0], [99]])
    with pytest.raises(ValueError, match="grade_fn"):
        heads.build_fine_ce_data(lm, prompts, answers, lambda i, t: 3.0, **kw)


def test_fit_on_soft_labels(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 6)).astype(np.float32)
    p = 1 / (1 + np.exp(-(x @ np.array([1.5, -1.0, 0.5, 0, 0, 0]))))
    labels = rng.binomial(8, p) / 8
    fit = heads.fit_fine_ce(x, labels, workdir=str(tmp_path), probe_config={"name": "logistic"})
    est = heads.fine_ce_confidence(fit, x)
    assert np.mean(np.abs(est - p)) < 0.06
    with pytest.raises(ValueError, match="soft"):
        heads.fit_fine_ce(x, labels, workdir=str(tmp_path / "b"),
                          probe_config={"class_balanced": True})  # fmt: skip
    with pytest.raises(ValueError, match=r"labels must be in \[0, 1\]"):
        heads.fit_fine_ce(x, labels + 1, workdir=str(tmp_path / "c"))
