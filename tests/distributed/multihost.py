"""Simulated hosts for the multi-host tests: commands run through launch/local.py as N processes
x M CPU devices, each process a fresh interpreter with its own XLA_FLAGS, a free coordinator port
per launch and a timeout on everything, so a test can fail but never hang."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass

# run_generate.py's user turns (one batch: every data shard of an 8-device mesh gets a row)
QUESTIONS = ["What is 3 + 4?", "What is 9 - 2?", "Name a colour.", "What is 6 * 7?",
             "Is ice cold?", "What is 10 + 15?", "Say hi.", "What is 8 - 5?"]  # fmt: skip

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LAUNCHER = os.path.join(REPO, "launch", "local.py")


@dataclass
class Launch:
    returncode: int
    stderr: str  # the launcher's own lines and every process's output, prefixed "[i] "
    info: dict | None  # the last JSON line process 0 printed, or None
    logs: dict[int, str]  # process index -> its whole log

    def check(self):
        assert self.returncode == 0 and self.info is not None, self.stderr[-6000:]
        return self

    def why(self) -> str:
        """What to show when an assertion about this launch fails."""
        return f"exit status {self.returncode}\n{self.stderr[-4000:]}"


def launch(script, *args, processes, devices, log_dir, timeout=300, grace=90, heartbeat=30):
    """Run `python script args...` as `processes` x `devices` through launch/local.py."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # the launcher sets the device count per process
    cmd = [sys.executable, LAUNCHER, f"--processes={processes}", f"--devices={devices}",
           f"--grace={grace}", f"--timeout={timeout}", f"--heartbeat={heartbeat}",
           f"--log_dir={log_dir}", "--", sys.executable, script, *map(str, args)]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout + grace + 30
    )
    out = proc.stdout.splitlines()
    lines = [x.split("] ", 1)[-1] if x.startswith("[0] ") else x for x in out]
    lines = [x for x in lines if x.startswith("{")]
    logs = {}
    for i in range(processes):
        path = os.path.join(log_dir, f"process_{i}.log")
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                logs[i] = f.read()
    return Launch(
        returncode=proc.returncode,
        stderr=proc.stdout[-3000:] + "\n" + proc.stderr,
        info=json.loads(lines[-1]) if lines else None,
        logs=logs,
    )
