"""Input pipeline vs the book's loading, on the real Oxford pets sample at 200x200.

The book (Deep Learning with Python, ch. 9) reads every image with keras.utils.load_img into one
float32 numpy array before training; cvtrain streams files through tf.data. Each measurement
runs in a fresh process (so peak RSS is its own), alternating book / cvtrain `--rounds` times:
wall time (index + one full pass), time to the first batch, images/s, peak RSS and RSS growth
over the process's state after imports.

    python benchmarks/pipeline.py [--rounds 3] [--size 200] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import REAL_SAMPLE, peak_rss_mb, save, table

from cvtrain.console import console

# The full dataset's book-style arrays: 7,390 float32 images + uint8 masks.
FULL_DATASET = 7390


def load_book(index, size: int) -> tuple[float, int]:
    """The chapter's code: load_img + img_to_array into preallocated arrays."""
    import numpy as np
    from keras.utils import img_to_array, load_img

    start = time.perf_counter()
    n = len(index)
    inputs = np.zeros((n, size, size, 3), dtype="float32")
    targets = np.zeros((n, size, size, 1), dtype="uint8")
    for i, (image, mask) in enumerate(zip(index.images, index.targets)):
        inputs[i] = img_to_array(load_img(image, target_size=(size, size)))
        mask = img_to_array(load_img(mask, target_size=(size, size), color_mode="grayscale"))
        targets[i] = mask.astype("uint8") - 1
    # All of it must be in memory before the first batch exists.
    return time.perf_counter() - start, n


def load_cvtrain(index, size: int, batch: int) -> tuple[float, int]:
    """One training epoch of cvtrain's tf.data pipeline; returns time to the first batch."""
    from cvtrain.data.pipeline import build_dataset
    from cvtrain.data.source_config import MaskData

    cfg = MaskData(image_size=[size, size], batch_size=batch)
    start = time.perf_counter()
    first, n = None, 0
    for images, _ in build_dataset(index, cfg, training=True, seed=0):
        first = first or time.perf_counter() - start
        n += int(images.shape[0])
    return first, n


def measure(kind: str, size: int, batch: int) -> dict:
    import tensorflow as tf  # noqa: F401  (both sides pay the same imports before the clock)

    from cvtrain.data.source_config import MaskData
    from cvtrain.data.sources import load_index

    baseline = peak_rss_mb()
    start = time.perf_counter()
    index, _ = load_index(MaskData(root=str(REAL_SAMPLE)), "segmentation")
    if kind == "book":
        first, n = load_book(index, size)
    else:
        first, n = load_cvtrain(index, size, batch)
    wall = time.perf_counter() - start
    peak = peak_rss_mb()
    return {
        "kind": kind,
        "images": n,
        "wall_s": wall,
        "first_batch_s": first,
        "peak_rss_mb": peak,
        "rss_growth_mb": peak - baseline,
    }


def run_child(kind: str, args: argparse.Namespace) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, __file__, "--child", kind, "--out", out.name]
        cmd += ["--size", str(args.size), "--batch", str(args.batch)]
        subprocess.run(cmd, check=True, capture_output=True)
        return json.loads(Path(out.name).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--child", choices=("book", "cvtrain"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.out.write_text(json.dumps(measure(args.child, args.size, args.batch)))
        return
    if not (REAL_SAMPLE / "images").is_dir():
        console.log(f"skipped: the pipeline benchmark needs the real sample at {REAL_SAMPLE}")
        return

    runs: dict[str, list[dict]] = {"book": [], "cvtrain": []}
    for _ in range(args.rounds):
        for kind in runs:
            runs[kind].append(run_child(kind, args))

    def median(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[kind])

    rows = []
    for kind, label in (("book", "book: load_img -> numpy"), ("cvtrain", "cvtrain tf.data")):
        images = runs[kind][0]["images"]
        rows.append(
            {
                "loader": label,
                "images": images,
                "wall s": round(median(kind, "wall_s"), 2),
                "images/s": round(images / median(kind, "wall_s"), 1),
                "first batch s": round(median(kind, "first_batch_s"), 2),
                "peak RSS MB": round(median(kind, "peak_rss_mb")),
                "RSS growth MB": round(median(kind, "rss_growth_mb")),
            }
        )
    book_bytes = FULL_DATASET * args.size * args.size * (3 * 4 + 1)
    table(rows)
    save(
        "pipeline",
        {
            "setup": (
                f"Real Oxford pets sample ({rows[0]['images']} pairs), {args.size}x{args.size}, "
                f"batch {args.batch}, one pass, fresh process per run, medians of "
                f"{args.rounds} alternated runs. RSS growth = peak RSS minus RSS after imports. "
                f"The book's arrays for the full {FULL_DATASET:,} images would need "
                f"{book_bytes / 2**30:.2f} GiB; cvtrain's pipeline stays bounded by its buffers."
            ),
            "table": rows,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
