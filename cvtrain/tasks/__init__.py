"""The tasks cvtrain trains, by name: each is a `Task` (cvtrain/tasks/base.py) in its own module.

The registry holds "module:Class" strings, so config validation reads the names without
importing Keras; `get_task` imports a task's module on first use. What a task is before its
Keras code loads (its targets) is cvtrain/tasks/specs.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cvtrain.registry import resolve
from cvtrain.tasks.specs import CLASSIFICATION, DETECTION, SEGMENTATION

if TYPE_CHECKING:
    from cvtrain.tasks.base import Task

TASKS: dict[str, str] = {
    SEGMENTATION: "cvtrain.tasks.segmentation:Segmentation",
    CLASSIFICATION: "cvtrain.tasks.classification:Classification",
    DETECTION: "cvtrain.tasks.detection:Detection",
}


def get_task(name: str) -> Task:
    return resolve(TASKS[name])()
