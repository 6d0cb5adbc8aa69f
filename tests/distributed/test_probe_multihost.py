"""Multi-process training on simulated hosts (launch/local.py, jax.distributed, gloo): the probe
of experiments/train_probe.py (its :smoke probe and optimiser, 40 steps, synthetic features; see
run_probe.py) trained as 2 processes x 4 devices, 1 x 8 and 1 x 1 ends with the same parameters
(within 1e-6); a process killed mid-run brings the other down with an error instead of a hang,
and the restarted run resumes from the last collective checkpoint to the bit-identical result;
a checkpoint written by 2 processes restores in 1 and vice versa."""

import os
import shutil
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from multihost import launch  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(__file__), "run_probe.py")
STEPS = 40


def _params(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _train(tmp, name, processes, devices, *extra, workdir=None):
    workdir = workdir or tmp / f"work-{name}"
    out = tmp / f"{name}.npz"
    run = launch(SCRIPT, f"--workdir={workdir}", f"--out={out}", f"--steps={STEPS}", *extra,
                 processes=processes, devices=devices, log_dir=tmp / f"logs-{name}")  # fmt: skip
    return run, workdir, out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """layout -> (params, info, workdir) of uninterrupted runs."""
    tmp = tmp_path_factory.mktemp("multihost-probe")
    out = {}
    for processes, devices in ((1, 1), (1, 8), (2, 4)):
        name = f"{processes}x{devices}"
        # logged once, at the end: nothing but the checkpoints makes the host wait for the
        # devices (the loop itself must keep multi-process CPU runs from deadlocking)
        run, workdir, params = _train(tmp, name, processes, devices, f"--log_every={STEPS}")
        run.check()
        out[name] = (_params(params), run.info, workdir)
    return out


def _close(a, b, atol):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=atol, err_msg=k)


def test_two_hosts_match_one_host_and_one_device(uninterrupted):
    for name, (_, info, _) in uninterrupted.items():
        processes, devices = map(int, name.split("x"))
        assert info["processes"] == processes and info["devices"] == processes * devices, info
        assert info["step"] == STEPS and info["resumed_from"] is None
    one, _, _ = uninterrupted["1x1"]
    _close(uninterrupted["1x8"][0], one, 1e-6)
    _close(uninterrupted["2x4"][0], one, 1e-6)
    assert uninterrupted["2x4"][1]["eval"]["auroc"] == pytest.approx(
        uninterrupted["1x1"][1]["eval"]["auroc"], abs=1e-6
    )


def _committed(workdir):
    """The checkpoint steps on disk (orbax renames a step's temporary directory on commit)."""
    return sorted(int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit())


def test_killed_process_stops_the_run_and_the_restart_resumes_bitwise(uninterrupted, tmp_path):
    # Checkpoints every 10 steps (asynchronous: step s is committed by the time s + 10 saves).
    # 1. Process 0 (it also serves the coordinator) SIGKILLs itself at its 25th batch.
    run, workdir, _ = _train(tmp_path, "kill0", 2, 4, "--die_after=25", "--die_process=0")
    assert run.returncode != 0 and "SIGKILL at batch read 25" in run.logs[0], run.why()
    assert "leader task was preempted/died" in run.logs[1], run.why()
    assert "terminating the remaining processes" not in run.stderr, run.why()
    assert _committed(workdir)[-1] in (10, 20)
    # 2. Restarted; now process 1 SIGKILLs itself at its 15th batch (10 steps after resuming).
    run, _, _ = _train(tmp_path, "kill1", 2, 4, "--die_after=15", workdir=workdir)
    assert run.returncode != 0 and "SIGKILL at batch read 15" in run.logs[1], run.why()
    assert "stopped sending heartbeats" in run.logs[0], run.why()
    # the survivor stopped by itself with the coordination service's diagnosis, well within the
    # launcher's grace period (it never had to be terminated)
    assert "terminating the remaining processes" not in run.stderr, run.why()
    # 3. Restarted again: resumes from the newest committed checkpoint and ends bit for bit
    # where the uninterrupted run ended.
    latest = _committed(workdir)[-1]
    again, _, out = _train(tmp_path, "resumed", 2, 4, workdir=workdir)
    again.check()
    assert again.info["resumed_from"] == latest and again.info["step"] == STEPS
    reference = uninterrupted["2x4"][0]
    resumed = _params(out)
    for k in reference:
        assert np.array_equal(resumed[k], reference[k]), k  # bit for bit


def _checkpoint_at(src, dst, step):
    """A copy of workdir `src` whose newest checkpoint is `step` (newer ones dropped)."""
    shutil.copytree(src, dst)
    root = dst / "checkpoints"
    for d in os.listdir(root):
        if d.isdigit() and int(d) > step:
            shutil.rmtree(root / d)
    return dst


def test_checkpoints_restore_across_process_counts(uninterrupted, tmp_path):
    # written by 2 processes x 4 devices, continued by 1 process x 1 device
    w = _checkpoint_at(uninterrupted["2x4"][2], tmp_path / "from2", 20)
    run, _, out = _train(tmp_path, "2to1", 1, 1, workdir=w)
    run.check()
    assert run.info["resumed_from"] == 20 and run.info["processes"] == 1
    _close(_params(out), uninterrupted["1x1"][0], 1e-6)
    # written by 1 process x 1 device, continued by 2 processes x 4 devices
    w = _checkpoint_at(uninterrupted["1x1"][2], tmp_path / "from1", 20)
    run, _, out = _train(tmp_path, "1to2", 2, 4, "--checkpoint_every=0", f"--log_every={STEPS}",
                         workdir=w)  # fmt: skip
    run.check()
    assert run.info["resumed_from"] == 20 and run.info["processes"] == 2
    _close(_params(out), uninterrupted["2x4"][0], 1e-6)
