"""Training images/s of mini_xception at 180x180 (the chapter's size) and 64x64, through cvtrain.

Each epoch is a real one: file reads, decode, resize, augmentation (the chapter's flip, rotation
and zoom), fit and the end-of-epoch callbacks. Data: the real Oxford pets sample as cat vs dog when
../shared has it, else the generated shapes. Sizes are alternated `--rounds` times; the first
epoch of each run (tracing) is left out.

    python benchmarks/classification_speed.py [--rounds 2] [--epochs 4] [--limit 160]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from harness import REAL_SAMPLE, alternate, cvtrain_epoch_seconds, make_config, save, table

SIZES = (180, 64)


def data_overrides(limit: int) -> list[str]:
    if (REAL_SAMPLE / "images").is_dir():
        source = ["data=oxford_pets_species", f"data.root={REAL_SAMPLE}"]
    else:
        source = ["data=synthetic_shapes", f"data.num_samples={limit}"]
    return [*source, f"data.limit={limit}", "data.augment.flip=true"]


def runner(size: int, args: argparse.Namespace):
    def run(round_: int) -> tuple[list[float], int]:
        cfg = make_config(
            "task=classification",
            *data_overrides(args.limit),
            f"data.image_size=[{size},{size}]",
            f"data.batch_size={args.batch}",
            f"trainer.epochs={args.epochs}",
            "trainer.prediction_images=0",
        )
        with tempfile.TemporaryDirectory() as tmp:
            return cvtrain_epoch_seconds(cfg, Path(tmp))

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--limit", type=int, default=160)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    rates = alternate({f"{s}x{s}": runner(s, args) for s in SIZES}, args.rounds)
    rows = [
        {
            "model": "mini_xception",
            "size": name,
            "train images/s (median)": r["images_per_s_median"],
        }
        for name, r in rates.items()
    ]
    table(rows)
    setup = (
        f"mini_xception (721,857 parameters at 180), float32, batch {args.batch}, "
        f"{args.limit} samples (80% train), {args.epochs} epochs x {args.rounds} rounds, "
        "first epoch of each run left out; augmentation on; data: "
        + (
            "real Oxford pets sample (cat vs dog)"
            if (REAL_SAMPLE / "images").is_dir()
            else "shapes"
        )
    )
    save("classification_speed", {"setup": setup, "table": rows, "raw": rates})


if __name__ == "__main__":
    main()
