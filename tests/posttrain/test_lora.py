"""LoRA adapters: the start is the base model, only the adapters train (no gradient, update or
optimiser state for the base), SFT / GRPO with adapters learn and resume bitwise, errors."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from introspect import posttrain, sharding, train
from introspect.posttrain import lora, policy


def _lora(rank=4, targets=None):
    c = lora.lora_config()
    c.rank = rank
    if targets is not None:
        c.targets = targets
    return c


def _flat(tree):
    return {sharding.path_name(p): np.asarray(x) for p, x in
            jax.tree_util.tree_flatten_with_path(tree)[0]}  # fmt: skip


def test_init_is_the_base_model_and_only_adapters_get_gradients(tiny_policy):
    lm = tiny_policy
    state = lora.init(jax.random.PRNGKey(0), lm.params, _lora(4))
    n_layers = lm.config.num_layers
    adapted = [k for k in _flat(state["lora"]) if k.endswith("/a")]
    assert len(adapted) == 2 * n_layers  # q_proj and v_proj of every layer
    assert float(state["lora"]["scale"]) == pytest.approx(16.0 / 4)
    merged = lora.merged(state)
    for k, v in _flat(merged).items():  # B = 0: exactly the base
        np.testing.assert_array_equal(v, _flat(lm.params)[k])
    assert lora.merged(lm.params) is lm.params  # a plain tree passes through
    # give B a value, then differentiate a log-likelihood: the base gets zero gradient
    state["lora"] = jax.tree.map(lambda x: x + 0.01, state["lora"])
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(5, 1000, (2, 6)), jnp.int32)
    valid = jnp.ones((2, 6), bool)

    def ll(p):
        return jnp.sum(policy.token_logprobs(p, tokens, valid, config=lm.config)[0])

    g = jax.grad(ll)(state)
    assert all(float(jnp.max(jnp.abs(x))) == 0 for x in jax.tree.leaves(g["base"]))
    assert float(g["lora"]["scale"]) == 0
    a_grads = [v for k, v in _flat(g["lora"]).items() if k.endswith("/a")]
    assert all(np.abs(x).max() > 0 for x in a_grads)
    # merged kernel = W + scale A B, by hand
    k = "layers_0/attn/q_proj/kernel"
    lo = state["lora"]["layers_0"]["attn"]["q_proj"]["kernel"]
    scale = float(state["lora"]["scale"])  # 4 + 0.01
    want = _flat(lm.params)[k] + scale * np.asarray(lo["a"]) @ np.asarray(lo["b"])
    np.testing.assert_allclose(_flat(lora.merged(state))[k], want, rtol=1e-5, atol=1e-6)


def _sft_rows(n, seed):
    rng = np.random.default_rng(seed)
    return {
        "prompts": [rng.integers(5, 2000, rng.integers(3, 10)).tolist() for _ in range(n)],
        "answers": [rng.integers(5, 2000, rng.integers(1, 6)).tolist() for _ in range(n)],
        "correct": (rng.random(n) < 0.85).astype(int).tolist(),
    }


def test_sft_with_adapters_learns_and_leaves_the_base(tiny_policy, tmp_path):
    lm = tiny_policy
    cfg = posttrain.sft_config()
    cfg.max_prompt_tokens, cfg.max_response_tokens = 10, 12
    cfg.train.batch_size, cfg.train.num_steps = 8, 30
    cfg.train.optimizer.lr = 1e-2
    cfg.train.log_every = 10
    cfg.lora = _lora(8, (r"attn/(q_proj|v_proj)/kernel$", r"mlp/down_proj/kernel$"))
    rows, held = _sft_rows(64, 0), _sft_rows(32, 1)
    before = posttrain.confidence_eval(lm, held, cfg)
    result = posttrain.train_sft(lm, rows, cfg, workdir=str(tmp_path))
    assert lora.is_lora(result.params)
    for k, v in _flat(result.params["base"]).items():
        np.testing.assert_array_equal(v, _flat(lm.params)[k], err_msg=k)
    tuned = lm.with_params(lora.merged(result.params))
    changed = [k for k, v in _flat(tuned.params).items()
               if not np.array_equal(v, _flat(lm.params)[k])]  # fmt: skip
    assert changed and all(("q_proj" in k or "v_proj" in k or "down_proj" in k) for k in changed)
    after = posttrain.confidence_eval(tuned, held, cfg)
    assert after["tokenized_brier"] < before["tokenized_brier"] - 0.03, (before, after)
    # Adam moments exist for the adapters only: far fewer numbers than the model
    opt = sum(x.size for x in jax.tree.leaves(result.state.opt_state) if hasattr(x, "size"))
    n_params = sum(x.size for x in jax.tree.leaves(lm.params))
    n_adapters = sum(x.size for x in jax.tree.leaves(result.params["lora"]))
    assert opt < 2 * n_adapters + 10 < n_params


def test_grpo_with_adapters_resumes_bitwise(tiny_policy, tmp_path):
    lm = tiny_policy
    qs = ["Is the sky blue?", "Do cats bark?"]
    chat = [[{"role": "user", "content": q}] for q in qs]
    prompts = [lm.tokenizer.apply_chat_template(m, add_generation_prompt=True) for m in chat]
    exs = [{"id": str(i), "question": q} for i, q in enumerate(qs)]
    cfg = posttrain.grpo_config()
    cfg.reward.name, cfg.reward.options = "starts_with", {"prefix": "a"}
    cfg.group_size, cfg.prompts_per_step, cfg.train.batch_size = 4, 2, 8
    cfg.max_new_tokens, cfg.max_prompt_tokens = 4, max(map(len, prompts))
    cfg.loss.options = {"clip_eps": 0.2, "kl_coef": 0.05}  # KL to the base
    cfg.train.optimizer.lr = 1e-2
    cfg.train.checkpoint.every_steps = 2
    cfg.train.tensorboard = False
    cfg.lora = _lora(4)
    cfg.train.num_steps = 4
    straight = posttrain.train_grpo(lm, prompts, exs, cfg, workdir=str(tmp_path / "a"))
    cfg.train.num_steps = 2
    posttrain.train_grpo(lm, prompts, exs, cfg, workdir=str(tmp_path / "b"))
    cfg.train.num_steps = 4
    resumed = posttrain.train_grpo(lm, prompts, exs, cfg, workdir=str(tmp_path / "b"))
    assert resumed.resumed_from == 2
    for x, y in zip(jax.tree.leaves(straight.params), jax.tree.leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    rows = train.read_metrics(str(tmp_path / "a"))
    assert rows[0]["kl"] == pytest.approx(0, abs=1e-6) and rows[-1]["kl"] > 0  # base = reference
    lo = straight.params["lora"]["layers_0"]["attn"]["q_proj"]["kernel"]["b"]
    assert float(jnp.max(jnp.abs(lo))) > 0


def test_lora_errors(tiny_policy, tmp_path):
    lm = tiny_policy
    with pytest.raises(ValueError, match="match no 2-D kernel"):
        lora.init(jax.random.PRNGKey(0), lm.params, _lora(4, ("nothing_here",)))
    with pytest.raises(ValueError, match="config.lora.rank must be >= 0"):
        lora.check(_lora(-1), lm.params)
    bad = _lora(4)
    bad.alpha = 0.0
    with pytest.raises(ValueError, match="config.lora.alpha must be > 0"):
        lora.check(bad, lm.params)
    cfg = posttrain.sft_config()
    cfg.lora = _lora(4, ("nothing_here",))
    with pytest.raises(ValueError, match="match no 2-D kernel"):
        posttrain.train_sft(lm, _sft_rows(8, 0), cfg, workdir=str(tmp_path))
    assert not lora.enabled(ml_collections.ConfigDict({"train": {}}))
