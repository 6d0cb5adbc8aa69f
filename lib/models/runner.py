"""The batched runner shared by `LM.generate`, `LM.score` and CNTP: sort, bucket, pad, shard,
progress bar, reassemble.

    runner = Runner(mesh)                                   # mesh=None: one device
    outs = runner.map(seqs, fn, batch_size=32, pad_id=0)    # outs[i] belongs to seqs[i]

`map` orders the sequences longest first (each chunk holds similar lengths: less padding), cuts
them into chunks of `batch_size`, left-pads each chunk to a bucketed shape (batch: a power of two
rounded up to the mesh's data axis; length: `length_bucket`) and calls `fn(chunk)`, which
places what it passes to a compiled call with `runner.place` (split over "data") and returns one
result per real row. Results come
back in input order. Shapes repeat across chunks, so a compiled program is reused.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from introspect.sharding import DATA, batch_sharding, to_host


def next_power_of_two(n: int, minimum: int = 1) -> int:
    return max(minimum, 1 << max(0, int(n) - 1).bit_length())


def length_bucket(n: int, minimum: int = 16) -> int:
    """Bucketed sequence length: a multiple of 8 up to 128 (prefill FLOPs grow with padding, and
    prompts are short), then the smallest of {2^k, 3 * 2^(k-1)} >= n (at most 1/3 padding, few
    programs to compile for long inputs)."""
    n = max(int(n), minimum)
    if n <= 128:
        return -(-n // 8) * 8
    p = next_power_of_two(n)
    return p * 3 // 4 if p * 3 // 4 >= n else p


def left_pad(seqs, chunk, *, batch: int, pad_id: int):
    """Left-pad `seqs[i] for i in chunk` into a bucketed batch.

    Returns:
      tokens [batch, length_bucket(longest)] int32, valid [same] bool, and row_ids [batch] int32
      (the index into `seqs` of each row; 0 for the rows that only fill the batch bucket).
    """
    length = length_bucket(max(len(seqs[i]) for i in chunk))
    tokens = np.full((batch, length), pad_id, np.int32)
    valid = np.zeros((batch, length), bool)
    row_ids = np.zeros((batch,), np.int32)
    for r, i in enumerate(chunk):
        tokens[r, length - len(seqs[i]) :] = seqs[i]
        valid[r, length - len(seqs[i]) :] = True
        row_ids[r] = i
    return tokens, valid, row_ids


@dataclasses.dataclass
class Chunk:
    """One compiled call's rows.

    indices: input index of each real row (len(indices) <= batch).
    tokens: [batch, length] int32, left-padded (host arrays; `Runner.place` puts them on the
      mesh).
    valid: [batch, length] bool, False at padding.
    row_ids: [batch] int32 input index of each row (0 for rows that only fill the bucket).
    active: [batch] bool, False for rows that only fill the bucket.
    """

    indices: list[int]
    tokens: np.ndarray
    valid: np.ndarray
    row_ids: np.ndarray
    active: np.ndarray

    @property
    def length(self) -> int:
        return int(self.tokens.shape[1])


class Runner:
    """Batches ragged token sequences for compiled calls on one device or a mesh."""

    def __init__(self, mesh: jax.sharding.Mesh | None = None):
        self.mesh = mesh

    def batch_bucket(self, n: int) -> int:
        """Rows of a call for `n` real rows: a power of two, a multiple of the data axis."""
        b = next_power_of_two(n)
        if self.mesh is not None:
            d = self.mesh.shape[DATA]
            b = -(-b // d) * d
        return b

    def place(self, *arrays):
        """Arrays with a leading batch dimension, split over the mesh's "data" axis."""
        if self.mesh is None:
            return arrays
        return tuple(jax.device_put(a, batch_sharding(self.mesh, np.ndim(a))) for a in arrays)

    def fetch(self, tree):
        """numpy copies of a compiled call's outputs. On a mesh spanning several processes
        (multi-host) the rows of the other hosts are all-gathered first: every process gets the
        whole batch, so every process must call it (as it calls the compiled step)."""
        return to_host(tree)

    def map(
        self,
        seqs: Sequence[Sequence[int]],
        fn: Callable[[Chunk], Sequence[Any]],
        *,
        batch_size: int,
        pad_id: int,
        desc: str = "",
        progress: bool | None = None,
        count: Callable[[Any], int] | None = None,
    ) -> list[Any]:
        """`fn` over bucketed, padded, placed chunks of `seqs`; results in input order.

        Args:
          seqs: token-id lists (ragged).
          fn: chunk -> one result per real row (`len(chunk.indices)` results, in that order).
          batch_size: real rows per call.
          pad_id: id written at padding slots.
          desc: the progress bar's label.
          progress: show the bar (default: when there is more than one chunk).
          count: result -> tokens it holds; the bar then shows tokens/s.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        show = len(chunks) > 1 if progress is None else progress
        bar = tqdm(total=len(seqs), unit="seq", disable=not show, desc=desc, leave=False)
        results: list[Any] = [None] * len(seqs)
        t0, tokens_done = time.perf_counter(), 0
        try:
            for idx in chunks:
                batch = self.batch_bucket(len(idx))
                tokens, valid, row_ids = left_pad(seqs, idx, batch=batch, pad_id=pad_id)
                active = np.arange(batch) < len(idx)
                chunk = Chunk(idx, tokens, valid, row_ids, active)
                outs = fn(chunk)
                if len(outs) != len(idx):
                    raise RuntimeError(f"runner fn returned {len(outs)} results for {len(idx)}")
                for i, out in zip(idx, outs, strict=True):
                    results[i] = out
                    tokens_done += count(out) if count is not None else 0
                bar.update(len(idx))
                if count is not None:
                    bar.set_postfix(tok_s=f"{tokens_done / (time.perf_counter() - t0):.1f}")
        finally:
            bar.close()
        return results


__all__ = ["Chunk", "Runner", "left_pad", "length_bucket", "next_power_of_two"]
