"""Compile the probe, SAE and GRPO train steps ahead of time for a TPU topology; print memory.

    launch/aot_tpu.sh --topology v5e:2x4 --steps probe,sae,grpo      # makes build/libtpu_venv
    build/libtpu_venv/bin/python launch/aot_tpu.py --topology v4:2x2x1 --steps grpo --model_axis 2

No TPU is needed: libtpu's compiler runs on this CPU host, and
`jax.experimental.topologies.get_topology_desc(topology_name, "tpu")` gives compile-only
devices of the named slice. Each step is the jitted call the one training loop runs
(`introspect.train.Run.compile` of the step the experiment trains with), lowered on abstract
arguments only (`jax.ShapeDtypeStruct`s carrying their `NamedSharding`s; no weights, no data)
and compiled for the topology:

* probe: `probes.fit_probe` with `configs/train_probe.py` (features = hidden_size x layers);
* sae: `sae.fit` with `configs/rise.py`'s `sae` block (d_in = hidden_size), `make_sae_step`;
* grpo: `posttrain.train_grpo`'s pieces with `configs/grpo.py`'s `grpo` block, the policy being
  the embedded SmolLM2-135M architecture (its GGUF metadata only; parameters from
  `models.llama.param_shapes`), in the config's dtype.

The probe and SAE losses are the libraries' own: `fit_probe` / `sae.fit` are called on two
placeholder rows with `introspect.train.train` swapped for a stub that records its arguments
(init_fn, loss_fn, make_step, config) and stops. The state layout is `setup`'s
(`train.state_layout`: eval_shape of the initial TrainState and its shardings over the
("data", "model") mesh of `sharding.make_mesh` on the topology's devices); batches are
host-fed, [steps_per_dispatch, batch_size, ...] split over "data", as `Run.compile` places
them.

Prints one JSON object: per step the mesh, batch, parameter count, the bytes of one device's
program from `compiled.memory_analysis()` (argument, output, alias, temp, generated code; total =
argument + output - alias + temp + generated code, the state being donated), the total per chip
(per device x devices per chip: 1 on v5e / v5p / v6e; libtpu's compile-only v4 slices have one
device per TensorCore, 2 per chip) and compile seconds. Exit 2 with a message when libtpu is
missing or the topology is unknown, 1 when a step fails to compile (its error is in the JSON).
libtpu warns on start-up that it finds no TPU VM metadata (TPU_ACCELERATOR_TYPE,
TPU_WORKER_HOSTNAMES); compiling needs none.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import sys
import tempfile
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = ("probe", "sae", "grpo")
DEFAULT_CONFIGS = {
    "probe": "configs/train_probe.py",
    "sae": "configs/rise.py",
    "grpo": "configs/grpo.py",
}
# TPU generations and the rank of their topology names (chips along each axis).
GENERATIONS = {"v2": 2, "v3": 2, "v4": 3, "v5e": 2, "v5p": 3, "v6e": 2}


class UsageError(Exception):
    """Bad input or a missing prerequisite: printed, exit status 2."""


def parse_topology(name: str) -> tuple[str, tuple[int, ...]]:
    """The generation and chips per axis of a name like "v5e:2x4"; UsageError otherwise."""
    m = re.fullmatch(r"(v\d[a-z]*):(\d+(?:x\d+)*)", name or "")
    known = ", ".join(f"{g}:{'x'.join(['2'] * r)}" for g, r in GENERATIONS.items())
    if not m or m.group(1) not in GENERATIONS:
        raise UsageError(
            f"unknown TPU topology {name!r}: expected GENERATION:AxB (2-D: v2, v3, v5e, v6e) or "
            f"GENERATION:AxBxC (3-D: v4, v5p), e.g. {known}"
        )
    gen, dims = m.group(1), tuple(int(d) for d in m.group(2).split("x"))
    if len(dims) != GENERATIONS[gen] or min(dims) < 1:
        raise UsageError(
            f"unknown TPU topology {name!r}: {gen} topologies have {GENERATIONS[gen]} "
            f"dimensions (chips per axis), e.g. {gen}:{'x'.join(['2'] * GENERATIONS[gen])}"
        )
    return gen, dims


def check_libtpu() -> str:
    """libtpu's version, or UsageError saying it is missing."""
    if importlib.util.find_spec("libtpu") is None and not os.environ.get("TPU_LIBRARY_PATH"):
        raise UsageError(
            f"libtpu is not installed in {sys.executable}: no TPU topology support (the AOT "
            "compile for a TPU topology needs libtpu's compiler; jax[tpu] pins it). Run "
            "launch/aot_tpu.sh, which makes build/libtpu_venv with it, or pip install the "
            "libtpu version jax[tpu] pins into a separate venv."
        )
    from importlib import metadata

    try:
        return metadata.version("libtpu")
    except metadata.PackageNotFoundError:
        return os.environ.get("TPU_LIBRARY_PATH", "")


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="launch/aot_tpu.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--topology", required=True, help="TPU slice, e.g. v5e:2x4 or v4:2x2x1")
    p.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated of {STEPS}")
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="STEP=PATH[:ARG]",
        help="the config of a step (default: " + ", ".join(
            f"{k}={v}" for k, v in DEFAULT_CONFIGS.items()) + ")",
    )  # fmt: skip
    p.add_argument("--model_axis", type=int, default=None, help="override train.mesh.model")
    p.add_argument("--fsdp", action="store_true", help="set train.sharding.fsdp")
    p.add_argument("--output", default="", help="also write the JSON to this file")
    args = p.parse_args(argv)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    bad = [s for s in steps if s not in STEPS]
    if bad or not steps:
        raise UsageError(f"--steps: unknown {bad or steps!r}; choose from {STEPS}")
    configs = dict(DEFAULT_CONFIGS)
    for item in args.config:
        step, _, path = item.partition("=")
        if step not in STEPS or not path:
            raise UsageError(f"--config {item!r}: expected STEP=PATH[:ARG] with STEP in {STEPS}")
        configs[step] = path
    return args, steps, configs


def load_config(spec: str):
    """`configs/x.py[:arg]` -> get_config(arg), as `--config` of the experiments."""
    path, _, arg = spec.partition(":")
    full = path if os.path.isabs(path) else os.path.join(ROOT, path)
    if not os.path.isfile(full):
        raise UsageError(f"config file not found: {path}")
    module_spec = importlib.util.spec_from_file_location("_aot_config", full)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)


# ----------------------------------------------------------------------------------------------
# The steps, as the library builds them
# ----------------------------------------------------------------------------------------------


class _Captured(Exception):
    def __init__(self, kwargs):
        super().__init__("introspect.train.train called")
        self.kwargs = kwargs


def _capture(fn, *args, **kwargs) -> dict:
    """What `fn(*args, **kwargs)` passes to `introspect.train.train` (config, init_fn, loss_fn,
    data, make_step, ...); the stub standing in for it stops `fn` there."""
    from introspect import train as train_mod

    out: dict = {}

    def stub(config, **kw):
        out.update(config=config, **kw)
        raise _Captured(out)

    original = train_mod.train
    train_mod.train = stub
    try:
        fn(*args, **kwargs)
    except _Captured:
        return out
    finally:
        train_mod.train = original
    raise RuntimeError(f"{fn.__qualname__} returned without calling introspect.train.train")


def model_config(name: str):
    """The decoder's ModelConfig from the GGUF metadata of `name` (no tensor is read)."""
    import gguf

    from introspect import models
    from introspect.models import loaders

    path = models.resolve(name)
    if not path.endswith(".gguf"):  # a Hugging Face directory
        with open(os.path.join(path, "config.json")) as f:
            return loaders.hf_config(json.load(f))
    return loaders.gguf_config(gguf.GGUFReader(path))


def _row_spec(source) -> dict:
    """{column: (row shape, dtype)} of a data source (one row read)."""
    import numpy as np

    from introspect.train.data import as_source

    row = as_source(source)[np.arange(1)]
    return {k: (tuple(np.shape(v))[1:], np.asarray(v).dtype) for k, v in row.items()}


def probe_step(config) -> dict:
    import numpy as np

    from introspect import probes

    mc = model_config(config.model)
    dim = mc.hidden_size * len(tuple(config.layers))
    rows = {"features": np.eye(2, dim, dtype=np.float32), "label": np.array([0, 1], np.int8)}
    with tempfile.TemporaryDirectory() as tmp:
        got = _capture(probes.fit_probe, config.probe, config.train, rows, workdir=tmp)
    return {**got, "rows": _row_spec(got["data"]), "info": {"input_dim": dim}}


def sae_step(config) -> dict:
    import numpy as np

    from introspect import sae

    mc = model_config(config.model)
    x = np.random.default_rng(0).normal(size=(2, mc.hidden_size)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        got = _capture(sae.fit, x, config.sae, workdir=tmp)
    cfg = config.sae
    info = {"d_in": mc.hidden_size, "kind": cfg.kind, "num_latents": int(cfg.num_latents)}
    return {**got, "rows": _row_spec(got["data"]), "info": info}


def grpo_step(config) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from introspect import posttrain
    from introspect.models import llama
    from introspect.posttrain import grpo, lora

    cfg = config.grpo
    grpo.check_config(cfg)
    mc = model_config(config.model)
    dtype = jnp.dtype(config.dtype)
    shapes = llama.param_shapes(mc)
    # The policy as train_grpo sees it: config, dtype, params (zeros, only ever traced).
    lm = types.SimpleNamespace(config=mc, dtype=dtype.name, params=None)

    def init_fn(rng):
        lm.params = jax.tree.map(lambda s: jnp.zeros(s.shape, dtype), shapes)
        return lora.trainable_init(lm, cfg)(rng)

    width = int(cfg.max_prompt_tokens) + int(cfg.max_new_tokens)
    rows = {
        "tokens": ((width,), np.dtype(np.int32)),
        "valid": ((width,), np.dtype(bool)),
        "token_mask": ((width - 1,), np.dtype(bool)),
        "old_logprobs": ((width - 1,), np.dtype(np.float32)),
        # per response, or per token for the token-level transforms (ucas, empg)
        "advantages": ((width - 1,) if cfg.advantage.name in grpo.TOKEN_LEVEL else (),
                       np.dtype(np.float32)),
    }  # fmt: skip
    # the reward's columns (RolloutFeed keeps reward / correct / confidence), from one row
    example = {"id": "0", "question": "1 + 1", "answer": "2"}
    out = posttrain.compute_reward(cfg.reward.name, [""], [example], cfg.reward.options)
    for k in ("reward", "correct", "confidence"):
        if k in out:
            rows[k] = ((), np.dtype(np.float32))
    if cfg.loss.name == "clipped_policy" and float(cfg.loss.options.get("kl_coef", 0.0)) > 0:
        rows["ref_logprobs"] = ((width - 1,), np.dtype(np.float32))
    info = {
        "model": config.model,
        "dtype": dtype.name,
        "lora_rank": int(cfg.lora.rank),
        "prompts_per_step": int(cfg.prompts_per_step),
        "group_size": int(cfg.group_size),
        "sequence_length": width,
    }
    return {
        "config": lora.train_config(cfg),
        "init_fn": init_fn,
        "loss_fn": grpo.make_loss(lm, cfg),
        "make_step": None,
        "rows": rows,
        "info": info,
    }


BUILDERS = {"probe": probe_step, "sae": sae_step, "grpo": grpo_step}


def _chips(devices) -> int:
    """Chips under `devices` (TPU devices on one chip share its coords; others count one each)."""
    return len({tuple(getattr(d, "coords", None) or (d.id,)) for d in devices})


def compile_step(name: str, built: dict, devices, *, model_axis, fsdp) -> dict:
    """Lower and compile one step's jitted call on abstract, sharded arguments."""
    import jax
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from introspect import sharding, train
    from introspect.train.config import check_batch_divisible

    cfg_in = train.resolve_config(built["config"], name=f"{name}.train")
    if model_axis is not None:
        cfg_in.mesh.model = int(model_axis)
    if fsdp:
        cfg_in.sharding.fsdp = True
    cfg = train.resolve_config(cfg_in, name=f"{name}.train")
    mesh = sharding.make_mesh(cfg.mesh, devices=devices, field=f"{name}.train.mesh")
    check_batch_divisible(cfg, mesh.shape[sharding.DATA], 1, name=f"{name}.train")
    # the state's shapes and shardings exactly as train.setup lays them out
    tx, schedule, _, shardings, state = train.state_layout(cfg, built["init_fn"], mesh)
    run = train.Run(
        config=cfg, name=name, mesh=mesh, shardings=shardings, tx=tx, schedule=schedule,
        data=None, feed=None, device_data=None, checkpointer=None, writer=None,
        resumed_from=None,
    )  # fmt: skip
    make_step = built.get("make_step") or train.make_train_step
    step = make_step(built["loss_fn"], tx, schedule, guard_nonfinite=cfg.guard_nonfinite)
    jitted = run.compile(step).jitted

    n, b = int(cfg.steps_per_dispatch), int(cfg.batch_size)
    batch = {
        k: jax.ShapeDtypeStruct(
            (n, b, *shape),
            dtype,
            sharding=NamedSharding(mesh, P(None, sharding.DATA, *([None] * len(shape)))),
        )
        for k, (shape, dtype) in built["rows"].items()
    }
    t0 = time.perf_counter()
    lowered = jitted.lower(state, batch, None)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    m = compiled.memory_analysis()
    fields = {
        "argument": "argument_size_in_bytes",
        "output": "output_size_in_bytes",
        "alias": "alias_size_in_bytes",
        "temp": "temp_size_in_bytes",
        "generated_code": "generated_code_size_in_bytes",
    }
    per_device = {k: int(getattr(m, v)) for k, v in fields.items()}
    per_device["total"] = (
        per_device["argument"] + per_device["output"] - per_device["alias"] + per_device["temp"]
        + per_device["generated_code"]
    )  # fmt: skip
    per_chip = len(devices) // _chips(devices)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
    return {
        "mesh": {k: int(v) for k, v in mesh.shape.items()},
        "fsdp": bool(cfg.sharding.fsdp),
        "batch_size": b,
        "steps_per_dispatch": n,
        "batch": {k: [n, b, *s] for k, (s, _) in built["rows"].items()},
        "optimizer": cfg.optimizer.name,
        "params": n_params,
        "state_bytes_global": int(state_bytes),
        "per_device_bytes": per_device,
        "per_device_mib": {k: round(v / 2**20, 1) for k, v in per_device.items()},
        "per_chip_total_mib": round(per_device["total"] * per_chip / 2**20, 1),
        "lower_seconds": round(t1 - t0, 2),
        "compile_seconds": round(t2 - t1, 2),
        **built.get("info", {}),
    }


def main(argv=None) -> int:
    try:
        args, steps, configs = parse_args(argv)
        parse_topology(args.topology)
        libtpu_version = check_libtpu()
    except UsageError as e:
        print(f"aot_tpu: {e}", file=sys.stderr)
        return 2
    # the host's own backend is the CPU; the TPU is only a compile target
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    import jax
    from jax.experimental import topologies

    try:
        topo = topologies.get_topology_desc(topology_name=args.topology, platform="tpu")
    except Exception as e:  # libtpu's own words: an unsupported name or shape
        print(
            f"aot_tpu: libtpu {libtpu_version} could not make TPU topology {args.topology!r}: "
            f"{type(e).__name__}: {e}",
            file=sys.stderr,
        )
        return 2
    devices = list(topo.devices)
    chips = _chips(devices)
    out = {
        "command": "launch/aot_tpu.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "topology": args.topology,
        "device_kind": devices[0].device_kind,
        "num_devices": len(devices),
        "chips": chips,
        "devices_per_chip": len(devices) // chips,
        "jax": jax.__version__,
        "libtpu": libtpu_version,
        "host": "CPU only (compile-only TPU devices from jax.experimental.topologies)",
        "steps": {},
    }
    failed = False
    for name in steps:
        entry: dict = {"config": configs[name]}
        try:
            config = load_config(configs[name])
            built = BUILDERS[name](config)
            entry.update(
                compile_step(name, built, devices, model_axis=args.model_axis, fsdp=args.fsdp)
            )
        except UsageError as e:
            print(f"aot_tpu: {e}", file=sys.stderr)
            return 2
        except Exception as e:  # recorded; the other steps still run
            failed = True
            entry["error"] = f"{type(e).__name__}: {e}"
        out["steps"][name] = entry
        print(f"aot_tpu: {name}: " + (entry.get("error") or (
            f"{entry['per_chip_total_mib']} MiB per chip, compiled in "
            f"{entry['compile_seconds']} s")), file=sys.stderr, flush=True)  # fmt: skip
    text = json.dumps(out, indent=2)
    print(text)
    if args.output:
        from introspect import results

        results.write_text(args.output, text + "\n")  # atomic
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
