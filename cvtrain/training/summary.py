"""The table a finished training run ends with."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from cvtrain import rundir
from cvtrain.console import console
from cvtrain.tasks import get_task

if TYPE_CHECKING:
    from cvtrain.training.trainer import TrainResult


def print_train_summary(result: TrainResult, task: str) -> None:
    table = Table(title="Training finished", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    best = result.best_epoch
    table.add_row("best epoch", f"{best} of {len(result.history.get('loss', []))}" if best else "-")
    table.add_row("best val_loss", f"{result.best_val_loss:.4f}" if best else "no finite val_loss")
    for name in get_task(task).main_metrics:
        values = result.history.get(f"val_{name}")
        if best and values:
            table.add_row(f"val_{name}", f"{values[best - 1]:.4f}")
    table.add_row("run dir", str(result.run_dir))
    table.add_row("checkpoint", str(result.run_dir / rundir.CHECKPOINT))
    table.add_row("tensorboard", f"tensorboard --logdir {result.run_dir / rundir.TENSORBOARD}")
    console.print(table)
