"""Framework overhead: cvtrain's training images/s vs a minimal plain-Keras script.

Both train the same model (cvtrain's builder, loss, metrics and optimizer) on the same images
held in memory: cvtrain through train() with data.cache=memory and all its callbacks
(progress, checkpoint, CSV, TensorBoard, resume state); plain Keras through model.fit on numpy
arrays with validation and nothing else. The runs alternate; the first epoch (decode, tracing)
is not counted. Target: ratio >= 0.97.

    python benchmarks/overhead.py [--rounds 2] [--epochs 4]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from harness import (
    alternate,
    cvtrain_epoch_seconds,
    data_overrides,
    epoch_clock,
    make_config,
    save,
    table,
)

BASE = [
    "task=segmentation",
    "data.image_size=[64,64]",
    "data.batch_size=16",
    "data.val_samples=32",
    "data.cache=memory",
    "model.width=0.5",
    "trainer.prediction_images=0",
    "trainer.precision=float32",
]


def in_memory(cfg) -> tuple:
    """The split decoded once by cvtrain's own pipeline, as numpy arrays."""
    import numpy as np

    from cvtrain.data.pipeline import build_dataset
    from cvtrain.data.sources import load_split

    split, _ = load_split(cfg.data, cfg.task.name)
    arrays = []
    for index in (split.train, split.val):
        batches = list(build_dataset(index, cfg.data, training=False, seed=0))
        arrays.append(tuple(np.concatenate([b[i].numpy() for b in batches]) for i in (0, 1)))
    return arrays


def plain_keras_seconds(cfg, arrays) -> tuple[list[float], int]:
    """What a user would write by hand: build, compile, fit on numpy."""
    import keras

    from cvtrain.data.oxford_pets import TRIMAP_CLASSES
    from cvtrain.models import build_model
    from cvtrain.tasks import get_task

    (x, y), (xv, yv) = arrays
    keras.backend.clear_session()
    keras.utils.set_random_seed(cfg.trainer.seed)
    model = build_model(cfg.model, x.shape[1:], len(TRIMAP_CLASSES))
    loss, metrics = get_task(cfg.task.name).loss_and_metrics(TRIMAP_CLASSES, cfg.loss, None)
    model.compile(keras.optimizers.RMSprop(cfg.optimizer.lr), loss=loss, metrics=metrics)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument(
        "--limit", type=int, default=451, help="samples; longer epochs amortise per-epoch saves"
    )
    args = parser.parse_args()

    cfg = make_config(
        *BASE, *data_overrides(), f"data.limit={args.limit}", f"trainer.epochs={args.epochs}"
    )
    arrays = in_memory(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        results = alternate(
            {
                "plain Keras fit (numpy)": lambda r: plain_keras_seconds(cfg, arrays),
                "cvtrain train()": lambda r: cvtrain_epoch_seconds(cfg, Path(tmp) / f"run{r}"),
            },
            rounds=args.rounds,
        )
    base = results["plain Keras fit (numpy)"]["images_per_s_median"]
    rows = [
        {
            "trainer": name,
            "images/s (median)": r["images_per_s_median"],
            "ratio vs plain Keras": round(r["images_per_s_median"] / base, 3),
            "epochs measured": len(r["images_per_s"]),
        }
        for name, r in results.items()
    ]
    table(rows)
    save(
        "overhead",
        {
            "setup": (
                f"seg_convnet (width 0.5) at 64x64, batch 16, {len(arrays[0][0])} train / "
                f"{len(arrays[1][0])} val images of {data_overrides()[0]}, float32 on CPU, "
                f"{args.epochs} epochs x {args.rounds} alternated rounds, first epoch of each "
                "run dropped; epoch time includes validation and every callback. Target >= 0.97."
            ),
            "overrides": BASE,
            "table": rows,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
