"""Rewards of generated texts, by name: (texts, examples, **options) -> {"reward": [n], ...}.

    @posttrain.register_reward("my_reward")
    def my_reward(texts, examples, *, bonus=1.0):
        return {"reward": np.array([bonus * ("because" in t) for t in texts], np.float32)}

Besides "reward" a function may return "correct" (0/1) and "confidence" ([0, 1]; NaN where the
text states none); the trainers log accuracy and the Brier score / ECE of the stated confidence
from them. Array-level rewards (`introspect.losses.REWARDS`: rlcr, crew, hyperclick, ppo_c)
are the formulas these call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from introspect import data, losses
from introspect.registry import Registry

TEXT_REWARDS: Registry[Callable[..., dict]] = Registry("text reward")


def register_reward(name: str, fn=None, *, overwrite: bool = False):
    """Registers a text reward `fn(texts, examples, **options) -> {"reward": [n], ...}`."""
    return TEXT_REWARDS.register(name, fn, overwrite=overwrite)


def compute_reward(
    name: str, texts: Sequence[str], examples: Sequence[Mapping], options: Mapping | None = None
) -> dict[str, np.ndarray]:
    """The reward `name` of `texts` (one example per text), checked: {"reward": [n] float32,
    optional "correct" / "confidence" [n] float32}."""
    fn = TEXT_REWARDS.get(name)
    out = fn(list(texts), list(examples), **dict(options or {}))
    if not isinstance(out, Mapping) or "reward" not in out:
        raise ValueError(f"reward {name!r} must return a dict with 'reward', got {type(out)}")
    res = {}
    for key, value in out.items():
        arr = np.asarray(value, np.float32)
        if arr.shape != (len(texts),):
            raise ValueError(
                f"reward {name!r}: {key!r} has shape {arr.shape}, expected [{len(texts)}]"
            )
        res[key] = arr
    if not np.all(np.isfinite(res["reward"])):
        raise ValueError(f"reward {name!r} returned NaN/inf rewards")
    return res


@register_reward("starts_with")
def starts_with(texts, examples, *, prefix: str = "Yes", case_sensitive: bool = False):
    """1 when the response (leading whitespace dropped) starts with `prefix`, else 0: a
    learnable toy reward."""
    del examples
    if not prefix:
        raise ValueError("starts_with: prefix must be a non-empty string")
    norm = (lambda s: s) if case_sensitive else str.lower
    hit = [norm(t.lstrip()).startswith(norm(prefix)) for t in texts]
    return {"reward": np.asarray(hit, np.float32)}


@register_reward("binary_correct")
def binary_correct(texts, examples, *, prompt_format: str = "plain"):
    """RLVR: 1 when the task's grader accepts the answer, else 0."""
    ok = [
        float(data.grade(ex, t, fmt=prompt_format)[1])
        for ex, t in zip(examples, texts, strict=True)
    ]
    return {"reward": np.asarray(ok, np.float32), "correct": np.asarray(ok, np.float32)}


@register_reward("rlcr")
def rlcr(
    texts,
    examples,
    *,
    scale: str = "paper",
    format_penalty: float = 2.0,
    require_think: bool = True,
    allow_percent: bool = False,
):
    """RLCR (Damani et al.): the answer inside <answer> graded, the stated <confidence> scored
    by the Brier rule; malformed outputs get the format reward (see `losses.rlcr_reward`)."""
    answers, conf, ok = losses.parse_rlcr_batch(
        texts, allow_percent=allow_percent, require_think=require_think
    )
    correct = np.asarray(
        [
            float(a is not None and data.grade(ex, a, fmt="plain")[1])
            for ex, a in zip(examples, answers, strict=True)
        ],
        np.float32,
    )
    reward = losses.rlcr_reward(
        correct=correct, confidence=conf, format_ok=ok, format_penalty=format_penalty, scale=scale
    )
    stated = np.where(np.asarray(ok), np.asarray(conf, np.float32), np.nan)
    return {"reward": np.asarray(reward, np.float32), "correct": correct, "confidence": stated}


_POINT = re.compile(r"\(\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\)")


@register_reward("hyperclick")
def hyperclick(texts, examples, *, sigma_scale: float = 1 / 6, correctness_weight: float = 1.0,
               calibration_weight: float = 1.0):  # fmt: skip
    """HyperClick (GUI grounding): the last "(x, y)" in the text is the click, its stated
    confidence is read by `signals.parse_verbalized_confidence`; each example has "box"
    (x0, y0, x1, y1). `losses.hyperclick_reward` of (click, box, confidence); a text without a
    click or a confidence scores 0."""
    from introspect.signals import parse_verbalized_confidence

    n = len(texts)
    points, conf, ok = np.zeros((n, 2)), np.zeros(n), np.zeros(n, bool)
    for i, t in enumerate(texts):
        hits = _POINT.findall(t)
        c = parse_verbalized_confidence(t)
        if hits and c is not None:
            points[i], conf[i], ok[i] = [float(v) for v in hits[-1]], c, True
    boxes = np.asarray([ex["box"] for ex in examples], np.float64).reshape(n, 4)
    reward = np.asarray(
        losses.hyperclick_reward(
            point=points,
            box=boxes,
            confidence=conf,
            sigma_scale=sigma_scale,
            correctness_weight=correctness_weight,
            calibration_weight=calibration_weight,
        )  # fmt: skip
    )
    inside = (points[:, 0] >= boxes[:, 0]) & (points[:, 0] <= boxes[:, 2])
    inside &= (points[:, 1] >= boxes[:, 1]) & (points[:, 1] <= boxes[:, 3])
    return {
        "reward": np.where(ok, reward, 0.0),
        "correct": (inside & ok).astype(np.float32),
        "confidence": np.where(ok, conf, np.nan),
    }


@register_reward("abstention")
def abstention(
    texts, examples, *, prompt_format: str = "plain", abstain_reward: float = 0.0,
    wrong_penalty: float = 1.0, phrases=("i don't know", "i do not know", "not sure"),
):  # fmt: skip
    """Correct 1, abstained (`phrases`, case-insensitive) `abstain_reward`, wrong
    -`wrong_penalty`: answering pays only when it is more likely right than the penalty ratio
    (the abstention-aware reward of selective answering)."""
    if not 0 <= abstain_reward < 1:
        raise ValueError(f"abstention: abstain_reward must be in [0, 1), got {abstain_reward}")
    ok = np.asarray([data.grade(ex, t, fmt=prompt_format)[1] for ex, t in
                     zip(examples, texts, strict=True)], np.float32)  # fmt: skip
    abstained = np.asarray([any(p in t.lower() for p in phrases) for t in texts])
    reward = np.where(abstained, abstain_reward, np.where(ok > 0, 1.0, -wrong_penalty))
    return {"reward": reward.astype(np.float32), "correct": np.where(abstained, 0, ok)}
