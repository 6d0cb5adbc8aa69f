"""Scoring rules, calibration losses, rewards, advantage transforms and preference losses.

Losses (lower = better), per example: `brier_loss`, `log_loss`, `spherical_loss`,
`cross_entropy`, `label_smoothing_cross_entropy`, `focal_loss`, `tokenized_brier` (ConfTuner,
with `confidence_values`, `confidence_token_ids`, `expected_confidence`), `dpo_loss`, `vpo_loss`,
`reward_bt_loss`, `ppo_m_loss` (reward models), `sequence_logprob`; the clipped-ratio objective
`clipped_policy_loss`.
Rewards (higher = better): `parse_rlcr` / `parse_rlcr_batch` + `rlcr_reward`, `crew_reward`,
`crew_preference_pairs`, `hyperclick_spatial_confidence`, `hyperclick_reward`, `ppo_c_rewards`.
Advantages and token weights: `grpo_advantages`, `ucas_token_certainty`,
`ucas_sequence_certainty`, `ucas_advantages`, `empg_advantages`, `steer_weights`,
`riskpo_advantages` (with `riskpo_paper_scores` and the quantile tracker
`riskpo_tracker_init` / `riskpo_tracker_update`).
By name: every trainable loss is registered under one contract,
`loss(*, outputs, batch, **options) -> [batch]`, in `LOSSES`; a new one is

    @losses.register("my_loss")
    def my_loss(*, outputs, batch, scale=1.0):
        return scale * (outputs["logits"] - batch["label"]) ** 2

and `config.loss.name = "my_loss"` in any trainer (`objective` builds the trainer's loss
function, `reduce` is its masked, weighted mean). `REWARDS` and `ADVANTAGES` hold the rewards and
advantage transforms by name.
"""

from introspect.losses.policy import (
    clipped_policy_loss,
    empg_advantages,
    grpo_advantages,
    negative_only_advantages,
    ppo_c_rewards,
    riskpo_advantages,
    riskpo_paper_scores,
    riskpo_tracker_init,
    riskpo_tracker_update,
    steer_weights,
    trust_grpo_rewards,
    ucas_advantages,
    ucas_sequence_certainty,
    ucas_token_certainty,
)
from introspect.losses.preference import (
    dpo_loss,
    ppo_m_loss,
    reward_bt_loss,
    sequence_logprob,
    vpo_loss,
)
from introspect.losses.registry import (
    ADVANTAGES,
    LOSSES,
    REWARDS,
    get_advantage,
    get_loss,
    get_reward,
    objective,
    reduce,
    register,
    register_advantage,
    register_loss,
    register_reward,
    resolve_options,
)
from introspect.losses.regression import gaussian_nll
from introspect.losses.rewards import (
    RLCRParse,
    crew_preference_pairs,
    crew_reward,
    hyperclick_reward,
    hyperclick_spatial_confidence,
    parse_rlcr,
    parse_rlcr_batch,
    rlcr_reward,
)
from introspect.losses.scoring import (
    brier_loss,
    cross_entropy,
    focal_loss,
    label_smoothing_cross_entropy,
    log_loss,
    spherical_loss,
)
from introspect.losses.tokenized import (
    confidence_strings,
    confidence_token_ids,
    confidence_values,
    expected_confidence,
    tokenized_brier,
)

__all__ = [
    "ADVANTAGES",
    "LOSSES",
    "REWARDS",
    "RLCRParse",
    "brier_loss",
    "clipped_policy_loss",
    "confidence_strings",
    "confidence_token_ids",
    "confidence_values",
    "crew_preference_pairs",
    "crew_reward",
    "cross_entropy",
    "dpo_loss",
    "ppo_m_loss",
    "reward_bt_loss",
    "empg_advantages",
    "expected_confidence",
    "focal_loss",
    "gaussian_nll",
    "get_advantage",
    "get_loss",
    "get_reward",
    "grpo_advantages",
    "negative_only_advantages",
    "hyperclick_reward",
    "hyperclick_spatial_confidence",
    "label_smoothing_cross_entropy",
    "log_loss",
    "objective",
    "parse_rlcr",
    "parse_rlcr_batch",
    "ppo_c_rewards",
    "register_advantage",
    "register_loss",
    "register_reward",
    "resolve_options",
    "riskpo_advantages",
    "riskpo_paper_scores",
    "riskpo_tracker_init",
    "riskpo_tracker_update",
    "reduce",
    "register",
    "rlcr_reward",
    "sequence_logprob",
    "spherical_loss",
    "steer_weights",
    "trust_grpo_rewards",
    "tokenized_brier",
    "ucas_advantages",
    "ucas_sequence_certainty",
    "ucas_token_certainty",
    "vpo_loss",
]
