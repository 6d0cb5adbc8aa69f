"""The command line every experiment shares: --config (configs/<name>.py, `:variant` and
`--config.field=value` overrides) and, for experiments with one, --workdir.

Multi-process runs (launch/local.sh --processes N, launch/slurm.sh, launch/tpu_pod.sh): before
the experiment touches JAX, `start_process` joins the run (`jax.distributed.initialize` from the
environment the launcher set; an uncaught exception then ends its process at once instead of
hanging in JAX's shutdown barrier: `partition.exit_at_once`), silences stdout on every process
but 0 (which alone prints the tables) and gives every process process 0's default run name, so
all of them write to the same results/<experiment>/<run>/ directory and the same checkpoints.
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Callable


def start_process(config=None) -> None:
    """Join a multi-process run when the environment describes one (see the module docstring);
    a no-op for a single process. Call it first, before any JAX computation."""
    from introspect.train import partition

    enabled = bool(config is not None and config.get("train", {}).get("distributed", False))
    if not partition.maybe_initialize_distributed(enabled):
        return
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    if config is not None and "run_name" in config and not config.run_name:
        # results.run_dir's default (a UTC timestamp) taken once, on process 0, for everyone
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
        code = multihost_utils.broadcast_one_to_all(np.frombuffer(stamp.encode(), np.uint8))
        config.run_name = bytes(np.asarray(code, np.uint8)).decode()
    if jax.process_index() != 0:
        sys.stdout = open(os.devnull, "w")  # for the life of the process


def launch(run: Callable, name: str, *, workdir_help: str | None = None) -> None:
    """Define the flags and run `run(config)`, or `run(config, workdir)` when `workdir_help`
    is given (default workdir: <results_root>/<name>_workdir). Flags are defined only here,
    when a module runs as a program, so experiments import side by side."""
    from absl import app, flags, logging
    from ml_collections import config_flags

    config = config_flags.DEFINE_config_file("config", f"configs/{name}.py", "experiment config")
    workdir = flags.DEFINE_string("workdir", None, workdir_help) if workdir_help else None
    for flag in ("config", "workdir") if workdir_help else ("config",):
        # the program's own flags (absl names the main module by its path): --helpshort
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[flag])

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        logging.set_verbosity(logging.WARNING)  # keep absl/TFDS/orbax info lines out
        start_process(config.value)
        if workdir is None:
            run(config.value)
        else:
            default = os.path.join(config.value.results_root, f"{name}_workdir")
            run(config.value, workdir.value or default)

    app.run(main)
