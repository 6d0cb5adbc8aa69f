"""Mesh, state and batch shardings, multi-host helpers for the training loop.

The mesh and the parameter layout are `introspect.sharding`'s (the one scheme shared with `LM`):
every state leaf (parameters and optimiser moments alike, so a moment sits where its parameter
sits) gets logical axis names from its path, mapped to mesh axes by `config.sharding.rules`, with
`fsdp` and `min_size` as documented there.

Batches are split over "data" on their leading dimension (`batch_sharding`). Each host feeds only
its own rows; `global_batch` assembles the global jax.Array from them.
"""

from __future__ import annotations

import os
import sys
import traceback

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh

from introspect import sharding
from introspect.sharding import batch_sharding, to_host

# Set by launch/local.sh (launch/local.py) in every process it starts; launch/slurm.sh and
# launch/tpu_pod.sh set INTROSPECT_DISTRIBUTED=1 instead (the cluster supplies the rest).
ENV_COORDINATOR = "INTROSPECT_COORDINATOR"  # host:port of process 0's coordination service
ENV_NUM_PROCESSES = "INTROSPECT_NUM_PROCESSES"
ENV_PROCESS_ID = "INTROSPECT_PROCESS_ID"
ENV_DISTRIBUTED = "INTROSPECT_DISTRIBUTED"  # 1: jax.distributed.initialize() auto-detects
# Seconds without a heartbeat after which the coordination service declares a process dead and
# the others stop with an error (jax's default: 100).
ENV_HEARTBEAT = "INTROSPECT_HEARTBEAT_SECONDS"


def _env_int(name: str) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"{name}={value!r} must be an integer ({ENV_COORDINATOR} is set, so "
            f"{ENV_NUM_PROCESSES} and {ENV_PROCESS_ID} must be too; launch/local.sh sets all three)"
        ) from None


def maybe_initialize_distributed(enabled: bool = False) -> bool:
    """Join a multi-process run when the environment asks for one; call it before any JAX
    computation (experiments/_cli.py does, first thing). Idempotent.

    * INTROSPECT_COORDINATOR=host:port, INTROSPECT_NUM_PROCESSES=n, INTROSPECT_PROCESS_ID=i (set
      by launch/local.sh): `jax.distributed.initialize` with exactly these; on CPU the
      cross-process collectives go through gloo.
    * INTROSPECT_DISTRIBUTED=1 or `enabled` (a config's `train.distributed`): plain
      `jax.distributed.initialize()`, which takes its arguments from the cluster (Cloud TPU
      metadata, SLURM, Open MPI, Kubernetes; or JAX_COORDINATOR_ADDRESS).
    * Neither: nothing (a single-process run).

    INTROSPECT_HEARTBEAT_SECONDS (default 100) is how long a silent process counts as alive; when
    one dies, the others fail with an error naming the lost task instead of waiting forever.
    A multi-process run also gets `exit_at_once` as `sys.excepthook`.
    Returns whether JAX runs multi-process now.
    """
    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    coordinator = os.environ.get(ENV_COORDINATOR, "")
    wanted = enabled or os.environ.get(ENV_DISTRIBUTED, "") in ("1", "true", "True")
    if not coordinator and not wanted:
        return False
    kwargs = {}
    if os.environ.get(ENV_HEARTBEAT):
        kwargs["heartbeat_timeout_seconds"] = _env_int(ENV_HEARTBEAT)
    if coordinator:
        kwargs.update(
            coordinator_address=coordinator,
            num_processes=_env_int(ENV_NUM_PROCESSES),
            process_id=_env_int(ENV_PROCESS_ID),
        )
        # Cross-process collectives of the CPU backend (gloo is the default of recent jax; set
        # it explicitly so that a CPU run never silently has none).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
    if jax.process_count() > 1:
        sys.excepthook = exit_at_once
    logging.info(
        "jax.distributed: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return jax.process_count() > 1


def exit_at_once(kind, error, tb) -> None:
    """`sys.excepthook` of a multi-process run: print the uncaught exception and end the process
    with exit status 1 at once. A normal exit would run jax.distributed's shutdown (atexit), a
    barrier that waits for every other process while they wait in a collective for this one:
    both would hang. Ended at once, this process drops its gloo connections and stops its
    heartbeats, so the others fail with an error about it (tests/distributed/test_fail_fast.py)
    and the launcher reports the failure."""
    traceback.print_exception(kind, error, tb)
    print(
        f"process {jax.process_index()} of {jax.process_count()} failed; exiting without "
        "jax.distributed's shutdown barrier",
        file=sys.stderr,
    )
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(1)


def initialize_distributed(enabled: bool = False) -> bool:
    """`maybe_initialize_distributed(enabled)` (the older name, kept for callers)."""
    return maybe_initialize_distributed(enabled)


def is_main_process() -> bool:
    """True on the process that logs and writes (process 0)."""
    return jax.process_index() == 0


def mesh_from_config(config: ml_collections.ConfigDict, *, name: str = "train") -> Mesh:
    """The ("data", "model") mesh of `config.mesh` over all devices (ValueError names the field)."""
    return sharding.make_mesh(config.mesh, field=f"{name}.mesh")


def state_shardings(abstract_state, mesh: Mesh, config: ml_collections.ConfigDict):
    """NamedSharding tree for a (possibly abstract) train state under `config.sharding`."""
    return sharding.shardings(abstract_state, mesh, config.sharding)


def global_batch(local_batch, mesh: Mesh):
    """Host-local numpy batch {name: [local_batch, ...]} -> global jax.Arrays split over "data"."""
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(
            batch_sharding(mesh, np.ndim(x)), np.asarray(x)
        ),
        local_batch,
    )


__all__ = [
    "global_batch",
    "initialize_distributed",
    "is_main_process",
    "maybe_initialize_distributed",
    "mesh_from_config",
    "state_shardings",
    "to_host",
]
