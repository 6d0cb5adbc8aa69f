"""An experiment entry point (experiments/_cli.launch, as every experiment starts) whose process 1
raises a Python exception while process 0 waits for it in a collective: the failing process must
end at once (not hang in jax.distributed's shutdown barrier) and the other must stop with the
coordination service's error.

    launch/local.sh --processes 2 --devices 1 -- .venv/bin/python tests/distributed/run_raise.py
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from experiments._cli import launch  # noqa: E402


def run(config) -> None:
    import jax
    from jax.experimental import multihost_utils

    if jax.process_index() == 1:
        raise RuntimeError("process 1 fails on purpose")
    multihost_utils.sync_global_devices("waits for process 1, which never comes")
    print("process 0 passed the barrier alone", flush=True)


if __name__ == "__main__":
    launch(run, "answer")
