"""Learned confidence heads and confidence-based routing, built on probes, the training loop and
the calibrators.

    from introspect import heads

FineCE (`fine_ce`): prefix-level P(correct) from Monte-Carlo soft labels
(`build_fine_ce_data`, `fit_fine_ce`, `fine_ce_confidence`) and Backward Confidence Integration
(`backward_confidence_integration`). GCM (`gcm`): a model-agnostic correctness model on
(question, answer) text features with post-hoc calibration (`gcm_features`, `fit_gcm`,
`recalibrate_gcm`, `gcm_confidence`). SDM (`sdm`): the similarity-distance-magnitude activation
and per-class CDF calibration (`sdm_activation`, `sdm_support_stats`, `fit_sdm`, `sdm_predict`).
PACE-LM (`pace`): the two-score combination (`fit_pace`, `pace_combine`). Exits (`exits`):
JEI-DNN's jointly learned exit gates and classifiers (`fit_jei_dnn`, `jei_dnn_predict`) and the
Dynamic Confidence anytime stop rule (`anytime_confidence`, `dynamic_stop`,
`choose_dynamic_threshold`). Mowst (`mowst`): dispersion confidence, the learned gate and the
weak/strong cascade (`mowst_confidence`, `fit_mowst_gate`, `mowst_cascade`). ZIP-RC
(`zip_rc`): reserved-vocabulary logits predicting the joint (reward, remaining length), its
loss "zip_rc", training (`train_zip_rc`), masked sampling (`LM.generate(suppress_token_ids=)`)
and the stop / continue / branch decision (`decide`).

Importing this package registers the losses "sdm_rescaler", "jei_dnn", "mowst_gate", "zip_rc" in
`introspect.losses.LOSSES`.
"""

from introspect.heads import zip_rc
from introspect.heads.exits import (
    DynamicThreshold,
    ExitHeads,
    anytime_confidence,
    choose_dynamic_threshold,
    default_exit_costs,
    dynamic_stop,
    exit_uncertainty_features,
    fit_jei_dnn,
    jei_dnn_loss,
    jei_dnn_predict,
    jei_exit_weights,
    jei_first_exit,
    jei_gate_targets,
)
from introspect.heads.fine_ce import (
    FineCEData,
    backward_confidence_integration,
    build_fine_ce_data,
    entropy_positions,
    fine_ce_confidence,
    fit_fine_ce,
    paragraph_end_positions,
    prefix_positions,
    soft_labels,
)
from introspect.heads.gcm import (
    GCMFit,
    fit_gcm,
    gcm_confidence,
    gcm_features,
    gcm_texts,
    recalibrate_gcm,
)
from introspect.heads.mowst import (
    choose_route_threshold,
    fit_mowst_gate,
    mowst_cascade,
    mowst_confidence,
    mowst_dispersion,
    mowst_gate,
    mowst_gate_features,
    mowst_gate_loss,
    mowst_loss,
    mowst_mix,
    mowst_route,
)
from introspect.heads.pace import PaceFit, fit_pace, pace_combine, pace_confidence, pace_features
from introspect.heads.sdm import (
    SDMCalibration,
    cdf_index,
    class_cdfs,
    fit_sdm,
    sdm_activation,
    sdm_cdf_quantiles,
    sdm_distance_quantile,
    sdm_nearest,
    sdm_predict,
    sdm_rescale,
    sdm_rescaler_loss,
    sdm_similarity,
    sdm_soft_qbin,
    sdm_support_stats,
    sdm_thresholds,
    swift_quantile,
)

__all__ = [
    "zip_rc",
    "DynamicThreshold",
    "ExitHeads",
    "FineCEData",
    "GCMFit",
    "PaceFit",
    "SDMCalibration",
    "anytime_confidence",
    "backward_confidence_integration",
    "build_fine_ce_data",
    "cdf_index",
    "choose_dynamic_threshold",
    "choose_route_threshold",
    "class_cdfs",
    "default_exit_costs",
    "dynamic_stop",
    "entropy_positions",
    "exit_uncertainty_features",
    "fine_ce_confidence",
    "fit_fine_ce",
    "fit_gcm",
    "fit_jei_dnn",
    "fit_mowst_gate",
    "fit_pace",
    "fit_sdm",
    "gcm_confidence",
    "gcm_features",
    "gcm_texts",
    "jei_dnn_loss",
    "jei_dnn_predict",
    "jei_exit_weights",
    "jei_first_exit",
    "jei_gate_targets",
    "mowst_cascade",
    "mowst_confidence",
    "mowst_dispersion",
    "mowst_gate",
    "mowst_gate_features",
    "mowst_gate_loss",
    "mowst_loss",
    "mowst_mix",
    "mowst_route",
    "pace_combine",
    "pace_confidence",
    "pace_features",
    "paragraph_end_positions",
    "prefix_positions",
    "recalibrate_gcm",
    "sdm_activation",
    "sdm_cdf_quantiles",
    "sdm_distance_quantile",
    "sdm_nearest",
    "sdm_predict",
    "sdm_rescale",
    "sdm_rescaler_loss",
    "sdm_similarity",
    "sdm_soft_qbin",
    "sdm_support_stats",
    "sdm_thresholds",
    "soft_labels",
    "swift_quantile",
]
