"""Past runs and sweeps read back from their run dirs: `cvtrain mode=runs path=<dir>`.

Everything comes from the files a run leaves behind (.hydra/overrides.yaml, metrics.json and,
for a failed sweep job, failure.json), so runs made by any version, on any machine, compare.
No TensorFlow here: listing runs is instant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from rich.markup import escape
from rich.table import Table

from cvtrain import rundir
from cvtrain.console import console
from cvtrain.errors import ConfigError

COMPLETED, PRUNED, FAILED, INCOMPLETE = "completed", "pruned", "failed", "incomplete"


@dataclass
class Run:
    path: Path
    overrides: list[str]
    status: str
    best_val_loss: float | None = None
    best_epoch: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # val_* at the best epoch
    error: str | None = None

    @property
    def sort_key(self) -> tuple[int, float, str]:
        """Completed runs by best val_loss first, then pruned, failed, unfinished ones."""
        rank = {COMPLETED: 0, PRUNED: 1, FAILED: 2}.get(self.status, 3)
        loss = self.best_val_loss if self.best_val_loss is not None else math.inf
        return rank, loss, str(self.path)


def read_run(path: Path) -> Run:
    overrides_file = path / rundir.SAVED_OVERRIDES
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    run = Run(path=path, overrides=[str(o) for o in overrides or []], status=INCOMPLETE)
    failure, metrics_file = path / rundir.FAILURE, path / rundir.METRICS
    # A failed job resumed to the end (cvtrain resume=<dir>) has a newer metrics.json.
    if failure.is_file() and not (
        metrics_file.is_file() and metrics_file.stat().st_mtime > failure.stat().st_mtime
    ):
        run.status = FAILED
        run.error = rundir.read_json(failure).get("error")
    if metrics_file.is_file():
        metrics = rundir.read_json(metrics_file)
        run.best_val_loss = metrics.get("best_val_loss")
        run.best_epoch = metrics.get("best_epoch")
        best = metrics.get("best") or {}
        run.metrics = {k: v for k, v in best.items() if k.startswith("val_") and k != "val_loss"}
        if run.status != FAILED:
            run.status = COMPLETED if run.best_val_loss is not None else FAILED
            if run.status == FAILED:
                run.error = "val_loss was never finite (NaN or inf loss)"
            elif metrics.get("pruned_at_epoch"):
                run.status = PRUNED
    return run


def find_runs(root: Path) -> list[Path]:
    """Run dirs (those with Hydra's .hydra/) at or below `root`, in path order."""
    if not root.is_dir():
        raise ConfigError(f"path={root} is not a directory; point it at a run, a sweep or outputs/")
    return sorted(p.parent for p in root.rglob(rundir.HYDRA.name) if rundir.is_run_dir(p.parent))


def sorted_runs(paths: list[Path]) -> list[Run]:
    return sorted((read_run(p) for p in paths), key=lambda r: r.sort_key)


def varying(runs: list[Run]) -> list[list[str]]:
    """Each run's overrides minus those every run shares: what tells the runs apart."""
    common = set.intersection(*(set(r.overrides) for r in runs)) if len(runs) > 1 else set()
    return [[o for o in r.overrides if o not in common] for r in runs]


def metric_names(runs: list[Run]) -> list[str]:
    return list(dict.fromkeys(name for r in runs for name in r.metrics))


def fmt4(value: float | None) -> str:
    """A metric for a table: 4 decimals, '-' when missing."""
    return "-" if value is None else f"{value:.4f}"


def rows(runs: list[Run], root: Path) -> list[dict[str, str]]:
    """One flat row per run, in the given order: the content of summary.csv."""
    names = metric_names(runs)
    out = []
    for run, diff in zip(runs, varying(runs)):
        rel = run.path.relative_to(root) if run.path.is_relative_to(root) else run.path
        row = {
            "run": str(rel) if str(rel) != "." else run.path.name,
            "overrides": " ".join(diff),
            "status": run.status,
            "best_val_loss": fmt4(run.best_val_loss),
            "best_epoch": str(run.best_epoch or "-"),
        }
        row.update({name: fmt4(run.metrics.get(name)) for name in names})
        row["error"] = run.error or ""
        row["path"] = str(run.path)
        out.append(row)
    return out


def table(runs: list[Run], root: Path, title: str) -> Table:
    data = rows(runs, root)
    failures = any(row["error"] for row in data)
    shown = [k for k in (data[0] if data else {}) if k != "path" and (k != "error" or failures)]
    t = Table(title=title, title_justify="left")
    for key in shown:
        if key == "error":  # the first words; summary.csv and failure.json have all of it
            t.add_column(key, style="red", max_width=40, no_wrap=True, overflow="ellipsis")
        elif key in ("run", "overrides"):
            t.add_column(key, min_width=24 if key == "overrides" else None, overflow="fold")
        else:
            numeric = key.startswith(("best_", "val_"))
            t.add_column(key, justify="right" if numeric else "left", no_wrap=key == "status")
    styles = {COMPLETED: "green", PRUNED: "blue", FAILED: "red", INCOMPLETE: "yellow"}
    for row, run in zip(data, runs):
        cells = {k: escape(row[k]) for k in shown}
        cells["status"] = f"[{styles[run.status]}]{run.status}[/]"
        t.add_row(*cells.values())
    return t


def write_summary(runs: list[Run], root: Path) -> tuple[Path, Path]:
    """summary.csv and summary.md in `root`, rows in the table's order."""
    data = rows(runs, root)
    columns = list(data[0]) if data else ["run", "status", "best_val_loss"]

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in data]
    csv_path, md_path = root / rundir.SUMMARY_CSV, root / rundir.SUMMARY_MD
    rundir.write_csv(csv_path, columns, [[row.get(c, "") for c in columns] for row in data])
    rundir.write_atomic(md_path, lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    return csv_path, md_path


def show(path: str) -> None:
    """`cvtrain mode=runs`: one table comparing every run and sweep job under `path`."""
    root = Path(path).expanduser()
    paths = find_runs(root)
    if not paths:
        console.print(f"no runs under {root} (a run dir has a .hydra/ folder)")
        return
    runs = sorted_runs(paths)
    done = sum(r.status == COMPLETED for r in runs)
    console.print(table(runs, root, f"{len(runs)} runs under {root} ({done} completed)"))
