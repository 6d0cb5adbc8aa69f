#!/usr/bin/env bash
# Run an experiment (or any command) on a multi-node GPU cluster under SLURM: one process per
# GPU (JAX's SLURM layout), all joined by jax.distributed. Every task runs the command with
# INTROSPECT_DISTRIBUTED=1, so introspect calls jax.distributed.initialize() first thing
# (experiments/_cli.py), which reads coordinator, process count/id and its GPU from SLURM's
# variables; data is sharded per process, checkpoints are written collectively (the workdir
# must be on a shared filesystem), only process 0 prints and writes results. srun
# --kill-on-bad-exit stops every task when one fails, and the job fails.
#
#   launch/slurm.sh [--dry_run] [--nodes N] [--gpus_per_node G] [--partition P] [--account A]
#                   [--time HH:MM:SS] [--job_name NAME] [--log_dir DIR] EXPERIMENT [flags...]
#   launch/slurm.sh [options] -- CMD ARGS...
#   launch/slurm.sh --dry_run --nodes 2 --gpus_per_node 8 --partition gpu sft \
#       --config configs/sft.py --workdir /shared/sft
#
# --dry_run prints the batch script instead of submitting it with sbatch. The checkout (this
# directory, with .venv holding jax[cuda12] of the same version: `.venv/bin/pip install
# "jax[cuda12]==$(.venv/bin/python -c 'import jax; print(jax.__version__)')"`) must be on a
# filesystem every node sees. Not run in this project's CI (no cluster here).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
dry=0; nodes=1; gpus=8; partition=""; account=""; time_limit="04:00:00"; name="introspect"
log_dir="${repo}/logs/slurm"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry_run) dry=1; shift ;;
    --nodes) nodes="$2"; shift 2 ;;
    --gpus_per_node) gpus="$2"; shift 2 ;;
    --partition) partition="$2"; shift 2 ;;
    --account) account="$2"; shift 2 ;;
    --time) time_limit="$2"; shift 2 ;;
    --job_name) name="$2"; shift 2 ;;
    --log_dir) log_dir="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
usage="usage: launch/slurm.sh [--dry_run] [--nodes N] [--gpus_per_node G] [...] (EXPERIMENT [flags...] | -- CMD ARGS...)"
[ $# -gt 0 ] || { echo "$usage" >&2; exit 2; }
if [ "$1" = "--" ]; then
  shift; [ $# -gt 0 ] || { echo "$usage" >&2; exit 2; }
  cmd=$(printf '%q ' "$@")
else
  exp="$1"; shift
  cmd=".venv/bin/python -m experiments.${exp} $(printf '%q ' "$@")"
fi

script="#!/usr/bin/env bash
#SBATCH --job-name=${name}
#SBATCH --nodes=${nodes}
#SBATCH --ntasks-per-node=${gpus}
#SBATCH --gpus-per-node=${gpus}
#SBATCH --time=${time_limit}
#SBATCH --output=${log_dir}/%x-%j.out
${partition:+#SBATCH --partition=${partition}
}${account:+#SBATCH --account=${account}
}set -euo pipefail
cd $(printf '%q' "$repo")
# one task per GPU; jax.distributed.initialize() reads SLURM_* (coordinator: the first node)
export INTROSPECT_DISTRIBUTED=1
srun --kill-on-bad-exit=1 --label ${cmd}"
if [ "$dry" = 1 ]; then
  printf '%s\n' "$script"
  exit 0
fi
mkdir -p "$log_dir"
printf '%s\n' "$script" | sbatch
