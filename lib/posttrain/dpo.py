"""DPO / VPO on the Flax LM through the one loop, and the CRew-DPO pair builder.

    rows = posttrain.crew_pairs(lm, prompts, examples, samples=4)   # or your own pairs
    cfg = posttrain.dpo_config()                                     # loss "dpo" or "vpo"
    result = posttrain.train_dpo(lm, rows, cfg, workdir="/tmp/dpo")

Rows are {"prompts", "chosen", "rejected"} (token-id lists; responses without the stop token
or with it, as sampled). The reference is the starting model: its sequence log-probs of every
chosen and rejected response are computed once before training (a frozen copy costs no
memory during training). Each step scores chosen and rejected responses under the policy in
one forward pass and applies the loss by name (`losses.LOSSES`: "dpo" with beta and
label_smoothing, "vpo" with its value regulariser). Logged: the implicit-reward margin
((pi_c - ref_c) - (pi_r - ref_r)) and the fraction of pairs it ranks right.

Pair builders: CRew-DPO (`crew_pairs`: sampled answers, graded, CRew confidence = mean token
probability of the answer; chosen = the most confident right answer, rejected = the most
confident wrong one, `losses.crew_preference_pairs`). LACIE (listener-aware pairs) and CR-DPO
(confidence-reasoning pairs) are not built yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import ml_collections
import numpy as np

from introspect import data, losses
from introspect import train as train_lib
from introspect.posttrain import policy


def dpo_config() -> ml_collections.ConfigDict:
    """Every field of a DPO / VPO run; `train` is the loop's config."""
    c = ml_collections.ConfigDict()
    # Fixed shapes (0 = the longest prompt / response in the data).
    c.max_prompt_tokens = 0
    c.max_response_tokens = 0
    # "dpo" (beta, label_smoothing) or "vpo" (beta, alpha, sign, value_on).
    c.loss = ml_collections.ConfigDict({"name": "dpo", "options": {"beta": 0.1}})
    c.train = policy.train_config(
        num_steps=100, batch_size=8, lr=1e-6, log_every=10, checkpoint_every=50, keep=1
    )
    return c


def _pair_logps(lm, params, arrays, batch_size: int = 8) -> dict[str, np.ndarray]:
    """{side: [n] sequence log-probs} of the chosen and rejected responses under `params`."""
    n = len(arrays["tokens_chosen"])
    out = {}
    for side in ("chosen", "rejected"):
        t, v, m = (arrays[f"{k}_{side}"] for k in ("tokens", "valid", "token_mask"))
        out[side] = np.concatenate(
            [
                np.asarray(
                    policy.sequence_logprobs(
                        params, t[s : s + batch_size], v[s : s + batch_size],
                        m[s : s + batch_size], config=lm.config, dtype=jnp.dtype(lm.dtype),
                    )
                )
                for s in range(0, n, batch_size)
            ]
        ).astype(np.float32)  # fmt: skip
    return out


def pack_pairs(lm, rows: Mapping[str, list], config) -> dict:
    """Fixed-shape arrays of the pairs plus the reference (starting model) sequence log-probs."""
    n = len(rows["prompts"])
    if not n or len(rows["chosen"]) != n or len(rows["rejected"]) != n:
        raise ValueError(
            f"rows need as many chosen and rejected responses as prompts (>= 1), got "
            f"{n}, {len(rows['chosen'])}, {len(rows['rejected'])}"
        )
    pad = lm.stop_and_pad(())[1]
    kw = dict(prompt_len=policy.fixed_length(config.max_prompt_tokens, rows["prompts"]),
              response_len=policy.fixed_length(config.max_response_tokens,
                                               list(rows["chosen"]) + list(rows["rejected"])),
              pad_id=pad)  # fmt: skip
    c = policy.pack(rows["prompts"], rows["chosen"], **kw)
    r = policy.pack(rows["prompts"], rows["rejected"], **kw)
    if (c["token_mask"].sum(1) == 0).any() or (r["token_mask"].sum(1) == 0).any():
        raise ValueError("every chosen and rejected response needs at least one token")
    out = {f"{k}_chosen": v for k, v in c.items()} | {f"{k}_rejected": v for k, v in r.items()}
    ref = _pair_logps(lm, lm.params, out)
    out["ref_chosen_logps"], out["ref_rejected_logps"] = ref["chosen"], ref["rejected"]
    return out


def make_loss(lm, config):
    """The loop's loss_fn: chosen and rejected scored in one pass, the named pair loss."""
    dtype = jnp.dtype(lm.dtype)

    def forward(params, batch, rng):
        del rng
        tok = jnp.concatenate([batch["tokens_chosen"], batch["tokens_rejected"]])
        val = jnp.concatenate([batch["valid_chosen"], batch["valid_rejected"]])
        msk = jnp.concatenate([batch["token_mask_chosen"], batch["token_mask_rejected"]])
        lp, _ = policy.token_logprobs(params, tok, val, config=lm.config, dtype=dtype)
        logps = jnp.sum(jnp.where(msk, lp, 0), axis=1)
        k = batch["tokens_chosen"].shape[0]
        return {"policy_chosen_logps": logps[:k], "policy_rejected_logps": logps[k:]}

    def metrics(outputs, batch):
        margin = (outputs["policy_chosen_logps"] - batch["ref_chosen_logps"]) - (
            outputs["policy_rejected_logps"] - batch["ref_rejected_logps"]
        )
        return {"margin": jnp.mean(margin), "pair_accuracy": jnp.mean(margin > 0)}

    return losses.objective(forward, config.loss, metrics=metrics, field="config.loss")


def train_dpo(lm, rows: Mapping[str, list], config=None, *, workdir: str):
    """DPO / VPO of `lm` on preference `rows` through the one loop; resumable.
    Returns the loop's TrainResult (`.params` in `lm`'s layout)."""
    cfg = dpo_config() if config is None else config
    if cfg.loss.name not in ("dpo", "vpo"):
        raise ValueError(f"config.loss.name must be 'dpo' or 'vpo', got {cfg.loss.name!r}")
    arrays = pack_pairs(lm, rows, cfg)
    return train_lib.train(
        cfg.train,
        init_fn=lambda rng: lm.params,
        loss_fn=make_loss(lm, cfg),
        data=arrays,
        workdir=workdir,
        name="dpo.train",
    )


def pair_margins(lm, params, rows: Mapping[str, list], config) -> np.ndarray:
    """[n] implicit-reward margins (pi_c - ref_c) - (pi_r - ref_r) of `params` against the
    starting model `lm` on `rows`."""
    arrays = pack_pairs(lm, rows, config)
    now = _pair_logps(lm, params, arrays)
    return (now["chosen"] - arrays["ref_chosen_logps"]) - (
        now["rejected"] - arrays["ref_rejected_logps"]
    )


def crew_pairs(
    lm,
    prompts: Sequence[Sequence[int]],
    examples: Sequence[Mapping],
    *,
    samples: int = 4,
    temperature: float = 1.0,
    max_new_tokens: int = 32,
    fmt: str = "plain",
    seed: int = 0,
) -> dict[str, list]:
    """CRew-DPO pairs: `samples` sampled answers per prompt, graded; confidence = the answer's
    mean token probability; per prompt chosen = the most confident right answer, rejected =
    the most confident wrong one (or the least confident right one when all are right);
    prompts with no valid pair are dropped."""
    if samples < 2:
        raise ValueError(f"samples must be >= 2 to form a pair, got {samples}")
    rows = [list(p) for p in prompts for _ in range(samples)]
    gen = lm.generate(rows, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    conf = np.asarray([float(np.exp(np.mean(lp))) if len(lp) else 0.0 for lp in gen.logprobs])
    ok = np.asarray(
        [data.grade(examples[i // samples], t, fmt=fmt)[1] for i, t in enumerate(gen.texts)],
        np.int32,
    )
    chosen, rejected, valid = losses.crew_preference_pairs(
        confidence=conf.reshape(-1, samples), correct=ok.reshape(-1, samples)
    )
    out = {"prompts": [], "chosen": [], "rejected": [], "indices": []}
    for g, (c, r, v) in enumerate(zip(np.asarray(chosen), np.asarray(rejected),
                                      np.asarray(valid), strict=True)):  # fmt: skip
        if v and len(gen.tokens[g * samples + c]) and len(gen.tokens[g * samples + r]):
            out["prompts"].append(list(prompts[g]))
            out["chosen"].append(gen.tokens[g * samples + int(c)])
            out["rejected"].append(gen.tokens[g * samples + int(r)])
            out["indices"].append(g)
    return out
