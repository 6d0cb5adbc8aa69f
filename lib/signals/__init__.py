"""Confidence signals. Every signal is documented "higher = more confident".

Logit-based (`logit.py`): from full logits, `signals.self_certainty(logits, mask)` etc., or by name
from the per-token statistics that generation and `lm.score` compute inside their compiled loops,
`signals.compute("self_certainty", stats, mask, vocab_size=V)`. Text-based (`text.py`):
verbalized confidence, linguistic hedges, sampling consistency. Model-querying (`model.py`):
`score_pairs`/`score_jsonl` (every logit signal for pre-generated answers by teacher forcing) and
`p_true`, `context_gain` (CK-PLUG, with vs without a passage).
"""

from introspect.signals.logit import (
    NEEDS_TOKENS,
    NEEDS_VOCAB,
    SIGNALS,
    answer_confidence,
    compute,
    compute_all,
    confidence_gain,
    from_ragged,
    max_token_prob,
    mean_logprob,
    mean_token_prob,
    min_token_prob,
    neg_max_entropy,
    neg_mean_entropy,
    neg_perplexity,
    register,
    self_certainty,
    token_stats,
)
from introspect.signals.model import context_gain, p_true, score_jsonl, score_pairs
from introspect.signals.stats import STAT_NAMES, step_statistics
from introspect.signals.text import (
    consistency,
    hedge_score,
    load_hedge_lexicon,
    neg_cluster_entropy,
    neg_num_distinct,
    parse_verbalized_confidence,
)

__all__ = [
    "NEEDS_TOKENS",
    "NEEDS_VOCAB",
    "SIGNALS",
    "STAT_NAMES",
    "answer_confidence",
    "compute",
    "compute_all",
    "confidence_gain",
    "from_ragged",
    "consistency",
    "context_gain",
    "hedge_score",
    "load_hedge_lexicon",
    "max_token_prob",
    "mean_logprob",
    "mean_token_prob",
    "min_token_prob",
    "neg_cluster_entropy",
    "neg_max_entropy",
    "neg_mean_entropy",
    "neg_num_distinct",
    "neg_perplexity",
    "parse_verbalized_confidence",
    "p_true",
    "register",
    "score_jsonl",
    "score_pairs",
    "self_certainty",
    "step_statistics",
    "token_stats",
]
