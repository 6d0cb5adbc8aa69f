"""Generalized Correctness Models (GCM; "Generalized Correctness Models: Learning Calibrated and
Model-Agnostic Correctness Predictors from Historical Patterns", Sep 2025).

A correctness model trained on a target model's history of (question, answer, correct) records,
with post-hoc calibration on top. It is model-agnostic: the features come from any encoder's
hidden states of the question + answer *text*, so the encoder (model A) can score answers that
another model (B) wrote, and a GCM can be trained on the histories of several models.

    x = heads.gcm_features(encoder_lm, questions, answers)          # [n, d], any LM or Encoder
    gcm = heads.fit_gcm(x, correct, workdir=..., calibration="platt")
    p = heads.gcm_confidence(gcm, heads.gcm_features(encoder_lm, q_new, a_new))

P(correct) = calibrator(probe(features(question, answer))). The probe is trained with
`probes.fit_probe` (class-balanced BCE by default); the calibrator (`introspect.calibrators`:
"platt" or "temperature" on the probe's logit, "isotonic" or "histogram_binning" on its
probability) is fit on a held-out calibration split (default: 25% of the history).

Deviation: the paper fine-tunes an LLM (Qwen3-8B) to answer "is this answer correct?"; here the
encoder is frozen and a probe reads its pooled hidden states (the same inputs and target, a
cheaper learner). The text template is ours.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from introspect.heads import _common as C

DEFAULT_TEMPLATE = "Question: {question}\nAnswer: {answer}"
POOLINGS = ("mean", "last")
CALIBRATIONS = ("platt", "temperature", "isotonic", "histogram_binning")
_ON_LOGITS = ("platt", "temperature")


def gcm_texts(
    questions: Sequence[str], answers: Sequence[str], *, template: str = DEFAULT_TEMPLATE
) -> list[str]:
    """The texts a GCM reads: `template` filled with each (question, answer)."""
    if len(questions) != len(answers) or not questions:
        raise ValueError(
            f"need as many questions as answers (>= 1), got {len(questions)} and {len(answers)}"
        )
    if "{answer}" not in template:
        raise ValueError("template must contain '{answer}'")
    return [template.format(question=q, answer=a) for q, a in zip(questions, answers, strict=True)]


def gcm_features(
    model,
    questions: Sequence[str],
    answers: Sequence[str],
    *,
    layers: Sequence[int] = (-1,),
    pooling: str = "mean",
    template: str = DEFAULT_TEMPLATE,
    batch_size: int = 32,
) -> np.ndarray:
    """Features [n, d] of (question, answer) texts from any encoder.

    Args:
      model: an `introspect.models.LM` (hidden states of `layers` from `lm.forward`, pooled over
        the text's tokens) or any object with `encode(list[str]) -> [n, d]` (e.g.
        `introspect.models.Encoder`, whose own pooling applies).
      questions, answers: the records' texts (answers written by any model).
      layers: hidden-state indices (LM only), concatenated.
      pooling: "mean" over all tokens or "last" token (LM only).
      template: how a record is rendered (see `gcm_texts`).
      batch_size: texts per forward call (LM only).
    Returns:
      float32 [n, d].
    """
    texts = gcm_texts(questions, answers, template=template)
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if not hasattr(model, "forward") and hasattr(model, "encode"):
        return C.as_2d(model.encode(texts), "encoder output")
    from introspect import probes

    ids = [model.tokenizer.encode(t, add_special_tokens=True) for t in texts]
    for i, s in enumerate(ids):
        if not s:
            raise ValueError(f"record {i} encodes to no tokens")
    positions = [np.arange(len(s)) if pooling == "mean" else [len(s) - 1] for s in ids]
    hs = probes.extract_forward(model, ids, positions, layers=list(layers), batch_size=batch_size)
    return np.stack([h.mean(0) for h in hs]).astype(np.float32)


@dataclasses.dataclass
class GCMFit:
    """probe: the `probes.ProbeFit`; calibration: the calibrator's name (or None) and params;
    spec: JSON description (sizes, calibration split)."""

    probe: Any
    calibration: str | None
    calibrator: Any
    spec: dict


def _probe_scores(probe, x: np.ndarray, calibration: str | None) -> np.ndarray:
    from introspect import probes

    p = probes.predict(probe.model, probe.variables, x)
    return C.logit(p) if calibration in _ON_LOGITS else np.asarray(p, np.float64)


def fit_gcm(
    features: Any,
    correct: Any,
    *,
    workdir: str,
    calibration: str | None = "platt",
    calibration_features: Any = None,
    calibration_correct: Any = None,
    calibration_fraction: float = 0.25,
    seed: int = 0,
    probe_config: Mapping[str, Any] | None = None,
    train_config=None,
    meta: Mapping[str, Any] | None = None,
) -> GCMFit:
    """Train a correctness model on historical records and calibrate it post hoc.

    Args:
      features: [n, d] `gcm_features` of the history's (question, answer) records.
      correct: [n] 1 = the answer was correct, 0 = wrong.
      workdir: the training loop's workdir.
      calibration: one of CALIBRATIONS, or None for the raw probe.
      calibration_features, calibration_correct: a held-out calibration set; default: a random
        `calibration_fraction` of the history (seeded by `seed`), not used to train the probe.
      probe_config: overrides of `probes.default_probe_config()` (default: logistic, class
        balanced); train_config: the loop's fields (default full batch).
    Returns:
      GCMFit.
    """
    from introspect import calibrators, probes

    x = C.as_2d(features, "features")
    y = C.as_1d(correct, "correct", dtype=np.float32, n=x.shape[0])
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("correct must hold 0/1 labels")
    if calibration is not None and calibration not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {CALIBRATIONS} or None, got {calibration!r}")
    cx = cy = None
    train_idx = np.arange(x.shape[0])
    if calibration is not None:
        if calibration_features is None:
            frac = C.check_fraction(calibration_fraction, "calibration_fraction", low_open=True)
            perm = np.random.default_rng(seed).permutation(x.shape[0])
            k = int(round(frac * x.shape[0]))
            if k < 2 or x.shape[0] - k < 2:
                raise ValueError(
                    f"{x.shape[0]} records are too few to split off a calibration set "
                    f"(fraction {frac}); pass calibration_features/calibration_correct"
                )
            train_idx, cal_idx = np.sort(perm[k:]), np.sort(perm[:k])
            cx, cy = x[cal_idx], y[cal_idx]
        else:
            cx = C.as_2d(calibration_features, "calibration_features")
            if cx.shape[1] != x.shape[1]:
                raise ValueError(
                    f"calibration_features have {cx.shape[1]} features, features {x.shape[1]}"
                )
            cy = C.as_1d(calibration_correct, "calibration_correct", dtype=np.float32,
                         n=cx.shape[0])  # fmt: skip
            if not np.all((cy == 0) | (cy == 1)):
                raise ValueError("calibration_correct must hold 0/1 labels")
    ty = y[train_idx]
    if ty.min() == ty.max():
        raise ValueError("the training history needs both correct and wrong answers")
    probe = {"name": "logistic", "class_balanced": True, "l2": 1e-3}
    probe.update(dict(probe_config or {}))
    cfg = C.full_batch(train_config, train_idx.size, C.head_train_config)
    fit = probes.fit_probe(
        probe, cfg, {"features": x[train_idx], "label": ty}, workdir=workdir,
        meta={"head": "gcm", **dict(meta or {})},
    )  # fmt: skip
    params = None
    if calibration is not None:
        fit_cal, _ = calibrators.CALIBRATORS[calibration]
        params = fit_cal(_probe_scores(fit, cx, calibration), cy.astype(np.int32))
    spec = {
        "calibration": calibration,
        "num_train": int(train_idx.size),
        "num_calibration": 0 if cy is None else int(cy.size),
        "input_dim": int(x.shape[1]),
    }
    return GCMFit(probe=fit, calibration=calibration, calibrator=params, spec=spec)


def recalibrate_gcm(gcm: GCMFit, calibration: str | None, features: Any, correct: Any) -> GCMFit:
    """The same trained probe with another post-hoc calibrator, fit on held-out records
    (`features` [n, d], `correct` [n] 0/1); calibration None drops it."""
    from introspect import calibrators

    if calibration is not None and calibration not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {CALIBRATIONS} or None, got {calibration!r}")
    spec = {**gcm.spec, "calibration": calibration, "num_calibration": 0}
    if calibration is None:
        return GCMFit(probe=gcm.probe, calibration=None, calibrator=None, spec=spec)
    x = C.as_2d(features, "features")
    if x.shape[1] != gcm.spec["input_dim"]:
        raise ValueError(f"features have {x.shape[1]} columns, the GCM was fit on "
                         f"{gcm.spec['input_dim']}")  # fmt: skip
    y = C.as_1d(correct, "correct", dtype=np.float32, n=x.shape[0])
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("correct must hold 0/1 labels")
    fit_cal, _ = calibrators.CALIBRATORS[calibration]
    params = fit_cal(_probe_scores(gcm.probe, x, calibration), y.astype(np.int32))
    spec["num_calibration"] = int(y.size)
    return GCMFit(probe=gcm.probe, calibration=calibration, calibrator=params, spec=spec)


def gcm_confidence(gcm: GCMFit, features: Any, *, calibrated: bool = True) -> np.ndarray:
    """[n] P(correct) of a fitted GCM (the raw probe's with calibrated=False)."""
    from introspect import calibrators, probes

    x = C.as_2d(features, "features")
    if x.shape[1] != gcm.spec["input_dim"]:
        raise ValueError(f"features have {x.shape[1]} columns, the GCM was fit on "
                         f"{gcm.spec['input_dim']}")  # fmt: skip
    if not calibrated or gcm.calibration is None:
        return probes.predict(gcm.probe.model, gcm.probe.variables, x)
    _, apply = calibrators.CALIBRATORS[gcm.calibration]
    out = apply(gcm.calibrator, _probe_scores(gcm.probe, x, gcm.calibration))
    return np.clip(np.asarray(out, np.float64), 0.0, 1.0).astype(np.float32)
