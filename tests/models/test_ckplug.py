"""CK-PLUG: the authors' filtered-entropy confidence gain, conflict rule and logit combination
(github.com/byronBBL/CK-PLUG, transformers-4.49/src/transformers/generation/utils.py,
`relative_top_filter` / `_ck_decoding`), transcribed in numpy; greedy decoding with two caches."""

import numpy as np
import pytest
from tiny_models import random_ids

from introspect import signals
from introspect.decoding import ck_plug_generate, ckplug

# ---- numpy transcriptions of the authors' code (torch -> numpy, same sentinels and eps) ----


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def ref_relative_top_filter(scores, scores_student, relative_top=0.01, min_tokens_to_keep=10):
    scores, scores_student = scores.astype(np.float64), scores_student.astype(np.float64)
    out = []
    for s in (scores, scores_student):
        norm = _log_softmax(s)
        min_thresh = -np.sort(-norm, axis=-1)[..., min_tokens_to_keep - 1]
        thresh = np.minimum(min_thresh, norm.max(-1) + np.log(relative_top))
        out.append(norm < thresh[..., None])
    mask = out[0] & out[1]
    scores, scores_student = scores.copy(), scores_student.copy()
    scores[mask] = -1e10
    scores_student[mask] = -1e10
    return scores, scores_student, mask


def ref_entropy(logits):
    p = np.exp(_log_softmax(logits))
    return -np.sum(p * np.log(p + 1e-9), axis=-1)


def ref_step(z_ctx, z_par, *, alpha, adaptive, select_top=10):
    """One `_ck_decoding` step per row: (scores, IG, is_adjust, H, H_student)."""
    rows = []
    for zc, zs in zip(z_ctx, z_par, strict=True):
        zc, zs, mask = ref_relative_top_filter(zc, zs, 0.01, select_top)
        entropy, entropy_student = ref_entropy(zc), ref_entropy(zs)
        ig = entropy_student - entropy
        is_adjust = ig + abs(entropy) * -1.0 < 0
        if is_adjust:
            zs[mask] = -1e3
            logits_context = zc - zs
            zs[mask] = -1e10
            if adaptive:
                diff = abs(entropy - entropy_student)
                nf = 1 + diff / (entropy + entropy_student)
                zs = 2 * zs * entropy / (entropy + entropy_student * nf)
                logits_context = (
                    2 * logits_context * entropy_student / (entropy + entropy_student * nf)
                )
                scores = zs + logits_context
            else:
                scores = alpha * zs + (1 - alpha) * logits_context
        else:
            scores = zc
        rows.append((scores, ig, is_adjust, entropy, entropy_student, mask))
    return [np.array(x) for x in zip(*rows, strict=True)]


def _random_pairs(seed, rows=64, vocab=300):
    """Context / no-context logits at mixed sharpness, so some rows conflict and some do not."""
    rng = np.random.default_rng(seed)
    scale_c = rng.choice([0.5, 2.0, 6.0, 15.0], size=(rows, 1))
    scale_p = rng.choice([0.5, 2.0, 6.0, 15.0], size=(rows, 1))
    z_ctx = (rng.standard_normal((rows, vocab)) * scale_c).astype(np.float32)
    z_par = (rng.standard_normal((rows, vocab)) * scale_p).astype(np.float32)
    return z_ctx, z_par


@pytest.mark.parametrize("seed", range(3))
def test_filtered_gain_matches_the_authors_code(seed):
    z_ctx, z_par = _random_pairs(seed)
    h_with, h_without, keep = (np.asarray(x) for x in ckplug.filtered_entropies(z_ctx, z_par))
    _, ig, _, entropy, entropy_student, mask = ref_step(z_ctx, z_par, alpha=0.5, adaptive=False)
    np.testing.assert_array_equal(keep, ~mask)
    np.testing.assert_allclose(h_with, entropy, atol=2e-5)
    np.testing.assert_allclose(h_without, entropy_student, atol=2e-5)
    np.testing.assert_allclose(h_without - h_with, ig, atol=4e-5)
    # the filter matters: some rows keep far fewer tokens than the vocabulary, and at least 10
    kept = keep.sum(-1)
    assert kept.min() >= 10 and kept.min() < 40 and kept.max() > 150
    full = lambda z: -np.sum(np.exp(_log_softmax(z)) * _log_softmax(z), axis=-1)
    assert np.abs((full(z_par) - full(z_ctx)) - ig).max() > 0.5


def test_relative_top_rule_by_hand():
    # ctx: p_max .5; 0.01 * p_max = .005 -> keeps tokens >= .005; min_keep 2 adds nothing
    p_ctx = np.array([0.5, 0.3, 0.195, 0.004, 0.001])
    p_par = np.array([0.001, 0.004, 0.195, 0.3, 0.5])
    keep = np.asarray(ckplug.relative_top_keep(np.log(p_ctx), np.log(p_par), min_keep=2))
    assert keep.tolist() == [True, True, True, True, True]  # union of both sets
    keep = np.asarray(ckplug.relative_top_keep(np.log(p_ctx), np.log(p_ctx), min_keep=2))
    assert keep.tolist() == [True, True, True, False, False]
    keep = np.asarray(ckplug.relative_top_keep(np.log(p_ctx), np.log(p_ctx), min_keep=4))
    assert keep.tolist() == [True, True, True, True, False]  # at least min_keep tokens


@pytest.mark.parametrize(
    "alpha,adaptive", [(0.0, False), (0.3, False), (0.5, False), (1.0, False), (0.3, True)]
)
def test_combination_matches_the_authors_code(alpha, adaptive):
    z_ctx, z_par = _random_pairs(7)
    scores, gain, conflict, h_with, _ = (
        np.asarray(x) for x in ckplug.step_scores(z_ctx, z_par, alpha=alpha, adaptive=adaptive)
    )
    want, ig, is_adjust, _, _, mask = ref_step(z_ctx, z_par, alpha=alpha, adaptive=adaptive)
    np.testing.assert_array_equal(conflict, is_adjust)
    assert 5 < is_adjust.sum() < len(is_adjust) - 5  # both kinds of step occur
    np.testing.assert_array_equal(np.isfinite(scores), ~mask)
    np.testing.assert_allclose(scores[~mask], want[~mask], rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(scores.argmax(-1), want.argmax(-1))
    # the paper's reading (margin 0): conflict exactly where the gain is negative
    np.testing.assert_array_equal(
        np.asarray(ckplug.is_conflict(gain, h_with, margin=0.0)), gain < 0
    )


def test_combination_is_shift_invariant_and_alpha_half_is_the_context_model():
    """Raw logits vs log-probs give the same distribution; alpha = .5 is z_with / 2."""
    z_ctx, z_par = _random_pairs(3)
    h_c, h_p, keep = ckplug.filtered_entropies(z_ctx, z_par)
    a = np.asarray(ckplug.combine(z_ctx, z_par, keep, h_c, h_p, alpha=0.2))
    b = np.asarray(
        ckplug.combine(_log_softmax(z_ctx), _log_softmax(z_par), keep, h_c, h_p, alpha=0.2)
    )
    np.testing.assert_allclose(_log_softmax(a), _log_softmax(b), atol=1e-4)
    half = np.asarray(ckplug.combine(z_ctx, z_par, keep, h_c, h_p, alpha=0.5))
    np.testing.assert_allclose(half[np.asarray(keep)], z_ctx[np.asarray(keep)] / 2, atol=1e-5)


# ---- decoding on the tiny random Llama (SmolLM2 tokenizer) ----


def _prompt_pairs(seed, rows=3, with_len=14, without_len=5):
    rng = np.random.default_rng(seed)
    without = [random_ids(rng, 1, without_len)[0].tolist() for _ in range(rows)]
    passage = [random_ids(rng, 1, with_len - without_len)[0].tolist() for _ in range(rows)]
    return [p + q for p, q in zip(passage, without, strict=True)], without


def test_alpha_half_equals_greedy_decoding_with_the_context(tiny_lm):
    """In the authors' parametrisation alpha = .5 scores z_with / 2 at conflict steps and z_with
    elsewhere: token for token the plain greedy decoding of the prompts with the context."""
    with_ctx, without = _prompt_pairs(40)
    out = ck_plug_generate(tiny_lm, with_ctx, without, alpha=0.5, max_new_tokens=10)
    plain = tiny_lm.generate(with_ctx, max_new_tokens=10, temperature=0.0)
    assert out.tokens == plain.tokens
    for a, b in zip(out.logprobs, plain.logprobs, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert sum(c.sum() for c in out.stats["conflict"]) > 0  # the combination was used
    sc = tiny_lm.score(with_ctx, out.tokens)
    for a, b in zip(out.logprobs, sc.logprobs, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("mode", [dict(alpha=1.0), dict(alpha=0.0), dict(adaptive=True)])
def test_decoding_follows_the_authors_step_on_teacher_forced_logits(tiny_lm, mode):
    """Every decoded token is the authors' step applied to the two models' logits at that point
    (recomputed by full forward passes), and the recorded gain / conflict flags match."""
    with_ctx, without = _prompt_pairs(41, rows=2)
    out = ckplug.generate(tiny_lm, with_ctx, without, max_new_tokens=8, **mode)
    adaptive, alpha = mode.get("adaptive", False), mode.get("alpha", 0.5)
    for i, toks in enumerate(out.tokens):
        n = len(toks)
        zc = tiny_lm.forward([with_ctx[i] + toks], hidden_layers=None).logits[0]
        zp = tiny_lm.forward([without[i] + toks], hidden_layers=None).logits[0]
        zc = np.asarray(zc)[len(with_ctx[i]) - 1 :][:n]
        zp = np.asarray(zp)[len(without[i]) - 1 :][:n]
        scores, ig, is_adjust, _, _, _ = ref_step(zc, zp, alpha=alpha, adaptive=adaptive)
        assert scores.argmax(-1).tolist() == toks
        np.testing.assert_allclose(out.stats["confidence_gain"][i], ig, atol=2e-3)
        np.testing.assert_array_equal(out.stats["conflict"][i], is_adjust.astype(np.float32))
    plain = tiny_lm.generate(with_ctx, max_new_tokens=8, temperature=0.0)
    if not adaptive:
        assert out.tokens != plain.tokens  # alpha 0 and 1 really steer away from the context


def test_score_gain_and_context_gain_match_the_filtered_formula(tiny_lm):
    with_ctx, without = _prompt_pairs(42, rows=3)
    rng = np.random.default_rng(43)
    conts = [random_ids(rng, 1, n)[0].tolist() for n in (3, 6, 1)]
    for relative_top in (0.01, 0.9):
        got = ckplug.score_gain(tiny_lm, with_ctx, without, conts, relative_top=relative_top)
        for i, c in enumerate(conts):
            zc = np.asarray(tiny_lm.forward([with_ctx[i] + c], hidden_layers=None).logits[0])
            zp = np.asarray(tiny_lm.forward([without[i] + c], hidden_layers=None).logits[0])
            zc, zp = zc[len(with_ctx[i]) - 1 : -1], zp[len(without[i]) - 1 : -1]
            zc_f, zp_f, _ = ref_relative_top_filter(zc, zp, relative_top, 10)
            np.testing.assert_allclose(got["entropy_with"][i], ref_entropy(zc_f), atol=1e-3)
            np.testing.assert_allclose(got["entropy_without"][i], ref_entropy(zp_f), atol=1e-3)
            np.testing.assert_allclose(
                got["confidence_gain"][i], ref_entropy(zp_f) - ref_entropy(zc_f), atol=2e-3
            )
    # relative_top .9 keeps only the ~10 most likely tokens: entropies near log 10, not log V
    assert max(e.max() for e in got["entropy_with"]) < np.log(40)

    q = ["Who wrote Hamlet?", "What is 2 + 2?"]
    ctx = ["Passage: Hamlet is a play by William Shakespeare.\n" + x for x in q]
    answers = ["Shakespeare", "4"]
    gain = signals.context_gain(tiny_lm, q, ctx, answers, relative_top=0.9)
    ids = lambda ps: [
        tiny_lm.tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], add_generation_prompt=True
        )
        for p in ps
    ]
    tok = ckplug.score_gain(
        tiny_lm, ids(ctx), ids(q), [tiny_lm.tokenizer.encode(a) for a in answers], relative_top=0.9
    )
    np.testing.assert_allclose(gain, [g.mean() for g in tok["confidence_gain"]], rtol=1e-6)


def test_ckplug_errors(tiny_lm):
    with_ctx, without = _prompt_pairs(44, rows=2)
    for bad in (-0.1, 1.5, float("nan"), "x", None):
        with pytest.raises(ValueError, match="alpha"):
            ckplug.generate(tiny_lm, with_ctx, without, alpha=bad)
    with pytest.raises(ValueError, match="pair up"):
        ckplug.generate(tiny_lm, with_ctx, without[:1])
    with pytest.raises(ValueError, match="min_keep"):
        ckplug.generate(tiny_lm, with_ctx, without, min_keep=0)
    with pytest.raises(ValueError, match="relative_top"):
        ckplug.generate(tiny_lm, with_ctx, without, relative_top=0.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        ckplug.generate(tiny_lm, with_ctx, without, max_new_tokens=0)
    with pytest.raises(ValueError, match="prompts_without_context"):
        ckplug.generate(tiny_lm, with_ctx, [[]] * 2)
    with pytest.raises(ValueError, match="continuations"):
        ckplug.score_gain(tiny_lm, with_ctx, without, [[5]])
    with pytest.raises(ValueError, match="answers"):
        signals.context_gain(tiny_lm, ["a", "b"], ["c", "d"], ["e"])
