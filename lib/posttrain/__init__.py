"""Post-training of the LLM itself with calibration-aware objectives, through the one loop.

    from introspect import posttrain
    cfg = posttrain.grpo_config()                  # rollouts, reward / advantage / loss by name
    result = posttrain.train_grpo(lm, prompts, examples, cfg, workdir=DIR)
    tuned = lm.with_params(result.params)

Modules: `policy` (fixed-shape packing of prompt + response rows, the policy's token
log-probs), `rewards` (text rewards by name: starts_with, binary_correct, rlcr), `grpo` (the
on-policy rollout feed, the loss, `train_grpo`), `sft` (ConfTuner: the model's graded answers
with a confidence slot, the "conftuner" loss, `train_sft`, `confidence_eval`), `dpo` (DPO /
VPO with a precomputed reference, `train_dpo`, the CRew-DPO pair builder `crew_pairs`).
"""

from introspect.posttrain import dpo, grpo, policy, rewards, sft
from introspect.posttrain.dpo import crew_pairs, dpo_config, pair_margins, train_dpo
from introspect.posttrain.grpo import (
    RolloutFeed,
    advantages,
    check_config,
    grpo_config,
    make_loss,
    train_grpo,
)
from introspect.posttrain.rewards import TEXT_REWARDS, compute_reward, register_reward
from introspect.posttrain.sft import (
    confidence_eval,
    confidence_rows,
    pack_rows,
    sft_config,
    train_sft,
)

__all__ = [
    "TEXT_REWARDS",
    "RolloutFeed",
    "advantages",
    "check_config",
    "compute_reward",
    "crew_pairs",
    "dpo",
    "dpo_config",
    "confidence_eval",
    "confidence_rows",
    "grpo",
    "grpo_config",
    "make_loss",
    "pack_rows",
    "pair_margins",
    "policy",
    "register_reward",
    "rewards",
    "sft",
    "sft_config",
    "train_dpo",
    "train_grpo",
    "train_sft",
]
