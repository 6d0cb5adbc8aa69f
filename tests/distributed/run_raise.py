"""Process 1 raises a Python exception while process 0 waits for it in a collective: the failing
process must end at once (not hang in jax.distributed's shutdown barrier) and the other must stop
with an error about its peer.

    launch/local.sh --processes 2 --devices 1 -- .venv/bin/python tests/distributed/run_raise.py
        [--plain]

By default the program is an experiment entry point (experiments/_cli.launch, an absl app, as
every experiment starts); --plain joins the run with `partition.maybe_initialize_distributed`
in a bare script, as a user's own program would.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def run(config=None) -> None:
    import jax
    from jax.experimental import multihost_utils

    if jax.process_index() == 1:
        raise RuntimeError("process 1 fails on purpose")
    multihost_utils.sync_global_devices("waits for process 1, which never comes")
    print("process 0 passed the barrier alone", flush=True)


if __name__ == "__main__":
    if "--plain" in sys.argv:
        from introspect.train import partition

        partition.maybe_initialize_distributed()
        run()
    else:
        from experiments._cli import launch

        launch(run, "answer")
