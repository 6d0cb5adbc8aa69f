"""Text-based confidence signals: verbalized confidence, linguistic hedges, sampling consistency.

Higher = more confident, for every signal. These take strings, so they run on the host (not
under jit); they return numpy arrays.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

# "Confidence: 80%", "confidence level: 0.8", "I am 90% confident", "Confidence - 7/10",
# "<confidence>0.7</confidence>".
_VERBALIZED = [
    re.compile(
        r"confidence(?:\s*(?:level|score))?\s*(?:is|[:=\-])?\s*\**\s*"
        r"(?P<num>\d+(?:\.\d+)?)\s*(?P<pct>%|percent)?(?:\s*/\s*(?P<den>\d+))?",
        re.I,
    ),
    re.compile(r"<confidence>\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<pct>%)?\s*</confidence>", re.I),
    re.compile(r"(?P<num>\d+(?:\.\d+)?)\s*(?P<pct>%|percent)\s+(?:confident|sure|certain)", re.I),
]


def parse_verbalized_confidence(text: str, *, percent_default: bool = True) -> float | None:
    """The last stated confidence in `text` as a probability in [0, 1], or None.

    Understands "Confidence: 80%", "confidence level: 0.8", "Confidence: 7/10",
    "<confidence>0.7</confidence>", "I am 90% confident". A bare number > 1 without "%" is read as
    a percentage when `percent_default` (so "Confidence: 80" is 0.8). Values outside [0, 1] after
    conversion give None (not clipped: a malformed statement is not a confidence).
    """
    if not isinstance(text, str):
        raise ValueError(f"text: got {type(text).__name__}; expected a string")
    best = None
    for pattern in _VERBALIZED:
        for m in pattern.finditer(text):
            if best is None or m.start() > best[0]:
                best = (m.start(), m)
    if best is None:
        return None
    m = best[1]
    value = float(m.group("num"))
    den = m.groupdict().get("den")
    if den:
        value = value / float(den) if float(den) > 0 else math.nan
    elif m.group("pct") or (percent_default and value > 1):
        value = value / 100.0
    return value if 0.0 <= value <= 1.0 else None


@functools.lru_cache(maxsize=4)
def load_hedge_lexicon(path: str | None = None) -> tuple[dict[str, float], float]:
    """(phrase -> confidence, default) from a JSON lexicon (default: the bundled hedges.json)."""
    path = path or os.path.join(os.path.dirname(__file__), "hedges.json")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    phrases = {k.lower(): float(v) for k, v in data["phrases"].items()}
    bad = {k: v for k, v in phrases.items() if not 0.0 <= v <= 1.0}
    if bad:
        raise ValueError(f"{path}: lexicon scores must lie in [0, 1], got {bad}")
    return phrases, float(data.get("default", 0.5))


def hedge_score(texts: Sequence[str], *, lexicon: str | None = None) -> np.ndarray:
    """Linguistic confidence of each text: mean lexicon score of the hedge/booster phrases it uses
    (longest phrases matched first, each span once); texts without any get the lexicon default.

    Returns:
      [n] float in [0, 1]; higher = more confident.
    """
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts: expected a sequence of strings (wrap a single text in a list)")
    phrases, default = load_hedge_lexicon(lexicon)
    ordered = sorted(phrases, key=len, reverse=True)
    pattern = re.compile(r"\b(" + "|".join(re.escape(p) for p in ordered) + r")\b", re.I)
    out = []
    for text in texts:
        hits = [phrases[m.group(1).lower()] for m in pattern.finditer(text)]
        out.append(float(np.mean(hits)) if hits else default)
    return np.asarray(out)


def _clusters(answers: Sequence[str | None], equivalent: Callable[[str, str], bool] | None):
    """Group answers into equivalence classes (None = unparsable answers, each its own class)."""
    reps: list[str] = []
    labels = []
    for a in answers:
        if a is None:
            labels.append(-1 - len(labels))  # unique negative label
            continue
        for k, r in enumerate(reps):
            if equivalent(a, r) if equivalent else a == r:
                labels.append(k)
                break
        else:
            reps.append(a)
            labels.append(len(reps) - 1)
    return labels


def consistency(
    reference: str | None,
    samples: Sequence[str | None],
    *,
    equivalent: Callable[[str, str], bool] | None = None,
) -> float:
    """Share of sampled answers equivalent to the reference (e.g. greedy) answer, in [0, 1]."""
    if not samples:
        raise ValueError("consistency: samples is empty")
    if reference is None:
        return 0.0
    same = [
        s is not None and (equivalent(s, reference) if equivalent else s == reference)
        for s in samples
    ]
    return float(np.mean(same))


def neg_num_distinct(
    samples: Sequence[str | None], *, equivalent: Callable[[str, str], bool] | None = None
) -> float:
    """-(number of distinct answers among the samples); higher = more confident."""
    if not samples:
        raise ValueError("neg_num_distinct: samples is empty")
    return -float(len(set(_clusters(samples, equivalent))))


def neg_cluster_entropy(
    samples: Sequence[str | None], *, equivalent: Callable[[str, str], bool] | None = None
) -> float:
    """-(entropy in nats of the answer-cluster frequencies); 0 when all samples agree."""
    if not samples:
        raise ValueError("neg_cluster_entropy: samples is empty")
    counts = np.array(list(Counter(_clusters(samples, equivalent)).values()), float)
    p = counts / counts.sum()
    return float(np.sum(p * np.log(p)))
