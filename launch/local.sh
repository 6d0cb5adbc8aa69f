#!/usr/bin/env bash
# Run an experiment on this machine, optionally with N simulated CPU devices (to exercise the
# same mesh/sharding code paths a pod uses).
#   launch/local.sh [-n DEVICES] EXPERIMENT [flags...]
#   launch/local.sh -n 8 train_probe --config configs/train_probe.py:smoke --workdir /tmp/probe
set -euo pipefail
cd "$(dirname "$0")/.."
devices=""
if [ "${1:-}" = "-n" ]; then devices="$2"; shift 2; fi
exp="${1:?usage: launch/local.sh [-n DEVICES] EXPERIMENT [flags...]}"; shift
if [ -n "$devices" ]; then
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${devices}"
  export JAX_PLATFORMS=cpu
fi
exec .venv/bin/python -m "experiments.${exp}" "$@"
