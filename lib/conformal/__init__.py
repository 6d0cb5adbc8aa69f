"""Conformal wrappers and high-confidence guarantees, as pure JAX functions.

Attach a guarantee to any score -- a probe's probability, a confidence signal, a reward model:

  split conformal      quantile, weighted_quantile, conformal_pvalues, empirical_cdf
  classification sets  nonconformity (LAC / APS / RAPS), label_scores, prediction_sets, calibrate,
                       set_size, coverage, set_summary
  Mondrian / LYNX      mondrian_quantiles, class_conditional_quantiles, exit_thresholds,
                       exit_decision
  risk control         crc_threshold, learn_then_test, hoeffding_pvalue, hoeffding_bentkus_pvalue,
                       fixed_sequence, bonferroni
  regression           residual_scores, residual_intervals, cqr_scores, cqr_intervals,
                       interval_summary
  bounds and tests     hoeffding_ucb / _lcb, student_t_ucb / _lcb, safety_test (HC-RLHF),
                       candidate_ucb, lcb, lcb_action
  wrapper              conformalize -> Conformalized (a pure set predictor), binary_score

Every function documents its shapes and the guarantee it gives; options are keyword-only and
`validate=False` skips the host-side checks for use inside jit / vmap.
"""

from introspect.conformal.bounds import (
    SafetyTestResult,
    candidate_ucb,
    hoeffding_lcb,
    hoeffding_ucb,
    lcb,
    lcb_action,
    safety_test,
    student_t_lcb,
    student_t_ucb,
)
from introspect.conformal.classification import (
    SCORES,
    calibrate,
    coverage,
    label_scores,
    nonconformity,
    prediction_sets,
    set_size,
    set_summary,
)
from introspect.conformal.mondrian import (
    ExitDecision,
    class_conditional_quantiles,
    exit_decision,
    exit_thresholds,
    mondrian_quantiles,
)
from introspect.conformal.regression import (
    cqr_intervals,
    cqr_scores,
    interval_summary,
    residual_intervals,
    residual_scores,
)
from introspect.conformal.risk import (
    CRCResult,
    LTTResult,
    binomial_cdf,
    bonferroni,
    crc_threshold,
    fixed_sequence,
    hoeffding_bentkus_pvalue,
    hoeffding_pvalue,
    learn_then_test,
)
from introspect.conformal.split import (
    conformal_pvalues,
    empirical_cdf,
    quantile,
    weighted_quantile,
)
from introspect.conformal.thresholds import (
    InfiniteThresholdWarning,
    NoThresholdWarning,
    conformal_rank,
    min_calibration_size,
)
from introspect.conformal.wrapper import Conformalized, binary_score, conformalize

__all__ = [
    "CRCResult",
    "Conformalized",
    "ExitDecision",
    "InfiniteThresholdWarning",
    "LTTResult",
    "NoThresholdWarning",
    "SCORES",
    "SafetyTestResult",
    "binary_score",
    "binomial_cdf",
    "bonferroni",
    "calibrate",
    "candidate_ucb",
    "class_conditional_quantiles",
    "conformal_pvalues",
    "conformal_rank",
    "conformalize",
    "coverage",
    "cqr_intervals",
    "cqr_scores",
    "crc_threshold",
    "empirical_cdf",
    "exit_decision",
    "exit_thresholds",
    "fixed_sequence",
    "hoeffding_bentkus_pvalue",
    "hoeffding_lcb",
    "hoeffding_pvalue",
    "hoeffding_ucb",
    "interval_summary",
    "label_scores",
    "lcb",
    "lcb_action",
    "learn_then_test",
    "min_calibration_size",
    "mondrian_quantiles",
    "nonconformity",
    "prediction_sets",
    "quantile",
    "residual_intervals",
    "residual_scores",
    "safety_test",
    "set_size",
    "set_summary",
    "student_t_lcb",
    "student_t_ucb",
    "weighted_quantile",
]
