"""Detection training speed: cvtrain against a bare `model.fit`, like for like, and the share of
an epoch the per-epoch mAP evaluation takes.

All variants train the same RetinaNet (compiled by cvtrain's build_and_compile) on the same
tf.data pipeline of the real sample's head boxes (data=oxford_pets_heads, split seed 1337):
- bare fit + mAP: `model.fit` with the same val_map callback cvtrain runs (ValidationMAP), and
  nothing else but the epoch clock;
- cvtrain: train() with every callback (progress, checkpoint, CSV, TensorBoard, hparams,
  resume state, NaN and signal checks), without the per-epoch prediction pictures, as
  benchmarks/overhead.py measures (they cost ~0.18 s an epoch here, drawn by matplotlib);
- bare fit: `model.fit` without the mAP evaluation (its share of an epoch is
  1 - bare fit + mAP / bare fit, in images/s).
The variants alternate within each round; per run the first epoch is dropped (tracing) and the
last is not timed (harness.epoch_clock). Target: cvtrain / (bare fit + mAP) >= 0.97.

    python benchmarks/detection_speed.py [--rounds 5] [--epochs 8]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from harness import (
    REAL_SAMPLE,
    alternate,
    comparison_rows,
    cvtrain_epoch_seconds,
    make_config,
    paired_ratio,
    save,
    table,
)
from overhead import bare_fit_seconds

BASE = [
    "task=detection",
    "data=oxford_pets_heads",
    f"data.root={REAL_SAMPLE}",
    "data.image_size=[160,160]",
    "data.batch_size=16",
    "trainer.prediction_images=0",  # as benchmarks/overhead.py: bare fit draws no pictures
    "trainer.precision=float32",
]
BARE_MAP, CVTRAIN, BARE = "bare fit + mAP", "cvtrain train()", "bare fit (no mAP)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()

    from cvtrain.data.sources import load_split
    from cvtrain.tasks.detection import ValidationMAP

    cfg = make_config(*BASE, f"trainer.epochs={args.epochs}")
    split, _ = load_split(cfg.data, cfg.task.name)
    size = tuple(cfg.data.image_size)

    def with_map(inputs):
        return [ValidationMAP(inputs.val, split.train.class_names, size)]

    with tempfile.TemporaryDirectory() as tmp:
        results = alternate(
            {
                BARE_MAP: lambda r: bare_fit_seconds(cfg, split, with_map),
                CVTRAIN: lambda r: cvtrain_epoch_seconds(cfg, Path(tmp) / f"run{r}"),
                BARE: lambda r: bare_fit_seconds(cfg, split),
            },
            rounds=args.rounds,
        )
    rows = comparison_rows(
        results,
        [
            ("cvtrain overhead", BARE_MAP, CVTRAIN, ">= 0.97"),
            ("with the mAP evaluation", BARE, BARE_MAP, "(share = 1 - ratio)"),
        ],
    )
    table(rows)
    save(
        "detection_speed",
        {
            "setup": (
                f"retinanet (backbone none) at 160x160, batch 16, {len(split.train)} train / "
                f"{len(split.val)} val images of the real sample's head boxes (split seed "
                f"1337), float32 on CPU, {args.epochs} epochs per run x {args.rounds} rounds of "
                "the three variants alternated, first epoch of each run dropped; an epoch's "
                "time includes validation and every callback. B/A = ratio of images/s within "
                "a round."
            ),
            "overrides": BASE,
            "table": rows,
            "ratios": {
                row["comparison"]: paired_ratio(results, row["A"], row["B"]) for row in rows
            },
            "raw": results,
        },
    )


if __name__ == "__main__":
    main()
