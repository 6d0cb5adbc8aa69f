"""Simulated hosts on one machine: N processes x M CPU devices joined by jax.distributed.

    python launch/local.py --processes 2 --devices 4 -- .venv/bin/python -m experiments.sft \
        --config configs/sft.py:smoke --workdir /tmp/sft
    (launch/local.sh --processes 2 --devices 4 -- CMD ARGS... calls this)

Every process runs the same CMD with, in its environment,

    XLA_FLAGS=... --xla_force_host_platform_device_count=M   M CPU devices per process
    JAX_PLATFORMS=cpu
    INTROSPECT_COORDINATOR=127.0.0.1:PORT   process 0 serves jax.distributed's coordinator
    INTROSPECT_NUM_PROCESSES=N, INTROSPECT_PROCESS_ID=i
    INTROSPECT_HEARTBEAT_SECONDS=H          a process silent this long counts as dead

and `introspect.train.partition.maybe_initialize_distributed()` (experiments/_cli.py calls it
first thing) turns these into `jax.distributed.initialize(...)` with gloo CPU collectives. With
--processes 1 no distributed variables are set: a plain run on M devices.

Output: each process's stdout and stderr go to <log_dir>/process_<i>.log (its pid to
process_<i>.pid) and, prefixed with
"[i] ", to this terminal (process 0's stdout unprefixed with --quiet_others, the default for
one process). When a process fails, the others get --grace seconds to stop on their own (they
do: the coordination service reports the lost process), then are terminated. The exit status
is 0 when every process exited 0, else the first failure's status (128 + signal for a signal).
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port() -> int:
    """A TCP port free on this machine now (the coordinator binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(
    base: dict, *, devices: int, processes: int, index: int, port: int, heartbeat: int
) -> dict:
    """The environment of process `index`."""
    env = dict(base)
    flags = re.sub(r"--xla_force_host_platform_device_count=\S*", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = f"{flags.strip()} --xla_force_host_platform_device_count={devices}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONUNBUFFERED"] = "1"
    for key in ("INTROSPECT_COORDINATOR", "INTROSPECT_NUM_PROCESSES", "INTROSPECT_PROCESS_ID"):
        env.pop(key, None)
    if processes > 1:
        env["INTROSPECT_COORDINATOR"] = f"127.0.0.1:{port}"
        env["INTROSPECT_NUM_PROCESSES"] = str(processes)
        env["INTROSPECT_PROCESS_ID"] = str(index)
        env["INTROSPECT_HEARTBEAT_SECONDS"] = str(heartbeat)
    return env


def _describe(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _pump(stream, log, prefix: str, out, lock: threading.Lock) -> None:
    for line in iter(stream.readline, b""):
        log.write(line)
        log.flush()
        if out is not None:
            with lock:
                out.write(prefix.encode() + line)
                out.flush()
    stream.close()


def _stop(procs, sig) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)  # the child and everything it started (own session)
            except ProcessLookupError:
                pass


def run(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        usage="%(prog)s [--processes N] [--devices M] [options] -- CMD [ARGS...]",
    )
    ap.add_argument("--processes", type=int, default=1, help="simulated hosts (default 1)")
    ap.add_argument("--devices", type=int, default=1, help="CPU devices per process (default 1)")
    ap.add_argument("--port", type=int, default=0, help="coordinator port (default: a free one)")
    ap.add_argument("--log_dir", default="", help="per-process logs (default: a new temp dir)")
    ap.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds the others get to stop after one process fails (default 30)",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        help="terminate every process after this many seconds (0 = never)",
    )
    ap.add_argument(
        "--heartbeat",
        type=int,
        default=30,
        help="seconds after which a silent process counts as dead (default 30)",
    )
    ap.add_argument(
        "--quiet_others",
        action="store_true",
        help="show only process 0's output here (all processes still log to files)",
    )
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    a = ap.parse_args(argv)
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        ap.error("no command: put it after --, e.g. -- .venv/bin/python -m experiments.sft")
    if a.processes < 1 or a.devices < 1:
        ap.error(f"--processes and --devices must be >= 1, got {a.processes} and {a.devices}")
    log_dir = a.log_dir or tempfile.mkdtemp(
        prefix=datetime.datetime.now().strftime("introspect-local-%Y%m%d-%H%M%S-")
    )
    os.makedirs(log_dir, exist_ok=True)
    port = a.port or free_port()
    out = sys.stdout.buffer
    print(
        f"launch/local: {a.processes} process(es) x {a.devices} CPU device(s)"
        + (f", coordinator 127.0.0.1:{port}" if a.processes > 1 else "")
        + f"; logs in {log_dir}/; command: {shlex.join(cmd)}",
        file=sys.stderr,
        flush=True,
    )

    procs, threads, logs = [], [], []
    lock = threading.Lock()
    for i in range(a.processes):
        env = process_env(
            os.environ,
            devices=a.devices,
            processes=a.processes,
            index=i,
            port=port,
            heartbeat=a.heartbeat,
        )
        log = open(os.path.join(log_dir, f"process_{i}.log"), "wb")
        logs.append(log)
        p = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        procs.append(p)
        with open(os.path.join(log_dir, f"process_{i}.pid"), "w") as f:
            f.write(f"{p.pid}\n")  # for tools that kill one process on purpose
        show = out if (i == 0 or not a.quiet_others) else None
        prefix = f"[{i}] " if a.processes > 1 else ""
        t = threading.Thread(target=_pump, args=(p.stdout, log, prefix, show, lock), daemon=True)
        t.start()
        threads.append(t)

    def on_signal(signum, frame):
        _stop(procs, signal.SIGTERM)
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    start, first_fail, failed_at, reason = time.monotonic(), None, None, ""
    try:
        while any(p.poll() is None for p in procs):
            now = time.monotonic()
            for i, p in enumerate(procs):
                if first_fail is None and p.poll() not in (None, 0):
                    first_fail, failed_at = i, now
                    print(
                        f"launch/local: process {i} failed ({_describe(p.returncode)}); the "
                        f"others get {a.grace:.0f} s to stop",
                        file=sys.stderr,
                        flush=True,
                    )
            if first_fail is not None and now - failed_at > a.grace:
                reason = f"still running {a.grace:.0f} s after process {first_fail} failed"
                break
            if a.timeout and now - start > a.timeout:
                reason = f"--timeout {a.timeout:.0f} s reached"
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        reason = "interrupted"
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if any(p.poll() is None for p in procs):
        print(
            f"launch/local: terminating the remaining processes ({reason})",
            file=sys.stderr,
            flush=True,
        )
        _stop(procs, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.1)
        _stop(procs, signal.SIGKILL)
        for p in procs:
            p.wait()
    for t in threads:
        t.join(timeout=5)
    for log in logs:
        log.close()

    codes = [p.returncode for p in procs]
    summary = ", ".join(f"{i}: {_describe(c)}" for i, c in enumerate(codes))
    print(f"launch/local: {summary}; logs in {log_dir}/", file=sys.stderr, flush=True)
    if all(c == 0 for c in codes):
        return 0
    order = [first_fail] if first_fail is not None else []
    code = next(codes[i] for i in order + list(range(len(codes))) if codes[i] != 0)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(run())
