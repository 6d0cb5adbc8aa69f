"""The advantage transforms inside the GRPO trainer: the feed's advantages equal the pure
functions applied to statistics recomputed independently from the LM's forward (UCAS, EMPG),
Trust-GRPO with a second reward, STEER's token weights inside the loss, option errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introspect import losses, posttrain, sae
from introspect.posttrain import policy


class _State:
    def __init__(self, params):
        self.params = params


def _setup(lm, name, options=None, *, new=6):
    qs = ["Is the sky blue?", "Do cats bark?"]
    prompts = [
        lm.tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], add_generation_prompt=True
        )  # fmt: skip
        for q in qs
    ]
    exs = [{"id": str(i), "question": q} for i, q in enumerate(qs)]
    c = posttrain.grpo_config()
    c.reward.name = "starts_with"
    c.reward.options = {"prefix": "a"}
    c.group_size, c.prompts_per_step = 3, 2
    c.train.batch_size = 6
    c.max_new_tokens = new
    c.max_prompt_tokens = max(map(len, prompts))
    c.advantage.name = name
    c.advantage.options = options or {}
    feed = posttrain.RolloutFeed(lm, prompts, exs, c)
    feed.bind(_State(lm.params))
    return c, feed


def _forward_stats(lm, batch, responses, prompt_len):
    """Per response token: entropy, UCAS certainty, raw logit of the sampled token, from
    `LM.forward` on each (prompt, response) row alone."""
    n, width = batch["tokens"].shape
    ent, cert, samp = (np.zeros((n, width - 1)) for _ in range(3))
    for i in range(n):
        row = batch["tokens"][i][batch["valid"][i]].tolist()
        z = np.asarray(lm.forward([row], hidden_layers=None).logits[0], np.float64)
        k = len(responses[i])
        z = z[len(row) - k - 1 : len(row) - 1]  # the distributions that produced the response
        logp = z - z.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        cols = slice(prompt_len - 1, prompt_len - 1 + k)
        ent[i, cols] = -(np.exp(logp) * logp).sum(-1)
        cert[i, cols] = (
            np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1) - z.mean(-1)
        )
        samp[i, cols] = z[np.arange(k), responses[i]]
    return ent, cert, samp


def test_ucas_in_the_feed_equals_the_pure_function(tiny_policy):
    lm = tiny_policy
    cfg, feed = _setup(lm, "ucas", {"token_coef": 0.1})
    batch = next(feed)
    responses = [batch["tokens"][i][cfg.max_prompt_tokens:][
        batch["token_mask"][i][cfg.max_prompt_tokens - 1:]].tolist() for i in range(6)]  # fmt: skip
    _, cert, samp = _forward_stats(lm, batch, responses, cfg.max_prompt_tokens)
    m = batch["token_mask"]
    want = losses.ucas_advantages(
        rewards=batch["reward"].reshape(2, 3), certainty=(cert * m).sum(1).reshape(2, 3),
        sampled_logits=samp.reshape(2, 3, -1), mask=m.reshape(2, 3, -1), token_coef=0.1,
    )  # fmt: skip
    assert batch["advantages"].shape == m.shape
    np.testing.assert_allclose(batch["advantages"], np.asarray(want).reshape(6, -1), atol=2e-3)
    assert np.all(batch["advantages"][~m] == 0)


def test_empg_in_the_feed_equals_the_pure_function(tiny_policy):
    lm = tiny_policy
    delims = ["e", "a", "o"]  # frequent in the tiny model's random text: several steps
    cfg, feed = _setup(lm, "empg", {"step_delimiter": delims, "zeta": 0.2}, new=8)
    batch = next(feed)
    p = cfg.max_prompt_tokens
    m = batch["token_mask"]
    responses = [batch["tokens"][i][p:][m[i][p - 1 :]].tolist() for i in range(6)]
    ent, _, _ = _forward_stats(lm, batch, responses, p)
    base = np.asarray(losses.grpo_advantages(rewards=batch["reward"].reshape(2, 3))).reshape(-1)
    steps = [sae.split_steps(lm.tokenizer, r, delims) for r in responses]
    assert max(map(len, steps)) >= 2  # the test exercises several steps
    s_max = max(map(len, steps))
    h, sm = np.zeros((6, s_max)), np.zeros((6, s_max), bool)
    owner = np.full(m.shape, -1)
    for i, st in enumerate(steps):
        start = 0
        for j, s in enumerate(st):  # whitespace between steps joins the next step
            owner[i, p - 1 + start : p + s.end] = j
            h[i, j] = ent[i, p - 1 + start : p + s.end].mean()
            sm[i, j] = True
            start = s.end + 1
        owner[i, p - 1 + start : p - 1 + len(responses[i])] = len(st) - 1
    a_step = np.asarray(losses.empg_advantages(advantages=base, step_entropy=h, step_mask=sm,
                                               zeta=0.2))  # fmt: skip
    want = np.where(m, np.take_along_axis(a_step, np.maximum(owner, 0), 1), 0)
    np.testing.assert_allclose(batch["advantages"], want, atol=2e-3)


def test_trust_grpo_combines_the_two_rewards(tiny_policy):
    lm = tiny_policy
    opts = {"thinking_reward": "starts_with", "thinking_options": {"prefix": "e"},
            "alpha": 0.5, "anneal_steps": 10.0}  # fmt: skip
    cfg, feed = _setup(lm, "trust_grpo", opts)
    batch = next(feed)
    texts = feed.last["texts"]
    thinking = posttrain.compute_reward("starts_with", texts, [{}] * 6, {"prefix": "e"})["reward"]
    combined = losses.trust_grpo_rewards(
        outcome=batch["reward"].reshape(2, 3), thinking=thinking.reshape(2, 3), step=0,
        alpha=0.5, anneal_steps=10.0,
    )  # fmt: skip
    want = np.asarray(losses.grpo_advantages(rewards=combined)).reshape(-1)
    np.testing.assert_allclose(batch["advantages"], want, atol=1e-6)


def test_steer_weights_the_clipped_loss(tiny_policy):
    lm = tiny_policy
    cfg, feed = _setup(lm, "steer", {"w_min": 0.5, "w_max": 1.5})
    batch = next(feed)
    batch["advantages"] = np.array([1.0, -1.0, 0.5, -0.5, 0.0, 1.0], np.float32)
    jb = jax.tree.map(jnp.asarray, batch)
    value, _ = posttrain.make_loss(lm, cfg)(lm.params, jb, jax.random.PRNGKey(0))
    lp, ent = policy.token_logprobs(lm.params, jb["tokens"], jb["valid"], config=lm.config)
    w = losses.steer_weights(logprobs=lp, old_logprobs=jb["old_logprobs"], entropy=ent,
                             advantages=jb["advantages"], mask=jb["token_mask"], w_min=0.5,
                             w_max=1.5)  # fmt: skip
    m = np.asarray(jb["token_mask"])
    assert np.ptp(np.asarray(w)[m]) > 0.1  # the weights differ between tokens
    want, _ = losses.clipped_policy_loss(
        logprobs=lp, old_logprobs=jb["old_logprobs"], advantages=jb["advantages"],
        mask=jb["token_mask"], token_weights=w,
    )  # fmt: skip
    np.testing.assert_allclose(float(value), float(want), rtol=1e-5)
    plain, _ = losses.clipped_policy_loss(
        logprobs=lp, old_logprobs=jb["old_logprobs"], advantages=jb["advantages"],
        mask=jb["token_mask"],
    )  # fmt: skip
    assert abs(float(plain) - float(want)) > 1e-4  # the weights change the loss


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("ucas", {"pos_scael": 0.1}, r"unknown option 'pos_scael'; options: pos_scale"),
        ("empg", {"bundle_size": 2}, "unknown option 'bundle_size'"),
        ("trust_grpo", {}, "trust_grpo needs the thinking reward's name"),
        ("trust_grpo", {"thinking_reward": "nope"}, "got 'nope'"),
        ("grpo", {"rewards": 1}, "unknown option 'rewards'"),
    ],
)
def test_option_errors(name, options, match):
    cfg = posttrain.grpo_config()
    cfg.advantage.name = name
    cfg.advantage.options = options
    with pytest.raises(ValueError, match=match):
        posttrain.check_config(cfg)


def test_steer_needs_the_clipped_loss():
    cfg = posttrain.grpo_config()
    cfg.advantage.name = "steer"
    cfg.loss.name = "bce"
    with pytest.raises(ValueError, match="weights the tokens of the 'clipped_policy' loss"):
        posttrain.check_config(cfg)
