"""SAE training is resumable bit-for-bit after SIGKILL, and 8 simulated CPU devices give the
parameters of 1 device: fresh processes running tests/sae/run_sae_train.py (the helpers of
tests/train/test_train_subprocess.py, with this script)."""

from __future__ import annotations

import functools
import os
import signal
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train"))
import test_train_subprocess as train_subprocess  # noqa: E402
from test_train_subprocess import checkpoint_steps, finish, load  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_sae_train.py")


launch = functools.partial(train_subprocess.launch, script=SCRIPT)


def test_sigkill_mid_run_then_restart_is_bitwise_identical(tmp_path):
    steps = ("--steps", 200, "--every", 20)
    ref_proc = launch(tmp_path / "ref", tmp_path / "ref.npz", *steps)
    # Slow data (5 ms a batch) so the run can be killed once checkpoint 60 is on disk.
    proc = launch(tmp_path / "run", tmp_path / "run.npz", *steps, "--sleep", 0.005)
    deadline = time.monotonic() + 200
    while not any(s >= 60 for s in checkpoint_steps(tmp_path / "run")):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.exists(tmp_path / "run.npz")
    killed_at = max(checkpoint_steps(tmp_path / "run"))
    assert 60 <= killed_at < 200

    result, rc = finish(ref_proc)
    assert rc == 0 and result["resumed_from"] is None
    assert result["dead_fraction"] > 0, result  # latents died: AuxK and the counter were live
    result, rc = finish(launch(tmp_path / "run", tmp_path / "run.npz", *steps))
    assert rc == 0 and result["step"] == 200
    assert result["resumed_from"] is not None and result["resumed_from"] >= killed_at - 20
    ref, got = load(tmp_path / "ref.npz"), load(tmp_path / "run.npz")
    assert ref.keys() == got.keys() and "stats/tokens_since_active" in ref
    for k in ref:
        np.testing.assert_array_equal(ref[k].view(np.uint32), got[k].view(np.uint32), err_msg=k)


@pytest.mark.parametrize(
    "mesh",
    [("--data", 8), ("--data", 4, "--model", 2, "--fsdp")],
    ids=["data8", "data4-model2-fsdp"],
)
def test_eight_devices_match_one_device(tmp_path, mesh):
    one = launch(tmp_path / "w1", tmp_path / "p1.npz")
    eight = launch(tmp_path / "w8", tmp_path / "p8.npz", *mesh, devices=8)
    (r1, rc1), (r8, rc8) = finish(one), finish(eight)
    assert rc1 == 0 and r1["devices"] == 1
    assert rc8 == 0 and r8["devices"] == 8
    if "--fsdp" in mesh:  # the [64, 16] encoder and decoder really are split
        assert r8["specs"]["decoder"] == "P('data', 'model')", r8["specs"]
    a, b = load(tmp_path / "p1.npz"), load(tmp_path / "p8.npz")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=0, atol=1e-6, err_msg=k)
