"""mode=evaluate: score a finished run, or an ensemble of runs, on a split of its data.

The data, split and batch size are the run's own unless overridden (`data.root=...`), so the
default reproduces the val_ metrics logged at the best epoch. Writes metrics.json (and a
confusion matrix picture for classification) to `<run>/eval` or `output=`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from rich.progress import track
from rich.table import Table

from cvtrain import rundir
from cvtrain.config.schema import RunConfig
from cvtrain.console import console
from cvtrain.data.index import FileIndex, class_id
from cvtrain.data.sources import load_split
from cvtrain.data.verify import checked_split
from cvtrain.errors import ConfigError, DataError
from cvtrain.rundir.compare import fmt4
from cvtrain.rundir.saved import SavedRun, load_runs, output_dir
from cvtrain.tasks import get_task
from cvtrain.tasks.base import Task

log = logging.getLogger(__name__)

ENSEMBLE = "ensemble"


def run(cfg: RunConfig, overrides: Sequence[str], run_dir: Path) -> dict:
    runs = load_runs(cfg, overrides)
    return evaluate(runs, output_dir(cfg, runs, run_dir, rundir.EVAL))


def eval_index(cfg: RunConfig, out_dir: Path) -> FileIndex:
    """The files of `eval.split` (val, train, all = both, or test where the data comes with
    one), split exactly as training split them (bad files left out, as training leaves them
    out; their list goes to `out_dir`)."""
    split, dropped = load_split(cfg.data, cfg.task.name)
    if cfg.eval.split == "test" and split.test is None:  # before any scan of the files
        raise ConfigError(
            f"eval.split=test: data={cfg.data.source} at {split.train.root} has no test split "
            "(image_folder: <root>/test/<class>/; mask_folder: <root>/"
            f"{cfg.data.splits_dir}/test.txt); use eval.split=val"
        )
    if cfg.data.verify:
        split, _ = checked_split(split, dropped, cfg.data, out_dir)
    if dropped:
        log.warning("skipped %d files that are not images", len(dropped))
    if cfg.eval.split == "test":
        return split.test
    if cfg.eval.split == "val":
        return split.val
    if cfg.eval.split == "train":
        return split.train
    return split.train.joined(split.val)


def check_fits_data(
    model, task: Task, saved: SavedRun, image_size: list[int], num_classes: int
) -> None:
    size = list(model.input_shape[1:3])
    if size != list(image_size):
        raise ConfigError(
            f"data.image_size={list(image_size)} but run={saved.path} was trained at {size}; "
            "drop the data.image_size override"
        )
    outputs = task.model_classes(model)
    if outputs != num_classes:
        raise DataError(
            f"run={saved.path} predicts {outputs} classes but the data has {num_classes}; "
            "evaluate on data with the classes it was trained on"
        )


def evaluate(runs: list[SavedRun], out_dir: Path) -> dict:
    """Every member (and their average, for an ensemble) on one split; returns the report."""
    cfg = runs[0].config
    index, task = eval_index(cfg, out_dir), get_task(cfg.task.name)
    ignore = class_id(cfg.eval.ignore_class, index.class_names, "eval.ignore_class")
    if ignore is not None and not task.dense:
        raise ConfigError(f"eval.ignore_class is for segmentation; drop it for {task.name}")

    from cvtrain.data.pipeline import build_dataset, steps_per_epoch
    from cvtrain.inference.ensemble import average, member_probabilities

    models = [saved.load_model() for saved in runs]
    for model, saved in zip(models, runs):
        check_fits_data(model, task, saved, cfg.data.image_size, index.num_classes)
    labels = [str(saved.path) for saved in runs] + ([ENSEMBLE] if len(runs) > 1 else [])
    size = tuple(cfg.data.image_size)
    scorers = [task.scorer(index.num_classes, size) for _ in labels]

    # Evaluation reads every file once: no cache (a training run's disk cache may be stale).
    ds = build_dataset(
        index, replace(cfg.data, cache="none"), training=False, seed=cfg.trainer.seed
    )
    steps = steps_per_epoch(len(index), cfg.data.batch_size)
    for images, targets in track(
        ds, total=steps, description="evaluating", console=console, disable=not console.is_terminal
    ):
        probs = member_probabilities(models, images)
        if len(models) > 1:
            probs.append(average(probs))
        for s, p in zip(scorers, probs):
            s.update(targets.numpy(), p)

    results = {label: s.result(index.class_names, ignore) for label, s in zip(labels, scorers)}
    report = {
        "task": task.name,
        "split": cfg.eval.split,
        "data": {"source": cfg.data.source, "root": index.root, "files": len(index)},
        "runs": [str(saved.path) for saved in runs],
        "ignore_class": index.class_names[ignore] if ignore is not None else None,
        "metrics": results[labels[-1]],
    }
    if len(runs) > 1:
        report["members"] = {label: results[label] for label in labels[:-1]}
    rundir.write_json(out_dir / rundir.METRICS, report)
    task.write_evaluation(report["metrics"], index.class_names, out_dir)
    print_report(report, results, task, index.class_names, out_dir)
    return report


def print_report(
    report: dict, results: dict[str, dict], task: Task, class_names: Sequence[str], out_dir: Path
) -> None:
    """One column per member (and the ensemble), one row per metric."""
    files = report["data"]["files"]
    console.print(f"[bold]Evaluation on the {report['split']} split ({files} files)")
    table = Table()
    table.add_column("metric", style="bold")
    for label in results:  # a run's last two path parts: <date>/<time> for Hydra's run dirs
        table.add_column("/".join(Path(label).parts[-2:]), justify="right")
    for name in task.eval_rows:
        if any(name in r for r in results.values()):
            table.add_row(name, *(fmt4(r.get(name)) for r in results.values()))
    for cls in class_names:
        for name in task.per_class_rows:
            if cls in next(iter(results.values()))["per_class"]:
                table.add_row(
                    f"{name} {cls}", *(fmt4(r["per_class"][cls][name]) for r in results.values())
                )
    console.print(table)
    task.print_evaluation(report["metrics"], class_names)
    console.print(f"metrics written to {out_dir / rundir.METRICS}")
