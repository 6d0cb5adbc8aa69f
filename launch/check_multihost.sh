#!/usr/bin/env bash
# The heavy multi-host checks (about 20 minutes on a 2-core CPU; not in `make test`): the
# embedded model's greedy generation and experiments/train_probe.py:smoke as 2 processes x 4
# simulated CPU devices, 1 x 8 and 1 x 1 agree (tokens equal, probe parameters within 1e-6); a
# 2 x 4 run whose process 0 is SIGKILLed during training fails fast and its restart ends bit for
# bit where the uninterrupted run ended. See tests/distributed/slow_multihost.py.
#   launch/check_multihost.sh [pytest options...]
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" -m pytest -q -p no:cacheprovider tests/distributed/slow_multihost.py "$@"
