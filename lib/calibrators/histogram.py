"""Histogram binning (Zadrozny & Elkan, 2001): the calibrated confidence of a score is the
accuracy of its bin on the calibration set.

Bins as `introspect.metrics.ece` ("uniform": [i / B, (i + 1) / B), last bin closed; "quantile":
equal-mass bins, ties kept together). An empty bin maps to its midpoint.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from introspect import _checks as V
from introspect.calibrators import _common as C
from introspect.metrics.calibration import BINNINGS, reliability_curve

__all__ = ["HistogramBinningParams", "fit", "apply"]


@struct.dataclass
class HistogramBinningParams:
    """edges: [B + 1] bin edges; values: [B] calibrated confidence per bin; count: [B]."""

    edges: jax.Array
    values: jax.Array
    count: jax.Array


@functools.partial(jax.jit, static_argnames=("num_bins", "binning"))
def _fit(s, y, m, num_bins: int, binning: str):
    curve = reliability_curve(s, y, num_bins=num_bins, binning=binning, mask=m, validate=False)
    mid = (curve.edges[:-1] + curve.edges[1:]) / 2
    values = jnp.where(curve.count > 0, curve.accuracy, mid)
    return curve.edges, values, curve.count


def fit(
    scores: Any,
    labels: Any,
    *,
    num_bins: int = 15,
    binning: str = "uniform",
    mask: Any = None,
    validate: bool = True,
) -> HistogramBinningParams:
    """Fits per-bin accuracies.

    Args:
      scores: [n] uncalibrated confidences in [0, 1].
      labels: [n] 1 = correct, 0 = wrong.
      num_bins: number of bins, >= 1.
      binning: "uniform" or "quantile".
      mask: optional [n] bool, False = padding.
      validate: check the input.
    Returns:
      HistogramBinningParams.
    """
    nb = V.check_int_option(num_bins, "num_bins", 1)
    V.check_choice(binning, "binning", BINNINGS)
    s, y, m = C.prepare_scores(scores, labels, mask, validate, unit=True)
    edges, values, count = _fit(s, y, m, nb, binning)
    return HistogramBinningParams(edges=edges, values=values, count=count)


def apply(params: HistogramBinningParams, scores: Any, *, validate: bool = True) -> jax.Array:
    """Calibrated confidences: the value of each score's bin.

    Args:
      params: from `fit`.
      scores: [...] confidences in [0, 1].
      validate: check the input.
    Returns:
      [...] calibrated confidences.
    """
    s = C.check_apply_scores(scores, validate, unit=True)
    inner = params.edges[1:-1].astype(s.dtype)
    idx = jnp.searchsorted(inner, s, side="right")
    return params.values.astype(s.dtype)[idx]
