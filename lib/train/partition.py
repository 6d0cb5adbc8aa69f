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

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh

from introspect import sharding
from introspect.sharding import batch_sharding


def initialize_distributed(enabled: bool = False) -> bool:
    """`jax.distributed.initialize()` (arguments from the environment / cluster) when `enabled`
    or INTROSPECT_DISTRIBUTED=1; call it before any other JAX call. Returns whether JAX runs
    multi-process now."""
    wanted = enabled or os.environ.get("INTROSPECT_DISTRIBUTED", "") in ("1", "true", "True")
    if wanted and not jax.distributed.is_initialized():
        jax.distributed.initialize()
        logging.info(
            "jax.distributed: process %d of %d, %d local / %d global devices",
            jax.process_index(),
            jax.process_count(),
            jax.local_device_count(),
            jax.device_count(),
        )
    return jax.process_count() > 1


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
    "mesh_from_config",
    "state_shardings",
]
