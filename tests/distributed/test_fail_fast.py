"""A Python exception in one process of a multi-process experiment ends the run with an error
(the failing process exits at once, the others on the lost connection or heartbeat) instead of
a hang: found when two processes of confidence_benchmark raced to build a dataset and the loser
waited forever in jax.distributed's shutdown barrier."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from multihost import launch  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(__file__), "run_raise.py")


def test_exception_in_one_process_ends_the_run(tmp_path):
    run = launch(SCRIPT, processes=2, devices=1, log_dir=tmp_path, timeout=240, grace=120,
                 heartbeat=10)  # fmt: skip
    assert run.returncode != 0, run.why()
    assert "RuntimeError: process 1 fails on purpose" in run.logs[1], run.why()
    assert "exiting without jax.distributed's shutdown barrier" in run.logs[1], run.why()
    assert "passed the barrier alone" not in run.logs[0], run.why()
    # process 0 stopped by itself with an error about its peer (gloo sees the closed connection
    # at once; a collective outside gloo would hear it from the heartbeat monitor), then ended
    # the same way; the launcher never had to step in
    lost = ("closed by peer", "reset by peer", "stopped sending heartbeats")
    assert any(s in run.logs[0] for s in lost), run.why()
    assert "process 0 of 2 failed" in run.logs[0], run.why()
    assert "terminating the remaining processes" not in run.stderr, run.why()
    assert "--timeout" not in run.stderr, run.why()
