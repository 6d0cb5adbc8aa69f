"""Plots (matplotlib, Agg canvas, PNG): reliability diagram, risk-coverage curve, confidence
histograms split by correctness.

Each function returns the `matplotlib.figure.Figure` and, when `path` is given, writes a PNG
atomically (temporary file + rename). No pyplot state is touched, so the functions are safe in
scripts, tests and threads.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from introspect import _checks as V
from introspect.metrics import calibration, ranking

__all__ = [
    "plot_confidence_histogram",
    "plot_heatmap",
    "plot_reliability_diagram",
    "plot_risk_coverage",
]


def _new_figure(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | os.PathLike, *, dpi: float | None = None) -> str:
    """Writes `fig` to `path` as PNG atomically (at `dpi`, default the figure's); returns the
    path."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=directory)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _finish(fig: Figure, path: str | os.PathLike | None) -> Figure:
    fig.tight_layout()
    if path is not None:
        save_png(fig, path)
    return fig


def plot_reliability_diagram(
    confidences: Any,
    correct: Any,
    *,
    num_bins: int = 15,
    binning: str = "uniform",
    mask: Any = None,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Reliability diagram: per-bin accuracy against confidence, with the bin counts below.

    Args:
      confidences: [n] confidences in [0, 1].
      correct: [n] 1 if correct, else 0.
      num_bins, binning, mask: as `introspect.metrics.ece`.
      title: figure title (default: the ECE).
      path: where to write the PNG (optional).
    Returns:
      the Figure (top: accuracy bars and the diagonal; bottom: counts per bin).
    """
    curve = calibration.reliability_curve(
        confidences, correct, num_bins=num_bins, binning=binning, mask=mask
    )
    err = float(
        calibration.ece(confidences, correct, num_bins=num_bins, binning=binning, mask=mask)
    )
    edges = np.asarray(curve.edges, dtype=float)
    acc = np.asarray(curve.accuracy, dtype=float)
    conf = np.asarray(curve.confidence, dtype=float)
    count = np.asarray(curve.count, dtype=float)
    lefts, widths = edges[:-1], np.diff(edges)
    nonempty = count > 0

    fig = _new_figure((5.0, 6.0))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    top.bar(
        lefts[nonempty],
        acc[nonempty],
        width=widths[nonempty],
        align="edge",
        edgecolor="black",
        color="tab:blue",
        alpha=0.8,
        label="accuracy",
    )
    top.bar(
        lefts[nonempty],
        conf[nonempty] - acc[nonempty],
        bottom=acc[nonempty],
        width=widths[nonempty],
        align="edge",
        edgecolor="tab:red",
        color="tab:red",
        alpha=0.3,
        label="gap to mean confidence",
    )
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left", fontsize="small")
    top.set_title(title if title is not None else f"ECE = {err:.4f} ({binning}, {num_bins} bins)")
    bottom.bar(lefts, count, width=widths, align="edge", edgecolor="black", color="tab:gray")
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("count")
    return _finish(fig, path)


def plot_risk_coverage(
    confidences: Any,
    correct: Any,
    *,
    mask: Any = None,
    title: str | None = None,
    path: str | os.PathLike | None = None,
    max_points: int = 2000,
) -> Figure:
    """Risk-coverage curve of selective prediction, with the oracle and random references.

    Args:
      confidences: [n] confidences, higher = more confident.
      correct: [n] correctness in [0, 1].
      mask: optional [n] bool, False = padding.
      title: figure title (default: the AURC).
      path: where to write the PNG (optional).
      max_points: the curve is drawn through at most this many points (evenly spaced in k).
    Returns:
      the Figure.
    """
    curve = ranking.risk_coverage_curve(confidences, correct, mask=mask)
    oracle = ranking.risk_coverage_curve(correct, correct, mask=mask)
    valid = np.asarray(curve.valid)
    cov = np.asarray(curve.coverage, dtype=float)[valid]
    risk = np.asarray(curve.risk, dtype=float)[valid]
    risk_o = np.asarray(oracle.risk, dtype=float)[np.asarray(oracle.valid)]
    step = max(1, len(cov) // max(int(max_points), 1))
    keep = np.unique(np.r_[np.arange(0, len(cov), step), len(cov) - 1])
    area = float(np.mean(risk))

    fig = _new_figure((5.0, 4.0))
    ax = fig.subplots()
    ax.plot(cov[keep], risk[keep], color="tab:blue", label=f"method (AURC {area:.4f})")
    ax.plot(cov[keep], risk_o[keep], color="tab:green", linestyle=":", label="oracle")
    ax.axhline(risk[-1], color="gray", linestyle="--", label="random")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("coverage")
    ax.set_ylabel("risk (error rate)")
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title(title if title is not None else "Risk-coverage")
    return _finish(fig, path)


def plot_confidence_histogram(
    confidences: Any,
    correct: Any,
    *,
    num_bins: int = 20,
    mask: Any = None,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Histograms of confidence for correct and for incorrect answers (overlaid).

    Args:
      confidences: [n] confidences in [0, 1].
      correct: [n] 1 if correct, else 0.
      num_bins: histogram bins on [0, 1].
      mask: optional [n] bool, False = padding.
      title: figure title.
      path: where to write the PNG (optional).
    Returns:
      the Figure.
    """
    V.check_int_option(num_bins, "num_bins", 1)
    c, y, m = V.prepare_pair(
        confidences,
        correct,
        mask,
        names=("confidences", "correct"),
        kinds=("probability", "binary"),
    )
    m = np.ones(c.shape, bool) if m is None else np.asarray(m)
    c = np.asarray(c, dtype=float)[m]
    y = np.asarray(y)[m] != 0
    bins = np.linspace(0.0, 1.0, num_bins + 1)
    fig = _new_figure((5.0, 4.0))
    ax = fig.subplots()
    ax.hist(c[y], bins=bins, alpha=0.6, color="tab:green", label=f"correct ({int(y.sum())})")
    ax.hist(c[~y], bins=bins, alpha=0.6, color="tab:red", label=f"incorrect ({int((~y).sum())})")
    ax.set_xlim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("count")
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title(title if title is not None else "Confidence by correctness")
    return _finish(fig, path)


def plot_heatmap(
    values: Any,
    *,
    row_labels: list[str],
    col_labels: list[str],
    title: str | None = None,
    center: float | None = None,
    digits: int = 2,
    path: str | os.PathLike | None = None,
) -> Figure:
    """A labelled grid of numbers (e.g. AUROC by signal and task), each cell annotated.

    Args:
      values: [rows, cols] floats; NaN = missing (grey, no label).
      row_labels, col_labels: one label per row / column.
      title: figure title.
      center: the value drawn white (diverging colours around it, e.g. 0.5 for AUROC); None =
        a sequential colour map over the data range.
      digits: decimals of the cell labels.
      path: where to write the PNG (optional).
    Returns:
      the Figure.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.shape != (len(row_labels), len(col_labels)) or v.size == 0:
        raise ValueError(
            f"values: expected shape [{len(row_labels)}, {len(col_labels)}] (rows x columns of "
            f"the labels), got {v.shape}"
        )
    finite = v[np.isfinite(v)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if center is not None:
        half = max(abs(hi - center), abs(center - lo), 1e-6)
        lo, hi, cmap = center - half, center + half, "RdBu_r"
    else:
        cmap = "viridis"
    fig = _new_figure((1.6 + 1.1 * v.shape[1], 0.8 + 0.32 * v.shape[0]))
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(v), cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
    image.cmap.set_bad("lightgrey")
    ax.set_xticks(range(v.shape[1]), col_labels, rotation=30, ha="right")
    ax.set_yticks(range(v.shape[0]), row_labels)
    for (i, j), x in np.ndenumerate(v):
        if np.isfinite(x):
            ax.text(j, i, f"{x:.{digits}f}", ha="center", va="center", fontsize="x-small")
    fig.colorbar(image, ax=ax, fraction=0.05)
    ax.set_title(title or "")
    return _finish(fig, path)
