#!/usr/bin/env bash
# The main job: napari with the sample brain and the lesion widget; headless without a display.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$REPO"
exec "$PY" -m napari_unet "$@"
