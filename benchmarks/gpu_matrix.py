"""Every cvtrain model on one GPU: training images/s per precision, a batch-size sweep, and model
FLOP utilisation (MFU) against the chip's peak. One short run for a borrowed GPU machine that
has JAX but no TensorFlow (carry the keras wheel):

    KERAS_BACKEND=jax python benchmarks/gpu_matrix.py --out $OUT/gpu_matrix.json --budget-s 420

Compile time is excluded (model_throughput.measure traces one epoch before timing). FLOPs per
training image are XLA's count for the forward pass times 3 (the backward pass is about twice
the forward): the usual MFU convention. float32 is compared with the TF32 tensor-core peak
(what XLA uses for float32 convolutions and matmuls on NVIDIA GPUs by default), mixed
precision with the 16-bit peak. Results are written after every configuration, and no new one
starts past --budget-s, so a run cut short still leaves what it measured.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import keras
from model_throughput import measure, model_config

from cvtrain.models import build_model

# (model, --set overrides, image size): each task's default data size.
MODELS = [
    ("seg_convnet", [], 200),
    ("unet", [], 200),
    ("deeplabv3plus", ["backbone=mobilenetv2"], 200),
    ("deeplabv3plus", ["backbone=resnet50"], 200),
    ("mini_xception", [], 180),
    ("xception", [], 180),
    ("residual_convnet", [], 180),
]
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
SWEEP = {
    "models": ("seg_convnet", "unet"),
    "precision": "mixed_bfloat16",
    "batches": (64, 128, 256),
}

# Dense peak TFLOPS by device kind: (TF32 tensor cores, FP16/BF16 tensor cores).
PEAK_TFLOPS = {"H100": (494.7, 989.4), "H200": (494.7, 989.4), "A100": (156.0, 312.0)}


def peak_tflops(device_kind: str, precision: str, override: float | None) -> float | None:
    if override:
        return override
    for chip, (tf32, half) in PEAK_TFLOPS.items():
        if chip in device_kind:
            return tf32 if precision == "float32" else half
    return None


def training_flops_per_image(name: str, overrides: list[str], size: int, precision: str) -> float:
    """3 x XLA's FLOP count of one image's forward pass in training mode."""
    import jax

    keras.mixed_precision.set_dtype_policy(precision)
    model = build_model(model_config(name, overrides), (size, size, 3), 3)
    trainable = [v.value for v in model.trainable_variables]
    frozen = [v.value for v in model.non_trainable_variables]
    image = jax.ShapeDtypeStruct((1, size, size, 3), "float32")

    def forward(trainable, frozen, x):
        return model.stateless_call(trainable, frozen, x, training=True)[0]

    cost = jax.jit(forward).lower(trainable, frozen, image).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return 3 * float(cost["flops"])


def configurations(batch: int) -> list[tuple[str, list[str], int, str, int]]:
    """Every model at every precision first, then the batch sweep (cut first if time runs out)."""
    runs = [(m, s, size, p, batch) for m, s, size in MODELS for p in PRECISIONS]
    for m, s, size in MODELS:
        if m in SWEEP["models"]:
            runs += [(m, s, size, SWEEP["precision"], b) for b in SWEEP["batches"]]
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (median reported)")
    parser.add_argument("--budget-s", type=float, default=420.0)
    parser.add_argument("--peak-tflops", type=float, help="the chip's peak, if not in the table")
    parser.add_argument("--only", type=int, help="the first N configurations (a dry run)")
    parser.add_argument("--size", type=int, help="one image size for all (a dry run)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import jax

    device = jax.devices()[0]
    kind = getattr(device, "device_kind", device.platform)
    start, rows = time.monotonic(), []
    for name, overrides, size, precision, batch in configurations(args.batch)[: args.only]:
        if time.monotonic() - start > args.budget_s:
            print(f"budget spent: {len(rows)} configurations measured")
            break
        size = args.size or size
        run = argparse.Namespace(
            model=name, set=overrides, size=size, classes=3, batch=batch,
            steps=args.steps, epochs=args.epochs,
        )  # fmt: skip
        row = measure(run, precision)
        flops = training_flops_per_image(name, overrides, size, precision)
        peak = peak_tflops(kind, precision, args.peak_tflops)
        achieved = row["images_per_s_median"] * flops / 1e12
        row |= {
            "device": kind,
            "backbone": dict(o.split("=", 1) for o in overrides).get("backbone"),
            "train_gflops_per_image": round(flops / 1e9, 2),
            "achieved_tflops": round(achieved, 2),
            "peak_tflops": peak,
            "mfu": round(achieved / peak, 4) if peak else None,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        args.out.write_text(json.dumps({"device": kind, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
