#!/usr/bin/env bash
# GPU check: train seg_convnet at 200x200 through cvtrain for a fixed number of steps in float32
# and mixed_float16, each with and without XLA (jit_compile), alternated; print images/s for each
# and the GPU's utilisation sampled by nvidia-smi meanwhile.
#
#   bash benchmarks/gpu_smoke.sh            # from a fresh checkout on a machine with an NVIDIA GPU
#   ROUNDS=1 EPOCHS=2 bash benchmarks/gpu_smoke.sh
#
# Uses .venv if cvtrain imports there, else creates .venv-gpu with `pip install -e .[gpu]`.
# Writes benchmarks/results/options_gpu.json, nvidia-smi samples in benchmarks/results/gpu_util.csv.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v nvidia-smi >/dev/null || { echo "gpu_smoke: nvidia-smi not found: no NVIDIA GPU here" >&2; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

PY=.venv/bin/python
if ! { [ -x "$PY" ] && "$PY" -c "import cvtrain, tensorflow" 2>/dev/null; }; then
  PY=.venv-gpu/bin/python
  if ! { [ -x "$PY" ] && "$PY" -c "import cvtrain, tensorflow" 2>/dev/null; }; then
    python3 -m venv .venv-gpu
    .venv-gpu/bin/pip install --quiet --upgrade pip
    .venv-gpu/bin/pip install --quiet -e ".[gpu]"
  fi
fi
"$PY" -c "import tensorflow as tf; gpus = tf.config.list_physical_devices('GPU'); print('TensorFlow', tf.__version__, 'sees', gpus); assert gpus, 'TensorFlow sees no GPU (CUDA libraries? pip install -e .[gpu])'"

mkdir -p benchmarks/results
UTIL=benchmarks/results/gpu_util.csv
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -l 1 > "$UTIL" &
SMI=$!
trap 'kill $SMI 2>/dev/null || true' EXIT

export TF_CPP_MIN_LOG_LEVEL=2
"$PY" benchmarks/options.py --preset gpu --rounds "${ROUNDS:-2}" --epochs "${EPOCHS:-3}"

kill $SMI 2>/dev/null || true
# Utilisation while training: samples above 5% (the rest is start-up, data generation, tracing).
awk -F', ' '{ if ($2 > 5) { n++; s += $2; if ($2 > m) m = $2; if ($3 > mem) mem = $3 } }
  END { if (n) printf "GPU utilisation while busy: mean %.0f%%, max %d%% over %d s; peak memory %d MiB\n", s / n, m, n, mem;
        else print "GPU utilisation: never above 5% (did TensorFlow use the GPU?)" }' "$UTIL"
