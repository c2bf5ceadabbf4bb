"""Full scale: time from the command's start to the first training step, and peak memory, on an
Oxford-IIIT Pet sized dataset, cvtrain against the book's loader.

The 451 real pairs of ../shared are linked under new names (`<breed>_<1000 k + n>`, symlinks,
no disk spent) until the folder holds --pairs pairs. Every measurement is a whole process,
Python and TensorFlow start-up included, timed by this script from launch to the line the
process prints after its first training step, then killed:
- book: the chapter's code, every image and trimap through keras.utils.load_img into numpy
  arrays, then model.fit on them (same seg_convnet, rmsprop, batch --batch);
- cvtrain first run: `cvtrain task=segmentation` with an empty data cache (its full data scan
  then runs beside the first epoch);
- cvtrain second run: the same with the scan cached (mode=verify_data ran once before);
- cvtrain at 451 pairs: the first-run command on the sample itself, for memory against size.
The kinds alternate, round after round. Peak RSS is the high-water mark (VmHWM) of the process
and of every process it started (cvtrain's background scan), summed, read at the first step.

    python benchmarks/full_scale.py [--pairs 7400] [--rounds 5] [--size 200] [--batch 4]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import REAL_SAMPLE, save, table

from cvtrain.console import console
from cvtrain.data.oxford_pets import breed, image_mask_pairs

MARKER = "first training step done"


def linked_dataset(dest: Path, pairs: int) -> Path:
    """An Oxford-layout folder of `pairs` symlinked pairs (the sample's, under new names)."""
    source = image_mask_pairs(REAL_SAMPLE)
    (dest / "images").mkdir(parents=True)
    (dest / "annotations" / "trimaps").mkdir(parents=True)
    for i in range(pairs):
        image, mask = source[i % len(source)]
        stem = f"{breed(image)}_{1000 * (i // len(source)) + i % len(source)}"
        (dest / "images" / f"{stem}.jpg").symlink_to(image)
        (dest / "annotations" / "trimaps" / f"{stem}.png").symlink_to(mask)
    return dest


def book(root: Path, size: int, batch: int) -> None:
    """The chapter's loading and fit (run with --child book); prints MARKER after one step."""
    import keras
    import numpy as np
    from keras.utils import img_to_array, load_img

    from cvtrain.models import build_model
    from cvtrain.models.model_config import SegConvNet

    pairs = image_mask_pairs(root)
    inputs = np.zeros((len(pairs), size, size, 3), dtype="float32")
    targets = np.zeros((len(pairs), size, size, 1), dtype="uint8")
    for i, (image, mask) in enumerate(pairs):
        inputs[i] = img_to_array(load_img(image, target_size=(size, size)))
        mask = img_to_array(load_img(mask, target_size=(size, size), color_mode="grayscale"))
        targets[i] = mask.astype("uint8") - 1
    model = build_model(SegConvNet(), (size, size, 3), 3)
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")

    class FirstStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            print(MARKER, flush=True)

    val = val_samples(len(pairs))
    model.fit(
        inputs[:-val],
        targets[:-val],
        validation_data=(inputs[-val:], targets[-val:]),
        batch_size=batch,
        epochs=1,
        callbacks=[FirstStep()],
        verbose=0,
    )


def val_samples(pairs: int) -> int:
    """The chapter's 1000 validation pairs; an eighth of a smaller dataset."""
    return min(1000, pairs // 8)


def cvtrain_command(root: Path, size: int, batch: int, run_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cvtrain",
        "task=segmentation",
        "data=oxford_pets",
        f"data.root={root}",
        f"data.image_size=[{size},{size}]",
        f"data.batch_size={batch}",
        f"data.val_samples={val_samples(len(image_mask_pairs(root)))}",
        "trainer.epochs=1",
        f"hydra.run.dir={run_dir}",
    ]


def descendants(pid: int) -> list[int]:
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def peak_rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in status.splitlines() if "VmHWM" in line)
    return total / 1024


def first_step(command: list[str], env: dict[str, str]) -> dict:
    """Launch `command`; seconds until it prints MARKER and the peak RSS of its processes."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env, "COLUMNS": "200"},
        start_new_session=True,
    )
    seconds = rss = None
    tail = []
    for line in proc.stdout:
        tail = [*tail[-20:], line]
        if MARKER in line:
            seconds = time.perf_counter() - start
            pids = descendants(proc.pid)
            rss = peak_rss_mb(pids)
            break
    pids = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in pids:  # cvtrain's scan runs in a session of its own
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    if seconds is None:
        raise RuntimeError(f"{command[:4]} never reached a training step:\n{''.join(tail)}")
    return {"first_step_s": round(seconds, 2), "peak_rss_mb": round(rss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=7400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--child", choices=["book"], help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return book(args.root, args.size, args.batch)

    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        tmp = Path(tmp)
        root = linked_dataset(tmp / "pets", args.pairs)
        warm = tmp / "cache-warm"
        verify = [*cvtrain_command(root, args.size, args.batch, tmp / "v"), "mode=verify_data"]
        env = {**os.environ, "CVTRAIN_DATA_DIR": str(warm)}
        subprocess.run(verify, check=True, capture_output=True, env=env)  # fills the cache
        kinds = {
            "book: load_img -> numpy, fit": lambda r: (
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "book",
                    "--root",
                    str(root),
                    "--size",
                    str(args.size),
                    "--batch",
                    str(args.batch),
                ],
                {},
            ),  # fmt: skip
            "cvtrain, first run (scan in the background)": lambda r: (
                cvtrain_command(root, args.size, args.batch, tmp / f"first{r}"),
                {"CVTRAIN_DATA_DIR": str(tmp / f"cache-empty{r}")},
            ),
            "cvtrain, second run (scan cached)": lambda r: (
                cvtrain_command(root, args.size, args.batch, tmp / f"second{r}"),
                {"CVTRAIN_DATA_DIR": str(warm)},
            ),
            "cvtrain, first run on the 451 pairs": lambda r: (
                cvtrain_command(REAL_SAMPLE, args.size, args.batch, tmp / f"small{r}"),
                {"CVTRAIN_DATA_DIR": str(tmp / f"cache-small{r}")},
            ),
        }
        samples: dict[str, list[dict]] = {kind: [] for kind in kinds}
        for r in range(args.rounds):
            for kind, make in kinds.items():
                samples[kind].append(first_step(*make(r)))
                console.log(f"round {r + 1}/{args.rounds} {kind}: {samples[kind][-1]}")

    book_s = [s["first_step_s"] for s in samples[next(iter(kinds))]]
    rows = []
    for kind, found in samples.items():
        seconds = [s["first_step_s"] for s in found]
        rss = [s["peak_rss_mb"] for s in found]
        ratios = [s / b for s, b in zip(seconds, book_s)]  # per round: like against like
        rows.append(
            {
                "run": kind,
                "pairs": 451 if "451" in kind else args.pairs,
                "first step s (median)": statistics.median(seconds),
                "range s": f"{min(seconds)}-{max(seconds)}",
                "x book time (median, range)": (
                    f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})"
                ),
                "peak RSS MB (median)": statistics.median(rss),
                "range MB": f"{min(rss)}-{max(rss)}",
            }
        )
    table(rows)
    save(
        "full_scale",
        {
            "setup": (
                f"{args.pairs} Oxford-IIIT Pet pairs linked from the 451 real ones, "
                f"{args.size}x{args.size}, batch {args.batch}, seg_convnet, float32 on CPU; "
                f"whole processes from launch to the end of the first training step, "
                f"{args.rounds} alternated rounds; ratios per round against that round's book "
                "run. Targets: first run <= 0.25x the book's time, peak RSS <= 0.25x, flat."
            ),
            "table": rows,
            "samples": samples,
        },
    )


if __name__ == "__main__":
    main()
