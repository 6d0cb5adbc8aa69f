"""Orbax checkpoints of the train state with a data-iterator position and a bit-exact fingerprint.

Each checkpoint `<dir>/<step>/` is an orbax Composite of two items:
  state: the train state pytree (`args.StandardSave` / `args.StandardRestore`, sharded arrays);
  meta:  JSON (`args.JsonSave`): the data iterator's `get_state()`, the state's signature (leaf
         paths, shapes, dtypes) and, with `verify=True`, its fingerprint.

The fingerprint of a leaf is two uint32 sums over the bits of its elements (plain, and weighted
by a hash of the element's index), computed on device. Integer sums wrap exactly and do not
depend on summation order, so the fingerprint is the same whatever the mesh, and a restored state
matches it bit for bit or the checkpoint is reported corrupt — never silent garbage.

When to save is orbax's decision (`CheckpointManagerOptions(save_decision_policy=...)`):
`FixedIntervalPolicy(every_steps)` and/or `ContinuousCheckpointingPolicy(every_seconds)`, which
takes the time decision on the primary host and shares it, so every host saves at the same step.
The loop asks `should_save(step)`, checks the state, then saves (see `introspect.train.loop`).

`restore_latest` walks the steps from the newest. Before orbax restores a step, every key of its
OCDBT array store is read once with tensorstore (b-tree nodes carry CRC-32C checksums), each read
waited for: orbax's concurrent restore stops at the first failing array and leaves the other
reads running, whose errors would surface later as unretrieved-exception noise. A step that
cannot be read, or whose fingerprint does not match, is reported with a warning; training
resumes from the newest good step and the bad newer steps are moved to
`<dir>.corrupt/<step>-<n>` (so they are kept for inspection and the step can be saved again).
When steps exist but none is usable, CheckpointError says why for each. A checkpoint written
for a different state (other shapes) raises ValueError instead of falling back.
"""

from __future__ import annotations

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts
from absl import logging
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as policies_lib

from introspect import sharding


class CheckpointError(RuntimeError):
    """No usable checkpoint although the checkpoint directory has some."""


class IncompatibleCheckpointError(ValueError):
    """The checkpoint was written for a train state of another structure (shapes, leaves)."""


def signature(tree) -> list[list]:
    """[[leaf path, shape, dtype], ...] of a (possibly abstract) pytree."""
    return [
        [sharding.path_name(p), list(np.shape(x)), str(jnp.dtype(x.dtype))]
        for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]


def _leaf_bits(x):
    x = jnp.asarray(x)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    width = x.dtype.itemsize
    if width == 8:
        return jax.lax.bitcast_convert_type(x, jnp.uint32)  # [..., 2]
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[width]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


def _leaf_fingerprint(x):
    bits = _leaf_bits(x).reshape(-1)
    idx = jnp.arange(bits.shape[0], dtype=jnp.uint32)
    weight = idx * jnp.uint32(2654435761) + jnp.uint32(0x9E3779B9)
    return jnp.stack([jnp.sum(bits, dtype=jnp.uint32), jnp.sum(bits * weight, dtype=jnp.uint32)])


_fingerprint_jit = jax.jit(lambda tree: jax.tree.map(_leaf_fingerprint, tree))


def fingerprint(tree) -> list[list[int]]:
    """[[sum of bits, index-weighted sum of bits], ...] (uint32, wrapping) per leaf, on device."""
    fps = jax.device_get(_fingerprint_jit(tree))
    return [[int(a), int(b)] for a, b in (np.asarray(f).tolist() for f in jax.tree.leaves(fps))]


class Checkpointer:
    """A CheckpointManager over `directory` for one kind of train state.

    Args:
      directory: where the step directories go (created).
      keep: keep the newest `keep` checkpoints.
      asynchronous: write in a background thread (`wait()` blocks until written).
      verify: store and check fingerprints.
      every_steps: `should_save` is True at multiples of this step (0 = never by step).
      every_seconds: `should_save` is True once this many seconds have passed since the newest
        checkpoint, or when there is none yet (0 = never by time).
    """

    def __init__(
        self,
        directory: str,
        *,
        keep: int = 3,
        asynchronous: bool = True,
        verify: bool = True,
        every_steps: int = 0,
        every_seconds: float = 0.0,
    ):
        self.directory = os.path.abspath(directory)
        self.verify = verify
        policies = []
        if every_steps:
            policies.append(policies_lib.FixedIntervalPolicy(int(every_steps)))
        if every_seconds:
            policies.append(
                policies_lib.ContinuousCheckpointingPolicy(minimum_interval_secs=every_seconds)
            )
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep,
                create=True,
                cleanup_tmp_directories=True,
                enable_async_checkpointing=asynchronous,
                save_decision_policy=policies_lib.AnySavePolicy(policies),
            ),
        )

    def should_save(self, step: int) -> bool:
        """Whether the save policy wants checkpoint `step` (the same answer on every host)."""
        return bool(self.manager.should_save(int(step)))

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, data_state: dict | None = None) -> None:
        """Save `state` (+ the data iterator state) as checkpoint `step`."""
        meta = {"step": int(step), "data": data_state, "signature": signature(state)}
        if self.verify:
            meta["fingerprint"] = fingerprint(state)
        self.manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )

    def _check_store(self, step: int) -> None:
        """Read every key of step's OCDBT array store, waiting for each read (raises on damage)."""
        path = os.path.join(self.directory, str(step), "state")
        if not os.path.exists(os.path.join(path, "manifest.ocdbt")):
            return  # not an OCDBT store: orbax reads it directly
        spec = {"driver": "ocdbt", "base": f"file://{path}/"}
        store = ts.KvStore.open(spec).result()
        reads = [store.read(key) for key in store.list().result()]
        errors = []
        for read in reads:  # every future is waited for, failed or not
            try:
                read.result()
            except Exception as e:  # noqa: BLE001 (reported below, with the first message)
                errors.append(e)
        if errors:
            raise errors[0]

    def _read(self, step: int, abstract_state):
        """(state, meta) of `step`; raises on anything unreadable or not matching."""
        meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
            "meta"
        ]
        if not isinstance(meta, dict) or "signature" not in meta:
            raise CheckpointError(f"step {step}: metadata is unreadable or incomplete")
        want = signature(abstract_state)
        if meta["signature"] != want:
            mismatch = next(
                ((a, b) for a, b in zip(meta["signature"], want, strict=False) if a != b),
                (f"{len(meta['signature'])} leaves", f"{len(want)} leaves"),
            )
            raise IncompatibleCheckpointError(
                f"checkpoint step {step} in {self.directory} was written for a different train "
                f"state (checkpoint: {mismatch[0]}, now: {mismatch[1]}); use another workdir or "
                "restore the config that wrote it"
            )
        self._check_store(step)
        state = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
        )["state"]
        if "fingerprint" in meta and meta["fingerprint"] != fingerprint(state):
            raise CheckpointError(
                f"step {step}: restored arrays do not match the fingerprint saved with them"
            )
        return state, meta

    def restore_latest(self, abstract_state):
        """(step, state, data_state) of the newest good checkpoint, or None if there is none.

        Args:
          abstract_state: pytree of jax.ShapeDtypeStruct with shardings (the restore target).
        Raises:
          CheckpointError: checkpoints exist but none can be restored (each reason listed).
          IncompatibleCheckpointError (a ValueError): the newest readable checkpoint belongs to a
            different state structure.
        """
        steps = sorted(self.steps(), reverse=True)
        errors = []
        for step in steps:
            try:
                state, meta = self._read(step, abstract_state)
            except IncompatibleCheckpointError:
                raise
            except Exception as e:  # noqa: BLE001 (any read failure = a bad checkpoint)
                reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
                logging.warning("checkpoint step %d in %s is unusable (%s)", step, self.directory,
                                reason)  # fmt: skip
                errors.append((step, reason))
                continue
            if errors:
                self._quarantine([s for s, _ in errors])
                logging.warning(
                    "resuming from step %d, the newest good checkpoint (skipped %s)",
                    step,
                    [s for s, _ in errors],
                )
            return step, state, meta.get("data")
        if errors:
            listing = "; ".join(f"step {s}: {r}" for s, r in errors)
            raise CheckpointError(
                f"no usable checkpoint in {self.directory} ({listing}). Move the directory away "
                "to start from scratch, or restore a good copy."
            )
        return None

    def _quarantine(self, steps: list[int]) -> None:
        if jax.process_index() == 0:
            bad_root = self.directory.rstrip("/") + ".corrupt"
            os.makedirs(bad_root, exist_ok=True)
            for step in steps:
                src = os.path.join(self.directory, str(step))
                if not os.path.exists(src):
                    continue
                n = 0
                while os.path.exists(os.path.join(bad_root, f"{step}-{n}")):
                    n += 1
                shutil.move(src, os.path.join(bad_root, f"{step}-{n}"))
                logging.warning("moved unusable checkpoint %s to %s/%d-%d", src, bad_root, step, n)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("introspect-checkpoint-quarantine")
        self.manager.reload()

    def wait(self) -> None:
        """Block until every pending (async) save is on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
