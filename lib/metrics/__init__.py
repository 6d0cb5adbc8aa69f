"""Calibration and ranking metrics as pure JAX functions.

Calibration (lower = better): `ece` (with `binning="quantile"` = ACE, `norm="l2"` = RMSCE,
`norm="max"` = MCE; shorthands `ace`, `rmsce`, `mce`), `top_label_ece`, `classwise_ece`,
`reliability_curve`, `brier_score`, `nll`.
Ranking and selective prediction: `auroc`, `auprc` (higher = better), `risk_coverage_curve`,
`aurc`, `excess_aurc` (lower = better), `selective_accuracy`, `prr`, `spearman` (higher = better).
Uncertainty of a metric: `bootstrap_ci`.
Plots (PNG, Agg): `plot_reliability_diagram`, `plot_risk_coverage`, `plot_confidence_histogram`,
`plot_heatmap`
(imported on first use, so `import introspect.metrics` does not load matplotlib).

Every function takes `mask=` for padding and `validate=` (default True: a ValueError naming the
argument for bad input; value checks are skipped on tracers inside jit/vmap).
"""

import importlib

from introspect.metrics.bootstrap import BootstrapResult, bootstrap_ci
from introspect.metrics.calibration import (
    ReliabilityCurve,
    ace,
    brier_score,
    classwise_ece,
    ece,
    mce,
    nll,
    reliability_curve,
    rmsce,
    top_label_ece,
)
from introspect.metrics.ranking import (
    RiskCoverageCurve,
    auprc,
    aurc,
    auroc,
    excess_aurc,
    prr,
    risk_coverage_curve,
    selective_accuracy,
    spearman,
)

_PLOTS = (
    "plot_reliability_diagram",
    "plot_risk_coverage",
    "plot_confidence_histogram",
    "plot_heatmap",
    "save_png",
)

# Metrics by name, for configs: every entry is callable(confidences_or_scores, labels, **options).
METRICS = {
    "ece": ece,
    "ace": ace,
    "mce": mce,
    "rmsce": rmsce,
    "top_label_ece": top_label_ece,
    "classwise_ece": classwise_ece,
    "brier": brier_score,
    "nll": nll,
    "auroc": auroc,
    "auprc": auprc,
    "aurc": aurc,
    "excess_aurc": excess_aurc,
    "selective_accuracy": selective_accuracy,
    "prr": prr,
    "spearman": spearman,
}


def __getattr__(name):
    if name in _PLOTS:
        return getattr(importlib.import_module("introspect.metrics.plots"), name)
    raise AttributeError(f"module 'introspect.metrics' has no attribute {name!r}")


__all__ = [
    "METRICS",
    "BootstrapResult",
    "ReliabilityCurve",
    "RiskCoverageCurve",
    "ace",
    "aurc",
    "auprc",
    "auroc",
    "bootstrap_ci",
    "brier_score",
    "classwise_ece",
    "ece",
    "excess_aurc",
    "mce",
    "nll",
    "prr",
    "reliability_curve",
    "risk_coverage_curve",
    "rmsce",
    "selective_accuracy",
    "spearman",
    "top_label_ece",
    *_PLOTS,
]
