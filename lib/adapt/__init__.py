"""Classic confidence rules from adaptation, fusion, imitation and self-training papers.

Pure jnp functions, one module per paper (sources, formulas and deviations in each docstring):

  tta           open-set test-time adaptation (wisdom of crowds): `crowd_filter` keeps the samples
                whose confidence under the adapted model is not below the original model's,
                `masked_entropy_loss` / `open_set_tta_loss` minimise their entropy
  teachers      hand keypoint / mask DA: `teacher_divergence`, `teacher_confidence` (pseudo-label
                weight 2(1 - sigmoid(s d)) or exp(-s d)), `hand_pseudo_label_weights`
  fusion        IEMF inverse-effectiveness fusion gain: `iemf_coefficient`, `iemf_scale_gradients`
  conditioning  Veila-style confidence-aware conditioning (rule ours): `semantic_confidence`,
                `depth_confidence`, `confidence_aware_weights`, `confidence_aware_condition`
  lipschitz     off-policy GAIL local-Lipschitz reward penalty: `reward_lipschitz_penalty`,
                `lipschitz_penalty`, `penalty_points`, `lipschitz_confidence`
  bstar         B-STaR monitors: `pass_at_k`, `distinct_correct`, `best_of_k`,
                `reward_discrimination`, `select_by_reward`, `balance_score`, `bstar_search`

Related pieces elsewhere: POCO's Gaussian NLL is the loss "gaussian_nll"
(`introspect.losses.regression`), CLASSP the optimiser "classp" (`introspect.train.classp`).
"""

from introspect.adapt.bstar import (
    balance_score,
    best_of_k,
    bstar_search,
    distinct_correct,
    pass_at_k,
    reward_discrimination,
    select_by_reward,
)
from introspect.adapt.conditioning import (
    confidence_aware_condition,
    confidence_aware_weights,
    depth_confidence,
    semantic_confidence,
)
from introspect.adapt.fusion import iemf_coefficient, iemf_scale_gradients, label_confidence_sum
from introspect.adapt.lipschitz import (
    input_gradient_norms,
    lipschitz_confidence,
    lipschitz_penalty,
    penalty_points,
    reward_lipschitz_penalty,
)
from introspect.adapt.teachers import (
    hand_pseudo_label_weights,
    teacher_confidence,
    teacher_divergence,
)
from introspect.adapt.tta import (
    crowd_confidences,
    crowd_filter,
    masked_entropy_loss,
    open_set_tta_loss,
    softmax_entropy,
)

__all__ = [
    "balance_score",
    "best_of_k",
    "bstar_search",
    "confidence_aware_condition",
    "confidence_aware_weights",
    "crowd_confidences",
    "crowd_filter",
    "depth_confidence",
    "distinct_correct",
    "hand_pseudo_label_weights",
    "iemf_coefficient",
    "iemf_scale_gradients",
    "input_gradient_norms",
    "label_confidence_sum",
    "lipschitz_confidence",
    "lipschitz_penalty",
    "masked_entropy_loss",
    "open_set_tta_loss",
    "pass_at_k",
    "penalty_points",
    "reward_discrimination",
    "reward_lipschitz_penalty",
    "select_by_reward",
    "semantic_confidence",
    "softmax_entropy",
    "teacher_confidence",
    "teacher_divergence",
]
