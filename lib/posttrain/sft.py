"""SFT with ConfTuner's tokenized Brier loss on the model's own graded answers.

    rows = posttrain.confidence_rows(lm, prompts, examples, fmt="plain")   # greedy, graded
    cfg = posttrain.sft_config()
    result = posttrain.train_sft(lm, rows, cfg, workdir="/tmp/sft")
    posttrain.confidence_eval(lm.with_params(result.params), held_out, cfg)  # brier, ece, ...

Each row is the prompt, the model's own answer, then the confidence cue (default
"\\nConfidence: "); the token after the cue is the stated confidence, one of the K confidence
tokens (`losses.confidence_token_ids`: "0".."9" = k / 9 in coarse mode, the mode for tokenizers
that split numbers into digits, as SmolLM2's does; "0".."100" in fine mode). The loss
("conftuner", registered in `introspect.losses`) per row is
  lm_coef * mean NLL of the answer tokens + brier_coef * sum_k q_k (correct - v_k)^2,
q = softmax of the K confidence-token logits at the cue's last token (ConfTuner's tokenized
Brier; the answer's NLL keeps the answers the model gives). Trained by the one loop.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from introspect import data, losses
from introspect import train as train_lib
from introspect.posttrain import lora, policy


def sft_config() -> ml_collections.ConfigDict:
    """Every field of a ConfTuner SFT run; `train` is the loop's config."""
    c = ml_collections.ConfigDict()
    # The cue after the answer; the next token is the stated confidence.
    c.confidence_cue = "\nConfidence: "
    # "coarse" ("0".."9" = k / 9) or "fine" ("0".."100" = k / 100; each must be one token).
    c.confidence_mode = "coarse"
    # Fixed shapes: prompts left-padded to max_prompt_tokens, answer + cue to
    # max_response_tokens (0 = the longest in the data: no compute spent on padding).
    c.max_prompt_tokens = 128
    c.max_response_tokens = 48
    # Greedy answer budget when building rows.
    c.max_new_tokens = 32
    c.loss = ml_collections.ConfigDict(
        {"name": "conftuner", "options": {"lm_coef": 1.0, "brier_coef": 1.0}}
    )
    # LoRA adapters (rank 0 = full fine-tuning; posttrain.lora).
    c.lora = lora.lora_config()
    c.train = policy.train_config(
        num_steps=100, batch_size=8, lr=1e-5, log_every=10, checkpoint_every=50, keep=1
    )
    return c


def confidence_rows(
    lm,
    prompts: Sequence[Sequence[int]],
    examples: Sequence[Mapping],
    *,
    fmt: str = "plain",
    max_new_tokens: int = 32,
    batch_size: int = 32,
) -> dict[str, list]:
    """The model's greedy answers to `prompts`, graded: {"prompts", "answers" (token ids,
    stop token dropped), "texts", "correct" (0/1)}."""
    if len(prompts) != len(examples):
        raise ValueError(f"got {len(prompts)} prompts but {len(examples)} examples")
    gen = lm.generate(
        [list(p) for p in prompts], max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    stop = set(lm.stop_and_pad(())[0].tolist())
    answers = [[t for t in toks if t not in stop] for toks in gen.tokens]
    correct = [
        int(data.grade(ex, t, fmt=fmt)[1]) for ex, t in zip(examples, gen.texts, strict=True)
    ]
    return {"prompts": [list(p) for p in prompts], "answers": answers, "texts": gen.texts,
            "correct": correct}  # fmt: skip


def pack_rows(lm, rows: Mapping[str, list], config) -> dict[str, np.ndarray]:
    """Fixed-shape training arrays: tokens, valid, token_mask (the answer tokens as targets),
    conf_pos (the cue's last token, whose next-token logits hold the confidence), correct."""
    cue = list(lm.tokenizer.encode(config.confidence_cue, add_special_tokens=False))
    if not cue:
        raise ValueError("config.confidence_cue must encode to at least one token")
    responses = [list(a) + cue for a in rows["answers"]]
    p = policy.fixed_length(config.max_prompt_tokens, rows["prompts"])
    packed = policy.pack(
        rows["prompts"],
        responses,
        prompt_len=p,
        response_len=policy.fixed_length(config.max_response_tokens, responses),
        pad_id=lm.stop_and_pad(())[1],
    )
    mask = np.zeros_like(packed["token_mask"])
    for i, a in enumerate(rows["answers"]):
        mask[i, p - 1 : p - 1 + len(a)] = True  # the answer's tokens only, not the cue
    conf_pos = np.asarray([p + len(r) - 1 for r in responses], np.int32)
    correct = np.asarray(rows["correct"], np.float32)
    if not np.isin(correct, (0.0, 1.0)).all():
        raise ValueError("rows['correct'] must be 0/1")
    return {"tokens": packed["tokens"], "valid": packed["valid"], "token_mask": mask,
            "conf_pos": conf_pos, "correct": correct}  # fmt: skip


@losses.register("conftuner", outputs=("logprobs", "conf_logits"), batch=("token_mask", "correct"))
def _conftuner(*, outputs, batch, values, lm_coef=1.0, brier_coef=1.0):
    """lm_coef * mean answer NLL + brier_coef * ConfTuner's tokenized Brier, per row."""
    m = jnp.asarray(batch["token_mask"], bool)
    nll = -jnp.sum(jnp.where(m, outputs["logprobs"], 0), axis=1)
    nll = nll / jnp.maximum(jnp.sum(m, axis=1), 1)
    brier = losses.tokenized_brier(
        conf_logits=outputs["conf_logits"],
        correct=batch["correct"],
        values=values,
        validate=False,
    )
    return lm_coef * nll + brier_coef * brier


@functools.partial(jax.jit, static_argnames=("config", "dtype"))
def _forward_jit(params, batch, conf_ids, *, config, dtype):
    return _forward(params, batch, config=config, dtype=dtype, conf_ids=conf_ids)


def _forward(params, batch, *, config, dtype, conf_ids):
    """{"logprobs": [batch, length - 1] of the tokens, "conf_logits": [batch, K] logits of the
    confidence tokens at each row's `conf_pos`}."""
    out = policy.logits(params, batch["tokens"], batch["valid"], config=config, dtype=dtype)
    chosen, _ = policy.logprobs_of(out, batch["tokens"])
    at = jnp.take_along_axis(out, batch["conf_pos"][:, None, None], axis=1)[:, 0]
    return {"logprobs": chosen, "conf_logits": at[:, conf_ids].astype(jnp.float32)}


def make_loss(lm, config):
    """The loop's loss_fn for `config.loss` (default "conftuner") on the LM's outputs."""
    mode = config.confidence_mode
    conf_ids = np.asarray(losses.confidence_token_ids(lm.tokenizer, mode=mode))
    values = [float(v) for v in np.asarray(losses.confidence_values(mode=mode))]
    loss_cfg = ml_collections.ConfigDict(config.loss.to_dict())
    if loss_cfg.name == "conftuner":
        loss_cfg.options.values = values
    dtype = jnp.dtype(lm.dtype)

    def forward(params, batch, rng):
        del rng
        return _forward(params, batch, config=lm.config, dtype=dtype, conf_ids=conf_ids)

    def metrics(outputs, batch):
        q = jax.nn.softmax(outputs["conf_logits"], axis=-1)
        conf = q @ jnp.asarray(values, jnp.float32)
        return {
            "tokenized_brier": jnp.mean(
                losses.tokenized_brier(
                    conf_logits=outputs["conf_logits"],
                    correct=batch["correct"],
                    values=jnp.asarray(values),
                    validate=False,
                )  # fmt: skip
            ),
            "mean_confidence": jnp.mean(conf),
            "accuracy": jnp.mean(batch["correct"]),
        }

    return losses.objective(forward, loss_cfg, metrics=metrics, field="config.loss")


def train_sft(lm, rows: Mapping[str, list], config=None, *, workdir: str):
    """ConfTuner SFT of `lm` on `rows` (`confidence_rows`) through the one loop; resumable.
    Returns the loop's TrainResult (`.params` in `lm`'s layout)."""
    cfg = sft_config() if config is None else config
    arrays = pack_rows(lm, rows, cfg)
    return train_lib.train(
        lora.train_config(cfg),
        init_fn=lora.trainable_init(lm, cfg),
        loss_fn=make_loss(lm, cfg),
        data=arrays,
        workdir=workdir,
        name="sft.train",
    )


def _scores(lm, rows, config, batch_size: int):
    """Per row: tokenized Brier, expected stated confidence, answer NLL (numpy [n] each)."""
    arrays = pack_rows(lm, rows, config)
    mode = config.confidence_mode
    conf_ids = np.asarray(losses.confidence_token_ids(lm.tokenizer, mode=mode))
    values = np.asarray(losses.confidence_values(mode=mode), np.float32)
    n = len(arrays["correct"])
    tb, conf, nll = [], [], []
    for s in range(0, n, batch_size):
        b = {k: v[s : s + batch_size] for k, v in arrays.items()}
        out = _forward_jit(lm.params, jax.tree.map(jnp.asarray, b), jnp.asarray(conf_ids),
                           config=lm.config, dtype=jnp.dtype(lm.dtype))  # fmt: skip
        q = np.asarray(jax.nn.softmax(out["conf_logits"], axis=-1))
        tb.append((q * (b["correct"][:, None] - values[None]) ** 2).sum(1))
        conf.append(q @ values)
        m = b["token_mask"]
        nll.append(-(np.asarray(out["logprobs"]) * m).sum(1) / np.maximum(m.sum(1), 1))
    return (*map(np.concatenate, (tb, conf, nll)), arrays["correct"])


def stated_confidence(lm, rows: Mapping[str, list], config, *, batch_size: int = 8) -> np.ndarray:
    """[n] expected confidence sum_k q_k v_k at each row's confidence slot under `lm`."""
    return _scores(lm, rows, config, batch_size)[1]


def confidence_eval(lm, rows: Mapping[str, list], config, *, batch_size: int = 8) -> dict:
    """Held-out tokenized Brier, expected stated confidence, Brier / ECE of that confidence,
    answer NLL under `lm` (its current parameters) on packed `rows`."""
    from introspect import metrics

    tb, conf, nll, y = _scores(lm, rows, config, batch_size)
    return {
        "tokenized_brier": float(tb.mean()),
        "mean_confidence": float(conf.mean()),
        "brier": float(np.mean((conf - y) ** 2)),
        "ece": float(metrics.ece(conf, y.astype(np.int32), num_bins=10)),
        "answer_nll": float(nll.mean()),
        "accuracy": float(y.mean()),
        "rows": int(len(y)),
    }
