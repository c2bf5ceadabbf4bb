"""Training images/s of a cvtrain model on in-memory data, per precision (any Keras backend).

Isolates the model's compute from the input pipeline, so it answers "how fast can this model
train here, and what does mixed precision buy". It imports no TensorFlow itself, so it also runs
with KERAS_BACKEND=jax or torch on a GPU machine that has no TensorFlow:

    python benchmarks/model_throughput.py --size 200 --precisions float32,mixed_float16
    python benchmarks/model_throughput.py --model deeplabv3plus --set backbone=mobilenetv2
    KERAS_BACKEND=jax python benchmarks/model_throughput.py --out results.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import keras
import numpy as np
from omegaconf import OmegaConf

from cvtrain.config.schema import ModelConfig
from cvtrain.models import build_model, config_of_model

MODEL_CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "model"


def model_config(name: str, overrides: list[str]) -> ModelConfig:
    """configs/model/<name>.yaml plus `key=value` overrides (OmegaConf only: no Hydra needed)."""
    merged = OmegaConf.merge(
        OmegaConf.structured(config_of_model(name)),
        OmegaConf.load(MODEL_CONFIGS / f"{name}.yaml"),
        OmegaConf.from_dotlist(overrides),
    )
    return OmegaConf.to_object(merged)


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)

    def on_train_begin(self, logs=None):
        self.times = []


def measure(args: argparse.Namespace, precision: str) -> dict:
    keras.backend.clear_session()
    keras.mixed_precision.set_dtype_policy(precision)
    cfg = model_config(args.model, args.set)
    model = build_model(cfg, (args.size, args.size, 3), args.classes)
    rng = np.random.default_rng(0)
    n = args.batch * args.steps
    x = rng.integers(0, 256, (n, args.size, args.size, 3)).astype("float32")
    if len(model.output_shape) == 4:  # segmentation: a class id per pixel
        y = rng.integers(0, args.classes, (n, args.size, args.size, 1)).astype("int32")
        loss = "sparse_categorical_crossentropy"
    elif model.output_shape[-1] == 1:  # two classes: one sigmoid unit
        y, loss = rng.integers(0, 2, (n, 1)).astype("float32"), "binary_crossentropy"
    else:
        y, loss = rng.integers(0, args.classes, (n,)), "sparse_categorical_crossentropy"
    model.compile(optimizer="rmsprop", loss=loss)
    timer = EpochTimer()
    model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0)  # compile/trace, not timed
    model.fit(x, y, batch_size=args.batch, epochs=args.epochs, verbose=0, callbacks=[timer])
    rates = [n / t for t in timer.times]
    return {
        "backend": keras.backend.backend(),
        "model": args.model,
        "size": args.size,
        "batch": args.batch,
        "precision": precision,
        "parameters": model.count_params(),
        "compute_dtype": model.layers[1].dtype_policy.compute_dtype,
        "output_dtype": str(model.predict(x[:2], verbose=0).dtype),  # float32 under any policy
        "images_per_s_median": round(statistics.median(rates), 1),
        "images_per_s_all": [round(r, 1) for r in rates],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="seg_convnet")
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--set", nargs="*", default=[], help="model keys, e.g. width=0.5")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (median reported)")
    parser.add_argument("--precisions", default="float32,mixed_float16")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    results = [measure(args, p) for p in args.precisions.split(",")]
    base = results[0]["images_per_s_median"]
    for r in results:
        r["speedup_vs_first"] = round(r["images_per_s_median"] / base, 2)
        print(json.dumps(r))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
