"""Mesh, state and batch shardings, multi-host helpers for the training loop.

The mesh is `introspect.models.sharding.make_mesh` (axes "data", "model"). The train state is
sharded by a shape rule applied to every leaf (parameters and optimiser moments alike, so a moment
always sits where its parameter sits):

* leaves with fewer than `sharding.min_size` elements (biases, scalars, RNG keys): replicated;
* model axis > 1: the last dimension divisible by its size is split over "model";
* `sharding.fsdp`: the largest other dimension divisible by the data axis size is split over
  "data" (ZeRO-3 style; XLA gathers it where the step needs it).

Batches are split over "data" on their leading dimension (`batch_sharding`). Each host feeds only
its own rows; `global_batch` assembles the global jax.Array from them.
"""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from introspect.models.sharding import DATA, MODEL, batch_sharding, make_mesh


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
    n = jax.device_count()
    model = config.mesh.model
    if n % model:
        raise ValueError(f"{name}.mesh.model={model} must divide the number of devices ({n})")
    data = n // model if config.mesh.data == -1 else config.mesh.data
    if data * model != n:
        raise ValueError(
            f"{name}.mesh.data={config.mesh.data} x {name}.mesh.model={model} must equal the "
            f"number of devices ({n}); use mesh.data=-1 to take all remaining devices"
        )
    return make_mesh(data=data, model=model)


def leaf_spec(shape: tuple[int, ...], mesh: Mesh, *, fsdp: bool, min_size: int) -> P:
    """PartitionSpec for one state leaf of `shape` (the rule in the module docstring)."""
    size = int(np.prod(shape)) if shape else 1
    if not shape or size < min_size:
        return P()
    axes: list[str | None] = [None] * len(shape)
    m = mesh.shape[MODEL]
    if m > 1:
        for dim in reversed(range(len(shape))):
            if shape[dim] % m == 0:
                axes[dim] = MODEL
                break
    d = mesh.shape[DATA]
    if fsdp and d > 1:
        free = [i for i in range(len(shape)) if axes[i] is None and shape[i] % d == 0]
        if free:
            axes[max(free, key=lambda i: shape[i])] = DATA
    return P(*axes) if any(axes) else P()


def state_shardings(abstract_state, mesh: Mesh, config: ml_collections.ConfigDict):
    """NamedSharding tree for a (possibly abstract) train state under `config.sharding`."""
    return jax.tree.map(
        lambda x: NamedSharding(
            mesh,
            leaf_spec(
                tuple(x.shape), mesh, fsdp=config.sharding.fsdp, min_size=config.sharding.min_size
            ),
        ),
        abstract_state,
    )


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
    "leaf_spec",
    "mesh_from_config",
    "state_shardings",
]
