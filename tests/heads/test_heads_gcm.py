"""GCM: a correctness model trained on one model's answer history (answers written by tiny model B,
features read by a different tiny model A) learns a planted phrasing pattern, transfers to a
third source of answers, calibrates post hoc through introspect.calibrators; errors."""

from __future__ import annotations

import numpy as np
import pytest
from heads_word_lm import make_word_lm

from introspect import calibrators, heads, metrics

NUMBERS = "one two three four five six seven eight nine ten".split()


@pytest.fixture(scope="module")
def models():
    return make_word_lm(0), make_word_lm(1, hidden=48)


def history(lm, n, seed):
    """n questions; answers sampled from `lm`; correct iff the answer says "yes" or "sure"."""
    rng = np.random.default_rng(seed)
    questions = [
        f"question what is {rng.choice(NUMBERS)} plus {rng.choice(NUMBERS)} ?" for _ in range(n)
    ]
    gen = lm.generate(
        [lm.tokenizer.encode(q) for q in questions],
        max_new_tokens=6,
        temperature=1.0,
        seed=seed,
        ignore_eos=True,
        batch_size=64,
        progress=False,
    )
    answers = [lm.tokenizer.decode(t, skip_special_tokens=True) for t in gen.tokens]
    correct = np.array([float(bool({"yes", "sure"} & set(a.split()))) for a in answers])
    return questions, answers, correct


def test_gcm_learns_history_and_scores_other_models(models, tmp_path):
    encoder, target = models  # features from model A; the history is model B's
    q, a, y = history(target, 192, 0)
    assert 0.15 < y.mean() < 0.85, y.mean()
    x = heads.gcm_features(encoder, q, a, layers=(0, -1))
    assert x.shape == (192, 2 * encoder.config.hidden_size)
    gcm = heads.fit_gcm(x[:144], y[:144], workdir=str(tmp_path), calibration="platt")
    assert gcm.spec["num_train"] == 108 and gcm.spec["num_calibration"] == 36
    p = heads.gcm_confidence(gcm, x[144:])
    assert float(metrics.auroc(p, y[144:])) > 0.85
    # the calibrated output is the calibrator applied to the raw probe's logit
    raw = heads.gcm_confidence(gcm, x[144:], calibrated=False)
    r = np.clip(raw.astype(np.float64), 1e-7, 1 - 1e-7)
    want = calibrators.apply_platt(gcm.calibrator, np.log(r) - np.log1p(-r))
    np.testing.assert_allclose(p, want, atol=1e-5)

    # model-agnostic: answers from a third source, with other phrasing, are scored as well
    rng = np.random.default_rng(1)
    q2 = [f"question is it {w} ?" for w in rng.choice(NUMBERS, 64)]
    y2 = np.tile([1.0, 0.0], 32)
    a2 = [("sure " if c else "i think ") + " ".join(rng.choice(NUMBERS, 3)) for c in y2]
    p2 = heads.gcm_confidence(gcm, heads.gcm_features(encoder, q2, a2, layers=(0, -1)))
    assert float(metrics.auroc(p2, y2)) > 0.8

    # another calibrator on top of the same correctness model, fit on held-out records
    iso = heads.recalibrate_gcm(gcm, "isotonic", x[144:], y[144:])
    assert iso.spec["num_calibration"] == 48 and iso.probe is gcm.probe
    out = heads.gcm_confidence(iso, x)
    want = calibrators.apply_isotonic(
        iso.calibrator, heads.gcm_confidence(gcm, x, calibrated=False)
    )
    np.testing.assert_allclose(out, np.clip(want, 0, 1), atol=1e-6)
    raw = heads.recalibrate_gcm(gcm, None, None, None)
    np.testing.assert_array_equal(
        heads.gcm_confidence(raw, x), heads.gcm_confidence(gcm, x, calibrated=False)
    )


def test_encoder_objects_and_texts():
    class Fake:
        def encode(self, texts):
            return np.array([[len(t), t.count("yes")] for t in texts], np.float32)

    x = heads.gcm_features(Fake(), ["q1", "q2"], ["yes", "no"])
    texts = ["Question: q1\nAnswer: yes", "Question: q2\nAnswer: no"]
    np.testing.assert_array_equal(x, [[len(texts[0]), 1], [len(texts[1]), 0]])
    assert heads.gcm_texts(["a"], ["b"], template="{question}|{answer}") == ["a|b"]


def test_errors(tmp_path):
    x = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    y = np.tile([0.0, 1.0], 10)
    with pytest.raises(ValueError, match="as many questions"):
        heads.gcm_texts(["a"], [])
    with pytest.raises(ValueError, match="answer"):
        heads.gcm_texts(["a"], ["b"], template="{question}")
    with pytest.raises(ValueError, match="pooling"):
        heads.gcm_features(object(), ["a"], ["b"], pooling="max")
    with pytest.raises(ValueError, match="0/1"):
        heads.fit_gcm(x, y * 2, workdir=str(tmp_path))
    with pytest.raises(ValueError, match="calibration must be"):
        heads.fit_gcm(x, y, workdir=str(tmp_path), calibration="beta")
    with pytest.raises(ValueError, match="both correct and wrong"):
        heads.fit_gcm(x, np.ones(20), workdir=str(tmp_path), calibration=None)
    with pytest.raises(ValueError, match="too few"):
        heads.fit_gcm(x[:4], y[:4], workdir=str(tmp_path))
    with pytest.raises(ValueError, match="one per example"):
        heads.fit_gcm(x, y[:5], workdir=str(tmp_path))
    with pytest.raises(ValueError, match="features"):
        heads.fit_gcm(x, y, workdir=str(tmp_path), calibration_features=x[:, :2],
                      calibration_correct=y)  # fmt: skip
