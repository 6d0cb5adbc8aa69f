#!/usr/bin/env bash
# Run an experiment (or any command) on every host of a Cloud TPU VM pod slice. Each host runs
# the same command with INTROSPECT_DISTRIBUTED=1, so introspect calls jax.distributed.initialize()
# first thing (experiments/_cli.py; the TPU runtime supplies coordinator and process ids); data
# is sharded per host, checkpoints are written collectively, only process 0 prints and logs.
# The repository must already be checked out at $REPO (default ~/introspect) on every worker.
#
#   launch/tpu_pod.sh [--dry_run] [--project P] TPU_NAME ZONE EXPERIMENT [flags...]
#   launch/tpu_pod.sh [--dry_run] [--project P] TPU_NAME ZONE -- CMD ARGS...
#   launch/tpu_pod.sh --dry_run my-v4-32 us-central2-b train_probe \
#       --config configs/train_probe.py --workdir gs-fuse/probe
#
# --dry_run prints the gcloud command instead of running it. Environment: REPO (checkout on the
# workers), JAX_VERSION (jax[tpu] pinned on the workers; default: this checkout's jax).
# Not run in this project's CI (no TPU here); it is the standard gcloud invocation.
set -euo pipefail
cd "$(dirname "$0")/.."
dry=0; project=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry_run) dry=1; shift ;;
    --project) project=(--project "$2"); shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
usage="usage: launch/tpu_pod.sh [--dry_run] [--project P] TPU_NAME ZONE (EXPERIMENT [flags...] | -- CMD ARGS...)"
tpu="${1:?$usage}"; zone="${2:?$usage}"; shift 2
[ $# -gt 0 ] || { echo "$usage" >&2; exit 2; }
if [ "$1" = "--" ]; then
  shift; [ $# -gt 0 ] || { echo "$usage" >&2; exit 2; }
  cmd=$(printf ' %q' "$@")
else
  exp="$1"; shift
  cmd=" .venv/bin/python -m experiments.${exp}$(printf ' %q' "$@")"
fi
repo="${REPO:-~/introspect}"
jax_version="${JAX_VERSION:-$(sed -n 's/^Version: //p' .venv/lib/python3*/site-packages/jax-*.dist-info/METADATA 2>/dev/null | head -1)}"
jax_version="${jax_version:-0.10.2}"
remote="cd ${repo} && make -s .venv/.base >/dev/null && .venv/bin/python -m pip install -q \"jax[tpu]==${jax_version}\" && INTROSPECT_DISTRIBUTED=1${cmd}"
run=(gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" "${project[@]}" --worker=all --command "$remote")
if [ "$dry" = 1 ]; then
  # every argument single-quoted (a quote inside as '\''): paste it into a shell as it is
  for a in "${run[@]}"; do printf "'%s' " "${a//\'/\'\\\'\'}"; done; echo
  exit 0
fi
exec "${run[@]}"
