"""A Python exception in one process of a multi-process experiment ends the run with an error
(the failing process exits at once, the others on the lost connection or heartbeat) instead of
a hang: found when two processes of confidence_benchmark raced to build a dataset and the loser
waited forever in jax.distributed's shutdown barrier."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from multihost import launch  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(__file__), "run_raise.py")


@pytest.mark.parametrize("entry", ["experiment", "plain"])
def test_exception_in_one_process_ends_the_run(tmp_path, entry):
    args = ["--plain"] if entry == "plain" else []
    run = launch(SCRIPT, *args, processes=2, devices=1, log_dir=tmp_path, timeout=240, grace=120,
                 heartbeat=10)  # fmt: skip
    assert run.returncode != 0, run.why()
    assert "RuntimeError: process 1 fails on purpose" in run.logs[1], run.why()
    assert "exiting without jax.distributed's shutdown barrier" in run.logs[1], run.why()
    assert "passed the barrier alone" not in run.logs[0], run.why()
    # process 0 stopped by itself with an error about its peer: gloo's, when the two had
    # connected (then it ends through the same hook), else the coordination service's once the
    # heartbeats stop (then JAX terminates it); the launcher never had to step in
    lost = ("closed by peer", "reset by peer", "stopped sending heartbeats")
    assert any(s in run.logs[0] for s in lost), run.why()
    assert "terminating the remaining processes" not in run.stderr, run.why()
    assert "--timeout" not in run.stderr, run.why()
