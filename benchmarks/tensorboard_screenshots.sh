#!/bin/bash
# TensorBoard as a user reads it after a small sweep (6 Optuna trials, median pruning, on the
# generated pets): the HParams table, the scalar curves and the prediction images, screenshot by
# headless Chromium (Debian's `chromium` package) into benchmarks/results/tensorboard/.
#   bash benchmarks/tensorboard_screenshots.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=benchmarks/results/tensorboard
WORK=$(mktemp -d)
trap 'kill $TB 2>/dev/null || true; rm -rf "$WORK"' EXIT
.venv/bin/cvtrain -m hparams_search=segmentation_optuna data=synthetic_pets \
  data.root="$WORK/pets" data.num_samples=60 'data.image_size=[32,32]' data.val_samples=12 \
  'model.filters=[8,16]' trainer.epochs=4 trainer.prediction_images=2 trainer.precision=float32 \
  hydra.sweeper.n_trials=6 hydra.sweeper.sampler.seed=3 hydra.sweep.dir="$WORK/sweep" > /dev/null
.venv/bin/tensorboard --logdir "$WORK/sweep" --host 127.0.0.1 --port 6123 > /dev/null 2>&1 &
TB=$!
sleep 8
mkdir -p "$OUT"
for page in hparams:hparams scalars:timeseries images:images; do
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$WORK/chromium" --window-size=1600,1000 --virtual-time-budget=15000 \
    --hide-scrollbars --screenshot="$OUT/${page%%:*}.png" "http://127.0.0.1:6123/#${page##*:}" \
    2> /dev/null
done
ls "$OUT"
