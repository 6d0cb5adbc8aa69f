"""FineCE: fine-grained confidence during generation (Han et al. 2025, "Mind the Generation Process:
Fine-Grained Confidence Estimation During LLM Generation", arXiv 2508.12040;
code: github.com/JinyiHan99/FineCE).

An estimator of P(the final answer will be correct | the text so far) at chosen positions of a
response, trained on Monte-Carlo soft labels, plus Backward Confidence Integration (BCI), which
mixes in the estimates of later text.

    data = heads.build_fine_ce_data(lm, prompts, answers, grade_fn, num_samples=8)
    fit = heads.fit_fine_ce(data.features, data.labels, workdir=...)
    conf = heads.fine_ce_confidence(fit, features)           # [n] P(correct | prefix)
    conf_bci = heads.backward_confidence_integration(conf_by_position, mask=...)

Training data (the paper's pipeline): for each answer and each chosen prefix length p (answer
tokens kept), M completions are sampled from prompt + answer[:p]; the soft label is the fraction of
completions graded correct, label(p) = (1 / M) sum_m 1[grade(answer[:p] + completion_m)]. Positions:
fractions of the answer (`prefix_positions`), paragraph ends (`paragraph_end_positions`, the
paper's "paragraph-end" strategy) or high-entropy tokens (`entropy_positions`, its "entropy-based"
strategy; "periodic" is `prefix_positions(..., every=k)`). Completions continue the prefilled full
sequence with `lm.generate(prefix=...)` (KV reuse), so M x positions rows cost one prefill.

Deviations: (1) the paper fine-tunes the LLM to state the confidence in text; here a probe
(`probes.fit_probe`, soft-label BCE) reads the hidden state of the prefix's last token, the
house's way of learning P(correct) from states. (2) The BCI formula is not in the authors'
public code and the paper's text was not available to us; this is our documented version:

    c~_t = (1 - w) c_t + w * sum_{j=1..k} d^(j-1) m_{t+j} c_{t+j} / sum_{j=1..k} d^(j-1) m_{t+j}

over the next k valid estimates (m = mask), c~_t = c_t when none follows. Defaults w = 0.5,
k = 1, d = 1.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from introspect.heads import _common as C

# ----------------------------------------------------------------------------------------------
# Positions and labels (pure)
# ----------------------------------------------------------------------------------------------


def prefix_positions(
    answer_len: int,
    *,
    fractions: Sequence[float] = (0.0, 0.25, 0.5, 0.75),
    every: int | None = None,
) -> np.ndarray:
    """Prefix lengths (answer tokens kept) at which to estimate confidence.

    Args:
      answer_len: tokens in the answer (>= 1).
      fractions: keep floor(f * answer_len) tokens for each f in [0, 1) (0 = the question alone).
      every: if given, every k-th length 0, k, 2k, ... < answer_len instead (the "periodic"
        strategy).
    Returns:
      sorted unique int64 lengths in [0, answer_len).
    """
    if not isinstance(answer_len, int | np.integer) or answer_len < 1:
        raise ValueError(f"answer_len must be a positive int, got {answer_len!r}")
    if every is not None:
        if not isinstance(every, int | np.integer) or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}")
        return np.arange(0, answer_len, every, dtype=np.int64)
    f = np.asarray(fractions, np.float64).reshape(-1)
    if f.size == 0 or np.any((f < 0) | (f >= 1)) or not np.all(np.isfinite(f)):
        raise ValueError(f"fractions must be a non-empty list of values in [0, 1), got {fractions}")
    return np.unique(np.floor(f * answer_len).astype(np.int64))


def paragraph_end_positions(tokenizer, answer_ids: Sequence[int], *, cue: str = "\n") -> np.ndarray:
    """Prefix lengths right after each token that completes `cue` (default a newline: the end of
    a paragraph or step), excluding the full answer; 0 (the question alone) is always included."""
    from introspect.probes import cue_positions

    ends = cue_positions(tokenizer, list(answer_ids), (cue,)) + 1
    return np.unique(np.concatenate([[0], ends[ends < len(answer_ids)]])).astype(np.int64)


def entropy_positions(entropy: Any, *, threshold: float) -> np.ndarray:
    """Prefix lengths t whose next token (answer token t) was drawn with entropy >= threshold
    (the "entropy-based" strategy): the estimate is taken just before the uncertain token.

    Args:
      entropy: [answer_len] entropies of the answer tokens' distributions (e.g.
        `lm.generate(..., return_stats=True).stats["entropy"]`).
      threshold: entropy threshold (nats).
    """
    e = C.as_1d(entropy, "entropy")
    return np.flatnonzero(e >= float(threshold)).astype(np.int64)


def soft_labels(correct: Any, *, mask: Any = None) -> np.ndarray:
    """[n] fraction of correct completions: mean over the last axis of `correct` [n, M] (values
    in [0, 1]) under `mask` [n, M]; ValueError for a row with no valid completion."""
    c = np.asarray(correct, np.float64)
    if c.ndim != 2:
        raise ValueError(f"correct must be [n, num_samples], got shape {c.shape}")
    C.check_unit(c, "correct")
    m = np.ones_like(c, bool) if mask is None else np.asarray(mask, bool)
    if m.shape != c.shape:
        raise ValueError(f"mask must have the shape of correct {c.shape}, got {m.shape}")
    count = m.sum(-1)
    if np.any(count == 0):
        raise ValueError(f"rows {np.flatnonzero(count == 0)[:5].tolist()} have no valid sample")
    return (np.where(m, c, 0.0).sum(-1) / count).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Backward Confidence Integration (pure jnp)
# ----------------------------------------------------------------------------------------------


def backward_confidence_integration(
    confidence: Any,
    *,
    mask: Any = None,
    weight: float = 0.5,
    depth: int = 1,
    decay: float = 1.0,
) -> jax.Array:
    """BCI: mix each position's estimate with the estimates of the text that follows it.

    Args:
      confidence: [n, T] estimates at successive positions of each response (position t is
        earlier than t + 1), in [0, 1].
      mask: optional [n, T] bool, False = no estimate (padding); masked entries are returned as
        they are.
      weight: w in [0, 1], the share of the later estimates (0 = no integration).
      depth: k >= 1, how many later positions are mixed in.
      decay: d in (0, 1], the relative weight of the j-th later estimate is d^(j - 1).
    Returns:
      [n, T] integrated estimates (see the module docstring for the formula).
    """
    c = jnp.asarray(confidence)
    if c.ndim != 2:
        raise ValueError(f"confidence must be [n, T], got shape {c.shape}")
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive int, got {depth!r}")
    weight = C.check_fraction(weight, "weight")
    decay = C.check_fraction(decay, "decay", low_open=True)
    m = jnp.ones(c.shape, bool) if mask is None else jnp.asarray(mask, bool)
    if m.shape != c.shape:
        raise ValueError(f"mask must have the shape of confidence {c.shape}, got {m.shape}")
    if not isinstance(c, jax.core.Tracer) and c.size:
        C.check_unit(np.asarray(np.where(np.asarray(m), np.asarray(c), 0.5)), "confidence")
    c = c if jnp.issubdtype(c.dtype, jnp.floating) else c.astype(jnp.float32)
    return _bci(c, m, jnp.asarray(weight, c.dtype), jnp.asarray(decay, c.dtype), depth)


@functools.partial(jax.jit, static_argnames=("depth",))
def _bci(c: jax.Array, m: jax.Array, weight: jax.Array, decay: jax.Array, depth: int):
    num = jnp.zeros_like(c)
    den = jnp.zeros_like(c)
    for j in range(1, min(depth, c.shape[1] - 1) + 1):
        shifted_c = jnp.pad(c[:, j:], ((0, 0), (0, j)))
        shifted_m = jnp.pad(m[:, j:], ((0, 0), (0, j)))
        w_j = decay ** (j - 1) * shifted_m.astype(c.dtype)
        num = num + w_j * shifted_c
        den = den + w_j
    later = num / jnp.where(den > 0, den, 1.0)
    mixed = (1.0 - weight) * c + weight * later
    return jnp.where(m & (den > 0), mixed, c)


# ----------------------------------------------------------------------------------------------
# Training data from an LM (Monte-Carlo completions of prefixes)
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class FineCEData:
    """Rows = (answer, prefix length) pairs.

    features: [rows, len(layers) * hidden] hidden state of the prefix's last token.
    labels: [rows] fraction of the `num_samples` completions graded correct (soft label).
    example: [rows] index of the answer; prefix_len: [rows] answer tokens in the prefix.
    num_correct: [rows] correct completions; num_samples: M.
    completions: per row the M completion texts (only with keep_texts=True).
    """

    features: np.ndarray
    labels: np.ndarray
    example: np.ndarray
    prefix_len: np.ndarray
    num_correct: np.ndarray
    num_samples: int
    completions: list[list[str]] | None = None


def build_fine_ce_data(
    lm,
    prompts: Sequence[Sequence[int]],
    answers: Sequence[Sequence[int]],
    grade_fn: Callable[[int, str], Any],
    *,
    positions: Sequence[Sequence[int]] | None = None,
    fractions: Sequence[float] = (0.0, 0.25, 0.5, 0.75),
    num_samples: int = 8,
    max_new_tokens: int = 128,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    layers: Sequence[int] = (-1,),
    chunk_size: int = 16,
    batch_size: int = 32,
    keep_texts: bool = False,
) -> FineCEData:
    """FineCE training rows: sample `num_samples` completions of each answer prefix and grade them.

    Args:
      lm: an `introspect.models.LM`.
      prompts: per example the prompt token ids (chat template applied).
      answers: per example the answer token ids the model generated (a trailing end-of-sequence
        token may be kept: prefixes never include the whole answer).
      grade_fn: (example index, full response text = decoded answer[:p] + completion) ->
        correct (bool or a value in [0, 1]).
      positions: per example the prefix lengths (in [0, len(answer))); default
        `prefix_positions(len(answer), fractions=fractions)`.
      num_samples: M completions per prefix.
      max_new_tokens, temperature, top_p, top_k, seed: sampling of the completions.
      layers: hidden-state indices for the features (concatenated).
      chunk_size: examples prefilled per generate call; batch_size: rows per compiled call.
      keep_texts: keep the completion texts.
    Returns:
      FineCEData.
    """
    from introspect import probes

    if len(prompts) != len(answers) or not prompts:
        raise ValueError(
            f"need as many prompts as answers (>= 1), got {len(prompts)} and {len(answers)}"
        )
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 to sample completions, got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    prompts = lm.check_ids(prompts, "prompts")
    answers = [list(map(int, a)) for a in answers]
    if positions is not None and len(positions) != len(answers):
        raise ValueError(f"positions must list prefix lengths for all {len(answers)} answers")
    pos: list[np.ndarray] = []
    for i, a in enumerate(answers):
        if not a:
            raise ValueError(f"answers[{i}] is empty")
        if positions is None:
            p = prefix_positions(len(a), fractions=fractions)
        else:
            p = np.asarray(positions[i], np.int64).reshape(-1)
            if p.size == 0 or p.min() < 0 or p.max() >= len(a):
                raise ValueError(
                    f"positions[{i}] must be non-empty prefix lengths in [0, {len(a)}), got "
                    f"{p.tolist()}"
                )
        pos.append(p)
    use_prefix = lm.config.sliding_window is None
    tok = lm.tokenizer
    feats, labels, ex, plen, ncorrect, texts = [], [], [], [], [], []
    for lo in range(0, len(answers), chunk_size):
        idx = list(range(lo, min(lo + chunk_size, len(answers))))
        seqs = [prompts[i] + answers[i] for i in idx]
        rows = [(r, i, int(p)) for r, i in enumerate(idx) for p in pos[i]]
        gen_prompts, keep, prefix_rows = [], [], []
        for r, i, p in rows:
            k = len(prompts[i]) + p - 1  # tokens kept before the prefix's last token
            for _ in range(num_samples):
                if use_prefix:
                    gen_prompts.append([seqs[r][k]])
                    keep.append(k)
                    prefix_rows.append(r)
                else:
                    gen_prompts.append(seqs[r][: k + 1])
        kwargs: dict[str, Any] = {}
        if use_prefix:
            kwargs = dict(prefix=lm.prefill(seqs), prefix_rows=prefix_rows, prefix_keep=keep)
        gen = lm.generate(
            gen_prompts,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed + lo * 1_000_003,
            batch_size=batch_size,
            progress=False,
            **kwargs,
        )
        hs = probes.extract_forward(
            lm,
            seqs,
            [[len(prompts[i]) + int(p) - 1 for p in pos[i]] for i in idx],
            layers=list(layers),
            batch_size=batch_size,
        )
        row_feats = np.concatenate(hs, axis=0)
        for j, (_, i, p) in enumerate(rows):
            outs = gen.tokens[j * num_samples : (j + 1) * num_samples]
            head = answers[i][:p]
            responses = [tok.decode(head + list(o), skip_special_tokens=True) for o in outs]
            grades = np.asarray([float(grade_fn(i, t)) for t in responses], np.float64)
            if np.any((grades < 0) | (grades > 1)) or not np.all(np.isfinite(grades)):
                raise ValueError(f"grade_fn must return a bool or a value in [0, 1], got {grades}")
            labels.append(grades.mean())
            ncorrect.append(int(np.sum(grades >= 0.5)))
            ex.append(i)
            plen.append(p)
            if keep_texts:
                texts.append([tok.decode(list(o), skip_special_tokens=True) for o in outs])
        feats.append(row_feats)
    return FineCEData(
        features=np.concatenate(feats, axis=0).astype(np.float32),
        labels=np.asarray(labels, np.float32),
        example=np.asarray(ex, np.int64),
        prefix_len=np.asarray(plen, np.int64),
        num_correct=np.asarray(ncorrect, np.int64),
        num_samples=num_samples,
        completions=texts if keep_texts else None,
    )


# ----------------------------------------------------------------------------------------------
# The estimator (a probe trained on soft labels through probes.fit_probe)
# ----------------------------------------------------------------------------------------------


def fit_fine_ce(
    features: Any,
    labels: Any,
    *,
    workdir: str,
    probe_config: Mapping[str, Any] | None = None,
    train_config=None,
    val_features: Any = None,
    val_labels: Any = None,
    meta: Mapping[str, Any] | None = None,
):
    """Train the prefix-confidence estimator: a probe on [n, d] prefix states with soft labels
    [n] in [0, 1] (soft-label BCE, no class balancing), through `probes.fit_probe`.

    probe_config: overrides of `probes.default_probe_config()` (default: an MLP with hidden (64,),
    standardised inputs); train_config: the loop's fields (default: `_common.head_train_config`,
    full batch). Returns a `probes.ProbeFit`.
    """
    from introspect import probes

    x = C.as_2d(features, "features")
    y = C.check_unit(C.as_1d(labels, "labels", dtype=np.float32, n=x.shape[0]), "labels")
    probe = {"name": "mlp", "hidden": (64,), "class_balanced": False, "loss": {"name": "bce"}}
    probe.update(dict(probe_config or {}))
    if probe.get("class_balanced"):
        raise ValueError("FineCE labels are soft: class_balanced must be False")
    cfg = C.full_batch(train_config, x.shape[0], C.head_train_config)
    val = None
    if val_features is not None:
        vx = C.as_2d(val_features, "val_features", n=None)
        vy = C.as_1d(val_labels, "val_labels", dtype=np.float32, n=vx.shape[0])
        val = {"features": vx, "label": vy}
    return probes.fit_probe(
        probe,
        cfg,
        {"features": x, "label": y},
        workdir=workdir,
        val_source=val,
        meta={"head": "fine_ce", **dict(meta or {})},
    )


def fine_ce_confidence(fit, features: Any) -> np.ndarray:
    """[n] estimated P(correct | prefix) of a fitted FineCE probe."""
    from introspect import probes

    return probes.predict(fit.model, fit.variables, C.as_2d(features, "features"))
