"""Object detection: any number of class-and-box per image (the Oxford-IIIT Pet head boxes, a
folder of VOC, YOLO or COCO labels), found by a RetinaNet (cvtrain/models/retinanet.py).

Training logs val_map and val_map50 (COCO mAP@[.5:.95] and AP@.5 of the validation split)
every epoch; evaluation scores by the reference COCO evaluation; predict writes
predictions.json and overlays with the boxes in each input's own pixels; the serving function
(predict and every export format) has non-max suppression inside the graph and gives boxes as
fractions of each input's width and height.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from cvtrain import plots, rundir
from cvtrain.data.pipeline import resize_image
from cvtrain.inference.input_files import check_unique_names
from cvtrain.inference.serving import RAW_IMAGES, model_image_size
from cvtrain.losses.anchorwise import RetinaNetLoss
from cvtrain.metrics.coco import coco_scores
from cvtrain.models.retinanet import decode
from cvtrain.tasks.base import Task
from cvtrain.tasks.specs import DETECTION
from cvtrain.training.callbacks import PredictionImages

PREDICTIONS_JSON, OVERLAYS = "predictions.json", "overlays"  # mode=predict's outputs


@functools.cache
def decoder(image_size: tuple[int, int]) -> tf.types.experimental.Function:
    """decode (boxes, scores, classes after non-max suppression) as one compiled function."""
    return tf.function(functools.partial(decode, image_size=image_size))


def detections(outputs, image_size: tuple[int, int]) -> np.ndarray:
    """A batch of model outputs as detections [batch, 100, 6] (retinanet.decode's rows)."""
    return decoder(tuple(image_size))(tf.convert_to_tensor(outputs)).numpy()


class DetectionScorer:
    """Collects a split's true boxes and detections; scores them with COCO's evaluation."""

    def __init__(self, image_size: tuple[int, int]):
        self.image_size = tuple(image_size)
        self.truths: list[np.ndarray] = []
        self.found: list[np.ndarray] = []

    def update(self, targets: np.ndarray, outputs: np.ndarray) -> None:
        self.truths += list(np.asarray(targets))
        self.found += list(detections(outputs, self.image_size))

    def result(self, class_names: Sequence[str], ignore: int | None = None) -> dict:
        return coco_scores(self.truths, self.found, class_names, self.image_size)


class ValidationMAP(keras.callbacks.Callback):
    """val_map and val_map50 into each epoch's logs (the history, TensorBoard and MLflow read
    them there): the validation split predicted, decoded in float32 and scored by COCO."""

    def __init__(self, val_ds: tf.data.Dataset, class_names: Sequence[str], image_size):
        super().__init__()
        self.val_ds, self.class_names, self.image_size = val_ds, class_names, tuple(image_size)

    def on_epoch_end(self, epoch, logs=None):
        scorer = DetectionScorer(self.image_size)
        for images, targets in self.val_ds:
            scorer.update(targets.numpy(), self.model.predict_on_batch(images))
        scores = scorer.result(self.class_names)
        if logs is not None:
            logs["val_map"] = scores["map"] or 0.0  # None: no object in the split to find
            logs["val_map50"] = scores["map50"] or 0.0


def predictions_figure(images, truths, outputs, class_names):
    """True | predicted boxes (TensorBoard each epoch and predictions.png)."""
    found = detections(outputs, images.shape[1:3])
    return plots.detection_predictions_figure(images, truths, found, class_names)


class Detection(Task):
    name = DETECTION
    main_metrics = ("map", "map50")
    eval_rows = ("map", "map50", "map75", "map50_any_class")
    per_class_rows = ("ap", "ap50")

    def loss_and_metrics(self, class_names, loss, class_weights, image_size):
        """Focal loss on classes, smooth L1 on boxes (loss=retinanet); mAP is logged by
        ValidationMAP, as Keras metrics see one batch at a time."""
        return RetinaNetLoss(image_size, len(class_names), gamma=loss.gamma), []

    def epoch_metrics(self, val_ds, class_names, image_size):
        return [ValidationMAP(val_ds, class_names, image_size)]

    def epoch_callback(self, samples, val_ds, class_names, log_dir):
        if samples is None:
            return None
        return PredictionImages(*samples, class_names, log_dir, figure=predictions_figure)

    def write_reports(self, run_dir, model, samples, class_names, callback):
        if samples is not None:
            images, truths = samples
            figure = predictions_figure(
                images, truths, model.predict(images, verbose=0), class_names
            )
            plots.save_figure(figure, run_dir / rundir.PREDICTIONS)

    def scorer(self, num_classes, image_size):
        return DetectionScorer(image_size)

    def serving(self, model):
        """uint8 [batch, H, W, 3] of any size -> [batch, 100, 6]: x0, y0, x1, y1 as fractions
        of the input's width and height (times W, H: its pixels), score, class (rows past the
        detections: score 0, class -1). Non-max suppression is inside the graph."""
        size = model_image_size(model)

        @tf.function(input_signature=[RAW_IMAGES])
        def detect(images: tf.Tensor) -> tf.Tensor:
            outputs = model(tf.cast(resize_image(images, size), tf.float32), training=False)
            return decode(outputs, size)

        return detect

    def model_classes(self, model):
        """Outputs are 4 box offsets, then one logit per class."""
        return model.output_shape[-1] - 4

    def check_inputs(self, files):
        check_unique_names(files)

    def write_predictions(self, predictions, out_dir, cfg, class_names):
        entries, written = [], []
        for path, image, found in predictions:
            found = found[(found[:, 5] >= 0) & (found[:, 4] >= cfg.predict.min_score)]
            labels = [class_names[int(c)] for c in found[:, 5]]
            h, w = image.shape[:2]
            found[:, :4] *= (w, h, w, h)  # in the input's own pixels
            entries.append(
                {
                    "file": path.name,
                    "width": w,
                    "height": h,
                    "boxes": [[round(float(v), 2) for v in box] for box in found[:, :4]],
                    "labels": labels,
                    "scores": [round(float(s), 4) for s in found[:, 4]],
                }
            )
            captions = [f"{label} {s:.2f}" for label, s in zip(labels, found[:, 4])]
            overlay = plots.draw_boxes(image, found[:, :4], found[:, 5], captions)
            written.append(plots.save_png(overlay, out_dir / OVERLAYS / f"{path.stem}.png"))
        target = out_dir / PREDICTIONS_JSON
        rundir.write_atomic(target, lambda tmp: tmp.write_text(json.dumps(entries, indent=1)))
        return [target, *written], f"{target} (overlays in {out_dir / OVERLAYS})"
