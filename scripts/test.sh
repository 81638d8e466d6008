#!/usr/bin/env bash
# The whole test suite: lint, then pytest with GUI tests under Xvfb when there is no display.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$REPO"
"$VENV/bin/ruff" check napari_unet tests benchmarks scripts
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
if [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null 2>&1; then
  exec xvfb-run -a -s "-screen 0 1600x1200x24" "$PY" -m pytest "$@"
fi
exec "$PY" -m pytest "$@"
