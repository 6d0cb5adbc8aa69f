"""launch/aot_tpu.py / launch/aot_tpu.sh in the project's .venv, which has no libtpu: the script
stops with a clear message (libtpu missing, unknown topology), the launcher's --dry_run names the
venv and the command, and the probe step the script builds compiles for this host's CPU device
(the same code path as for TPU devices, so a change in the training loop that breaks the script
fails here). The TPU numbers themselves come from running the script (README, "Multi-host runs")."""

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "launch", "aot_tpu.py")


def _run(*args, cmd=None):
    env = {**os.environ, "LIBTPU_VENV": "build/libtpu_venv"}
    return subprocess.run(
        cmd or [sys.executable, SCRIPT, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is not None, reason="libtpu installed")
def test_without_libtpu_the_script_says_so():
    r = _run("--topology", "v5e:2x4", "--steps", "probe")
    assert r.returncode == 2, r.stderr
    assert "libtpu is not installed" in r.stderr
    assert "no TPU topology support" in r.stderr
    assert "launch/aot_tpu.sh" in r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize(
    "topology, words",
    [("v9:2x4", "unknown TPU topology 'v9:2x4'"), ("v4:2x4", "v4 topologies have 3 dimensions"),
     ("tpu", "unknown TPU topology 'tpu'")],
)  # fmt: skip
def test_unknown_topology(topology, words):
    r = _run("--topology", topology)
    assert r.returncode == 2
    assert words in r.stderr


def test_unknown_step_and_config():
    r = _run("--topology", "v5e:2x4", "--steps", "probe,dpo")
    assert r.returncode == 2 and "--steps: unknown ['dpo']" in r.stderr
    r = _run("--topology", "v5e:2x4", "--config", "nope")
    assert r.returncode == 2 and "expected STEP=PATH[:ARG]" in r.stderr


def test_launcher_dry_run_prints_venv_and_command():
    sh = os.path.join(ROOT, "launch", "aot_tpu.sh")
    r = _run(cmd=[sh, "--dry_run", "--topology", "v5e:2x4", "--steps", "probe,sae,grpo"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("venv: build/libtpu_venv (")
    assert lines[1] == (
        "command: build/libtpu_venv/bin/python launch/aot_tpu.py --topology v5e:2x4 "
        "--steps probe,sae,grpo"
    )


def test_probe_step_compiles_on_this_host():
    import jax

    spec = importlib.util.spec_from_file_location("aot_tpu", SCRIPT)
    aot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(aot)
    config = aot.load_config("configs/train_probe.py:smoke")
    out = aot.compile_step(
        "probe", aot.probe_step(config), jax.devices()[:1], model_axis=None, fsdp=False
    )
    assert out["mesh"] == {"data": 1, "model": 1}
    assert out["batch"] == {"features": [1, 64, 576 * 3], "label": [1, 64]}
    # MLP 1728 -> 256 -> 64 -> 1
    assert out["params"] == 1728 * 256 + 256 + 256 * 64 + 64 + 64 + 1
    b = out["per_device_bytes"]
    assert b["argument"] >= out["state_bytes_global"] > 0
    assert b["total"] == b["argument"] + b["output"] - b["alias"] + b["temp"] + b["generated_code"]
