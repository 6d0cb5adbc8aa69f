"""GRPO on the Flax LM: packing and log-probs against the LM's forward, the one-step gradient
against the hand-derived policy gradient, text rewards, advantages, resume, config errors; on
the embedded model, a learnable toy reward rises."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introspect import models, posttrain, train
from introspect.posttrain import policy


def _prompts(lm, n=4):
    qs = ["Is the sky blue?", "Do cats bark?", "Is fire cold?", "Can birds fly?"][:n]
    return [
        lm.tokenizer.apply_chat_template(
            [{"role": "user", "content": q + " Answer yes or no."}], add_generation_prompt=True
        )
        for q in qs
    ], [{"id": str(i), "question": q} for i, q in enumerate(qs)]


def _config(prompts, *, steps=2, group=2, per_step=2, new=4):
    c = posttrain.grpo_config()
    c.reward.name = "starts_with"
    c.reward.options = {"prefix": "No"}
    c.group_size = group
    c.prompts_per_step = per_step
    c.max_new_tokens = new
    c.max_prompt_tokens = max(len(p) for p in prompts)
    c.train.batch_size = group * per_step
    c.train.num_steps = steps
    c.train.tensorboard = False
    return c


class _State:
    def __init__(self, params):
        self.params = params


def test_pack_and_token_logprobs_match_the_forward(tiny_policy):
    lm = tiny_policy
    rng = np.random.default_rng(0)
    prompts = [rng.integers(5, 1000, n).tolist() for n in (3, 6, 1)]
    responses = [rng.integers(5, 1000, n).tolist() for n in (4, 1, 2)]
    b = policy.pack(prompts, responses, prompt_len=6, response_len=4, pad_id=0)
    assert b["tokens"].shape == (3, 10) and b["token_mask"].shape == (3, 9)
    assert b["token_mask"].sum(1).tolist() == [4, 1, 2]
    lp, ent = jax.jit(policy.token_logprobs, static_argnames=("config",))(
        lm.params, jnp.asarray(b["tokens"]), jnp.asarray(b["valid"]), config=lm.config
    )
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        logits = np.asarray(lm.forward([p + r], hidden_layers=None).logits[0], np.float64)
        logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1))[
            :, None
        ] - logits.max(-1, keepdims=True)  # fmt: skip
        want = [logp[len(p) - 1 + t, r[t]] for t in range(len(r))]
        got = np.asarray(lp[i])[b["token_mask"][i]]
        np.testing.assert_allclose(got, want, atol=2e-4)
        assert np.all(np.asarray(ent[i])[b["token_mask"][i]] > 0)
    olp = policy.place_targets([np.ones(4), np.ones(1) * 2, np.ones(2) * 3], prompt_len=6, width=10)
    np.testing.assert_array_equal(olp != 0, b["token_mask"])
    with pytest.raises(ValueError, match="prompt 1 has 6 tokens > prompt_len 5"):
        policy.pack(prompts, responses, prompt_len=5, response_len=4, pad_id=0)


def test_one_step_gradient_is_the_policy_gradient(tiny_policy):
    """On-policy, one update per rollout: the clipped loss's gradient is
    -(1 / tokens) sum_i A_i sum_t grad log pi(y_it) (token_mean), with A the group-normalised
    rewards; checked against that formula written directly (2 prompts x 2 samples)."""
    lm = tiny_policy
    prompts, exs = _prompts(lm, 2)
    cfg = _config(prompts)
    cfg.temperature = 1.0
    feed = posttrain.RolloutFeed(lm, prompts, exs, cfg)
    feed.bind(_State(lm.params))
    batch = next(feed)
    # a hand-set reward pattern so that both groups carry signal
    rewards = np.array([1.0, 0.0, 0.0, 1.0], np.float32)
    batch["reward"] = rewards
    batch["advantages"] = np.asarray(posttrain.advantages(rewards, cfg)[0])
    np.testing.assert_allclose(batch["advantages"], [1, -1, -1, 1], rtol=1e-5)
    # the sampler's log-probs are the policy's (ratio 1)
    lp, _ = policy.token_logprobs(
        lm.params, jnp.asarray(batch["tokens"]), jnp.asarray(batch["valid"]), config=lm.config
    )
    m = batch["token_mask"]
    np.testing.assert_allclose(np.asarray(lp)[m], batch["old_logprobs"][m], atol=2e-4)
    batch["old_logprobs"] = np.asarray(jax.lax.stop_gradient(lp))  # exact ratio 1 for the check
    jb = jax.tree.map(jnp.asarray, batch)
    loss_fn = posttrain.make_loss(lm, cfg)
    grads = jax.grad(lambda p: loss_fn(p, jb, jax.random.PRNGKey(0))[0])(lm.params)

    def hand(params):
        lp, _ = policy.token_logprobs(params, jb["tokens"], jb["valid"], config=lm.config)
        per_seq = jnp.sum(jnp.where(jb["token_mask"], lp, 0), axis=1)
        return -jnp.sum(jb["advantages"] * per_seq) / jnp.sum(jb["token_mask"])

    want = jax.grad(hand)(lm.params)
    flat_g, flat_w = jax.tree.leaves(grads), jax.tree.leaves(want)
    scale = max(float(jnp.max(jnp.abs(w))) for w in flat_w)
    assert scale > 0
    for g, w in zip(flat_g, flat_w, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-5 * scale, rtol=1e-4)


def test_text_rewards():
    out = posttrain.compute_reward("starts_with", ["  yes, it is", "No", "Yesterday"], [{}] * 3,
                                   {"prefix": "Yes"})  # fmt: skip
    np.testing.assert_array_equal(out["reward"], [1, 0, 1])
    ex = {"id": "0", "question": "2+2?", "answer": "4", "answer_type": "number", "aliases": []}
    out = posttrain.compute_reward("binary_correct", ["4", "5"], [ex, ex])
    np.testing.assert_array_equal(out["correct"], [1, 0])
    good = (
        "<think>2+2</think><answer>4</answer><analysis>easy</analysis><confidence>0.9</confidence>"
    )
    wrong = good.replace(">4<", ">5<")
    out = posttrain.compute_reward("rlcr", [good, wrong, "4"], [ex] * 3)
    np.testing.assert_allclose(out["reward"], [1 + 0.5 * (1 - 0.01), 1 + 0.5 * (0 - 0.81), 0.0],
                               atol=1e-6)  # fmt: skip
    assert np.isnan(out["confidence"][2]) and out["confidence"][0] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="unknown text reward 'nope'"):
        posttrain.compute_reward("nope", ["a"], [{}])

    @posttrain.register_reward("bad_shape_for_test", overwrite=True)
    def bad(texts, examples):
        return {"reward": np.zeros(len(texts) + 1)}

    with pytest.raises(ValueError, match="'reward' has shape \\(3,\\), expected \\[2\\]"):
        posttrain.compute_reward("bad_shape_for_test", ["a", "b"], [{}, {}])


def test_riskpo_advantages_over_the_steps_prompts():
    cfg = posttrain.grpo_config()
    cfg.prompts_per_step, cfg.group_size = 4, 3
    cfg.advantage.name = "riskpo"
    cfg.advantage.options = {"bundle_size": 2}
    r = np.random.default_rng(0).random(12).astype(np.float32)
    a, tracker = posttrain.advantages(r, cfg)
    from introspect import losses

    want = losses.riskpo_advantages(rewards=r.reshape(2, 2, 3))
    np.testing.assert_allclose(a, np.asarray(want).reshape(-1), atol=1e-6)
    assert tracker is None


@pytest.mark.parametrize("advantage", ["grpo", "riskpo"])
def test_resume_is_bitwise_identical(tiny_policy, tmp_path, advantage):
    """4 steps straight == 2 steps, stop, resume to 4 (rollouts regenerated from the
    restored parameters and the feed's checkpointed step; RiskPO's tracked quantiles
    restored from the checkpoint's data state)."""
    lm = tiny_policy
    prompts, exs = _prompts(lm, 4)
    cfg = _config(prompts, steps=4)
    cfg.train.checkpoint.every_steps = 2
    cfg.train.optimizer.lr = 1e-3
    cfg.reward.options = {"prefix": "a"}  # the tiny model's random text: some start with "a"
    if advantage == "riskpo":
        cfg.advantage.name = "riskpo"
        cfg.advantage.options = {"bundle_size": 2, "quantile_mode": "track"}
    straight = posttrain.train_grpo(lm, prompts, exs, cfg, workdir=str(tmp_path / "a"))
    cfg.train.num_steps = 2
    posttrain.train_grpo(lm, prompts, exs, cfg, workdir=str(tmp_path / "b"))
    cfg.train.num_steps = 4
    resumed = posttrain.train_grpo(lm, prompts, exs, cfg, workdir=str(tmp_path / "b"))
    assert resumed.resumed_from == 2
    for x, y in zip(jax.tree.leaves(straight.params), jax.tree.leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    rows_a = train.read_metrics(str(tmp_path / "a"))
    rows_b = train.read_metrics(str(tmp_path / "b"))
    assert [r["reward_mean"] for r in rows_a] == [r["reward_mean"] for r in rows_b]
    assert [r["step"] for r in rows_b] == [1, 2, 3, 4]
    # the tuned parameters load back into the LM for generation
    tuned = lm.with_params(resumed.params)
    assert tuned.generate(prompts[:1], max_new_tokens=2).tokens


def test_config_errors(tiny_policy, tmp_path):
    lm = tiny_policy
    prompts, exs = _prompts(lm, 4)
    cases = [
        ({"group_size": 1, "train.batch_size": 2}, ValueError, "group_size must be >= 2"),
        ({"train.batch_size": 5}, ValueError, "batch_size must be prompts_per_step"),
        ({"reward.name": "nope"}, ValueError, "unknown reward 'nope'"),
        ({"advantage.name": "magic"}, ValueError, "unknown 'magic'"),
        ({"max_prompt_tokens": 5}, ValueError, "more than config.max_prompt_tokens=5"),
        ({"max_new_tokens": 100000}, ValueError, "context length"),
        ({"train.steps_per_dispatch": 2}, ValueError, "steps_per_dispatch must be 1"),
    ]
    for changes, err, match in cases:
        cfg = _config(prompts)
        for field, value in changes.items():
            node, _, leaf = field.rpartition(".")
            (cfg[node] if node else cfg)[leaf] = value
        with pytest.raises(err, match=match):
            posttrain.train_grpo(lm, prompts, exs, cfg, workdir=str(tmp_path / "w"))
    with pytest.raises(ValueError, match="4 prompts but 3 examples"):
        posttrain.train_grpo(lm, prompts, exs[:3], _config(prompts), workdir=str(tmp_path / "w"))


def test_toy_reward_rises_on_the_embedded_model(smollm, tmp_path):
    """Reward 1 when the answer to a yes/no question starts with "No" (about a third of the
    samples at the start): after 3 GRPO steps (4 prompts x 4 samples, Adam 3e-5) the batch
    reward is near 1 (measured: 0.25, 0.88, 1.00). The other advantage transforms on the same
    toy are measured in the README (test_grpo_transforms checks their feeds exactly)."""
    prompts, exs = _prompts(smollm, 4)
    cfg = _config(prompts, steps=3, group=4, per_step=4)
    cfg.train.optimizer.lr = 3e-5
    cfg.train.checkpoint.every_steps = 0
    res = posttrain.train_grpo(smollm, prompts, exs, cfg, workdir=str(tmp_path))
    curve = [r["reward_mean"] for r in train.read_metrics(str(tmp_path))]
    assert len(curve) == 3
    assert curve[0] < 0.75, curve
    assert curve[-1] >= 0.85, curve
    assert curve[-1] - curve[0] >= 0.25, curve
    assert isinstance(smollm.with_params(res.params), models.LM)


def test_hyperclick_and_abstention_rewards():
    from introspect import losses

    box = {"box": [10, 10, 20, 20]}
    texts = ["Click (15, 12). Confidence: 90%", "(50, 50) confidence 0.3", "no click", "(15,15)"]
    out = posttrain.compute_reward("hyperclick", texts, [box] * 4)
    want = losses.hyperclick_reward(point=[[15, 12], [50, 50]], box=[box["box"]] * 2,
                                    confidence=[0.9, 0.3])  # fmt: skip
    np.testing.assert_allclose(out["reward"][:2], want, rtol=1e-6)
    np.testing.assert_array_equal(out["reward"][2:], [0, 0])
    np.testing.assert_array_equal(out["correct"], [1, 0, 0, 0])
    ex = {"id": "0", "question": "2+2?", "answer": "4", "answer_type": "number", "aliases": []}
    out = posttrain.compute_reward("abstention", ["4", "5", "I don't know."], [ex] * 3,
                                   {"wrong_penalty": 2.0})  # fmt: skip
    np.testing.assert_array_equal(out["reward"], [1.0, -2.0, 0.0])
    with pytest.raises(ValueError, match="abstain_reward must be in"):
        posttrain.compute_reward("abstention", ["4"], [ex], {"abstain_reward": 1.5})
