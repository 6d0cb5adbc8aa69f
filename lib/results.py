"""Experiment artefacts: `results/<experiment>/<run>/`, every file written atomically.

A file is written to a temporary name in the same directory, flushed, fsync'ed and renamed over
the target, so a crash never leaves a half-written config.json/metrics.json behind.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from collections.abc import Iterable

import numpy as np


def run_dir(experiment: str, run: str | None = None, *, root: str = "results") -> str:
    """Create and return results/<experiment>/<run> (run defaults to a UTC timestamp)."""
    run = run or datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = os.path.join(root, experiment, run)
    os.makedirs(path, exist_ok=True)
    return path


def _default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


def write_bytes(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, default=_default) + "\n")


def write_jsonl(path: str, rows: Iterable[dict]) -> None:
    write_text(path, "".join(json.dumps(r, default=_default) + "\n" for r in rows))


def read_jsonl(path: str, *, required: tuple[str, ...] = ()) -> list[dict]:
    """The objects of a JSON-lines file (blank lines skipped).

    Raises:
      FileNotFoundError for a missing file; ValueError naming the line for malformed JSON, a line
      that is not an object or lacks a `required` key, and for a file with no objects.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"JSONL file not found: {path}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not valid JSON ({e.msg})") from e
            if not isinstance(row, dict) or any(k not in row for k in required):
                raise ValueError(
                    f"{path}:{n}: expected an object with {', '.join(map(repr, required))}, "
                    f"got {str(row)[:80]}"
                )
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no records")
    return rows
