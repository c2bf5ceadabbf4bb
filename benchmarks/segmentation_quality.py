"""Validation quality of each segmentation model on the real Oxford-Pets sample, same budget.

Every model trains through cvtrain's own `train()` (same seeded split, optimizer, epochs and
input size) and is scored on the final epoch's validation mean IoU and pixel accuracy; seg_convnet
is the baseline. Not a test: it takes minutes on a CPU.

    python benchmarks/segmentation_quality.py   # -> benchmarks/results/segmentation_quality.*
    python benchmarks/segmentation_quality.py --epochs 2 --limit 60 --size 64   # a quick look
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from rich.table import Table

from cvtrain import rundir
from cvtrain.cli.main import config_dir
from cvtrain.cli.validate import validate
from cvtrain.console import console

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO.parent / "shared" / "data" / "oxford_pets_sample"
RESULTS = REPO / "benchmarks" / "results"

# name -> model overrides. The baseline is the chapter's model as is; U-Net and DeepLab are
# slimmed (fewer filters) to cost no more CPU time than it. DeepLab's atrous rates are scaled to
# the 8x8 stride-16 map of a 128 px image.
MODELS = {
    "seg_convnet": ["model=seg_convnet"],
    "unet": ["model=unet", "model.filters=[16,32,64,128]"],
    "deeplabv3plus": [
        "model=deeplabv3plus",
        "model.backbone=mobilenetv2",
        "model.weights=none",
        "model.filters=[128,48]",
        "model.atrous_rates=[2,4,6]",
    ],
}


def run_one(overrides: list[str], run_dir: Path) -> dict:
    from cvtrain.data.sources import load_split
    from cvtrain.training.trainer import train

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = validate(compose(config_name="config", overrides=overrides))
    split, _ = load_split(cfg.data, cfg.task.name)
    start = time.perf_counter()
    result = train(cfg, split, run_dir, state=None)
    seconds = time.perf_counter() - start
    final = {k: v[-1] for k, v in result.history.items()}
    epoch_s = epoch_seconds(run_dir / rundir.TENSORBOARD / "train")
    return {
        "val_mean_iou": round(final["val_mean_iou"], 4),
        "val_pixel_accuracy": round(final["val_pixel_accuracy"], 4),
        "val_loss": round(final["val_loss"], 4),
        "parameters": rundir.read_json(run_dir / rundir.MANIFEST)["parameters"],
        "train_samples": len(split.train),
        "val_samples": len(split.val),
        "seconds": round(seconds, 1),
        "epoch_seconds": epoch_s,
        # Steady state: epochs after the first (which also traces), validation included.
        "train_images_per_s": round(len(split.train) / statistics.median(epoch_s[1:]), 2)
        if len(epoch_s) > 1
        else None,
    }


def epoch_seconds(log_dir: Path) -> list[float]:
    """Seconds between epoch ends, from the wall times TensorBoard logged with each epoch_loss."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    kind = "scalars" if "epoch_loss" in events.Tags()["scalars"] else "tensors"
    times = [e.wall_time for e in getattr(events, kind.capitalize())("epoch_loss")]
    return [round(b - a, 1) for a, b in zip(times, times[1:])]


def markdown(rows: dict[str, dict], setup: str) -> str:
    lines = [
        setup,
        "",
        "| model | val mean IoU | val pixel acc. | parameters | train img/s | wall s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['val_mean_iou']:.3f} | {r['val_pixel_accuracy']:.3f} | "
            f"{r['parameters']:,} | {r['train_images_per_s']} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=SAMPLE)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--limit", type=int, default=250, help="samples used (train + val)")
    parser.add_argument("--val", type=int, default=50, help="validation samples")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--optimizer", default="adam", choices=("adam", "rmsprop", "sgd"))
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--bn-momentum", type=float, default=0.9, help="short budgets: keep BN statistics current"
    )
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", type=Path, default=RESULTS / "segmentation_quality")
    args = parser.parse_args()

    common = [
        "task=segmentation",
        "data=oxford_pets",
        f"data.root={args.root}",
        f"data.image_size=[{args.size},{args.size}]",
        f"data.limit={args.limit}",
        f"data.val_samples={args.val}",
        f"data.batch_size={args.batch}",
        f"trainer.epochs={args.epochs}",
        f"optimizer={args.optimizer}",
        f"optimizer.lr={args.lr}",
        f"model.bn_momentum={args.bn_momentum}",
        "trainer.precision=float32",
        "trainer.prediction_images=0",
    ]
    setup = (
        f"Oxford-Pets sample ({args.limit} of its pairs, seed-1337 split, {args.val} val), "
        f"{args.size}x{args.size}, batch {args.batch}, {args.epochs} epochs, {args.optimizer} lr "
        f"{args.lr:g}, BN momentum {args.bn_momentum:g}, float32 on CPU; final-epoch metrics."
    )
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="cvtrain-segq-") as tmp:
        for name in args.models.split(","):
            console.rule(f"{name}")
            rows[name] = {"overrides": MODELS[name]}
            rows[name].update(run_one([*common, *MODELS[name]], Path(tmp) / name))
            rundir.write_json(
                args.out.with_suffix(".json"), {"setup": setup, "common": common, "models": rows}
            )
    args.out.with_suffix(".md").write_text(markdown(rows, setup))
    table = Table(title="segmentation quality")
    for col in ("model", "val mIoU", "val pixel acc.", "parameters", "train img/s", "wall s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, r in rows.items():
        table.add_row(
            name,
            f"{r['val_mean_iou']:.3f}",
            f"{r['val_pixel_accuracy']:.3f}",
            f"{r['parameters']:,}",
            str(r["train_images_per_s"]),
            f"{r['seconds']:.0f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
