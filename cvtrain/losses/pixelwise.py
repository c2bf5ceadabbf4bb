"""The segmentation losses `loss=` names (cvtrain/losses/__init__.py), on per-pixel probabilities.

Models end in a float32 softmax, so every loss takes probabilities, clipped before the log as
Keras's cross-entropies clip them. Pixels labelled below 0 (IGNORED) count nowhere: in no sum and
not in the number of pixels a mean divides by. Class weights scale each pixel's term by its true
class's weight (cross-entropy, focal) or each class's Dice score (dice). Written in keras.ops on
the flattened pixels: XLA-compilable, and the same under fit() and the custom loop. Registered
serializable, so a compiled best.keras loads once this module is imported.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from cvtrain.metrics.evaluation import EPSILON

DICE_SMOOTHING = 1.0  # added to Dice's numerator and denominator: a class absent from a batch
# and predicted nowhere scores 1, not 0/0


def labelled_pixels(y_true, y_pred):
    """Class ids (0 where ignored), probabilities [pixels, classes] and the 0/1 float mask of
    labelled pixels (label >= 0), flattened over the batch."""
    probs = ops.reshape(y_pred, (-1, y_pred.shape[-1]))
    labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
    labelled = labels >= 0
    return ops.where(labelled, labels, 0), probs, ops.cast(labelled, probs.dtype)


def true_class_probability(labels, probs):
    p = ops.take_along_axis(probs, labels[:, None], axis=1)[:, 0]
    return ops.clip(p, EPSILON, 1 - EPSILON)


def mean_over(values, labelled):
    """Mean over the labelled pixels (0 for a batch without any)."""
    return ops.sum(values * labelled) / ops.maximum(ops.sum(labelled), 1.0)


class PixelLoss(keras.losses.Loss):
    """A loss over a batch's labelled pixels with optional per-class weights."""

    def __init__(self, class_weights: Sequence[float] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def call(self, y_true, y_pred):
        labels, probs, labelled = labelled_pixels(y_true, y_pred)
        classes = y_pred.shape[-1]
        weights = ops.convert_to_tensor(self.class_weights or [1.0] * classes, probs.dtype)
        # The batch's loss as a 1-vector, not a scalar: Keras divides a reduced loss by the
        # replicas under tf.distribute (which sums their gradients) but passes scalars through.
        return ops.reshape(self.pixel_loss(labels, probs, labelled, weights), (1,))

    def pixel_loss(self, labels, probs, labelled, weights):
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights}


def crossentropy(labels, probs, labelled, weights):
    """-w[y] log p(y), averaged over the labelled pixels."""
    nll = -ops.log(true_class_probability(labels, probs))
    return mean_over(ops.take(weights, labels) * nll, labelled)


def dice(labels, probs, labelled, weights):
    """1 - the weighted mean over classes of soft Dice, 2|P∩T| / (|P| + |T|), over the batch."""
    truth = ops.one_hot(labels, probs.shape[-1], dtype=probs.dtype) * labelled[:, None]
    probs = probs * labelled[:, None]
    overlap = ops.sum(truth * probs, axis=0)
    sizes = ops.sum(truth, axis=0) + ops.sum(probs, axis=0)
    scores = (2 * overlap + DICE_SMOOTHING) / (sizes + DICE_SMOOTHING)
    return 1 - ops.sum(weights * scores) / ops.sum(weights)


@keras.saving.register_keras_serializable(package="cvtrain")
class Crossentropy(PixelLoss):
    """The chapter's sparse categorical cross-entropy, skipping ignored pixels."""

    def __init__(self, class_weights=None, name="crossentropy", **kwargs):
        super().__init__(class_weights, name=name, **kwargs)

    def pixel_loss(self, labels, probs, labelled, weights):
        return crossentropy(labels, probs, labelled, weights)


@keras.saving.register_keras_serializable(package="cvtrain")
class Dice(PixelLoss):
    """Soft Dice: every class counts equally whatever its pixel count (thin classes too)."""

    def __init__(self, class_weights=None, name="dice", **kwargs):
        super().__init__(class_weights, name=name, **kwargs)

    def pixel_loss(self, labels, probs, labelled, weights):
        return dice(labels, probs, labelled, weights)


@keras.saving.register_keras_serializable(package="cvtrain")
class CrossentropyDice(PixelLoss):
    """Cross-entropy + Dice: per-pixel gradients that stay smooth, and the thin classes' say."""

    def __init__(self, class_weights=None, name="crossentropy_dice", **kwargs):
        super().__init__(class_weights, name=name, **kwargs)

    def pixel_loss(self, labels, probs, labelled, weights):
        return crossentropy(labels, probs, labelled, weights) + dice(
            labels, probs, labelled, weights
        )


@keras.saving.register_keras_serializable(package="cvtrain")
class Focal(PixelLoss):
    """Focal loss (Lin et al. 2017): cross-entropy times (1 - p(y))^gamma, so the many pixels
    already classified well weigh little; gamma=0 is cross-entropy."""

    def __init__(self, class_weights=None, gamma: float = 2.0, name="focal", **kwargs):
        super().__init__(class_weights, name=name, **kwargs)
        self.gamma = float(gamma)

    def pixel_loss(self, labels, probs, labelled, weights):
        p = true_class_probability(labels, probs)
        terms = ops.take(weights, labels) * (1 - p) ** self.gamma * -ops.log(p)
        return mean_over(terms, labelled)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma}
