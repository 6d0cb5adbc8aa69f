"""SFT, DPO and GRPO (UCAS advantages, KL) on 8 simulated devices give the parameters of one
device (within 1e-6); SFT and GRPO with LoRA adapters, DPO fully; each run in a fresh process. The
runs use SGD (see run_posttrain.py: Adam amplifies reduction-order noise in gradient entries
that cancel to ~0, which no sharding scheme can make bit-equal)."""

import json
import os
import subprocess
import sys

import numpy as np

SCRIPT = os.path.join(os.path.dirname(__file__), "run_posttrain.py")


def _run(model, tmp, devices, *extra):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    out = tmp / f"p{devices}.npz"
    cmd = [sys.executable, SCRIPT, "--model", model, "--workdir", str(tmp / f"w{devices}"),
           "--out", str(out), *extra]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    info = json.loads(lines[-1])
    assert info["devices"] == devices and info["trainers"] == ["dpo", "grpo", "sft"]
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


def test_eight_devices_match_one(tiny_policy_dir, tmp_path):
    one = _run(tiny_policy_dir, tmp_path, 1)
    eight = _run(tiny_policy_dir, tmp_path, 8)
    assert one.keys() == eight.keys()
    moved = 0
    for k in one:
        np.testing.assert_allclose(eight[k], one[k], rtol=0, atol=1e-6, err_msg=k)
        moved += "/base/" not in k and k.endswith(("kernel", "/b"))
    assert moved > 0
    assert any(k.startswith("sft/lora/") for k in one) and any(
        k.startswith("grpo/lora/") for k in one
    )
    assert not any(k.startswith("dpo/lora/") for k in one)
