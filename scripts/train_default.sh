#!/usr/bin/env bash
# The shipped default model's whole recipe (docs/model-card.md), end to end, with the wall
# time of every step. Usage: bash scripts/train_default.sh [OUT]   (default runs/recipe)
#
# Data: runs/synth64 (standard profile) and runs/synth_wide (wide profile) are generated
# when missing (a time of 0 means they were there before). Every phase is seeded; run it
# again after an interruption and it goes on where it stopped (finished steps are skipped,
# an unfinished training phase resumes from its saved state).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${1:-runs/recipe}"
NAPARI_UNET="${NAPARI_UNET:-.venv/bin/napari-unet}"
PY="${PY:-.venv/bin/python}"
mkdir -p "$OUT"
TIMES="$OUT/times.tsv"
[ -f "$TIMES" ] || printf 'step\tseconds\n' > "$TIMES"

step() {  # step NAME OUTPUT COMMAND...: skipped when times.tsv says NAME finished
  local name="$1" output="$2"
  shift 2
  if grep -q "^$name"$'\t' "$TIMES" && [ -e "$output" ]; then
    echo "== $name: finished before ($output)"
    return
  fi
  echo "== $name"
  local start=$SECONDS
  "$@"
  printf '%s\t%s\n' "$name" "$((SECONDS - start))" >> "$TIMES"
}

if [ -f runs/synth64/dataset.json ] && ! grep -q "^synth standard" "$TIMES"; then
  printf 'synth standard\t0\n' >> "$TIMES"  # generated before this run
fi
if [ -f runs/synth_wide/dataset.json ] && ! grep -q "^synth wide" "$TIMES"; then
  printf 'synth wide\t0\n' >> "$TIMES"
fi
step "synth standard" runs/synth64/dataset.json \
  "$NAPARI_UNET" synth --output runs/synth64 --train 64 --val 10 --seed 0 --workers 2
step "synth wide" runs/synth_wide/dataset.json \
  "$NAPARI_UNET" synth --output runs/synth_wide --train 64 --val 0 --seed 1 --acquisition wide --workers 2
step "phase 1" "$OUT/p1/best.safetensors" \
  "$NAPARI_UNET" train --data runs/synth64 --output "$OUT/p1" --widths 8,24,48,96,192 \
  --steps 2000 --val-every 400 --seed 0 --threads 2
step "phase 2" "$OUT/p2/best.safetensors" \
  "$NAPARI_UNET" train --data runs/synth64 --output "$OUT/p2" --init "$OUT/p1/best.safetensors" \
  --steps 2400 --lr 1e-3 --warmup 20 --lesion-fraction 0.5 --min-lesion-voxels 30 \
  --val-every 600 --seed 1 --threads 2
step "tune phase 2" "$OUT/p2/tuned.safetensors" \
  "$PY" scripts/tune_postprocess.py --model "$OUT/p2/best.safetensors" --data runs/synth64 \
  --cases 16 --threads 2 --output "$OUT/p2/tuned.safetensors"
step "phase 3" "$OUT/p3/best.safetensors" \
  "$NAPARI_UNET" train --data runs/synth64 --data runs/synth_wide --output "$OUT/p3" \
  --init "$OUT/p2/tuned.safetensors" --steps 2400 --lr 1e-3 --warmup 20 \
  --lesion-fraction 0.5 --min-lesion-voxels 30 --val-every 600 --seed 2 --threads 2
# the first 16 training cases of the combined data are runs/synth64's (names sort first)
step "tune phase 3" "$OUT/p3/tuned.safetensors" \
  "$PY" scripts/tune_postprocess.py --model "$OUT/p3/best.safetensors" --data runs/synth64 \
  --cases 16 --threads 2 --output "$OUT/p3/tuned.safetensors"
step "phase 4" "$OUT/p4/best.safetensors" \
  "$NAPARI_UNET" train --data runs/synth64 --data runs/synth_wide --output "$OUT/p4" \
  --init "$OUT/p3/best.safetensors" --steps 1600 --lr 3e-4 --warmup 20 \
  --lesion-fraction 0.5 --hard-negative-fraction 0.2 --mine-every 400 \
  --min-lesion-voxels 30 --val-every 400 --seed 3 --threads 2
step "post-process phase 4" "$OUT/p4/final.safetensors" \
  "$PY" scripts/tune_postprocess.py --model "$OUT/p4/best.safetensors" \
  --copy-from "$OUT/p3/tuned.safetensors" --output "$OUT/p4/final.safetensors"
step "average" "$OUT/soup.safetensors" \
  "$PY" scripts/average_weights.py "$OUT/p3/tuned.safetensors" "$OUT/p4/final.safetensors" \
  --weight 0.5 --postprocess-from "$OUT/p3/tuned.safetensors" --output "$OUT/soup.safetensors"
step "growth (sessions 13-14)" "$OUT/flat.safetensors" \
  "$PY" scripts/tune_postprocess.py --model "$OUT/soup.safetensors" \
  --copy-from "$OUT/soup.safetensors" --grow-threshold 0.05 --output "$OUT/flat.safetensors"
# session 14: the 2D model above (docs/models/lesion_t1_2d.*) grown to 2.5D
step "phase 5 (2.5D)" "$OUT/p5/best.safetensors" \
  "$NAPARI_UNET" train --data runs/synth64 --data runs/synth_wide --output "$OUT/p5" \
  --init "$OUT/flat.safetensors" --context-slices 1 --steps 4800 --lr 3e-4 --warmup 20 \
  --lesion-fraction 0.5 --hard-negative-fraction 0.2 --mine-every 400 \
  --min-lesion-voxels 30 --val-every 1200 --seed 14 --threads 2
step "tune phase 5" "$OUT/p5/tuned.safetensors" \
  "$PY" scripts/tune_postprocess.py --model "$OUT/p5/best.safetensors" --data runs/synth64 \
  --cases 16 --grow-threshold 0.05 --threads 2 --output "$OUT/p5/tuned.safetensors"
# session 17: the 2.5D model above (docs/models/lesion_t1_s14.*) widened to 8-32-64-128-256
step "phase 6 (wider)" "$OUT/p6/best.safetensors" \
  "$NAPARI_UNET" train --data runs/synth64 --data runs/synth_wide --output "$OUT/p6" \
  --init "$OUT/p5/tuned.safetensors" --widths 8,32,64,128,256 --steps 4800 --lr 5e-4 \
  --warmup 20 --lesion-fraction 0.5 --hard-negative-fraction 0.2 --mine-every 400 \
  --min-lesion-voxels 30 --val-every 1200 --seed 17 --threads 2
step "tune phase 6" "$OUT/p6/tuned.safetensors" \
  "$PY" scripts/tune_postprocess.py --model "$OUT/p6/best.safetensors" --data runs/synth64 \
  --cases 16 --grow-threshold 0.05 --threads 2 --output "$OUT/p6/tuned.safetensors"
# session 20: the widened model above (docs/models/lesion_t1_w32.*) with a 16-channel first level
step "phase 7 (16-channel first level)" "$OUT/p7/best.safetensors" \
  "$NAPARI_UNET" train --data runs/synth64 --data runs/synth_wide --output "$OUT/p7" \
  --init "$OUT/p6/tuned.safetensors" --widths 16,32,64,128,256 --steps 4800 --lr 5e-4 \
  --warmup 20 --lesion-fraction 0.5 --hard-negative-fraction 0.2 --mine-every 400 \
  --min-lesion-voxels 30 --val-every 1200 --seed 19 --threads 2
step "tune phase 7" "$OUT/p7/tuned.safetensors" \
  "$PY" scripts/tune_postprocess.py --model "$OUT/p7/best.safetensors" --data runs/synth64 \
  --cases 16 --grow-threshold 0.05 --threads 2 --output "$OUT/p7/tuned.safetensors"
# session 21: a learned lesion filter fitted on 48 brains written only for tuning
step "tuning brains" runs/synth_tune1050/dataset.json \
  "$NAPARI_UNET" synth --output runs/synth_tune1050 --train 0 --val 48 --val-start 1050 --workers 2
step "lesion filter" "$OUT/final.safetensors" \
  "$PY" scripts/fit_lesion_filter.py --model "$OUT/p7/tuned.safetensors" \
  --data runs/synth_tune1050 --split val --cases 48 --output "$OUT/final.safetensors"
echo "== wall time per step (s)"
cat "$TIMES"
echo "2D model: $OUT/flat.safetensors"
echo "2.5D model of sessions 14-16: $OUT/p5/tuned.safetensors"
echo "2.5D widened model of sessions 17-19: $OUT/p6/tuned.safetensors"
echo "16-channel first level with its size and extent rule (session 20): $OUT/p7/tuned.safetensors"
echo "model (with the learned lesion filter: the bundled default's recipe): $OUT/final.safetensors"
