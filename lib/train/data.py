"""Training data for the loop: random-access sources and a checkpointable, host-sharded batcher.

A *source* is anything with `len(source)` and `source[indices] -> {name: array [len(indices), ...]}`
for an int array of row indices: `ArraySource` wraps in-memory arrays, and
`introspect.probes.FeatureStore` streams `.npy` shards from disk through the same interface.

`Batcher(source, batch_size, seed=...)` turns a source into an iterator of host-local batches
whose order is a pure function of (seed, step): epoch e uses the permutation
`default_rng([seed, e]).permutation(n)`, step s takes rows [(s mod steps_per_epoch) * B, ... + B)
of it (the last partial batch of an epoch is dropped). Its position is one integer, so
`get_state()` / `set_state()` (the loop stores them in every checkpoint) resume it exactly. On
`process_count` hosts, host p reads only its rows [p * B / P, (p + 1) * B / P) of each global batch.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np


class ArraySource:
    """In-memory arrays as a source: every array has the same leading dimension [n, ...]."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        if not isinstance(arrays, Mapping) or not arrays:
            raise ValueError("arrays must be a non-empty mapping {name: array [n, ...]}")
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        sizes = {k: (v.shape[0] if v.ndim else None) for k, v in self.arrays.items()}
        if len(set(sizes.values())) != 1 or None in sizes.values():
            raise ValueError(f"arrays must share their leading dimension; got sizes {sizes}")
        self._n = next(iter(sizes.values()))

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, indices) -> dict[str, np.ndarray]:
        return {k: v[indices] for k, v in self.arrays.items()}


def as_source(data):
    """A source from a source, or from a dict of arrays (wrapped in ArraySource)."""
    if isinstance(data, Mapping):
        return ArraySource(data)
    if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise ValueError(
            "data must be a mapping of arrays or a source with __len__ and __getitem__(indices), "
            f"got {type(data).__name__}"
        )
    return data


def host_rows(n: int, process_index: int | None = None, process_count: int | None = None) -> slice:
    """This host's rows [p * n / P, (p + 1) * n / P) of a global batch of `n` rows: the piece
    `jax.make_array_from_process_local_data` expects from host p (default: this process)."""
    p = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if n % count:
        raise ValueError(f"a global batch of {n} rows does not split over {count} processes")
    local = n // count
    return slice(p * local, (p + 1) * local)


class Batcher:
    """Checkpointable iterator of host-local batches `{name: [batch_size / processes, ...]}`.

    Args:
      source: a source (see module docstring) or a dict of arrays [n, ...].
      batch_size: global batch size (all hosts); must be <= len(source) and divisible by
        process_count.
      seed: seed of the per-epoch permutations.
      shuffle: False reads rows in order (epoch after epoch).
      process_index, process_count: this host and the number of hosts (default: from jax).
    """

    def __init__(
        self,
        source,
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        process_index: int | None = None,
        process_count: int | None = None,
    ):
        self.source = as_source(source)
        self.n = len(self.source)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self.batch_size > self.n:
            raise ValueError(
                f"batch_size={self.batch_size} is larger than the dataset ({self.n} examples)"
            )
        if self.batch_size % self.process_count:
            raise ValueError(
                f"batch_size={self.batch_size} must be divisible by the number of processes "
                f"({self.process_count})"
            )
        if not 0 <= self.process_index < self.process_count:
            raise ValueError(f"process_index {process_index} not in [0, {process_count})")
        self.steps_per_epoch = self.n // self.batch_size
        self.step = 0
        self._epoch = -1
        self._perm = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = (
                np.random.default_rng([self.seed, epoch]).permutation(self.n)
                if self.shuffle
                else np.arange(self.n)
            )
        return self._perm

    def indices(self, step: int) -> np.ndarray:
        """This host's row indices [batch_size / process_count] of global batch `step` (sorted)."""
        epoch, k = divmod(int(step), self.steps_per_epoch)
        rows = self._permutation(epoch)[k * self.batch_size : (k + 1) * self.batch_size]
        # Sorted reads are faster from memory-mapped shards; the batch is a set, order is free.
        # The global batch is sorted before it is split, so the global array has the same row
        # order for any number of processes (reductions add in the same order).
        return np.sort(rows)[host_rows(self.batch_size, self.process_index, self.process_count)]

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch = self.source[self.indices(self.step)]
        self.step += 1
        return batch

    def get_state(self) -> dict:
        """JSON-serialisable position: the next step plus what must match on restore."""
        return {
            "step": self.step,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "num_examples": self.n,
            "shuffle": self.shuffle,
        }

    def set_state(self, state: Mapping) -> None:
        """Continue from `get_state()`'s output; ValueError if the data or its order changed."""
        for key in ("seed", "batch_size", "num_examples", "shuffle"):
            if key in state and state[key] != getattr(self, "n" if key == "num_examples" else key):
                mine = self.get_state()[key]
                raise ValueError(
                    f"cannot resume the data iterator: the checkpoint has {key}={state[key]!r} "
                    f"but the current data has {key}={mine!r}"
                )
        self.step = int(state["step"])


def epoch_batches(source, batch_size: int):
    """Yield (batch dict, number of real rows) over one pass in order; the last batch is padded
    by repeating row 0 so every batch has `batch_size` rows (one compiled shape)."""
    source = as_source(source)
    n = len(source)
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        real = len(idx)
        if real < batch_size:
            idx = np.concatenate([idx, np.zeros(batch_size - real, idx.dtype)])
        yield source[idx], real
