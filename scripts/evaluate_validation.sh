#!/usr/bin/env bash
# Score a checkpoint on a dataset's validation cases as the model card does:
#   bash scripts/evaluate_validation.sh MODEL DATA OUT
# e.g. bash scripts/evaluate_validation.sh docs/models/lesion_t1_w8.safetensors runs/synth64 out/eval_w8
# (napari-unet predict on DATA/imagesTs, then napari-unet evaluate against DATA/labelsTs).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 3 ]; then
    echo "usage: bash scripts/evaluate_validation.sh MODEL DATA OUT" >&2
    exit 2
fi
MODEL=$1 DATA=$2 OUT=$3
if [ -e "$OUT" ]; then
    echo "error: $OUT exists; choose a new folder (nothing is overwritten)" >&2
    exit 2
fi
NAPARI_UNET=${NAPARI_UNET:-.venv/bin/napari-unet}
mkdir -p "$OUT"
"$NAPARI_UNET" predict "$DATA"/imagesTs/*.nii.gz --model "$MODEL" --output "$OUT/pred"
"$NAPARI_UNET" evaluate --pred "$OUT/pred" --truth "$DATA/labelsTs" --json "$OUT/val_metrics.json"
