"""An ensemble of finished runs (`run=[a,b]`): it averages its members' class probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras
    import numpy as np


def member_probabilities(models: Sequence[keras.Model], images) -> list[np.ndarray]:
    """Each member's class probabilities for one batch of float32 0..255 images."""
    from cvtrain.tasks.base import class_probabilities

    return [class_probabilities(model.predict_on_batch(images)) for model in models]


def average(probabilities: Sequence[np.ndarray]) -> np.ndarray:
    """The ensemble's prediction: the mean of its members' class probabilities."""
    import numpy as np

    return np.mean(np.stack(probabilities), axis=0)
