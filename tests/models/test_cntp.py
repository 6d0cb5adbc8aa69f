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
