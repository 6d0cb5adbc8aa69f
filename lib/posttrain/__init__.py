"""Post-training of the LLM itself with calibration-aware objectives, through the one loop.

    from introspect import posttrain
    cfg = posttrain.grpo_config()                  # rollouts, reward / advantage / loss by name
    result = posttrain.train_grpo(lm, prompts, examples, cfg, workdir=DIR)
    tuned = lm.with_params(posttrain.lora.merged(result.params))   # with or without LoRA

Modules: `policy` (fixed-shape packing of prompt + response rows, the policy's token
log-probs), `rewards` (text rewards by name: starts_with, binary_correct, rlcr), `grpo` (the
on-policy rollout feed, advantages by name, the loss, `train_grpo`), `sft` (ConfTuner: the
model's graded answers with a confidence slot, the "conftuner" loss, `train_sft`,
`confidence_eval`), `dpo` (DPO / VPO with a precomputed reference, `train_dpo`; pair builders
`crew_pairs` (CRew-DPO), `lacie_pairs` (LACIE), `cr_dpo_pairs` (CR-DPO)), `lora` (adapters for
all three: `config.lora.rank` > 0; `lora.merged(result.params)` = the LM's parameters),
`reward_model` (the LM with a value head; Bradley-Terry and PPO-M's calibrated reward modelling
on `confidence_quads`, `train_reward_model`, `reward_scores`).
"""

from introspect.posttrain import dpo, grpo, lora, policy, reward_model, rewards, sft
from introspect.posttrain.dpo import (
    cr_dpo_pairs,
    crew_pairs,
    dpo_config,
    lacie_pairs,
    listener_accept_probs,
    pair_margins,
    train_dpo,
)
from introspect.posttrain.grpo import (
    RolloutFeed,
    advantages,
    check_config,
    grpo_config,
    make_loss,
    train_grpo,
)
from introspect.posttrain.reward_model import (
    confidence_quads,
    reward_model_config,
    reward_scores,
    train_reward_model,
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
    "confidence_quads",
    "reward_model",
    "reward_model_config",
    "reward_scores",
    "train_reward_model",
    "RolloutFeed",
    "advantages",
    "check_config",
    "compute_reward",
    "cr_dpo_pairs",
    "crew_pairs",
    "dpo",
    "dpo_config",
    "confidence_eval",
    "confidence_rows",
    "grpo",
    "grpo_config",
    "lacie_pairs",
    "listener_accept_probs",
    "lora",
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
