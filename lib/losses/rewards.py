"""Calibration rewards: RLCR (parser + Brier reward), CRew confidence-as-reward and its preference
pairs, HyperClick spatial confidence. Rewards are positively oriented (higher = better).
Numeric coefficients (format_penalty, sigma_scale, the HyperClick weights) may be traced values
(scheduled, vmapped, differentiated) and are range-checked only when concrete.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from introspect import _checks as V

__all__ = [
    "RLCRParse",
    "parse_rlcr",
    "parse_rlcr_batch",
    "rlcr_reward",
    "RLCR_SCALES",
    "crew_reward",
    "crew_preference_pairs",
    "hyperclick_spatial_confidence",
    "hyperclick_reward",
]

# ----------------------------------------------------------------------------- RLCR


class RLCRParse(NamedTuple):
    """Result of parsing one RLCR completion.

    answer: text inside the last <answer>...</answer> (stripped), or None.
    confidence: the number inside the last <confidence>...</confidence> as a probability in
      [0, 1], or None when missing or invalid.
    format_ok: every required tag is present and the confidence is valid.
    """

    answer: str | None
    confidence: float | None
    format_ok: bool


def _last_tag(text: str, tag: str) -> str | None:
    found = re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.DOTALL | re.IGNORECASE)
    return found[-1].strip() if found else None


_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"


def _parse_confidence(raw: str, allow_percent: bool) -> float | None:
    m = re.fullmatch(rf"({_NUMBER})\s*(%?)", raw.strip())
    if m is None:
        return None
    value = float(m.group(1))
    if m.group(2):
        if not allow_percent:
            return None
        value /= 100.0
    if not math.isfinite(value) or value < 0.0 or value > 1.0:
        return None
    return value


def _rlcr_order(require_think: bool, require_analysis: bool) -> re.Pattern:
    parts = (["</think>"] if require_think else []) + ["<answer>.*?</answer>"]
    parts += (["<analysis>.*?</analysis>"] if require_analysis else []) + [
        "<confidence>.*?</confidence>"
    ]
    return re.compile(".*?".join(parts), flags=re.DOTALL | re.IGNORECASE)


def parse_rlcr(
    text: str,
    *,
    allow_percent: bool = False,
    require_analysis: bool = True,
    require_think: bool = True,
) -> RLCRParse:
    """Parses `<think>..</think> <answer>..</answer> <analysis>..</analysis>
    <confidence>q</confidence>`.

    For each tag the last match wins. q must be a plain number in [0, 1] ("0.8", ".8", "1");
    with `allow_percent=True` a percentage such as "80%" or "80 %" is read as 0.8. Anything
    else ("high", "0.8 or so", "1.2", "80" without a percent sign) is invalid. format_ok also
    needs the paper's tag order: `</think>`, then the answer, the analysis and the confidence
    (the RLCR authors' format check), each tag closed.

    Args:
      text: the completion.
      allow_percent: accept "<number>%" confidences.
      require_analysis: the <analysis> tag is required for format_ok.
      require_think: a `</think>` before the answer is required for format_ok (False for
        prompts without a reasoning block).
    Returns:
      RLCRParse(answer, confidence, format_ok).
    """
    if not isinstance(text, str):
        raise ValueError(f"text: expected a string, got {type(text).__name__}")
    answer = _last_tag(text, "answer")
    analysis = _last_tag(text, "analysis")
    raw = _last_tag(text, "confidence")
    conf = None if raw is None else _parse_confidence(raw, allow_percent)
    ok = answer is not None and conf is not None and (analysis is not None or not require_analysis)
    ok = ok and _rlcr_order(require_think, require_analysis).search(text) is not None
    return RLCRParse(answer=answer, confidence=conf, format_ok=ok)


def parse_rlcr_batch(
    texts: Sequence[str],
    *,
    allow_percent: bool = False,
    require_analysis: bool = True,
    require_think: bool = True,
) -> tuple[list[str | None], jax.Array, jax.Array]:
    """Parses a batch of completions (options as `parse_rlcr`).

    Returns:
      (answers: list of str or None, confidence: [batch] float (0.0 where invalid),
      format_ok: [batch] bool), ready for `rlcr_reward`.
    """
    parsed = [
        parse_rlcr(
            t,
            allow_percent=allow_percent,
            require_analysis=require_analysis,
            require_think=require_think,
        )
        for t in texts
    ]
    conf = jnp.asarray([p.confidence if p.confidence is not None else 0.0 for p in parsed])
    ok = jnp.asarray([p.format_ok for p in parsed], dtype=bool)
    return [p.answer for p in parsed], conf, ok


RLCR_SCALES = ("library", "paper")


def rlcr_reward(
    *,
    correct: Any,
    confidence: Any,
    format_ok: Any,
    format_penalty: float = 2.0,
    scale: str = "library",
    validate: bool = True,
) -> jax.Array:
    """RLCR reward: correctness plus a Brier term, maximised by a right answer stated with
    calibrated confidence.

    scale="library": r = 1[correct] - (q - 1[correct])^2 in [-1, 1] for a well-formatted
    completion, -format_penalty for a malformed one. scale="paper": the authors' reward,
    0.5 * format + 0.5 * correct + 0.5 * (1 - (correct - q)^2) = 1 + r / 2 for a formatted
    completion and 0 for a malformed one (format_penalty is not used).

    The default penalty 2 makes the library scale an affine image of the paper's (paper =
    1 + r / 2 on every completion), so group-normalised advantages are identical. A smaller
    penalty scores a malformed completion above a formatted wrong answer with q > 0 (e.g.
    penalty 0 vs -q^2): an incentive to break the format when unsure.

    Args:
      correct: [batch] 1 if the answer was right, else 0.
      confidence: [batch] stated confidence q in [0, 1] (ignored where format_ok is False).
      format_ok: [batch] bool, from `parse_rlcr`.
      format_penalty: [] reward of a badly formatted completion is -format_penalty (>= 0; may
        be traced); library scale only.
      scale: "library" or "paper"; static.
      validate: check the input.
    Returns:
      [batch] reward.
    """
    pen = V.coefficient(format_penalty, "format_penalty", 0.0)
    V.check_choice(scale, "scale", RLCR_SCALES)
    c = V.as_array(correct, "correct")
    q = V.as_array(confidence, "confidence")
    ok = V.as_array(format_ok, "format_ok")
    if validate:
        V.check_same_shape(c, q, "correct", "confidence")
        V.check_same_shape(c, ok, "correct", "format_ok")
        V.check_binary(ok, "format_ok")
        V.check_binary(c, "correct")
        V.check_probabilities(q, "confidence", ok != 0)
    qf = jnp.asarray(V.as_float(q))
    ok = jnp.asarray(ok) != 0
    q = jnp.where(ok, qf, 0)
    cf = jnp.asarray(c, dtype=qf.dtype)
    r = cf - (q - cf) ** 2
    if scale == "paper":
        return jnp.where(ok, 1 + 0.5 * r, 0)
    return jnp.where(ok, r, -V.as_dtype(pen, dtype=qf.dtype))


# ----------------------------------------------------------------------------- CRew

REDUCTIONS = ("mean", "product", "geometric")


def crew_reward(
    *,
    answer_logprobs: Any,
    mask: Any,
    reduction: str = "mean",
    validate: bool = True,
) -> jax.Array:
    """CRew: the model's confidence in its final answer, used as a reward; higher = better.

    Args:
      answer_logprobs: [batch, length] log-probability of each generated token.
      mask: [batch, length] True on the tokens of the final answer.
      reduction: "mean" = mean token probability over the answer tokens (CRew's default),
        "product" = probability of the whole answer, exp(sum log p), "geometric" =
        exp(mean log p).
      validate: check the input.
    Returns:
      [batch] confidence in [0, 1]; 0 for rows without answer tokens.
    """
    V.check_choice(reduction, "reduction", REDUCTIONS)
    lp = V.checked_array(answer_logprobs, "answer_logprobs", 2, "[batch, length]", validate)
    m = V.as_mask(mask, lp.shape)
    if validate:
        V.check_range(lp, "answer_logprobs", -math.inf, 0.0, m, what="log-probabilities <= 0")
    lp = jnp.where(m, V.as_float(lp), 0)
    count = jnp.sum(m, axis=-1)
    has = count > 0
    denom = jnp.maximum(count, 1).astype(lp.dtype)
    if reduction == "mean":
        out = jnp.sum(jnp.where(m, jnp.exp(lp), 0), axis=-1) / denom
    elif reduction == "product":
        out = jnp.exp(jnp.sum(lp, axis=-1))
    else:
        out = jnp.exp(jnp.sum(lp, axis=-1) / denom)
    return jnp.where(has, out, 0)


def crew_preference_pairs(
    *,
    confidence: Any,
    correct: Any,
    mask: Any = None,
    validate: bool = True,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """CRew-DPO preference pairs from a group of sampled answers per question.

    Rule (our reading of "chosen = correct and confident, rejected = wrong or low-confidence"):
    chosen = the most confident correct answer; rejected = the most confident wrong answer, or,
    when every answer is correct, the least confident one (if it is less confident than the
    chosen one). A group without a correct answer, or without such a rejected answer, gives no
    pair.

    Args:
      confidence: [groups, size] CRew confidence of each answer.
      correct: [groups, size] 1 if the answer is right.
      mask: optional [groups, size] bool, False = padding.
      validate: check the input.
    Returns:
      (chosen [groups] int32 index, rejected [groups] int32 index, valid [groups] bool).
    """
    q = V.checked_array(confidence, "confidence", 2, "[groups, size]", validate)
    c = V.as_array(correct, "correct")
    if validate:
        V.check_same_shape(q, c, "confidence", "correct")
    m = V.as_mask(mask, q.shape)
    if validate:
        V.check_finite(q, "confidence", m)
        V.check_binary(c, "correct", m)
    qf = jnp.asarray(V.as_float(q))
    c = jnp.asarray(c)
    right = (c != 0) & m
    wrong = (c == 0) & m
    neg_inf = jnp.asarray(-jnp.inf, qf.dtype)
    chosen = jnp.argmax(jnp.where(right, qf, neg_inf), axis=-1)
    best_wrong = jnp.argmax(jnp.where(wrong, qf, neg_inf), axis=-1)
    least_right = jnp.argmin(jnp.where(right, qf, -neg_inf), axis=-1)
    any_wrong = jnp.any(wrong, axis=-1)
    rejected = jnp.where(any_wrong, best_wrong, least_right)
    q_chosen = jnp.take_along_axis(qf, chosen[:, None], axis=-1)[:, 0]
    q_least = jnp.take_along_axis(qf, least_right[:, None], axis=-1)[:, 0]
    valid = jnp.any(right, axis=-1) & (any_wrong | (q_least < q_chosen))
    return chosen.astype(jnp.int32), rejected.astype(jnp.int32), valid


# ----------------------------------------------------------------------------- HyperClick


def _prepare_click(point: Any, box: Any, validate: bool) -> tuple[jax.Array, jax.Array]:
    p = V.as_array(point, "point")
    b = V.as_array(box, "box")
    if validate:
        V.check_rank(p, "point", 2, "[batch, 2] (x, y)")
        V.check_rank(b, "box", 2, "[batch, 4] (x0, y0, x1, y1)")
        if p.shape[-1] != 2:
            raise ValueError(f"point: has shape {tuple(p.shape)}; expected [batch, 2] (x, y)")
        if b.shape[-1] != 4:
            raise ValueError(
                f"box: has shape {tuple(b.shape)}; expected [batch, 4] (x0, y0, x1, y1)"
            )
        V.check_leading(p, b, "point", "box")
        V.check_finite(p, "point")
        V.check_finite(b, "box")
        if V.is_concrete(b):
            xp, bh = V.host_or_device(b)  # numpy on the host, so it also works under a jit
            if bool(xp.any((bh[:, 2] <= bh[:, 0]) | (bh[:, 3] <= bh[:, 1]))):
                raise ValueError(
                    "box: some boxes have x1 <= x0 or y1 <= y0; expected positive size"
                )
    dt = jnp.result_type(V.as_float(p).dtype, V.as_float(b).dtype)
    return jnp.asarray(p, dtype=dt), jnp.asarray(b, dtype=dt)


def _spatial(p: jax.Array, b: jax.Array, sigma_scale: Any) -> tuple[jax.Array, jax.Array]:
    """(spatial confidence [batch], click inside the box [batch] bool)."""
    lo, hi = b[:, :2], b[:, 2:]
    inside = jnp.all((p >= lo) & (p <= hi), axis=-1)
    centre = (lo + hi) / 2
    sigma = sigma_scale * (hi - lo)
    z = (p - centre) / sigma
    return jnp.where(inside, jnp.exp(-0.5 * jnp.sum(z * z, axis=-1)), 0), inside


def hyperclick_spatial_confidence(
    *, point: Any, box: Any, sigma_scale: float = 1 / 6, validate: bool = True
) -> jax.Array:
    """Truncated-Gaussian spatial confidence of a click; higher = closer to the target centre.

    A Gaussian centred on the target box with per-axis standard deviation sigma_scale * (box
    width, height), scaled to 1 at the centre and truncated to 0 outside the box. The exact
    parameterisation of HyperClick is not published; this one (default: the box spans +-3
    sigma) is our choice, adjustable through `sigma_scale`.

    Args:
      point: [batch, 2] predicted click (x, y).
      box: [batch, 4] target element (x0, y0, x1, y1), x1 > x0, y1 > y0.
      sigma_scale: [] standard deviation as a fraction of the box size, > 0 (may be traced).
      validate: check the input.
    Returns:
      [batch] spatial confidence in [0, 1].
    """
    s = V.coefficient(sigma_scale, "sigma_scale", 0.0, lo_open=True)
    p, b = _prepare_click(point, box, validate)
    return _spatial(p, b, V.as_dtype(s, dtype=p.dtype))[0]


def hyperclick_reward(
    *,
    point: Any,
    box: Any,
    confidence: Any,
    sigma_scale: float = 1 / 6,
    correctness_weight: float = 1.0,
    calibration_weight: float = 1.0,
    validate: bool = True,
) -> jax.Array:
    """HyperClick dual reward: click correctness plus a Brier calibration term; higher = better.

    reward = correctness_weight * 1[point in box]
             + calibration_weight * (1 - (confidence - spatial)^2),
    where `spatial` is `hyperclick_spatial_confidence`, the target the stated confidence should
    match (maximised at confidence = spatial).

    Args:
      point: [batch, 2] predicted click (x, y).
      box: [batch, 4] target element (x0, y0, x1, y1).
      confidence: [batch] the model's stated confidence in [0, 1].
      sigma_scale: as in `hyperclick_spatial_confidence`.
      correctness_weight, calibration_weight: [] weights of the two terms (>= 0; may be traced).
      validate: check the input.
    Returns:
      [batch] reward in [0, correctness_weight + calibration_weight].
    """
    s = V.coefficient(sigma_scale, "sigma_scale", 0.0, lo_open=True)
    wc = V.coefficient(correctness_weight, "correctness_weight", 0.0)
    wk = V.coefficient(calibration_weight, "calibration_weight", 0.0)
    p, b = _prepare_click(point, box, validate)
    q = V.as_array(confidence, "confidence")
    if validate:
        if tuple(q.shape) != tuple(p.shape[:1]):
            raise ValueError(f"confidence: has shape {tuple(q.shape)}; expected ({p.shape[0]},)")
        V.check_probabilities(q, "confidence")
    s, wc, wk = V.as_dtype(s, wc, wk, dtype=p.dtype)
    spatial, inside = _spatial(p, b, s)
    q = jnp.asarray(q, dtype=spatial.dtype)
    return wc * inside.astype(spatial.dtype) + wk * (1 - (q - spatial) ** 2)
