"""A model's training state (weights and optimizer) as numpy arrays: taken between two epochs in
milliseconds, written to one .npz while the next epoch trains, assigned back on resume.

Arrays are kept in variable order, not by name: Keras numbers auto-named layers per process
(`conv2d_3` in one, `conv2d_15` in the next), but a model built from the same settings always
lists its variables in the same order, and resume.fixed_settings locks those settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from cvtrain.errors import UserError
from cvtrain.rundir import atomic_path

Snapshot = list[np.ndarray]


def training_variables(model: keras.Model) -> list[keras.Variable]:
    """Weights (BatchNorm statistics included), then the optimizer's step count and moments."""
    optimizer = model.optimizer
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)
    return [*model.variables, *(optimizer.variables if optimizer is not None else ())]


def take(variables: Sequence[keras.Variable]) -> Snapshot:
    return [v.numpy() for v in variables]


def assign(variables: Sequence[keras.Variable], snapshot: Snapshot, source: object) -> None:
    """Each variable from the array at its place; `source` names where they came from."""
    shapes = [tuple(v.shape) for v in variables]
    if shapes != [a.shape for a in snapshot]:
        raise UserError(
            f"{source} holds another model's state ({len(snapshot)} arrays for "
            f"{len(variables)} variables, or other shapes); start a new run"
        )
    for variable, array in zip(variables, snapshot):
        variable.assign(array)


def write(path: Path, snapshot: Snapshot) -> None:
    """Atomic: a kill while writing leaves the previous file, never a truncated one."""
    with atomic_path(path) as tmp:  # the temp name ends in .npz too, so savez keeps it
        np.savez(tmp, *snapshot)


def read(path: Path) -> Snapshot:
    with np.load(path) as arrays:
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
