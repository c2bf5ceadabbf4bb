"""The tasks cvtrain trains, by name: each is a `Task` (cvtrain/tasks/base.py) in its own module.

The registry holds "module:Class" strings, so config validation reads the names without
importing Keras; `get_task` imports a task's module on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from cvtrain.data.index import CLASSIFICATION, SEGMENTATION

if TYPE_CHECKING:
    from cvtrain.tasks.base import Task

TASKS: dict[str, str] = {
    SEGMENTATION: "cvtrain.tasks.segmentation:Segmentation",
    CLASSIFICATION: "cvtrain.tasks.classification:Classification",
}


def get_task(name: str) -> Task:
    module, cls = TASKS[name].split(":")
    return getattr(import_module(module), cls)()
