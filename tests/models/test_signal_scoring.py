"""Scoring pre-generated answers (JSONL) and P(True) on a tiny model."""

import json

import numpy as np
import pytest

from introspect import signals


def test_score_pairs_is_teacher_forced_scoring_of_the_chat_turn(tiny_lm):
    prompts = [
        "What is 2 + 2?",
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a color."}],
    ]
    answers = ["2 + 2 = 4.", "Blue"]
    values = signals.score_pairs(tiny_lm, prompts, answers)
    msgs = [[{"role": "user", "content": prompts[0]}], prompts[1]]
    ids = [tiny_lm.tokenizer.apply_chat_template(m, add_generation_prompt=True) for m in msgs]
    conts = [tiny_lm.tokenizer.encode(a) for a in answers]
    logits = [
        np.asarray(tiny_lm.forward([i + c]).logits[0]) for i, c in zip(ids, conts, strict=True)
    ]
    for name in signals.stats_signals():
        for r, (i, c) in enumerate(zip(ids, conts, strict=True)):
            span = logits[r][len(i) - 1 : len(i) + len(c) - 1][None]
            mask = np.ones(span.shape[:2], bool)
            kw = {"tokens": np.array([c])} if signals.SIGNALS.meta(name, "needs_tokens") else {}
            want = getattr(signals, name)(span, mask, **kw)[0]
            np.testing.assert_allclose(values[name][r], want, rtol=1e-4, atol=1e-5, err_msg=name)


def test_score_jsonl_and_errors(tiny_lm, tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text(
        json.dumps({"prompt": "2+2?", "answer": "4", "id": 7})
        + "\n\n"
        + json.dumps({"prompt": "Capital of France?", "answer": "Paris"})
        + "\n"
    )
    rows = signals.score_jsonl(tiny_lm, str(path))
    assert rows[0]["id"] == 7 and set(rows[0]["signals"]) == set(signals.stats_signals())
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "answer": "y"}\n{"prompt": oops}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        signals.score_jsonl(tiny_lm, str(bad))
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"question": "x"}\n')
    with pytest.raises(ValueError, match=r":1: expected an object with 'prompt'"):
        signals.score_jsonl(tiny_lm, str(missing))
    with pytest.raises(FileNotFoundError):
        signals.score_jsonl(tiny_lm, str(tmp_path / "nope.jsonl"))
    with pytest.raises(ValueError, match=r"answers\[0\] is empty"):
        signals.score_pairs(tiny_lm, ["q"], ["  "])


def test_p_true_is_the_renormalised_two_way_probability(tiny_lm):
    q, a = ["What is 2 + 2?", "What is 3 + 3?"], ["4", "7"]
    p = signals.p_true(tiny_lm, q, a)
    assert p.shape == (2,) and np.all((p > 0) & (p < 1))
    ids = [
        tiny_lm.tokenizer.apply_chat_template(
            [
                {
                    "role": "user",
                    "content": signals.model.P_TRUE_TEMPLATE.format(question=x, answer=y),
                }
            ],
            add_generation_prompt=True,
        )
        for x, y in zip(q, a, strict=True)
    ]
    t = tiny_lm.score(ids, [tiny_lm.tokenizer.encode("True")] * 2).sum_logprobs
    f = tiny_lm.score(ids, [tiny_lm.tokenizer.encode("False")] * 2).sum_logprobs
    np.testing.assert_allclose(p, np.exp(t) / (np.exp(t) + np.exp(f)), rtol=1e-5)


def test_context_gain_is_entropy_difference(tiny_lm):
    """With min_keep = the vocabulary the CK-PLUG filtered set is every token, so the gain is the
    full-vocabulary entropy difference (the filtered default: tests/models/test_ckplug.py)."""
    q = ["Who wrote Hamlet?", "What is 2 + 2?"]
    ctx = ["Passage: Hamlet is a play by William Shakespeare.\n" + x for x in q]
    answers = ["Shakespeare", "4"]
    gain = signals.context_gain(tiny_lm, q, ctx, answers, min_keep=tiny_lm.config.vocab_size)
    conts = [tiny_lm.tokenizer.encode(a) for a in answers]

    def ent(prompts):
        ids = [
            tiny_lm.tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], add_generation_prompt=True
            )
            for p in prompts
        ]
        return [e.mean() for e in tiny_lm.score(ids, conts).stats["entropy"]]

    # float32 entropies of ~10.8 nats, computed along another path: 1e-6 ulps
    np.testing.assert_allclose(gain, np.array(ent(q)) - np.array(ent(ctx)), rtol=1e-5, atol=2e-5)
    with pytest.raises(ValueError, match="answers"):
        signals.context_gain(tiny_lm, q, ctx, answers[:1])


@pytest.mark.parametrize("seed", range(3))
def test_score_tokens_tail_matches_the_full_head(tiny_lm, seed):
    """LM.score runs the LM head on the continuation span only (`tail`); the result equals the
    head over every position, for ragged prompts and continuations."""
    from introspect.models import generate as gen_lib

    rng = np.random.default_rng(seed)
    b, length = 4, 24
    tokens = rng.integers(3, tiny_lm.config.vocab_size, size=(b, length)).astype(np.int32)
    pad = rng.integers(0, 8, size=b)
    cont = rng.integers(1, 9, size=b)
    valid = np.arange(length)[None] >= pad[:, None]
    target = np.arange(length)[None] >= (length - cont)[:, None]
    kw = dict(config=tiny_lm.config, dtype=tiny_lm.dtype, want_stats=True)
    full = gen_lib.score_tokens(tiny_lm.params, tokens, valid, target, **kw)
    for tail in (int(cont.max()), 8, 16, length + 5):
        part = gen_lib.score_tokens(tiny_lm.params, tokens, valid, target, tail=tail, **kw)
        for k in ("logprobs", "stats"):
            np.testing.assert_allclose(part[k], full[k], rtol=1e-5, atol=1e-5, err_msg=k)
