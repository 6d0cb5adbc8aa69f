"""Metric writers: JSON lines + TensorBoard event files in the workdir, plus absl logging.

The interface is clu's `MetricWriter` (`write_scalars(step, {name: value})`, `write_hparams`,
`flush`, `close`). clu itself is not used because `clu.metric_writers` imports TensorFlow at
module import. TensorBoard event files are written by tensorboardX's `SummaryWriter` (imported
only when a writer with `tensorboard=True` is made; tensorboardX imports PyTorch when that is
installed, which costs a few seconds once per process).

Only process 0 writes (`MetricWriter(workdir, enabled=jax.process_index() == 0)`); on the other
processes every method is a no-op.

Files:
  <workdir>/metrics.jsonl   one {"step": s, name: value, ...} object per write_scalars call
                            (NaN/inf are written as the strings "nan"/"inf")
  <workdir>/tensorboard/    TensorBoard event files (when tensorboard=True)
  <workdir>/hparams.json    the flattened config of the run
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

import numpy as np
from absl import logging

from introspect import results


def _to_float(v) -> float:
    return float(np.asarray(v))


class MetricWriter:
    """Writes scalar metrics of process 0 to `<workdir>/metrics.jsonl`, TensorBoard and the log.

    Args:
      workdir: directory (created).
      enabled: False turns every method into a no-op (non-zero processes).
      tensorboard: also write TensorBoard event files to <workdir>/tensorboard.
      log: also log each write through absl.logging.
    """

    def __init__(
        self, workdir: str, *, enabled: bool = True, tensorboard: bool = True, log: bool = True
    ):
        self.enabled = enabled
        self.log = log
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        self._file = None
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drop rows with step > `step` from metrics.jsonl (after resuming from `step`, those
        steps are trained again and would otherwise appear twice)."""
        if not self.enabled or not os.path.exists(self.path):
            return
        self._close_file()
        keep = []
        with open(self.path) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a kill
                    continue
                if int(row.get("step", 0)) <= step:
                    keep.append(line if line.endswith("\n") else line + "\n")
        results.write_text(self.path, "".join(keep))

    def _close_file(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Append one row {step, **scalars}; NaN/inf are written as the strings "nan"/"inf"."""
        if not self.enabled:
            return
        row = {"step": int(step)}
        for k, v in scalars.items():
            x = _to_float(v)
            row[k] = x if math.isfinite(x) else str(x)
        if self._file is None:
            self._file = open(self.path, "a")  # noqa: SIM115 (kept open between writes)
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, _to_float(v), global_step=int(step))
            self._tb.flush()
        if self.log:
            text = ", ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in row.items() if k != "step")  # fmt: skip
            logging.info("[step %d] %s", step, text)

    def write_hparams(self, hparams: Mapping) -> None:
        """Write the flattened config to <workdir>/hparams.json."""
        if not self.enabled:
            return
        results.write_json(os.path.join(os.path.dirname(self.path), "hparams.json"), dict(hparams))

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        self._close_file()
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_metrics(workdir: str) -> list[dict]:
    """The rows of <workdir>/metrics.jsonl (for tests and notebooks)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
