"""Semantic-entropy probes (SEP; Kossen et al. 2024, arXiv 2406.15927).

A linear probe on one position's hidden states predicts whether the semantic entropy of the
model's sampled answers is high, so the uncertainty of k samples costs one forward pass at test
time. No correctness labels are needed: the targets are the binarised semantic entropies of a
training split.

    se = -signals.semantic.semantic_entropy(...)            # or any [n] semantic entropies
    fit = probes.fit_sep(features_tbg, se, workdir=...)     # features [n, d] at TBG or SLT
    conf = probes.sep_confidence(fit, test_features)        # 1 - P(high SE), higher = confident

Positions (the paper's two): TBG, the token before generation (`select_positions(
"last_prompt", ...)`, or `generation_features(gen, step=0)`), and SLT, the second-last token
of the generation, i.e. the last answer token before the end-of-sequence token
(`select_positions("last", ...)` on a sequence that stops before that token).

Faithful to the authors' notebook (OATML/semantic-entropy-probes, `train-latent-probe.ipynb`):
the threshold is the best of 100 evenly spaced candidates in [1e-10, max SE] minimising the
summed squared error of the two groups around their means ("best split"), and the probe is a
scikit-learn-default logistic regression (L2 with C = 1 on the weights, unweighted classes, raw
features). Deviation: an entropy equal to the threshold is labelled high (1), as in the split
search; the notebook labels it -1 (it then reaches the classifier as a third class).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from introspect.probes.training import ProbeFit, fit_probe, predict


def _entropies(entropy) -> np.ndarray:
    e = np.asarray(entropy, np.float64)
    if e.ndim != 1 or e.size < 2:
        raise ValueError(f"semantic entropies must be [n] with n >= 2, got shape {e.shape}")
    if not np.all(np.isfinite(e)) or np.any(e < 0):
        raise ValueError("semantic entropies must be finite and >= 0")
    return e


def best_split(entropy, *, num_splits: int = 100) -> float:
    """The threshold (of `num_splits` evenly spaced in [1e-10, max]) that minimises the summed
    squared error of the low (< t) and high (>= t) groups around their own means."""
    e = _entropies(entropy)
    if num_splits < 2:
        raise ValueError(f"num_splits must be >= 2, got {num_splits}")
    if e.max() <= 1e-10:
        raise ValueError("every semantic entropy is 0: nothing to split (all samples agree)")
    splits = np.linspace(1e-10, e.max(), num_splits)
    high = e[None, :] >= splits[:, None]  # [splits, n]
    low = ~high

    def sse(group):
        count = group.sum(1)
        mean = np.where(group, e, 0.0).sum(1) / np.maximum(count, 1)
        return np.where(group, (e[None, :] - mean[:, None]) ** 2, 0.0).sum(1)

    return float(splits[int(np.argmin(sse(low) + sse(high)))])


def sep_labels(entropy, threshold: float | None = None) -> tuple[np.ndarray, float]:
    """(labels [n] float32: 1 = high semantic entropy, threshold): `best_split` unless given."""
    e = _entropies(entropy)
    t = best_split(e) if threshold is None else float(threshold)
    return (e >= t).astype(np.float32), t


def sep_train_config(num_steps: int = 1000, lr: float = 0.1):
    """Full-batch training-loop fields for `fit_sep` (`introspect.train.default_config()`)."""
    from introspect import train

    cfg = train.default_config()
    cfg.num_steps = num_steps
    cfg.batch_size = 0  # set to n by fit_sep (full batch, as L-BFGS sees it)
    cfg.optimizer.lr = lr
    cfg.schedule.name = "cosine"
    cfg.log_every = num_steps
    cfg.checkpoint.every_steps = 0
    cfg.progress = False
    cfg.tensorboard = False
    return cfg


def fit_sep(
    features,
    semantic_entropy,
    *,
    workdir: str,
    threshold: float | None = None,
    c: float = 1.0,
    standardize: bool = False,
    train_config=None,
    meta: Mapping | None = None,
) -> ProbeFit:
    """Train a semantic-entropy probe (logistic regression on binarised SE).

    Args:
      features: [n, d] hidden states at one position (TBG or SLT) of the training split.
      semantic_entropy: [n] semantic entropies of the same questions' samples.
      workdir: the training loop's workdir.
      threshold: binarisation threshold (default `best_split`).
      c: scikit-learn's inverse L2 strength (the paper: the default 1.0).
      standardize: standardise features first (the paper: no).
      train_config: training-loop fields (default `sep_train_config()`, full batch).
      meta: extra JSON kept in the probe's spec.
    Returns:
      ProbeFit whose spec["meta"] holds "sep_threshold" and the label balance.
    Raises:
      ValueError: shapes disagree, or the binarised targets have one class only.
    """
    x = np.asarray(features, np.float32)
    labels, t = sep_labels(semantic_entropy, threshold)
    if x.ndim != 2 or x.shape[0] != labels.shape[0]:
        raise ValueError(
            f"features must be [n, d] with n = {labels.shape[0]} (one row per entropy), "
            f"got shape {x.shape}"
        )
    n1 = int(labels.sum())
    if n1 in (0, labels.size):
        raise ValueError(
            f"every binarised semantic entropy is {int(labels[0])} at threshold {t:.4g}: a "
            "probe needs both low- and high-entropy questions"
        )
    if not c > 0:
        raise ValueError(f"c must be > 0, got {c}")
    cfg = train_config if train_config is not None else sep_train_config()
    if not cfg.batch_size:
        cfg = cfg.copy_and_resolve_references()
        cfg.batch_size = int(labels.size)
    probe = {
        "name": "logistic",
        "standardize": bool(standardize),
        "class_balanced": False,
        "l2": 1.0 / (c * labels.size),
    }
    info = {"sep_threshold": t, "num_high": n1, "num": int(labels.size), **dict(meta or {})}
    return fit_probe(probe, cfg, {"features": x, "label": labels}, workdir=workdir, meta=info)


def sep_confidence(fit: ProbeFit, features) -> np.ndarray:
    """[n] 1 - P(high semantic entropy) of a fitted SEP (higher = more confident)."""
    return 1.0 - predict(fit.model, fit.variables, np.asarray(features, np.float32))
