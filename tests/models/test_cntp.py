"""CNTP: batched, compiled, cache-consistent; max_trials = 1 is plain sampling."""

import numpy as np
import pytest
from tiny_models import random_ids

from introspect.decoding import cntp


def test_num_trials_formula():
    h = np.array([0.0, 0.01, 0.5, 1.5, 3.0])
    got = np.asarray(cntp.num_trials(h, max_trials=10, h_low=0.01, h_high=1.5))
    want = [int(1 + 9 * min(max((x - 0.01) / 1.49, 0), 1)) for x in h]
    assert got.tolist() == want


def test_cntp_one_trial_equals_plain_sampling(tiny_lm):
    rng = np.random.default_rng(30)
    prompts = [random_ids(rng, 1, n)[0].tolist() for n in (5, 9, 3)]
    kw = dict(max_new_tokens=8, temperature=0.9, seed=7)
    plain = tiny_lm.generate(prompts, **kw)
    ours = cntp.generate(tiny_lm, prompts, max_trials=1, **kw)
    assert ours.tokens == plain.tokens
    for a, b in zip(ours.logprobs, plain.logprobs, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_cntp_multi_trial_output_is_consistent(tiny_lm):
    """Always trigger the maximum number of trials; the kept text must be a real continuation:
    its recorded log-probs equal a teacher-forced score (so the winner's cache was copied)."""
    rng = np.random.default_rng(31)
    prompts = [random_ids(rng, 1, n)[0].tolist() for n in (4, 7)]
    gen = cntp.generate(
        tiny_lm,
        prompts,
        max_new_tokens=12,
        temperature=1.0,
        seed=3,
        max_trials=4,
        h_low=-2.0,
        h_high=-1.0,
        max_segment=3,
    )
    assert all(len(t) == 12 for t in gen.tokens)
    assert all(s[0] >= 4 for s in gen.stats["segments"])  # segments of <= 3 tokens
    sc = tiny_lm.score(prompts, gen.tokens)
    for a, b in zip(gen.logprobs, sc.logprobs, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    # Each kept segment beats sampling blindly: it is the lowest-perplexity of 4 trials, so on
    # average its log-prob is at least that of plain sampling from the same prompts.
    plain = tiny_lm.generate(prompts * 8, max_new_tokens=12, temperature=1.0, seed=3)
    assert np.mean(np.concatenate(gen.logprobs)) > np.mean(np.concatenate(plain.logprobs))


def test_cntp_errors(tiny_lm):
    with pytest.raises(ValueError, match="temperature"):
        cntp.generate(tiny_lm, [[5, 6]], temperature=0.0)
    with pytest.raises(ValueError, match="max_trials"):
        cntp.generate(tiny_lm, [[5, 6]], max_trials=0)
    with pytest.raises(ValueError, match="h_high"):
        cntp.generate(tiny_lm, [[5, 6]], h_low=1.0, h_high=0.5)


def test_punctuation_mask(tiny_lm):
    mask = cntp.punctuation_mask(tiny_lm.tokenizer, tiny_lm.config.vocab_size)
    tok = tiny_lm.tokenizer
    assert mask[tok.encode(".")[0]] and mask[tok.encode("\n")[0]]
    assert not mask[tok.encode("cat")[0]]


def test_best_trials_rule():
    # 3 prompts x 4 trials; mean log-prob per trial decides, empty / unused trials never win
    seg_logp = np.array([-4.0, -1.0, -3.0, -0.1, -2.0, -2.0, -9.0, 0.0, -5.0, 0.0, -1.0, -0.5])
    seg_len = np.array([2, 2, 1, 1, 1, 2, 3, 0, 5, 0, 2, 1])
    seg_trials = np.array([3, 4, 4])
    got = np.asarray(cntp.best_trials(seg_logp, seg_len, seg_trials, trials=4))
    # prompt 0: means -2, -0.5, -3 (trial 3 = -0.1 is beyond seg_trials=3) -> 1
    # prompt 1: means -2, -1, -3, empty -> 1;  prompt 2: -1, empty, -0.5, -0.5 -> 2 (first tie)
    assert got.tolist() == [1, 1, 2]


class MarkovStep:
    """A constructed 'model' for CNTP: next-token logits depend on the last token only (a
    table), so every trial's perplexity is known exactly. The cache is a dummy per-row array."""

    def __init__(self, table):
        self.table = np.asarray(table, np.float32)

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other

    def init_cache(self, rows, max_len):
        import jax.numpy as jnp

        return {"seen": jnp.zeros((rows, max_len), bool)}

    def __call__(self, params, tokens, positions, cache, valid):
        import jax.numpy as jnp

        return jnp.asarray(self.table)[tokens], cache


def test_cntp_keeps_the_most_probable_trial_of_a_constructed_model():
    """From token 1 the model spreads its mass over the punctuation tokens 2..5 (p = .1 .. .4),
    so every trial is a one-token segment whose perplexity is 1 / p. With the same keys as the
    loop, each prompt's kept first token must be the most probable of its sampled trials."""
    import jax
    import jax.numpy as jnp

    vocab, m = 8, 6
    table = np.full((vocab, vocab), -30.0, np.float32)
    table[1, 2:6] = np.log([0.1, 0.2, 0.3, 0.4])  # high entropy: N_max trials
    table[2:6, 6] = 0.0  # after punctuation: token 6 (low entropy), then stop token 7
    table[6, 7] = 0.0
    table[7, 7] = 0.0
    is_punct = np.zeros(vocab, bool)
    is_punct[2:6] = True
    n = 64
    seed = 11
    spec = cntp.CNTPSpec(MarkovStep(table), num_new=8, max_steps=16, trials=m, filtered=False)
    base = jax.random.PRNGKey(seed)
    prompt_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(base, jnp.arange(n))
    out = cntp._cntp_decode(
        None,
        np.ones((n, 3), np.int32),
        np.ones((n, 3), bool),
        prompt_keys,
        np.ones(n, bool),
        np.int32(4),
        np.float32(1.0),
        np.int32(0),
        np.float32(1.0),
        np.array([7], np.int32),
        np.int32(0),
        is_punct,
        np.float32(0.01),
        np.float32(1.0),
        np.int32(4),
        spec=spec,
    )
    first = np.asarray(out["tokens"])[:, 0]
    # the loop's keys at output step 0: fold_in(prompt key, 0), then fold_in(., 1 + trial)
    step_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(prompt_keys)
    trial_keys = jax.vmap(
        lambda k: jax.vmap(lambda t: jax.random.fold_in(k, 1 + t))(jnp.arange(m))
    )(step_keys)
    trial_tokens = np.asarray(
        jax.vmap(jax.vmap(lambda k: jax.random.categorical(k, jnp.asarray(table[1]))))(trial_keys)
    )
    want = trial_tokens.max(axis=1)  # larger token id = more probable = lower perplexity
    np.testing.assert_array_equal(first, want)
    assert (trial_tokens[:, 0] != want).sum() > n // 4  # the choice really matters
    assert np.all(np.asarray(out["segments"]) == 1)
    assert np.asarray(out["tokens"])[:, 1:3].tolist() == [[6, 7]] * n


# ---- fidelity to the authors' code (github.com/wyzjack/CNTP, `_sample_reflect_perplexity`) ----


def test_punctuation_ids_are_the_authors_exact_tokens(tiny_lm):
    """The stop set is the first id of encode(p) for each punctuation character, nothing else:
    merged byte-level BPE tokens that merely contain punctuation do not end a trial."""
    tok = tiny_lm.tokenizer
    ids = cntp.punctuation_ids(tok)
    assert ids == [tok.encode(p)[0] for p in cntp.PUNCTUATION]
    mask = cntp.punctuation_mask(tok, tiny_lm.config.vocab_size)
    assert np.flatnonzero(mask).tolist() == sorted(set(ids))
    for text in ("...", " .", "),", ").", "\n\n"):
        merged = tok.encode(text)
        assert len(merged) == 1, text  # one token in the SmolLM2 vocabulary
        assert not mask[merged[0]], text


def _constructed_run(table, is_punct, *, n, m, top_p, h_low, h_high, max_segment, seed=5):
    import jax
    import jax.numpy as jnp

    spec = cntp.CNTPSpec(MarkovStep(table), num_new=64, max_steps=128, trials=m, filtered=top_p < 1)
    prompt_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(
        jax.random.PRNGKey(seed), jnp.arange(n)
    )
    out = cntp._cntp_decode(
        None,
        np.ones((n, 2), np.int32),
        np.ones((n, 2), bool),
        prompt_keys,
        np.ones(n, bool),
        np.int32(60),
        np.float32(1.0),
        np.int32(0),
        np.float32(top_p),
        np.array([7], np.int32),
        np.int32(0),
        is_punct,
        np.float32(h_low),
        np.float32(h_high),
        np.int32(max_segment),
        spec=spec,
    )
    return {k: np.asarray(v) for k, v in out.items()}, prompt_keys


def _two_branch_table():
    """From token 1: A=2 (p .3), B=3 (p .25) or one of nine junk tokens (p .05 each). After A the
    punctuation token 4 has p .6 (eight junk tokens .05), after B the punctuation token 5 has p .9.
    With top_p = .5 only {A, B} survive at the first step (processed q = .545 / .455, entropy
    .689 instead of the raw 2.06) and the punctuation token is certain after either, so
    processed perplexity prefers A (q = .545 then 1) while raw perplexity would prefer B
    (mean log of .25, .9 beats that of .3, .6)."""
    vocab = 20
    table = np.full((vocab, vocab), -30.0, np.float32)
    table[1, 2], table[1, 3], table[1, 8:17] = np.log(0.3), np.log(0.25), np.log(0.05)
    table[2, 4], table[2, 8:16] = np.log(0.6), np.log(0.05)
    table[3, 5], table[3, 8:10] = np.log(0.9), np.log(0.05)
    table[4:6, 6] = 0.0
    table[6, 7] = table[7, 7] = 0.0
    table[8:17, 6] = 0.0
    is_punct = np.zeros(vocab, bool)
    is_punct[[4, 5]] = True
    return table, is_punct


def test_cntp_trials_and_choice_use_the_processed_distribution():
    import jax
    import jax.numpy as jnp

    from introspect.models import generate as gen_lib

    table, is_punct = _two_branch_table()
    n, m = 256, 6
    out, prompt_keys = _constructed_run(
        table, is_punct, n=n, m=m, top_p=0.5, h_low=0.01, h_high=1.0, max_segment=0
    )
    q = gen_lib.filter_logits(jnp.asarray(table[1:2]), jnp.int32(0), jnp.float32(0.5))[0]
    h = float(cntp.entropy_of(q))
    assert abs(h - 0.689) < 1e-3  # processed; the raw entropy (2.06) would give N_max trials
    trials = int(cntp.num_trials(h, max_trials=m, h_low=0.01, h_high=1.0))
    assert trials == 4
    step_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(prompt_keys)
    trial_tokens = np.asarray(
        jax.vmap(
            lambda k: jax.vmap(lambda t: jax.random.categorical(jax.random.fold_in(k, 1 + t), q))(
                jnp.arange(m)
            )
        )(step_keys)
    )
    assert set(np.unique(trial_tokens)) == {2, 3}
    used = trial_tokens[:, :trials]
    want = np.where((used == 2).any(axis=1), 2, 3)  # lowest processed perplexity: A if drawn
    first = out["tokens"][:, 0]
    np.testing.assert_array_equal(first, want)
    raw_rule = np.where((used == 3).any(axis=1), 3, 2)  # what raw perplexity would keep
    assert (raw_rule != want).sum() > n // 2
    all_trials = np.where((trial_tokens == 2).any(axis=1), 2, 3)  # N_max trials instead of 4
    assert (all_trials != want).any()
    np.testing.assert_array_equal(out["tokens"][:, 1], np.where(first == 2, 4, 5))
    assert out["tokens"][:, 2:4].tolist() == [[6, 7]] * n
    assert np.all(out["segments"] == 1)


def test_cntp_entropy_trigger_uses_the_processed_distribution():
    """Thresholds between the processed (.689) and the raw (2.06) entropy of the first step:
    with top_p = .5 no segment starts (one ordinary sampling step), without filtering one does."""
    import jax

    table, is_punct = _two_branch_table()
    kw = dict(n=16, m=6, h_low=0.75, h_high=3.0, max_segment=0)
    out, prompt_keys = _constructed_run(table, is_punct, top_p=0.5, **kw)
    assert np.all(out["segments"] == 0)
    from introspect.models import generate as gen_lib

    keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(prompt_keys)
    plain, _ = gen_lib.sample_tokens(
        np.repeat(table[1:2], 16, axis=0),
        keys,
        sample=True,
        filtered=True,
        temperature=np.float32(1.0),
        top_k=np.int32(0),
        top_p=np.float32(0.5),
    )
    np.testing.assert_array_equal(out["tokens"][:, 0], np.asarray(plain))
    unfiltered, _ = _constructed_run(table, is_punct, top_p=1.0, **kw)
    assert np.all(unfiltered["segments"] == 1)


def test_cntp_long_segment_is_not_cut_without_max_segment():
    """A 39-token segment (branch, 36 chain tokens, branch, punctuation): without a cap it is
    one segment; a 32-token cap cuts it, and the second branch point then opens a new one."""
    vocab = 64
    table = np.full((vocab, vocab), -30.0, np.float32)
    table[1, [2, 3]] = np.log(0.5)
    table[[2, 3], 10] = 0.0
    for t in range(10, 45):
        table[t, t + 1] = 0.0
    table[45, [46, 47]] = np.log(0.5)
    table[[46, 47], 5] = 0.0
    table[5, 6] = table[6, 7] = table[7, 7] = 0.0
    is_punct = np.zeros(vocab, bool)
    is_punct[5] = True
    kw = dict(n=4, m=3, top_p=1.0, h_low=0.01, h_high=1.0)
    for cap in (0, 64):
        out, _ = _constructed_run(table, is_punct, max_segment=cap, **kw)
        assert np.all(out["segments"] == 1), cap
        assert np.all(out["lengths"] == 41)
        assert out["tokens"][:, 1:37].tolist() == [list(range(10, 46))] * 4
        assert out["tokens"][:, 38:41].tolist() == [[5, 6, 7]] * 4
    cut, _ = _constructed_run(table, is_punct, max_segment=32, **kw)
    assert np.all(cut["segments"] == 2)


def test_cntp_max_segment_argument(tiny_lm):
    import inspect

    assert inspect.signature(cntp.generate).parameters["max_segment"].default is None
    with pytest.raises(ValueError, match="max_segment"):
        cntp.generate(tiny_lm, [[5, 6]], max_segment=-1)
    out = cntp.generate(tiny_lm, [[5, 6]], max_new_tokens=4, max_segment=0, max_trials=2)
    assert len(out.tokens[0]) <= 4
