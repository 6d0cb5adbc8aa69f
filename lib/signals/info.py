"""Information-based estimators that compare the answer with and without the question.

PMI and conditional PMI (LM-Polygraph's MeanPointwiseMutualInformation and
MeanConditionalPointwiseMutualInformation, IINemo/lm-polygraph `estimators/pointwise_mutual_
information.py` / `conditional_pointwise_mutual_information.py`; CPMI from van der Poel et al.
2022): log p(y_t | y_<t, x) against the unconditional log p(y_t | y_<t) of the same answer
tokens without the prompt (`unconditional_logprobs`). The first token has no unconditional
term (LM-Polygraph: 0). Signs flipped from LM-Polygraph's: higher = more confident.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from introspect import _checks as V


def unconditional_logprobs(lm, answers: Sequence[Sequence[int]], *, batch_size: int = 16):
    """[n, T] log p(y_t | y_<t) of each answer's tokens without the prompt (t >= 1; column 0
    is 0), in `from_ragged`'s layout (T = the longest answer, 0 after each answer's end)."""
    answers = [list(map(int, a)) for a in answers]
    if not answers:
        raise ValueError("answers: expected at least one answer")
    n = max(max(len(a) for a in answers), 1)
    out = np.zeros((len(answers), n), np.float32)
    rows = [i for i, a in enumerate(answers) if len(a) >= 2]
    if rows:
        scores = lm.score(
            [answers[i][:1] for i in rows], [answers[i][1:] for i in rows],
            return_stats=False, batch_size=batch_size,
        )  # fmt: skip
        for i, lp in zip(rows, scores.logprobs, strict=True):
            out[i, 1 : len(answers[i])] = lp
    return out


def _inputs(logprob, lm_logprob, mask):
    lp = V.checked_array(logprob, "logprob", 2, "[batch, length]", True)
    lm = V.as_array(lm_logprob, "lm_logprob")
    V.check_same_shape(lp, lm, "logprob", "lm_logprob")
    m = V.as_mask(mask, lp.shape)
    V.check_finite(lp, "logprob", m)
    V.check_finite(lm, "lm_logprob", m)
    later = m & (jnp.arange(lp.shape[1]) > 0)
    return jnp.asarray(lp, jnp.float32), jnp.asarray(lm, jnp.float32), m, later


def _mean(x, m):
    return jnp.sum(jnp.where(m, x, 0), -1) / jnp.maximum(jnp.sum(m, -1), 1)


def pmi(logprob, lm_logprob, mask) -> jnp.ndarray:
    """[batch] mean over answer tokens of log p(y_t | y_<t, x) - log p(y_t | y_<t) (the first
    token: log p(y_0 | x) alone); higher = the question made the answer likelier."""
    lp, lm, m, later = _inputs(logprob, lm_logprob, mask)
    return _mean(lp - jnp.where(later, lm, 0), m)


def cpmi(logprob, lm_logprob, entropy, mask, *, tau: float = 0.0656, lambd: float = 3.599):
    """[batch] conditional PMI: mean of log p(y_t | y_<t, x) - lambd [H_t >= tau] log p(y_t |
    y_<t), H_t the conditional next-token entropy (t >= 1); tau and lambd are the CPMI paper's
    best values, LM-Polygraph's defaults."""
    lp, lm, m, later = _inputs(logprob, lm_logprob, mask)
    h = V.as_array(entropy, "entropy")
    V.check_same_shape(lp, h, "logprob", "entropy")
    gate = later & (jnp.asarray(h, jnp.float32) >= tau)
    return _mean(lp - jnp.where(gate, lambd * lm, 0), m)
