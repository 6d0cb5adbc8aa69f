"""Reward models and PPO-M: the losses against their formulas, the value head read at the last
real token, PPO-M data, training that learns the confidence preference, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introspect import losses, posttrain
from introspect.posttrain import reward_model


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


@pytest.mark.parametrize("seed", range(6))
def test_losses_match_formulas(seed):
    rng = np.random.default_rng(seed)
    ch, cl, rh, rl, c, r = (rng.normal(size=7) * 3 for _ in range(6))
    np.testing.assert_allclose(
        losses.ppo_m_loss(chosen_high_rewards=ch, chosen_low_rewards=cl,
                          rejected_high_rewards=rh, rejected_low_rewards=rl),
        -_log_sigmoid(ch - cl) - _log_sigmoid(rl - rh), rtol=1e-5, atol=1e-6,
    )  # fmt: skip
    np.testing.assert_allclose(
        losses.reward_bt_loss(chosen_rewards=c, rejected_rewards=r, margin=0.5),
        -_log_sigmoid(c - r - 0.5), rtol=1e-5, atol=1e-6,
    )  # fmt: skip


def test_loss_errors():
    with pytest.raises(ValueError, match="same shape|shape"):
        losses.reward_bt_loss(chosen_rewards=np.zeros(3), rejected_rewards=np.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        losses.reward_bt_loss(chosen_rewards=np.array([np.nan]), rejected_rewards=np.zeros(1))


def _rows(n, seed):
    rng = np.random.default_rng(seed)
    return {
        "prompts": [rng.integers(5, 2000, rng.integers(2, 6)).tolist() for _ in range(n)],
        "chosen": [rng.integers(5, 2000, rng.integers(1, 5)).tolist() for _ in range(n)],
        "rejected": [rng.integers(5, 2000, rng.integers(1, 5)).tolist() for _ in range(n)],
    }


def test_confidence_quads(tiny_policy):
    tok = tiny_policy.tokenizer
    rows = _rows(40, 0)
    q = posttrain.confidence_quads(tok, rows, seed=3)
    for side in ("chosen", "rejected"):
        for level, (lo, hi) in (("high", (7, 10)), ("low", (0, 3))):
            ks = q[f"{side}_{level}_confidence"]
            assert min(ks) >= lo and max(ks) <= hi and len(set(ks)) > 1
            for base, ext, k in zip(rows[side], q[f"{side}_{level}"], ks, strict=True):
                assert ext[: len(base)] == base
                assert tok.decode(ext[len(base) :]) == f"\nConfidence: {k}."
    assert q == posttrain.confidence_quads(tok, rows, seed=3)  # seeded
    with pytest.raises(ValueError, match="inclusive range"):
        posttrain.confidence_quads(tok, rows, high=(9, 7))


def test_reward_is_value_head_at_last_real_token(tiny_policy):
    lm = tiny_policy
    cfg = posttrain.reward_model_config()
    params = reward_model.init_params(lm, cfg, jax.random.PRNGKey(0))
    rows = _rows(3, 1)
    got = posttrain.reward_scores(lm, params, rows["prompts"], rows["chosen"])
    stop = int(lm.stop_and_pad(())[0][0])
    for i in range(3):
        seq = rows["prompts"][i] + rows["chosen"][i] + [stop]
        h = np.asarray(lm.forward([seq], hidden_layers=[-1], return_logits=False).hidden_states)
        want = h[0, 0, -1] @ np.asarray(params["value_head"])
        np.testing.assert_allclose(got[i], want, rtol=1e-4, atol=1e-5)


def test_ppo_m_training_learns_the_confidence_preference(tiny_policy, tmp_path):
    lm = tiny_policy
    q = posttrain.confidence_quads(lm.tokenizer, _rows(16, 2), seed=0)
    cfg = posttrain.reward_model_config()
    cfg.train.batch_size = 8
    cfg.train.num_steps = 20
    cfg.train.optimizer.lr = 1e-3
    loss_fn = reward_model.make_loss(lm, cfg)
    arrays = jax.tree.map(jnp.asarray, reward_model.pack_sides(lm, q, cfg, reward_model.SIDES[2:]))
    start = reward_model.init_params(lm, cfg, jax.random.PRNGKey(0))
    before, _ = loss_fn(start, arrays, jax.random.PRNGKey(0))
    result = posttrain.train_reward_model(lm, q, cfg, workdir=str(tmp_path))
    after, aux = loss_fn(result.params, arrays, jax.random.PRNGKey(0))
    assert float(after) < 0.5 * float(before), (float(before), float(after))
    assert float(aux["confidence_accuracy"]) >= 0.9
    r = {s: posttrain.reward_scores(lm, result.params, q["confidence_prompts"], q[s])
         for s in reward_model.SIDES[2:]}  # fmt: skip
    assert (r["chosen_high"] > r["chosen_low"]).mean() >= 0.9
    assert (r["rejected_low"] > r["rejected_high"]).mean() >= 0.9


def test_reward_model_errors(tiny_policy, tmp_path):
    lm = tiny_policy
    cfg = posttrain.reward_model_config()
    cfg.loss.name = "dpo"
    with pytest.raises(ValueError, match="'ppo_m' or 'reward_bt'"):
        posttrain.train_reward_model(lm, _rows(4, 0), cfg, workdir=str(tmp_path))
    cfg.loss.name = "ppo_m"
    with pytest.raises(ValueError, match="'chosen_high' responses"):
        posttrain.train_reward_model(lm, _rows(4, 0), cfg, workdir=str(tmp_path))
