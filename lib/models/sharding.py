"""Device mesh and parameter placement for the decoder.

A mesh has a "data" axis (batch) and an optional "model" axis (tensor parallelism, Megatron
style: column-parallel q/k/v/gate/up, row-parallel o/down, vocab-parallel embedding). A dimension
is only split when the axis size divides it; otherwise that tensor is replicated on the axis.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA, MODEL = "data", "model"

# Which kernel dimension is split over the model axis, keyed by the module name.
_MODEL_DIM = {
    "q_proj": 1,
    "k_proj": 1,
    "v_proj": 1,
    "gate_proj": 1,
    "up_proj": 1,
    "o_proj": 0,
    "down_proj": 0,
    "embed": 0,
    "lm_head": 1,
}


def make_mesh(data: int | None = None, model: int = 1, devices=None) -> Mesh:
    """A ("data", "model") mesh over `devices` (default: all). data=None uses what is left."""
    devices = list(jax.devices() if devices is None else devices)
    if model < 1 or len(devices) % model:
        raise ValueError(
            f"mesh: model axis size {model} must be >= 1 and divide the {len(devices)} devices"
        )
    data = len(devices) // model if data is None else data
    if data * model != len(devices):
        raise ValueError(
            f"mesh: data ({data}) x model ({model}) must equal the number of devices "
            f"({len(devices)})"
        )
    return Mesh(np.asarray(devices).reshape(data, model), (DATA, MODEL))


def param_specs(params, mesh: Mesh):
    """PartitionSpec tree for the decoder params on `mesh`."""
    size = mesh.shape[MODEL]

    def spec(path, leaf):
        names = [getattr(k, "key", str(k)) for k in path]
        module = next((n for n in reversed(names) if n in _MODEL_DIM), None)
        if size == 1 or module is None or leaf.ndim < 2:
            return P()
        dim = _MODEL_DIM[module]
        if leaf.shape[dim] % size:
            return P()
        axes = [None] * leaf.ndim
        axes[dim] = MODEL
        return P(*axes)

    return jax.tree_util.tree_map_with_path(spec, params)


def shard_params(params, mesh: Mesh):
    """Place `params` on `mesh` (replicated over "data", split over "model" where possible)."""
    specs = param_specs(params, mesh)
    return jax.tree.map(lambda x, s: jax.device_put(x, NamedSharding(mesh, s)), params, specs)


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Split the leading (batch) dimension over "data"."""
    return NamedSharding(mesh, P(DATA, *([None] * (ndim - 1))))
