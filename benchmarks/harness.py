"""Shared benchmark plumbing: configs as the CLI composes them, epoch clocks, A/B alternation,
and the results files (benchmarks/results/<name>.json plus one markdown table for all).

Speed on the shared CI machines flips between two levels from minute to minute, so variants
are always alternated within one run and compared by medians and ratios, never by one time.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from hydra import compose, initialize_config_dir

from cvtrain import rundir
from cvtrain.cli.main import config_dir
from cvtrain.cli.validate import validate
from cvtrain.config.schema import RunConfig
from cvtrain.console import console

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
REAL_SAMPLE = REPO.parent / "shared" / "data" / "oxford_pets_sample"


def make_config(*overrides: str) -> RunConfig:
    """Compose and validate exactly as `cvtrain <overrides>` would."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return validate(compose(config_name="config", overrides=list(overrides)))


def data_overrides() -> list[str]:
    """The real Oxford pets sample when ../shared has it, else the generated offline set."""
    if (REAL_SAMPLE / "images").is_dir():
        return ["data=oxford_pets", f"data.root={REAL_SAMPLE}"]
    return ["data=synthetic_pets"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def epoch_clock():
    """A Keras callback class that records each epoch's wall time: from its start to the next
    epoch's start, so everything its end triggers is included (checkpoints, TensorBoard,
    images, and a background write the next epoch runs beside or waits for). The last epoch
    has no next start and is not timed: run one epoch more than you time."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.marks: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.marks.append(time.perf_counter())

        @property
        def seconds(self) -> list[float]:
            return [b - a for a, b in zip(self.marks, self.marks[1:])]

    return EpochClock


def cvtrain_epoch_seconds(cfg: RunConfig, run_dir: Path) -> tuple[list[float], int]:
    """Train through cvtrain's own train(); return (seconds per epoch, training samples).

    The clock is one more callback: epoch start to the next epoch's start, so an epoch's time
    includes every callback's end-of-epoch work; nothing else is changed.
    """
    from cvtrain.data.sources import load_split
    from cvtrain.training.trainer import train

    clock = epoch_clock()()
    split, _ = load_split(cfg.data, cfg.task.name)
    train(cfg, split, run_dir, state=None, callbacks=[clock])
    return clock.seconds, len(split.train)


def alternate(
    variants: dict[str, Callable[[int], tuple[list[float], int]]], rounds: int, skip: int = 1
) -> dict[str, dict]:
    """Run A, B, ... A, B ... `rounds` times; images/s per epoch after the first `skip`, and
    each round's median (a round's variants ran back to back: compare them pairwise)."""
    rates: dict[str, list[list[float]]] = {name: [] for name in variants}
    for r in range(rounds):
        for name, run in variants.items():
            seconds, images = run(r)
            rates[name].append([images / s for s in seconds[skip:]])
            console.log(f"round {r + 1}/{rounds} {name}: {[round(s, 2) for s in seconds]} s")
    return {
        name: {
            "images_per_s_median": round(statistics.median(x for v in per_round for x in v), 2),
            "round_medians": [round(statistics.median(v), 2) for v in per_round],
            "images_per_s": per_round,
        }
        for name, per_round in rates.items()
    }


def paired_ratio(results: dict[str, dict], base: str, other: str) -> dict:
    """`other` / `base` images/s per round: the median ratio, its range and the samples."""
    ratios = [
        round(b / a, 3)
        for a, b in zip(results[base]["round_medians"], results[other]["round_medians"])
    ]
    return {
        "median": statistics.median(ratios),
        "range": f"{min(ratios)}-{max(ratios)}",
        "per_round": ratios,
    }


def comparison_rows(results: dict[str, dict], comparisons: list[tuple]) -> list[dict]:
    """One table row per (name, A, B, target): both images/s medians and paired_ratio's B/A."""
    rows = []
    for name, base, other, target in comparisons:
        ratio = paired_ratio(results, base, other)
        rows.append(
            {
                "comparison": name,
                "A": base,
                "B": other,
                "A images/s": results[base]["images_per_s_median"],
                "B images/s": results[other]["images_per_s_median"],
                "B/A (median of rounds)": ratio["median"],
                "range": ratio["range"],
                "target": target,
            }
        )
    return rows


def run_cvtrain(*args: str) -> None:
    """`cvtrain <args>` in a subprocess, as a user runs it; RuntimeError with its stderr."""
    done = subprocess.run([sys.executable, "-m", "cvtrain", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"cvtrain {' '.join(args)} failed:\n{done.stderr[-3000:]}")


def draw_curves(curves: dict[str, list[float]], path: Path, ylabel: str, marker: str = "-") -> None:
    """One line per run of a per-epoch value, epochs from 1."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, marker, markersize=3, label=name)
    ax.set(xlabel="epoch", ylabel=ylabel, title=path.stem)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def save(name: str, payload: dict) -> Path:
    """benchmarks/results/<name>.json, then regenerate results/RESULTS.md from every result."""
    path = RESULTS / f"{name}.json"
    rundir.write_json(path, {"benchmark": name, "machine": machine(), **payload})
    write_markdown()
    return path


def write_markdown() -> None:
    sections = ["# Benchmark results", "", CAVEAT, ""]
    for path in sorted(RESULTS.glob("*.json")):
        result = json.loads(path.read_text())
        rows = result.get("table") if isinstance(result, dict) else None
        if not rows:  # another script's file
            continue
        header = list(rows[0])
        sections += [f"## {result['benchmark']}", "", result.get("setup", ""), ""]
        sections += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        sections += ["| " + " | ".join(str(row[h]) for h in header) + " |" for row in rows]
        sections.append("")
    (RESULTS / "RESULTS.md").write_text("\n".join(sections))


CAVEAT = (
    "Measured on a shared machine (2 CPU cores, no GPU, other jobs running): absolute numbers are "
    "noisy; variants were alternated in one run, so the medians and ratios are what to read."
)


def table(rows: list[dict]) -> None:
    """Show result rows as a rich table."""
    from rich.table import Table

    t = Table(*rows[0].keys())
    for row in rows:
        t.add_row(*(str(v) for v in row.values()))
    console.print(t)
