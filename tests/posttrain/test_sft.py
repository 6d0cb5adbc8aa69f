"""ConfTuner SFT: the loss equals its definition on the LM's forward; training lowers the
held-out tokenized Brier score; bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introspect import losses, posttrain


def _rows(lm, n, seed, p_correct=0.85):
    rng = np.random.default_rng(seed)
    return {
        "prompts": [rng.integers(5, 2000, rng.integers(3, 10)).tolist() for _ in range(n)],
        "answers": [rng.integers(5, 2000, rng.integers(1, 6)).tolist() for _ in range(n)],
        "correct": (rng.random(n) < p_correct).astype(int).tolist(),
    }


def _cfg():
    c = posttrain.sft_config()
    c.max_prompt_tokens = 10
    c.max_response_tokens = 12
    c.train.batch_size = 8
    c.train.num_steps = 40
    c.train.optimizer.lr = 3e-3
    c.train.log_every = 10
    return c


def test_conftuner_loss_is_its_definition(tiny_policy):
    lm, cfg = tiny_policy, _cfg()
    rows = _rows(lm, 4, 0)
    arrays = posttrain.pack_rows(lm, rows, cfg)
    loss_fn = posttrain.sft.make_loss(lm, cfg)
    loss, aux = loss_fn(lm.params, jax.tree.map(jnp.asarray, arrays), jax.random.PRNGKey(0))
    ids = np.asarray(losses.confidence_token_ids(lm.tokenizer, mode="coarse"))
    values = np.arange(10) / 9
    cue = lm.tokenizer.encode(cfg.confidence_cue, add_special_tokens=False)
    want = []
    for p, a, y in zip(rows["prompts"], rows["answers"], rows["correct"], strict=True):
        logits = np.asarray(lm.forward([p + a + cue], hidden_layers=None).logits[0], np.float64)
        logp = logits - logits.max(-1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
        nll = -np.mean([logp[len(p) - 1 + t, a[t]] for t in range(len(a))])
        z = logits[-1, ids]
        q = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        want.append(nll + np.sum(q * (y - values) ** 2))
    np.testing.assert_allclose(float(loss), np.mean(want), rtol=1e-4)
    assert 0 <= float(aux["tokenized_brier"]) <= 1


def test_sft_lowers_held_out_tokenized_brier(tiny_policy, tmp_path):
    lm, cfg = tiny_policy, _cfg()
    train_rows, held = _rows(lm, 64, 1), _rows(lm, 32, 2)
    before = posttrain.confidence_eval(lm, held, cfg)
    result = posttrain.train_sft(lm, train_rows, cfg, workdir=str(tmp_path))
    after = posttrain.confidence_eval(lm.with_params(result.params), held, cfg)
    # 85 % right: the stated confidence moves up towards the base rate
    assert after["tokenized_brier"] < before["tokenized_brier"] - 0.05, (before, after)
    assert after["mean_confidence"] > before["mean_confidence"]
    assert after["brier"] < before["brier"]


def test_sft_errors(tiny_policy, tmp_path):
    lm, cfg = tiny_policy, _cfg()
    rows = _rows(lm, 8, 3)
    bad = dict(rows, correct=[2] * 8)
    with pytest.raises(ValueError, match="must be 0/1"):
        posttrain.train_sft(lm, bad, cfg, workdir=str(tmp_path))
    cfg.max_prompt_tokens = 2
    with pytest.raises(ValueError, match="prompt_len 2"):
        posttrain.train_sft(lm, rows, cfg, workdir=str(tmp_path))
    cfg = _cfg()
    cfg.confidence_mode = "fine"  # "100" is three tokens for this tokenizer
    with pytest.raises(ValueError, match="mode='coarse'"):
        posttrain.train_sft(lm, rows, cfg, workdir=str(tmp_path))
