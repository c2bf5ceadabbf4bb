"""Semantic segmentation: a class per pixel, from masks (the chapter's Oxford-IIIT Pet trimaps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cvtrain import plots, rundir
from cvtrain.config.schema import RunConfig
from cvtrain.inference.input_files import check_unique_names
from cvtrain.losses import build_loss
from cvtrain.metrics.epoch import pixel_metrics
from cvtrain.metrics.evaluation import PixelScorer
from cvtrain.tasks.base import Task
from cvtrain.tasks.specs import SEGMENTATION
from cvtrain.training.callbacks import PredictionImages

MASKS, OVERLAYS = "masks", "overlays"  # mode=predict's folders in its output dir


class Segmentation(Task):
    name = SEGMENTATION
    main_metrics = ("pixel_accuracy", "mean_iou")
    eval_rows = ("loss", "pixel_accuracy", "mean_iou", "mean_dice")
    per_class_rows = ("iou", "dice")

    def loss_and_metrics(self, class_names, loss, class_weights, image_size):
        """Every loss and metric skips ignored pixels (label < 0); IoU per class is logged so
        a class never predicted shows while training."""
        return build_loss(loss, class_weights), pixel_metrics(class_names)

    def epoch_callback(self, samples, val_ds, class_names, log_dir):
        return None if samples is None else PredictionImages(*samples, class_names, log_dir)

    def write_reports(self, run_dir, model, samples, class_names, callback):
        if samples is not None:
            images, truths = samples
            probs = model.predict(images, verbose=0)
            path = run_dir / rundir.PREDICTIONS
            plots.save_segmentation_predictions(images, truths, probs, class_names, path)

    def scorer(self, num_classes, image_size):
        return PixelScorer(num_classes)

    def check_inputs(self, files):
        check_unique_names(files)

    def write_predictions(self, predictions, out_dir, cfg, class_names):
        written = [
            write_mask(image, probs, path.stem, out_dir, cfg) for path, image, probs in predictions
        ]
        return written, f"{out_dir / MASKS} (overlays in {out_dir / OVERLAYS})"

    def explain_class(self, class_names):
        """The first class not named background (pet in the Oxford layout)."""
        return next((i for i, name in enumerate(class_names) if name != "background"), 0)


def write_mask(
    image: np.ndarray, probs: np.ndarray, name: str, out_dir: Path, cfg: RunConfig
) -> Path:
    """The mask PNG (class id + offset) and the overlay PNG for one image."""
    ids = probs.argmax(-1).astype(np.uint8)
    overlay = plots.overlay(image, ids, cfg.predict.overlay_alpha)
    plots.save_png(overlay, out_dir / OVERLAYS / f"{name}.png")
    return plots.save_png(ids + np.uint8(cfg.predict.mask_offset), out_dir / MASKS / f"{name}.png")
