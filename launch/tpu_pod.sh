#!/usr/bin/env bash
# Run an experiment on every host of a Cloud TPU VM pod slice. Each host runs the same command;
# INTROSPECT_DISTRIBUTED=1 makes the training loop call jax.distributed.initialize() (the TPU
# runtime supplies coordinator and process ids), data is sharded host-locally and only process 0
# logs and writes. The repository must already be checked out at $REPO on every worker.
#   launch/tpu_pod.sh TPU_NAME ZONE EXPERIMENT [flags...]
# Not run in this project's CI (no TPU here); it is the standard gcloud invocation.
set -euo pipefail
tpu="${1:?TPU name}"; zone="${2:?zone}"; exp="${3:?experiment}"; shift 3
repo="${REPO:-~/introspect}"
args=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command \
  "cd ${repo} && make -s .venv/.base >/dev/null && .venv/bin/python -m pip install -q 'jax[tpu]==0.10.2' && INTROSPECT_DISTRIBUTED=1 .venv/bin/python -m experiments.${exp}${args}"
