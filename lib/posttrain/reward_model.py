"""Reward models on the Flax LM, and PPO-M's calibrated reward modelling.

    rows = {"prompts": [...], "chosen": [...], "rejected": [...]}        # token-id lists
    quads = posttrain.confidence_quads(lm.tokenizer, rows, seed=0)       # PPO-M's variants
    result = posttrain.train_reward_model(lm, quads, posttrain.reward_model_config(),
                                          workdir=DIR)
    r = posttrain.reward_scores(lm, result.params, prompts, responses)   # [n]

The reward model is the LM's decoder with a linear value head on the final-norm hidden state
of the sequence's last real token (OpenRLHF's `RewardModel`, which the PPO-M authors build on:
value head without bias, initialised N(0, 1 / (hidden + 1)), read at the end-of-sequence
token). Sequences are the `policy.pack` layout; the end-of-sequence token is appended to every
response that lacks it, as the authors' dataset does.

PPO-M (Leng et al. 2024, "Taming Overconfidence in LLMs: Reward Calibration in RLHF";
SeanLeng1/Reward-Calibration): every preference pair is augmented with four responses that end
with a stated confidence, "\\nConfidence: k." (k uniform in 7..10 for "high", 0..3 for "low",
`dataset/preprocess_data.py` `add_confidence_prompt`), and the reward model is trained with
loss "ppo_m" (`losses.ppo_m_loss`): the chosen response should score higher with high
confidence, the rejected one with low confidence. Loss "reward_bt" is the plain Bradley-Terry
reward model on (chosen, rejected). Deviation: the authors also put a system prompt asking for a
confidence before the four variants; here the variants reuse the pair's prompt unless
`confidence_prompts=` gives other prompt ids. PPO-C (reward centring at PPO time) is
`losses.ppo_c_rewards`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from introspect import losses
from introspect import train as train_lib
from introspect.models import llama
from introspect.posttrain import lora, policy

SIDES = ("chosen", "rejected", "chosen_high", "chosen_low", "rejected_high", "rejected_low")
HIGH, LOW = (7, 10), (0, 3)


def reward_model_config() -> ml_collections.ConfigDict:
    """Every field of a reward-model run; `train` is the loop's config."""
    c = ml_collections.ConfigDict()
    # Fixed shapes (0 = the longest prompt / response in the data).
    c.max_prompt_tokens = 0
    c.max_response_tokens = 0
    # "ppo_m" (PPO-M, the four confidence variants; option with_pairs adds the plain pair term)
    # or "reward_bt" (Bradley-Terry on chosen vs rejected; option margin).
    c.loss = ml_collections.ConfigDict({"name": "ppo_m", "options": {}})
    # LoRA adapters on the decoder (rank 0 = full fine-tuning); the value head always trains.
    c.lora = lora.lora_config()
    c.train = policy.train_config(
        num_steps=100, batch_size=8, lr=1e-6, log_every=10, checkpoint_every=50, keep=1
    )
    return c


def _encode(tokenizer, text: str) -> list[int]:
    ids = tokenizer.encode(text, add_special_tokens=False)
    return list(getattr(ids, "ids", ids))


def confidence_quads(
    tokenizer,
    rows: Mapping[str, list],
    *,
    seed: int = 0,
    high: tuple[int, int] = HIGH,
    low: tuple[int, int] = LOW,
    confidence_prompts: Sequence[Sequence[int]] | None = None,
) -> dict[str, list]:
    """PPO-M's data: `rows` ({"prompts", "chosen", "rejected"}) plus "chosen_high",
    "chosen_low", "rejected_high", "rejected_low" (each response + "\\nConfidence: k.", k drawn
    uniformly from the inclusive `high` / `low` range, seeded) and "confidence_prompts" (the
    prompts of the four variants; default the pair's own)."""
    n = len(rows["prompts"])
    if not n or len(rows["chosen"]) != n or len(rows["rejected"]) != n:
        raise ValueError(
            f"rows need as many chosen and rejected responses as prompts (>= 1), got "
            f"{n}, {len(rows['chosen'])}, {len(rows['rejected'])}"
        )
    for name, (lo, hi) in (("high", high), ("low", low)):
        if not 0 <= lo <= hi:
            raise ValueError(f"{name} must be an inclusive range 0 <= lo <= hi, got {(lo, hi)}")
    if confidence_prompts is not None and len(confidence_prompts) != n:
        raise ValueError(f"confidence_prompts: expected {n} prompts, got {len(confidence_prompts)}")
    rng = np.random.default_rng(seed)
    out = {k: [list(x) for x in rows[k]] for k in ("prompts", "chosen", "rejected")}
    out["confidence_prompts"] = [
        list(p) for p in (rows["prompts"] if confidence_prompts is None else confidence_prompts)
    ]
    for side in ("chosen", "rejected"):
        for level, (lo, hi) in (("high", high), ("low", low)):
            ks = rng.integers(lo, hi + 1, n)
            out[f"{side}_{level}"] = [
                list(r) + _encode(tokenizer, f"\nConfidence: {int(k)}.")
                for r, k in zip(rows[side], ks, strict=True)
            ]
            out[f"{side}_{level}_confidence"] = [int(k) for k in ks]
    return out


def _with_stop(responses, stop_id: int) -> list[list[int]]:
    return [list(r) if list(r)[-1:] == [stop_id] else list(r) + [stop_id] for r in responses]


def pack_sides(lm, rows: Mapping[str, list], config, sides: Sequence[str]) -> dict:
    """Fixed-shape arrays `tokens_<side>`, `valid_<side>` of every side (one common shape)."""
    stop_ids, pad = lm.stop_and_pad(())
    stop = int(stop_ids[0])
    n = len(rows["prompts"])
    prompts = {s: rows["confidence_prompts"] if s not in ("chosen", "rejected") and
               "confidence_prompts" in rows else rows["prompts"] for s in sides}  # fmt: skip
    resp = {}
    for s in sides:
        if s not in rows or len(rows[s]) != n:
            raise ValueError(
                f"rows need {n} {s!r} responses for this loss; got keys {sorted(rows)}"
            )
        if any(len(r) == 0 for r in rows[s]):
            raise ValueError(f"every {s!r} response needs at least one token")
        resp[s] = _with_stop(rows[s], stop)
    kw = dict(prompt_len=policy.fixed_length(config.max_prompt_tokens,
                                             [p for s in sides for p in prompts[s]]),
              response_len=policy.fixed_length(config.max_response_tokens,
                                               [r for s in sides for r in resp[s]]),
              pad_id=pad)  # fmt: skip
    out = {}
    for s in sides:
        packed = policy.pack(prompts[s], resp[s], **kw)
        out[f"tokens_{s}"], out[f"valid_{s}"] = packed["tokens"], packed["valid"]
    return out


def init_params(lm, config, rng: jax.Array) -> dict:
    """{"lm": the decoder (or its LoRA state), "value_head": [hidden] ~ N(0, 1/(hidden+1))}."""
    r_head, r_lora = jax.random.split(rng)
    hidden = lm.config.hidden_size
    head = jax.random.normal(r_head, (hidden,), jnp.float32) / (hidden + 1)
    return {"lm": lora.trainable_init(lm, config)(r_lora), "value_head": head}


def rewards(params, tokens, valid, *, config, dtype=jnp.float32) -> jax.Array:
    """[batch] value-head output at each row's last real token (right-padded rows)."""
    decoder = lora.merged(params["lm"])
    positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0).astype(jnp.int32)
    _, hidden, _ = llama.apply(
        decoder, tokens, positions, config=config, valid=valid,
        capture=(config.num_layers,), with_logits=False, dtype=dtype,
    )  # fmt: skip
    h = hidden[0].astype(jnp.float32)  # [batch, length, hidden]
    last = tokens.shape[1] - 1 - jnp.argmax(valid[:, ::-1], axis=1)
    h_last = jnp.take_along_axis(h, last[:, None, None], axis=1)[:, 0]
    return h_last @ params["value_head"].astype(jnp.float32)


def _sides(loss_name: str, options: Mapping) -> tuple[str, ...]:
    if loss_name == "reward_bt":
        return ("chosen", "rejected")
    if loss_name == "ppo_m":
        return SIDES if options.get("with_pairs") else SIDES[2:]
    raise ValueError(f"config.loss.name must be 'ppo_m' or 'reward_bt', got {loss_name!r}")


def make_loss(lm, config):
    """The loop's loss_fn: every side scored in one pass, the named reward-model loss."""
    dtype = jnp.dtype(lm.dtype)
    sides = _sides(config.loss.name, dict(config.loss.get("options") or {}))

    def forward(params, batch, rng):
        del rng
        tok = jnp.concatenate([batch[f"tokens_{s}"] for s in sides])
        val = jnp.concatenate([batch[f"valid_{s}"] for s in sides])
        r = rewards(params, tok, val, config=lm.config, dtype=dtype).reshape(len(sides), -1)
        return {f"{s}_rewards": r[i] for i, s in enumerate(sides)}

    def metrics(outputs, batch):
        out = {}
        if "chosen_rewards" in outputs:
            out["pair_accuracy"] = jnp.mean(outputs["chosen_rewards"] > outputs["rejected_rewards"])
        if "chosen_high_rewards" in outputs:
            out["confidence_accuracy"] = 0.5 * (
                jnp.mean(outputs["chosen_high_rewards"] > outputs["chosen_low_rewards"])
                + jnp.mean(outputs["rejected_low_rewards"] > outputs["rejected_high_rewards"])
            )
        return out

    return losses.objective(forward, config.loss, metrics=metrics, field="config.loss")


def _train_config(config):
    t = ml_collections.ConfigDict(config.train.to_dict())
    if lora.enabled(config):
        t.optimizer.frozen = tuple(t.optimizer.get("frozen", ())) + tuple(
            "^lm/" + p.lstrip("^") for p in lora.FROZEN
        )
    return t


def train_reward_model(lm, rows: Mapping[str, list], config=None, *, workdir: str):
    """Train a reward model from `lm` on `rows` through the one loop; resumable.

    rows: {"prompts", "chosen", "rejected"} for "reward_bt"; `confidence_quads(...)` output for
    "ppo_m". Returns the loop's TrainResult (`.params` = {"lm", "value_head"})."""
    cfg = reward_model_config() if config is None else config
    sides = _sides(cfg.loss.name, dict(cfg.loss.get("options") or {}))
    arrays = pack_sides(lm, rows, cfg, sides)
    return train_lib.train(
        _train_config(cfg),
        init_fn=lambda rng: init_params(lm, cfg, rng),
        loss_fn=make_loss(lm, cfg),
        data=arrays,
        workdir=workdir,
        name="reward_model.train",
    )


def reward_scores(
    lm, params, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], *,
    batch_size: int = 8,
) -> np.ndarray:  # fmt: skip
    """[n] rewards of (prompt, response) rows under a trained reward model's `params`."""
    if len(prompts) != len(responses) or not prompts:
        raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses (need >= 1)")
    cfg = ml_collections.ConfigDict({"max_prompt_tokens": 0, "max_response_tokens": 0})
    arrays = pack_sides(lm, {"prompts": prompts, "chosen": responses}, cfg, ("chosen",))
    t, v = arrays["tokens_chosen"], arrays["valid_chosen"]
    kw = {"config": lm.config, "dtype": jnp.dtype(lm.dtype)}
    return np.concatenate(
        [np.asarray(_rewards_jit(params, t[s : s + batch_size], v[s : s + batch_size], **kw))
         for s in range(0, len(t), batch_size)]
    ).astype(np.float32)  # fmt: skip


# compiled once per (shape, config) like `policy.sequence_logprobs`, not once per call
_rewards_jit = jax.jit(rewards, static_argnames=("config", "dtype"))
