"""One sharding scheme for training and inference: a mesh, logical axis names, one rules table.

The mesh has a "data" axis (batch; with `fsdp` also parameters) and a "model" axis (tensor
parallelism, Megatron style). Every parameter leaf gets *logical* axis names from its path
(`PARAM_AXES`: the decoder's embedding is ("vocab", "embed"), q/k/v kernels ("embed", "heads"),
o_proj ("heads", "embed"), gate/up ("embed", "mlp"), down ("mlp", "embed"), ...). The rules
table (`config.sharding.rules`, default `DEFAULT_RULES`) maps logical names to mesh axes:

    vocab -> model, heads -> model, mlp -> model, embed -> (none)

so q/k/v/gate/up are column-parallel, o/down row-parallel, the embedding and head vocab-parallel.
Leaves no entry of `PARAM_AXES` matches (probe and SAE kernels, the tiny test models) get the
generic names (..., "mlp"): their last dimension is split over "model" like a column-parallel
kernel. A dimension is only split when the axis size divides it; leaves smaller than
`min_size` elements stay replicated; with `fsdp` the largest remaining dimension divisible by the
data axis is split over "data" (ZeRO-3 style). Optimiser moments carry their parameter's path as
a suffix, so they are laid out like their parameter.

`LM` (inference) and `introspect.train` (training) both call `param_specs` with the same config,
so a model fine-tuned on a (data, model) mesh is served with the same layout.

    mesh = sharding.make_mesh(config.mesh)            # or make_mesh(data=4, model=2)
    specs = sharding.param_specs(params, mesh, config.sharding)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA, MODEL = "data", "model"

# Parameter path (names joined by "/", searched with re.search) -> logical axis names.
PARAM_AXES: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    (r"(^|/)embed/embedding$", ("vocab", "embed")),
    (r"(^|/)lm_head/kernel$", ("embed", "vocab")),
    (r"(^|/)(q_proj|k_proj|v_proj)/kernel$", ("embed", "heads")),
    (r"(^|/)(q_proj|k_proj|v_proj)/bias$", ("heads",)),
    (r"(^|/)o_proj/kernel$", ("heads", "embed")),
    (r"(^|/)(gate_proj|up_proj)/kernel$", ("embed", "mlp")),
    (r"(^|/)down_proj/kernel$", ("mlp", "embed")),
    (r"(^|/)(q_norm|k_norm)/scale$", ("head_dim",)),
    (r"(^|/)(attn_norm|mlp_norm|final_norm)/scale$", ("embed",)),
)

# Logical axis -> mesh axis (None: replicated). The default of `config.sharding.rules`.
DEFAULT_RULES: tuple[tuple[str, str | None], ...] = (
    ("vocab", MODEL),
    ("heads", MODEL),
    ("mlp", MODEL),
    ("embed", None),
    ("head_dim", None),
)


def default_config() -> ml_collections.ConfigDict:
    """The `mesh` and `sharding` fields shared by every config that places arrays on devices."""
    c = ml_collections.ConfigDict()
    c.mesh = ml_collections.ConfigDict()
    # Device mesh ("data", "model"): data = -1 uses every device not used by the model axis.
    c.mesh.data = -1
    # Tensor-parallel degree (1 = none).
    c.mesh.model = 1
    c.sharding = ml_collections.ConfigDict()
    # Shard parameters and optimiser state over the data axis too (FSDP / ZeRO-3 style).
    c.sharding.fsdp = False
    # Arrays with fewer elements than this stay replicated (sharding them costs more than it saves).
    c.sharding.min_size = 2**14
    # Logical axis name -> mesh axis ("model", "data" or None), see the module docstring.
    c.sharding.rules = DEFAULT_RULES
    return c


def make_mesh(
    config: Mapping | ml_collections.ConfigDict | None = None,
    *,
    data: int | None = None,
    model: int | None = None,
    devices: Sequence[Any] | None = None,
    field: str = "mesh",
) -> Mesh:
    """A ("data", "model") mesh over `devices` (default: all of them, every process's).

    Args:
      config: a `mesh` config ({"data": -1 or n, "model": m}); or pass `data` / `model`.
      data: data-axis size; None or -1 = every device not used by the model axis.
      model: model-axis size (default 1).
      field: how the config is called in error messages.
    Raises:
      ValueError: the sizes do not multiply to the number of devices (names the field).
    """
    if config is not None:
        data, model = config["data"], config["model"]
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    model = 1 if model is None else model
    if not isinstance(model, int | np.integer) or model < 1 or n % model:
        raise ValueError(
            f"{field}.model={model!r} must be an int >= 1 that divides the number of devices ({n})"
        )
    data = n // model if data in (None, -1) else data
    if not isinstance(data, int | np.integer) or data * model != n:
        raise ValueError(
            f"{field}.data={data!r} x {field}.model={model} must equal the number of devices "
            f"({n}); use {field}.data=-1 to take all remaining devices"
        )
    return Mesh(np.asarray(devices).reshape(int(data), int(model)), (DATA, MODEL))


def path_name(path) -> str:
    """A pytree key path as "a/b/kernel" (dict keys, attribute names, sequence indices)."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def logical_axes(path: str, ndim: int) -> tuple[str | None, ...]:
    """Logical axis names of the leaf at `path` ("a/b/kernel") with `ndim` dimensions."""
    for pattern, axes in PARAM_AXES:
        if re.search(pattern, path) and len(axes) == ndim:
            return axes
    return (None,) * (ndim - 1) + ("mlp",) if ndim else ()


def spec_for(
    path: str,
    shape: tuple[int, ...],
    mesh: Mesh,
    *,
    rules: Sequence[tuple[str, str | None]] = DEFAULT_RULES,
    fsdp: bool = False,
    min_size: int = 0,
) -> P:
    """PartitionSpec of one leaf: logical names -> mesh axes by `rules`, then FSDP / min_size."""
    size = int(np.prod(shape)) if shape else 1
    if not shape or size < min_size:
        return P()
    table = dict(rules)
    axes: list[str | None] = []
    for dim, name in zip(shape, logical_axes(path, len(shape)), strict=True):
        axis = table.get(name) if name is not None else None
        ok = axis is not None and mesh.shape[axis] > 1 and dim % mesh.shape[axis] == 0
        axes.append(axis if ok and axis not in axes else None)
    d = mesh.shape[DATA]
    if fsdp and d > 1 and DATA not in axes:
        free = [i for i in range(len(shape)) if axes[i] is None and shape[i] % d == 0]
        if free:
            axes[max(free, key=lambda i: shape[i])] = DATA
    return P(*axes) if any(axes) else P()


def check_rules(rules, *, field: str = "sharding.rules") -> tuple[tuple[str, str | None], ...]:
    """`rules` as a tuple of (logical name, "data" | "model" | None) pairs, or a ValueError."""
    out = []
    for rule in rules:
        rule = tuple(rule)
        if len(rule) != 2 or not isinstance(rule[0], str) or rule[1] not in (DATA, MODEL, None):
            raise ValueError(
                f"{field}: each rule must be (logical axis name, 'data' | 'model' | None), "
                f"got {rule!r}"
            )
        out.append(rule)
    return tuple(out)


def _options(config) -> dict:
    if config is None:
        config = default_config().sharding
    return {
        "fsdp": bool(config["fsdp"]),
        "min_size": int(config["min_size"]),
        "rules": check_rules(config["rules"] if "rules" in config else DEFAULT_RULES),
    }


def param_specs(tree, mesh: Mesh, config: Mapping | ml_collections.ConfigDict | None = None):
    """PartitionSpec tree for `tree` (params, optimiser state, a whole train state).

    Args:
      tree: a pytree of arrays or ShapeDtypeStructs.
      mesh: the ("data", "model") mesh.
      config: a `sharding` config (fsdp, min_size, rules); None = `default_config().sharding`.
    """
    opts = _options(config)
    return jax.tree_util.tree_map_with_path(
        lambda path, x: spec_for(path_name(path), tuple(np.shape(x)), mesh, **opts), tree
    )


def shardings(tree, mesh: Mesh, config=None):
    """NamedSharding tree for `tree` (see `param_specs`)."""
    opts = _options(config)
    return jax.tree_util.tree_map_with_path(
        lambda path, x: NamedSharding(
            mesh, spec_for(path_name(path), tuple(np.shape(x)), mesh, **opts)
        ),
        tree,
    )


def shard(tree, mesh: Mesh, config=None):
    """`tree` placed on `mesh` with the layout of `param_specs`."""
    return jax.device_put(tree, shardings(tree, mesh, config))


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Split the leading (batch) dimension over "data"."""
    return NamedSharding(mesh, P(DATA, *([None] * (ndim - 1))))


def gather(tree):
    """`tree` with every array that spans other processes' devices (sharded over a multi-process
    mesh) all-gathered into one numpy array on each process; arrays this process can read whole
    (single host, replicated, process-local) are returned as they are. A collective when any
    array needs gathering: every process must call it, in the same order."""

    def one(x):
        if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated):
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return x

    return jax.tree.map(one, tree)


def to_host(tree):
    """numpy copies of a pytree of arrays on every process (`gather`, then copy): call it on
    every process, like the compiled step that produced the arrays."""
    return jax.tree.map(np.asarray, gather(tree))


__all__ = [
    "DATA",
    "DEFAULT_RULES",
    "MODEL",
    "PARAM_AXES",
    "batch_sharding",
    "check_rules",
    "default_config",
    "gather",
    "logical_axes",
    "make_mesh",
    "param_specs",
    "path_name",
    "shard",
    "shardings",
    "spec_for",
    "to_host",
]
