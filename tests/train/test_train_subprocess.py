"""Fault tolerance (SIGKILL mid-run, restart) and sharding (1 vs 8 simulated CPU devices), each in
fresh processes running tests/train/run_tiny_train.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "run_tiny_train.py")


def launch(workdir, out, *args, devices=1, script=SCRIPT):
    """Run a training script (default run_tiny_train.py) on `devices` simulated CPU devices."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    cmd = [sys.executable, script, "--workdir", str(workdir), "--out", str(out), *map(str, args)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=240):
    out, err = proc.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, (
        f"no result line; rc={proc.returncode}\nstdout:{out[-2000:]}\nstderr:{err[-4000:]}"
    )
    return json.loads(lines[-1]), proc.returncode


def load(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def checkpoint_steps(workdir):
    d = os.path.join(workdir, "checkpoints")
    return sorted(int(s) for s in os.listdir(d) if s.isdigit()) if os.path.isdir(d) else []


def test_sigkill_mid_run_then_restart_is_bitwise_identical(tmp_path):
    steps = ("--steps", 300, "--every", 20)
    result, rc = finish(launch(tmp_path / "ref", tmp_path / "ref.npz", *steps))
    assert rc == 0 and result["resumed_from"] is None

    # Slow the data down (2 s for the run) so it can be killed once checkpoint 100 is on disk.
    proc = launch(tmp_path / "run", tmp_path / "run.npz", *steps, "--sleep", 0.006)
    deadline = time.monotonic() + 200
    while not any(s >= 100 for s in checkpoint_steps(tmp_path / "run")):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.exists(tmp_path / "run.npz")
    killed_at = max(checkpoint_steps(tmp_path / "run"))
    assert 100 <= killed_at < 300

    result, rc = finish(launch(tmp_path / "run", tmp_path / "run.npz", *steps))
    assert rc == 0 and result["step"] == 300
    assert result["resumed_from"] is not None and result["resumed_from"] >= killed_at - 20
    ref, got = load(tmp_path / "ref.npz"), load(tmp_path / "run.npz")
    assert ref.keys() == got.keys()
    for k in ref:
        np.testing.assert_array_equal(ref[k].view(np.uint32), got[k].view(np.uint32), err_msg=k)


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    d = tmp_path_factory.mktemp("one")
    result, rc = finish(launch(d / "w", d / "p.npz", "--steps", 100))
    assert rc == 0 and result["devices"] == 1
    return load(d / "p.npz")


@pytest.mark.parametrize(
    "mesh",
    [("--data", 8), ("--data", 4, "--model", 2, "--fsdp")],
    ids=["data8", "data4-model2-fsdp"],
)
def test_eight_devices_match_one_device(one_device, tmp_path, mesh):
    result, rc = finish(launch(tmp_path / "w", tmp_path / "p.npz", "--steps", 100, *mesh,
                               devices=8))  # fmt: skip
    assert rc == 0 and result["devices"] == 8
    if "--fsdp" in mesh:  # kernels really are split: w1 [16, 32] over data and model
        assert result["specs"]["w1"] == "P('data', 'model')", result["specs"]
    got = load(tmp_path / "p.npz")
    for k in one_device:
        np.testing.assert_allclose(got[k], one_device[k], rtol=0, atol=1e-6, err_msg=k)


def test_batch_not_divisible_by_devices_names_the_field(tmp_path):
    result, rc = finish(launch(tmp_path / "w", tmp_path / "p.npz", "--batch", 60, devices=8))
    assert rc == 3
    assert (
        "train.batch_size=60 must be divisible by the mesh's data axis size (8" in result["error"]
    )
