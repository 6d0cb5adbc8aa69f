"""Verbalized-confidence strategies and aggregations of Xiong et al. (ICLR 2024), "Can LLMs Express
Their Uncertainty? An Empirical Evaluation of Confidence Elicitation in LLMs"
(github.com/MiaoXiong2320/llm-uncertainty).

Prompts live in `introspect.data.prompts` ("multistep", "self_probing", and "topk" for Pair-Rank).
Here, higher = more confident, every score a probability in [0, 1]:

  multistep_confidence(text)   product of the per-step confidences of a multistep response
  avg_conf(answers, confs, t)  Avg-Conf: sum_i 1[a_i = t] c_i / sum_i c_i over k samples
  pair_rank(rankings, t)       Pair-Rank: the categorical distribution over answers whose
                               pairwise orderings P(u before v) = p_u / (p_u + p_v) best explain
                               the k sampled top-K lists (maximum likelihood), at the target t

`avg_conf_scores` / `pair_rank_scores` give every answer's score ({answer: score}, highest first;
the first key is the aggregated answer). A target of None (an unparsable answer) scores 0.0, as in
`signals.consistency` (the Consistency aggregation: the share of samples agreeing with the target).
Confidences are read with `signals.parse_verbalized_confidence`. These take strings and run on the
host; only the Pair-Rank fit runs in JAX (a compiled loop of gradient steps).

Against the authors' code (commit 78a5d2f: vis_aggregated_conf.py, vis_aggregated_conf_top_k.py,
utils/extract_result_lib.py): Avg-Conf with all confidences 0 gives the consistency here (0/0 =
NaN there). Pair-Rank minimises the paper's negative log-likelihood; the released code drops the
log (it minimises -sum M_uv p_u / (p_u + p_v), whose optimum sits at a vertex of the simplex) and
runs 1000 SGD steps (lr 0.01) from a random start, so its output depends on the seed; here the
fit starts from the uniform distribution with a step size the loss's curvature allows, and
converges to the maximum (unique when the orderings connect every pair of answers; checked
against Hunter's MM iteration in the tests). Within a top-K
list, None guesses are dropped and repeats ignored (the code ranks None as an answer and counts a
repeat twice), and lists may differ in length. A response without steps has no multistep
confidence (None; the code's empty product is 1).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Hashable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from introspect.data.prompts import split_multistep_final
from introspect.signals.text import _clusters, parse_verbalized_confidence

Equivalent = Callable[[Any, Any], bool]

# ----------------------------------------------------------------------------- multi-step

# "Step 1:", "**Step 2.**", "- Step 3)" at the start of a line.
_STEP = re.compile(r"^[ \t>*#_\-]*step\s*(\d+)\s*\**\s*[:.)]", re.I | re.M)
_FINAL = re.compile(r"\bfinal\s+answer\b", re.I)


class MultistepResponse(NamedTuple):
    """A parsed multistep response.

    steps: the confidence of each step, in order (Step 1, 2, ...), a probability in [0, 1], or
      None where the step states none.
    overall: the stated overall confidence of the final answer, or None.
    """

    steps: tuple[float | None, ...]
    overall: float | None


def parse_multistep(text: str) -> MultistepResponse:
    """Per-step and overall confidences of a response to the "multistep" prompt format.

    A step runs from its "Step i:" header (at the start of a line) to the next step header or
    "Final Answer", whichever comes first; its confidence is the last one stated in it
    (`parse_verbalized_confidence`). Steps are read while numbered 1, 2, 3, ...: the first header
    out of sequence ends them (as in the authors' extraction), and so does "Final Answer". The
    overall confidence is read from the final-answer line after the last step
    (`introspect.data.prompts.split_multistep_final`).
    """
    if not isinstance(text, str):
        raise ValueError(f"text: got {type(text).__name__}; expected a string")
    final = _FINAL.search(text)
    stop = final.start() if final else len(text)
    headers = [m for m in _STEP.finditer(text) if m.start() < stop]
    steps: list[float | None] = []
    tail = 0
    for i, m in enumerate(headers):
        if int(m.group(1)) != i + 1:
            break
        end = headers[i + 1].start() if i + 1 < len(headers) else stop
        steps.append(parse_verbalized_confidence(text[m.end() : end]))
        tail = end
    _, statement = split_multistep_final(text[tail:])
    overall = parse_verbalized_confidence(statement) if statement else None
    return MultistepResponse(tuple(steps), overall)


def multistep_confidence(text: str, *, missing: float | None = 1.0) -> float | None:
    """Confidence of a multistep response: the product of its step confidences,
    C = prod_i c_i (Xiong et al. 2024, the multi-step strategy).

    Args:
      text: a response to the "multistep" prompt format.
      missing: the confidence given to a step that states none (the authors' extraction uses
        100%, i.e. 1.0, the default); None makes such a response give None.
    Returns:
      the product in [0, 1], or None when no step is found (the authors' empty product would be
      1) or a step has no confidence and `missing` is None. The stated overall confidence is
      `parse_multistep(text).overall`.
    """
    if missing is not None and not 0.0 <= float(missing) <= 1.0:
        raise ValueError(f"missing must lie in [0, 1] (or be None), got {missing}")
    steps = parse_multistep(text).steps
    if not steps or (missing is None and None in steps):
        return None
    return float(math.prod(missing if c is None else c for c in steps))


# ----------------------------------------------------------------------------- Avg-Conf


def _check_answers(name: str, answers: Sequence[Any]) -> list[Any]:
    if isinstance(answers, str | bytes) or not isinstance(answers, Sequence):
        raise ValueError(f"{name}: expected a sequence of answers (wrap a single one in a list)")
    answers = list(answers)
    if not answers:
        raise ValueError(f"{name}: no samples")
    bad = [a for a in answers if a is not None and not isinstance(a, Hashable)]
    if bad:
        raise ValueError(f"{name}: answers must be hashable (strings) or None, got {bad[0]!r}")
    return answers


def _check_confidences(name: str, confidences: Sequence[float], k: int) -> np.ndarray:
    if isinstance(confidences, str | bytes):
        raise ValueError(f"{name}: confidences must be numbers in [0, 1]")
    confidences = list(confidences)
    if len(confidences) != k:
        raise ValueError(f"{name}: {k} answers but {len(confidences)} confidences")
    if any(c is None or isinstance(c, bool | str) for c in confidences):
        raise ValueError(f"{name}: confidences must be numbers in [0, 1] (drop or fill None)")
    c = np.asarray(confidences, dtype=np.float64)
    if c.ndim != 1 or not np.all(np.isfinite(c)) or np.any(c < 0) or np.any(c > 1):
        raise ValueError(f"{name}: confidences must be numbers in [0, 1], got {confidences}")
    return c


def _same(a: Any, b: Any, equivalent: Equivalent | None) -> bool:
    return a is not None and b is not None and (equivalent(a, b) if equivalent else a == b)


def _ranked(scores: dict[Any, float]) -> dict[Any, float]:
    """By decreasing score; ties keep their order of first appearance."""
    return dict(sorted(scores.items(), key=lambda kv: -kv[1]))


def _avg_conf_weights(name, answers, confidences):
    answers = _check_answers(name, answers)
    c = _check_confidences(name, confidences, len(answers))
    return answers, (c if c.sum() > 0 else np.ones_like(c))


def avg_conf(
    answers: Sequence[Any],
    confidences: Sequence[float],
    target: Any,
    *,
    equivalent: Equivalent | None = None,
) -> float:
    """Avg-Conf (Xiong et al. 2024): the confidence-weighted share of samples agreeing with the
    target, sum_i 1[a_i = target] c_i / sum_i c_i.

    Every sample counts in the denominator, unparsable answers (None) included (as in the
    authors' code). When every confidence is 0 the ratio is 0/0 (NaN in the authors' code); the
    weights are then taken equal, which gives the consistency (share of agreeing samples): the
    value Avg-Conf takes for any set of equal confidences, so the formula's scale invariance is
    kept.

    Args:
      answers: [k] sampled answers (None = unparsable: never agrees).
      confidences: [k] their verbalized confidences, probabilities in [0, 1].
      target: the answer to score (e.g. the greedy answer; None scores 0.0).
      equivalent: (a, b) -> bool answer equivalence (default ==).
    Returns:
      the target's score in [0, 1].
    """
    answers, w = _avg_conf_weights("avg_conf", answers, confidences)
    same = np.array([_same(a, target, equivalent) for a in answers])
    return float(w[same].sum() / w.sum())


def avg_conf_scores(
    answers: Sequence[Any],
    confidences: Sequence[float],
    *,
    equivalent: Equivalent | None = None,
) -> dict[Any, float]:
    """Avg-Conf of every distinct answer (`avg_conf` with each as the target).

    Returns:
      {answer: score} over the distinct parsable answers (the first of each equivalence class),
      highest first, ties in order of first appearance: the first key is the aggregated answer.
      The scores sum to 1 minus the weight of the unparsable answers.
    """
    answers, w = _avg_conf_weights("avg_conf", answers, confidences)
    labels = np.array(_clusters(answers, equivalent))
    scores, done = {}, set()
    for a, label in zip(answers, labels, strict=True):
        if a is not None and label not in done:
            done.add(label)
            scores[a] = float(w[labels == label].sum() / w.sum())
    return _ranked(scores)


# ----------------------------------------------------------------------------- Pair-Rank


def pair_rank_counts(
    rankings: Sequence[Sequence[Any]], *, equivalent: Equivalent | None = None
) -> tuple[list[Any], np.ndarray]:
    """The distinct answers of k top-K lists and their pairwise orderings.

    counts[u, v] is the number of lists in which answer u comes before answer v, where an answer
    missing from a list comes after every answer in it (the authors' rank matrix times k). Within
    a list, None (unparsable) guesses are dropped and repeats of an answer ignored.

    Returns:
      (options [n] in order of first appearance, counts [n, n] float64 with a zero diagonal).
    """
    if isinstance(rankings, str | bytes) or not isinstance(rankings, Sequence):
        raise ValueError("pair_rank: rankings must be a sequence of top-K lists")
    rankings = [_check_ranking(r) for r in rankings]
    if not rankings:
        raise ValueError("pair_rank: no samples")
    flat = [a for r in rankings for a in r if a is not None]
    labels = _clusters(flat, equivalent)
    options, index = [], {}
    for a, lab in zip(flat, labels, strict=True):
        if lab not in index:
            index[lab] = len(options)
            options.append(a)
    counts = np.zeros((len(options), len(options)))
    pos = 0
    for r in rankings:
        seen: list[int] = []
        for a in r:
            if a is None:
                continue
            u = index[labels[pos]]
            pos += 1
            if u in seen:
                continue
            seen.append(u)
            below = np.ones(len(options), bool)
            below[seen] = False
            counts[u, below] += 1.0
    return options, counts


def _check_ranking(r: Any) -> list[Any]:
    if isinstance(r, str | bytes) or not isinstance(r, Sequence):
        raise ValueError(f"pair_rank: each ranking must be a list of answers, got {r!r}")
    r = list(r)
    bad = [a for a in r if a is not None and not isinstance(a, Hashable)]
    if bad:
        raise ValueError(f"pair_rank: answers must be hashable (strings) or None, got {bad[0]!r}")
    return r


def _pair_rank_nll(w: jax.Array, counts: jax.Array) -> jax.Array:
    """-sum_{u,v} counts[u, v] log(p_u / (p_u + p_v)) with p = softmax(w); the ratio equals
    sigmoid(w_u - w_v), the softmax normaliser cancelling, so that form is used (stable)."""
    return -jnp.sum(counts * jax.nn.log_sigmoid(w[:, None] - w[None, :]))


@jax.jit
def _pair_rank_steps(counts: jax.Array, mask: jax.Array, lr: jax.Array, steps: jax.Array):
    grad = jax.grad(_pair_rank_nll)
    w = jax.lax.fori_loop(0, steps, lambda _, w: w - lr * grad(w, counts), jnp.zeros(mask.shape))
    return jax.nn.softmax(jnp.where(mask, w, -jnp.inf))


def pair_rank_fit(counts: np.ndarray, *, steps: int = 1000) -> np.ndarray:
    """The categorical distribution p over n answers that minimises the Pair-Rank negative
    log-likelihood -sum_{u,v} counts[u, v] log(p_u / (p_u + p_v)), s.t. sum p = 1.

    Softmax parameterisation p = softmax(w), from w = 0 (uniform), `steps` steps of gradient
    descent with step size 1 / L, L = max_u sum_v (counts[u, v] + counts[v, u]) / 2 (a bound on
    the Hessian's largest eigenvalue, so every step decreases the loss; the loss is convex in w).
    When the data put an answer above every other in every comparison, the optimum is at the
    simplex's boundary and the result approaches it as `steps` grows.

    Args:
      counts: [n, n] non-negative pairwise counts (`pair_rank_counts`).
      steps: number of gradient steps.
    Returns:
      [n] float64 probabilities (uniform when there is no comparison).
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"counts must be a square [n, n] matrix, got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError("counts must be finite and non-negative")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    n = counts.shape[0]
    counts = counts * (1 - np.eye(n))
    lipschitz = (counts + counts.T).sum(1).max(initial=0.0) / 2
    if n <= 1 or lipschitz == 0:
        return np.full(n, 1.0 / n) if n else np.zeros(0)
    size = max(4, 1 << (n - 1).bit_length())  # pad to a power of two: few compilations
    padded = np.zeros((size, size), np.float32)
    padded[:n, :n] = counts / lipschitz  # scaled so the step size is 1
    mask = np.arange(size) < n
    p = _pair_rank_steps(jnp.asarray(padded), jnp.asarray(mask), jnp.float32(1.0), steps)
    p = np.asarray(p, dtype=np.float64)[:n]
    return p / p.sum()


def pair_rank(
    rankings: Sequence[Sequence[Any]],
    target: Any,
    *,
    equivalent: Equivalent | None = None,
    steps: int = 1000,
) -> float:
    """Pair-Rank (Xiong et al. 2024): the probability of the target under the categorical
    distribution over answers that maximises the likelihood of the pairwise orderings seen in k
    sampled top-K lists (`pair_rank_counts`, `pair_rank_fit`).

    Args:
      rankings: [k] top-K lists of answers, most likely first (e.g. the guesses of
        `introspect.data.prompts.parse_top_k`); None entries are unparsable guesses.
      target: the answer to score (None, or an answer in no list, scores 0.0).
      equivalent: (a, b) -> bool answer equivalence (default ==).
      steps: gradient steps of the fit.
    Returns:
      the target's probability in [0, 1].
    """
    for a, q in pair_rank_scores(rankings, equivalent=equivalent, steps=steps).items():
        if _same(target, a, equivalent):
            return q
    return 0.0


def pair_rank_scores(
    rankings: Sequence[Sequence[Any]],
    *,
    equivalent: Equivalent | None = None,
    steps: int = 1000,
) -> dict[Any, float]:
    """The Pair-Rank distribution over every answer in the lists (see `pair_rank`).

    Returns:
      {answer: probability} (the first of each equivalence class), highest first, ties in order
      of first appearance: the first key is the aggregated answer; {} when every guess is None.
    """
    options, counts = pair_rank_counts(rankings, equivalent=equivalent)
    p = pair_rank_fit(counts, steps=steps)
    return _ranked({a: float(q) for a, q in zip(options, p, strict=True)})
