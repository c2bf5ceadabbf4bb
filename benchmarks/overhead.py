"""Framework overhead, like for like, and cached epochs against in-memory arrays.

Every variant trains the same model (cvtrain's builder, loss, metrics, optimizer, compiled by
cvtrain's own build_and_compile) at the same batch size, on the same real images:
- bare fit: cvtrain's tf.data datasets (the very `build_dataset` output train() uses, same
  data.cache) fed to `model.fit` with no callback but the epoch clock;
- cvtrain: train() with every callback (progress, checkpoint, CSV, TensorBoard, hparams,
  resume state, NaN and signal checks) and its end-of-epoch work;
- numpy fit: the chapter's way, the split decoded once into float32 arrays and `model.fit` on
  them (the reference for cached epochs: data.cache=memory|disk must not be slower);
- cvtrain, data.cache=disk.
The variants alternate within each round; the first epoch of every run (decode, cache fill,
tracing) is not counted, nor the last (harness.epoch_clock times an epoch to the next's
start). Ratios are taken within a round (back-to-back runs) and summarised by their median and
range. Targets: cvtrain / bare fit >= 0.99; cached cvtrain / numpy >= 1.

    python benchmarks/overhead.py [--rounds 5] [--epochs 4]
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

from harness import (
    alternate,
    comparison_rows,
    cvtrain_epoch_seconds,
    data_overrides,
    epoch_clock,
    make_config,
    paired_ratio,
    save,
    table,
)

BASE = [
    "task=segmentation",
    "data.image_size=[64,64]",
    "data.batch_size=16",
    "data.val_samples=51",
    "data.cache=memory",
    "model.width=0.5",
    "trainer.prediction_images=0",
    "trainer.precision=float32",
]
BARE, CVTRAIN, NUMPY, DISK = (
    "bare fit (same tf.data, cache=memory)",
    "cvtrain train() (cache=memory)",
    "numpy fit (arrays in memory)",
    "cvtrain train() (cache=disk)",
)


def compiled_model(cfg, split):
    """The model exactly as train() compiles it (fresh Keras state and seeds first)."""
    import tensorflow as tf

    from cvtrain.tasks import get_task
    from cvtrain.training.inputs import build_inputs
    from cvtrain.training.trainer import build_and_compile, setup_runtime

    setup_runtime(cfg.trainer)
    inputs = build_inputs(cfg, split, Path(tempfile.mkdtemp()))
    strategy = tf.distribute.get_strategy()
    return build_and_compile(cfg, get_task(cfg.task.name), split, inputs.steps, strategy), inputs


def bare_fit_seconds(cfg, split, extra=None) -> tuple[list[float], int]:
    """`model.fit` on cvtrain's datasets with the epoch clock and, if given, the callbacks
    `extra(inputs)` returns (run before the clock, as cvtrain runs them before its loggers)."""
    model, inputs = compiled_model(cfg, split)
    clock = epoch_clock()()
    model.fit(
        inputs.train,
        validation_data=inputs.val,
        epochs=cfg.trainer.epochs,
        steps_per_epoch=inputs.fit_steps,
        callbacks=[*(extra(inputs) if extra else []), clock],
        verbose=0,
    )
    return clock.seconds, len(split.train)


def in_memory(cfg, split) -> tuple:
    """The split decoded once by cvtrain's own pipeline, as numpy arrays."""
    import numpy as np

    from cvtrain.data.pipeline import build_dataset

    arrays = []
    for index in (split.train, split.val):
        batches = list(build_dataset(index, cfg.data, training=False, seed=0))
        arrays.append(tuple(np.concatenate([b[i].numpy() for b in batches]) for i in (0, 1)))
    return arrays


def numpy_fit_seconds(cfg, split, arrays) -> tuple[list[float], int]:
    (x, y), (xv, yv) = arrays
    model, _ = compiled_model(cfg, split)
    clock = epoch_clock()()
    model.fit(
        x,
        y,
        batch_size=cfg.data.batch_size,
        epochs=cfg.trainer.epochs,
        validation_data=(xv, yv),
        callbacks=[clock],
        verbose=0,
    )
    return clock.seconds, len(x)


HOOKS = ("on_epoch_end", "on_epoch_begin", "on_train_batch_end", "on_train_batch_begin",
         "on_test_end", "on_test_batch_end", "on_train_end", "on_train_begin")  # fmt: skip


def callback_breakdown(cfg, split, run_dir: Path) -> list[dict]:
    """One cvtrain run under cProfile: seconds per epoch inside each callback hook (the
    profiler slows Python, so these are upper bounds; BestCheckpoint runs inside
    SaveResumeState), biggest first."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    cvtrain_epoch_seconds(cfg, run_dir)
    profile.disable()
    epochs = cfg.trainer.epochs
    rows = []
    for (path, _, function), stat in pstats.Stats(profile).stats.items():
        cumulative = stat[3]
        skip = "callback_list" in path or "harness" in path  # the sum of all; the clock
        if function in HOOKS and cumulative > 0.001 and not skip:
            where = f"{Path(path).parent.name}/{Path(path).name}:{function}"
            rows.append({"hook": where, "s per epoch": round(cumulative / epochs, 4)})
    return sorted(rows, key=lambda r: -r["s per epoch"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()

    from cvtrain.data.sources import load_split

    cfg = make_config(*BASE, *data_overrides(), f"trainer.epochs={args.epochs}")
    disk = replace(cfg, data=replace(cfg.data, cache="disk"))
    split, _ = load_split(cfg.data, cfg.task.name)
    arrays = in_memory(cfg, split)
    with tempfile.TemporaryDirectory() as tmp:
        results = alternate(
            {
                BARE: lambda r: bare_fit_seconds(cfg, split),
                CVTRAIN: lambda r: cvtrain_epoch_seconds(cfg, Path(tmp) / f"memory{r}"),
                NUMPY: lambda r: numpy_fit_seconds(cfg, split, arrays),
                DISK: lambda r: cvtrain_epoch_seconds(disk, Path(tmp) / f"disk{r}"),
            },
            rounds=args.rounds,
        )
    comparisons = [
        ("cvtrain overhead", BARE, CVTRAIN, ">= 0.99"),
        ("cached epochs (memory)", NUMPY, CVTRAIN, ">= 1"),
        ("cached epochs (disk)", NUMPY, DISK, ">= 1"),
        ("bare fit on tf.data vs numpy", NUMPY, BARE, "-"),
    ]
    rows = comparison_rows(results, comparisons)
    table(rows)
    breakdown = callback_breakdown(cfg, split, Path(tempfile.mkdtemp()))
    table(breakdown[:12])
    save(
        "overhead",
        {
            "setup": (
                f"seg_convnet (width 0.5) at 64x64, batch 16, {len(split.train)} train / "
                f"{len(split.val)} val images of {data_overrides()[0]} (split seed 1337), "
                f"float32 on CPU, {args.epochs} epochs per run x {args.rounds} rounds of the "
                "four variants alternated, first epoch of each run dropped; an epoch's time "
                "includes validation and every callback. B/A = ratio of images/s within a round."
            ),
            "overrides": BASE,
            "table": rows,
            "ratios": {
                row["comparison"]: paired_ratio(results, row["A"], row["B"]) for row in rows
            },
            "callback_breakdown": breakdown,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
