"""Each speed option against the default, through cvtrain's own train(), alternated A/B.

Options (presets): data.cache, trainer.jit_compile and trainer.steps_per_execution on CPU;
`--preset gpu` is the GPU check (200x200, float32 vs mixed_float16, with and without XLA) that
benchmarks/gpu_smoke.sh runs.

    python benchmarks/options.py [--preset cpu|gpu] [--rounds 5] [--epochs 4]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from harness import (
    alternate,
    cvtrain_epoch_seconds,
    data_overrides,
    make_config,
    paired_ratio,
    save,
    table,
)

PRESETS = {
    "cpu": {
        "base": [
            "data.image_size=[64,64]",
            "data.batch_size=16",
            "data.limit=160",
            "data.val_samples=32",
            "model.width=0.5",
            "trainer.prediction_images=0",
        ],
        # option -> (default, changed); each pair runs alternated in its own comparison
        "pairs": {
            "data.cache": ("data.cache=none", "data.cache=memory"),
            "trainer.jit_compile": ("trainer.jit_compile=auto", "trainer.jit_compile=true"),
            "trainer.steps_per_execution": (
                "trainer.steps_per_execution=1",
                "trainer.steps_per_execution=8",
            ),
            # precision is compared on the GPU preset: on CPU, mixed_float16 without fp16
            # hardware is >50x slower here (one 3-epoch run did not end in 8 minutes).
        },
    },
    "gpu": {
        "base": [
            "data=synthetic_pets",
            "data.image_size=[200,200]",
            "data.batch_size=64",
            "data.cache=memory",
            "trainer.steps_per_epoch=30",
            "trainer.prediction_images=0",
        ],
        "pairs": {
            "trainer.precision": ("trainer.precision=float32", "trainer.precision=mixed_float16"),
            "trainer.jit_compile (float32)": (
                "trainer.precision=float32",
                "trainer.precision=float32 trainer.jit_compile=true",
            ),
            "trainer.jit_compile (mixed_float16)": (
                "trainer.precision=mixed_float16",
                "trainer.precision=mixed_float16 trainer.jit_compile=true",
            ),
        },
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=PRESETS, default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--only", help="run just this option (a key of the preset)")
    args = parser.parse_args()

    preset = PRESETS[args.preset]
    data = data_overrides() if args.preset == "cpu" else []
    base = ["task=segmentation", *data, *preset["base"], f"trainer.epochs={args.epochs}"]
    rows, raw = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for option, (default, changed) in preset["pairs"].items():
            if args.only and option != args.only:
                continue
            variants = {}
            for label in (default, changed):
                cfg = make_config(*base, *label.split())
                out = Path(tmp) / f"{len(raw)}-{len(variants)}"
                variants[label] = lambda r, cfg=cfg, out=out: cvtrain_epoch_seconds(
                    cfg, out / str(r)
                )
            results = alternate(variants, rounds=args.rounds)
            raw[option] = results
            ratio = paired_ratio(results, default, changed)
            rows.append(
                {
                    "option": option,
                    "default": default,
                    "changed": changed,
                    "default images/s": results[default]["images_per_s_median"],
                    "changed images/s": results[changed]["images_per_s_median"],
                    "ratio (median of rounds)": ratio["median"],
                    "ratio range": ratio["range"],
                }
            )
    table(rows)
    save(
        f"options_{args.preset}",
        {
            "setup": (
                f"cvtrain train() with {' '.join(base)}; per option the default and the change "
                f"alternate {args.rounds} times, first epoch of each run dropped; ratio = changed "
                "/ default images/s (validation and callbacks included) within each round, its "
                "median and range over the rounds. > 1 = faster; a range that spans 1 is noise."
            ),
            "table": rows,
            "results": raw,
        },
    )


if __name__ == "__main__":
    main()
