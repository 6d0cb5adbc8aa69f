"""Label cleaning with confident learning, as pure JAX array computations (cleanlab parity).

  thresholds and joints  confident_thresholds, confident_joint, calibrated_joint, estimate_joint
  label issues           find_label_issues (filter_by in FILTERS) -> [n] bool mask
  ranking                label_quality_scores, rank_label_issues (rank_by in RANKINGS)

Results equal cleanlab 2.9.0's (`cleanlab.count`, `cleanlab.filter`, `cleanlab.rank`) bit for bit
on float32 input (and on float64 input under `jax.enable_x64`), including which borderline
examples pass a threshold; the one freedom taken is at exact ties in a pruning or ranking score,
where the lowest index goes first (cleanlab: NumPy's unstable sort order). See `filter` for the
full list of deviations. The [n, K] work is jitted XLA with static shapes (1M x 10 in about half
a second on a 2-core CPU); the [K, K] calibration runs in NumPy float64 on the host, so these
functions return concrete arrays and are called outside `jit`.
"""

from introspect.cleaning.confident import (
    calibrated_joint,
    confident_joint,
    confident_thresholds,
    estimate_joint,
)
from introspect.cleaning.filter import (
    FILTERS,
    RANKINGS,
    find_label_issues,
    label_quality_scores,
    rank_label_issues,
)

__all__ = [
    "FILTERS",
    "RANKINGS",
    "calibrated_joint",
    "confident_joint",
    "confident_thresholds",
    "estimate_joint",
    "find_label_issues",
    "label_quality_scores",
    "rank_label_issues",
]
