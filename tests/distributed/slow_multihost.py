"""The heavy multi-host checks (about 20 minutes on a 2-core CPU, so not part of `make test`;
run them with launch/check_multihost.sh, i.e. `pytest -q tests/distributed/slow_multihost.py`).

The real experiment and the embedded model on simulated hosts (launch/local.py):
* greedy generation (data-parallel mesh over all devices): 2 processes x 4 devices, 1 x 8 and
  1 x 1 give the same tokens;
* experiments/train_probe.py with configs/train_probe.py:smoke (generation, feature store,
  probe training with asynchronous time-based checkpoints, saved probe, results) as 2 x 4, 1 x 8
  and 1 x 1: the same answers, labels and held-out metrics; probe parameters within 2e-3 (600
  Adam steps amplify reduction-order rounding: 1 x 8 and 1 x 1 differ as much);
* the 2 x 4 experiment with process 0 killed from outside during training (SIGKILL by pid):
  process 1 stops with an error, the restart resumes from the newest checkpoint and saves the
  probe of the uninterrupted 2 x 4 run bit for bit.

The fast versions of these (a reduced probe run, generation on a 4 x 2 mesh against one device)
are test_probe_multihost.py and test_generate_multihost.py.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from multihost import LAUNCHER, REPO, launch  # noqa: E402

GENERATE = os.path.join(os.path.dirname(__file__), "run_generate.py")
LAYOUTS = ((1, 1), (1, 8), (2, 4))


def test_generation_layouts_agree(tmp_path):
    tokens = {}
    for p, d in LAYOUTS:
        run = launch(GENERATE, "--max_new_tokens=8", processes=p, devices=d,
                     log_dir=tmp_path / f"logs{p}x{d}", timeout=600).check()  # fmt: skip
        assert run.info["devices"] == p * d
        tokens[(p, d)] = run.info["tokens"]
    assert tokens[(1, 8)] == tokens[(1, 1)]
    assert tokens[(2, 4)] == tokens[(1, 1)]


def _experiment_cmd(workdir, results):
    return [sys.executable, "-m", "experiments.train_probe",
            "--config", "configs/train_probe.py:smoke", f"--workdir={workdir}",
            f"--config.results_root={results}", "--config.run_name=run"]  # fmt: skip


def _launcher_cmd(p, d, log_dir, timeout=1500):
    return [sys.executable, LAUNCHER, f"--processes={p}", f"--devices={d}", "--heartbeat=10",
            "--grace=60", f"--timeout={timeout}", f"--log_dir={log_dir}", "--"]  # fmt: skip


def _env():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return env


def _experiment(tmp, p, d, workdir=None):
    workdir = workdir or tmp / f"work{p}x{d}"
    results = tmp / f"results{p}x{d}"
    cmd = _launcher_cmd(p, d, tmp / f"logs{p}x{d}") + _experiment_cmd(workdir, results)
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=1700)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    with open(results / "train_probe" / "run" / "metrics.json") as f:
        return workdir, json.load(f)


def _probe(workdir):
    import jax

    from introspect import probes, sharding

    _, variables, _ = probes.load_probe(str(workdir / "probe"))
    return {
        sharding.path_name(k): np.asarray(v)
        for k, v in jax.tree_util.tree_flatten_with_path(variables["params"])[0]
    }


class _Experiments(dict):
    """layout -> (workdir, metrics) of an uninterrupted run, each run when first asked for."""

    def __init__(self, tmp):
        super().__init__()
        self.tmp = tmp

    def __missing__(self, layout):
        self[layout] = _experiment(self.tmp, *layout)
        return self[layout]


@pytest.fixture(scope="module")
def experiments(tmp_path_factory):
    return _Experiments(tmp_path_factory.mktemp("train-probe"))


def test_train_probe_experiment_layouts_agree(experiments):
    """Same answers, labels, steps and held-out metrics. The parameters agree to ~1e-3, not
    1e-6: 600 Adam steps amplify reduction-order rounding (1 x 8 against 1 x 1 differs as much
    as 2 x 4 does, ~4e-4; the 40-step run of test_probe_multihost.py stays within 1e-6)."""
    one_dir, one = experiments[(1, 1)]
    reference = _probe(one_dir)
    for layout in ((1, 8), (2, 4)):
        workdir, m = experiments[layout]
        for key in ("answer_accuracy", "num_train", "num_val", "train_steps"):
            assert m[key] == one[key], (layout, key)
        for key in ("val_auroc", "val_accuracy", "train_auroc", "train_accuracy"):
            assert m[key] == pytest.approx(one[key], abs=1e-3), (layout, key)
        other = _probe(workdir)
        for k in reference:
            np.testing.assert_allclose(other[k], reference[k], rtol=0, atol=2e-3, err_msg=k)


def _committed(checkpoints):
    """Committed checkpoint steps (orbax renames a step's temporary directory on commit)."""
    return (
        sorted(int(d) for d in os.listdir(checkpoints) if d.isdigit())
        if checkpoints.exists()
        else []
    )


def test_train_probe_experiment_survives_a_killed_coordinator(experiments, tmp_path):
    reference_dir, _ = experiments[(2, 4)]
    workdir = tmp_path / "work"
    workdir.mkdir()
    shutil.copytree(reference_dir / "features", workdir / "features")  # skip the generation
    logs = tmp_path / "logs-killed"
    cmd = _launcher_cmd(2, 4, logs) + _experiment_cmd(workdir, tmp_path / "results-killed")
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    checkpoints = workdir / "train" / "checkpoints"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and proc.poll() is None:
        steps = (
            [int(d) for d in os.listdir(checkpoints) if d.isdigit()] if checkpoints.exists() else []
        )
        if steps and max(steps) >= 100:
            break
        time.sleep(0.5)
    assert proc.poll() is None, "the run ended before a checkpoint at step >= 100"
    with open(logs / "process_0.pid") as f:
        os.kill(int(f.read()), signal.SIGKILL)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode != 0
    with open(logs / "process_1.log", errors="replace") as f:
        assert "leader task was preempted/died" in f.read()
    assert "terminating the remaining processes" not in out
    latest = _committed(checkpoints)[-1]
    _, m = _experiment(tmp_path, 2, 4, workdir=workdir)
    assert m["resumed_from"] == latest and m["resumed_from"] < m["train_steps"]
    reference, resumed = _probe(reference_dir), _probe(workdir)
    for k in reference:
        assert np.array_equal(resumed[k], reference[k]), k
