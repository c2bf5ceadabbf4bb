"""What each task is, in pure Python: the one fact about a task that the data layer, the config
checks and the modes need before (or without) its Keras code.

A task's targets decide the rest: masks (a label image per sample) are decoded, augmented and
verified as images, scored per pixel, served at each input's own size, weighted by pixel counts
(`loss.class_weights`) and may leave a class out of evaluation; labels (a class id per image) do
none of that; boxes (any number of class-and-box per image, read from label files) are padded to
a fixed count for batching and moved with the image by augmentation. The Keras part of a task,
its `Task` class, is registered in cvtrain.tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

SEGMENTATION = "segmentation"
CLASSIFICATION = "classification"
DETECTION = "detection"

MASKS = "masks"  # a label image per sample: one class id per pixel
LABELS = "labels"  # one class id per sample
BOXES = "boxes"  # any number of (class id, box) per sample


@dataclass(frozen=True)
class TaskSpec:
    targets: str  # MASKS, LABELS or BOXES
    # Whether runs of the task average into an ensemble (run=[a,b]) and mode=explain explains
    # them: a detector's outputs are per-anchor offsets, which no average merges into boxes.
    ensembles: bool = True
    explains: bool = True

    @property
    def dense(self) -> bool:
        """One prediction per pixel: targets are masks."""
        return self.targets == MASKS


SPECS: dict[str, TaskSpec] = {
    SEGMENTATION: TaskSpec(MASKS),
    CLASSIFICATION: TaskSpec(LABELS),
    DETECTION: TaskSpec(BOXES, ensembles=False, explains=False),
}
