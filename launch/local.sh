#!/usr/bin/env bash
# Run on this machine as N simulated hosts x M simulated CPU devices each (the code paths of a
# pod: jax.distributed, a global mesh, per-host data, collective checkpoints), or as one process.
#
#   launch/local.sh --processes N --devices M [--grace S] [--timeout S] [--log_dir D] -- CMD ARGS...
#       N processes, each with M CPU devices, each running CMD; jax.distributed joins them
#       (INTROSPECT_COORDINATOR / _NUM_PROCESSES / _PROCESS_ID in the environment, gloo CPU
#       collectives). Exits non-zero if any process fails; logs in D (default: a temp dir).
#   launch/local.sh --processes 2 --devices 4 -- .venv/bin/python -m experiments.train_probe \
#       --config configs/train_probe.py:smoke --workdir /tmp/probe
#
#   launch/local.sh [-n DEVICES] EXPERIMENT [flags...]      (one process, the older form)
#   launch/local.sh -n 8 train_probe --config configs/train_probe.py:smoke --workdir /tmp/probe
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
case "${1:-}" in
  --processes|--devices|--port|--log_dir|--grace|--timeout|--heartbeat|--quiet_others|--|-h|--help)
    exec "$PY" launch/local.py "$@" ;;
esac
devices=""
if [ "${1:-}" = "-n" ]; then devices="$2"; shift 2; fi
exp="${1:?usage: launch/local.sh --processes N --devices M -- CMD ARGS... | launch/local.sh [-n DEVICES] EXPERIMENT [flags...]}"; shift
if [ -n "$devices" ]; then
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${devices}"
  export JAX_PLATFORMS=cpu
fi
exec "$PY" -m "experiments.${exp}" "$@"
