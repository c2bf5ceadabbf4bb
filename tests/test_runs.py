"""Reading run dirs back (mode=runs, sweep summaries): status, order, what differs, files."""

from __future__ import annotations

import csv
import json
import os

import pytest
import yaml

from cvtrain.errors import ConfigError
from cvtrain.rundir import compare

COMMON = ["task=segmentation", "data=synthetic_pets"]


def write_metrics(path, losses):
    """metrics.json as training writes it: best epoch, best val_loss, val metrics at best/last."""
    finite = [v for v in losses if v == v]
    best = losses.index(min(finite)) + 1 if finite else None
    history = {"val_loss": losses, "val_mean_iou": [0.1 * i for i in range(len(losses))]}
    metrics = {
        "best_epoch": best,
        "best_val_loss": min(finite) if finite else None,
        "best": {k: v[best - 1] for k, v in history.items()} if best else {},
        "final": {k: v[-1] for k, v in history.items()},
    }
    (path / "metrics.json").write_text(json.dumps(metrics))


def make_run(path, overrides, losses=None, failure=None):
    """A run dir as cvtrain leaves it: .hydra/overrides.yaml, then metrics.json or failure.json."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(COMMON + overrides))
    if losses is not None:
        write_metrics(path, losses)
    if failure is not None:
        (path / "failure.json").write_text(json.dumps({"status": "failed", "error": failure}))
    return path


@pytest.fixture
def outputs(tmp_path):
    sweep = tmp_path / "multirun" / "2026-11-28" / "10-00-00"
    make_run(sweep / "0", ["optimizer.lr=0.001"], losses=[0.9, 0.7, 0.8])
    make_run(sweep / "1", ["optimizer.lr=10"], losses=[float("nan")])
    make_run(sweep / "2", ["optimizer.lr=-1"], failure="optimizer.lr=-1.0 must be > 0")
    make_run(sweep / "3", ["optimizer.lr=0.003"], losses=[0.6, 0.5])
    make_run(tmp_path / "2026-11-28" / "09-00-00", ["optimizer.lr=0.0003"])  # still running
    return tmp_path, sweep


def test_runs_are_found_anywhere_below_and_sorted_best_first(outputs):
    root, sweep = outputs
    found = compare.sorted_runs(compare.find_runs(root))
    names = [str(r.path.relative_to(root)) for r in found]
    assert names == [
        "multirun/2026-11-28/10-00-00/3",
        "multirun/2026-11-28/10-00-00/0",
        "multirun/2026-11-28/10-00-00/1",
        "multirun/2026-11-28/10-00-00/2",
        "2026-11-28/09-00-00",
    ]
    best, second, nan, invalid, running = found
    assert (best.status, best.best_val_loss, best.best_epoch) == ("completed", 0.5, 2)
    assert second.metrics == {"val_mean_iou": pytest.approx(0.1)}  # at the best epoch, not last
    assert nan.status == "failed" and "never finite" in nan.error
    assert invalid.status == "failed" and invalid.error == "optimizer.lr=-1.0 must be > 0"
    assert running.status == "incomplete" and running.best_val_loss is None


def test_overrides_shown_are_those_that_differ(outputs):
    _, sweep = outputs
    found = compare.sorted_runs(compare.find_runs(sweep))
    assert compare.varying(found) == [
        ["optimizer.lr=0.003"],
        ["optimizer.lr=0.001"],
        ["optimizer.lr=10"],
        ["optimizer.lr=-1"],
    ]
    assert compare.varying(found[:1]) == [COMMON + ["optimizer.lr=0.003"]]  # alone: all of them


def test_summary_files_hold_the_table_in_order(outputs):
    _, sweep = outputs
    found = compare.sorted_runs(compare.find_runs(sweep))
    csv_path, md_path = compare.write_summary(found, sweep)
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == ["3", "0", "1", "2"]
    assert [r["status"] for r in rows] == ["completed", "completed", "failed", "failed"]
    assert rows[0]["best_val_loss"] == "0.5000" and rows[0]["val_mean_iou"] == "0.1000"
    assert rows[3]["error"] == "optimizer.lr=-1.0 must be > 0" and rows[3]["best_epoch"] == "-"
    md = md_path.read_text().splitlines()
    assert md[0].startswith("| run | overrides | status | best_val_loss |")
    assert len(md) == 2 + 4 and md[2].startswith("| 3 | optimizer.lr=0.003 | completed |")


def test_a_single_run_dir_lists_itself(outputs):
    _, sweep = outputs
    assert compare.find_runs(sweep / "3") == [sweep / "3"]


def test_a_missing_path_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="path=.*is not a directory"):
        compare.show(str(tmp_path / "nope"))


def test_a_failed_job_resumed_to_the_end_counts_as_completed(outputs):
    _, sweep = outputs
    job = make_run(sweep / "4", ["optimizer.lr=0.01"], failure="NonFiniteLoss: loss became nan")
    assert compare.read_run(job).status == "failed"
    write_metrics(job, [0.8, 0.4])  # the resumed run finished after the failure
    later = (job / "failure.json").stat().st_mtime + 5
    os.utime(job / "metrics.json", (later, later))
    resumed = compare.read_run(job)
    assert (resumed.status, resumed.best_val_loss, resumed.error) == ("completed", 0.4, None)
