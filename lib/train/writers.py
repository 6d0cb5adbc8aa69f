"""Metric writers: JSON lines + TensorBoard event files in the workdir, plus absl logging.

The interface is clu's `MetricWriter` (`write_scalars(step, {name: value})`, `write_hparams`,
`flush`, `close`). clu itself is not used because `clu.metric_writers` imports TensorFlow at
module import, and tensorboardX imports PyTorch (seconds) when it is installed; TensorBoard event
files are simple (TFRecord framing around `Event` protobufs with scalar summaries), so
`EventFileWriter` below writes them directly, with no dependency.

Only process 0 writes (`MetricWriter(workdir, enabled=jax.process_index() == 0)`); on the other
processes every method is a no-op.

Files:
  <workdir>/metrics.jsonl   one {"step": s, name: value, ...} object per write_scalars call
  <workdir>/tensorboard/    TensorBoard event files (when tensorboard=True)
  <workdir>/hparams.json    the flattened config of the run
"""

from __future__ import annotations

import json
import math
import os
import socket
import struct
import time
from collections.abc import Mapping

import numpy as np
from absl import logging

from introspect import results

# ----------------------------------------------------------------------------------------------
# TensorBoard event files
# ----------------------------------------------------------------------------------------------


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as used by TFRecord framing."""
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    key = _varint((number << 3) | wire)
    if wire == 2:
        return key + _varint(len(payload)) + payload
    return key + payload


def encode_scalar_event(step: int, scalars: Mapping[str, float], wall_time: float) -> bytes:
    """Serialised tensorboard `Event{wall_time, step, summary{value{tag, simple_value}...}}`."""
    values = b"".join(
        _field(1, 2, _field(1, 2, tag.encode()) + _field(2, 5, struct.pack("<f", value)))
        for tag, value in scalars.items()
    )
    return (
        _field(1, 1, struct.pack("<d", wall_time))
        + _field(2, 0, _varint(int(step)))
        + _field(5, 2, values)
    )


class EventFileWriter:
    """Appends scalar summaries to `<logdir>/events.out.tfevents.<time>.<host>` (TensorBoard)."""

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        now = time.time()
        name = f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}"
        self.path = os.path.join(logdir, name)
        self._f = open(self.path, "ab")  # noqa: SIM115 (kept open between writes)
        version = _field(1, 1, struct.pack("<d", now)) + _field(3, 2, b"brain.Event:2")
        self._record(version)

    def _record(self, data: bytes) -> None:
        header = struct.pack("<Q", len(data))
        self._f.write(header + struct.pack("<I", _masked_crc(header)))
        self._f.write(data + struct.pack("<I", _masked_crc(data)))

    def add_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self._record(encode_scalar_event(step, scalars, time.time()))

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


# ----------------------------------------------------------------------------------------------
# The writer the loop uses
# ----------------------------------------------------------------------------------------------


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
            self._tb = EventFileWriter(os.path.join(workdir, "tensorboard"))

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
            finite = {k: v for k, v in row.items() if k != "step" and isinstance(v, float)}
            self._tb.add_scalars(int(step), finite)
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
