"""The command line every experiment shares: --config (configs/<name>.py, `:variant` and
`--config.field=value` overrides) and, for experiments with one, --workdir."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


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
        if workdir is None:
            run(config.value)
        else:
            default = os.path.join(config.value.results_root, f"{name}_workdir")
            run(config.value, workdir.value or default)

    app.run(main)
