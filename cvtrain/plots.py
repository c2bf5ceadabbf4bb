"""Pictures a person would rather look at than read: curves and prediction panels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from cvtrain.metrics.evaluation import CLASS_IOU  # noqa: E402
from cvtrain.rundir import write_atomic  # noqa: E402

# pet, background, border (and more for other datasets), as RGB
PALETTE = np.array(
    [[230, 159, 0], [40, 40, 60], [240, 240, 240], [86, 180, 233], [0, 158, 115], [204, 121, 167]],
    np.uint8,
)


def colorize(mask: np.ndarray) -> np.ndarray:
    """Class-id mask (HxW or HxWx1) -> HxWx3 uint8 image."""
    ids = np.asarray(mask).squeeze().astype(np.int64)
    return PALETTE[np.clip(ids, 0, None) % len(PALETTE)]


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The photo with its class-id mask blended over it, as HxWx3 uint8."""
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colorize(mask).astype(np.float32)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


# A box's colour by its class: bright and told apart from each other on photos.
BOX_COLOURS = np.array(
    [[255, 64, 64], [64, 160, 255], [255, 200, 0], [0, 220, 120], [220, 80, 255], [255, 140, 0]],
    np.uint8,
)
SHOWN_SCORE = 0.3  # predicted boxes drawn in pictures score at least this


def draw_boxes(
    image: np.ndarray, boxes: np.ndarray, classes: Sequence[int], captions: Sequence[str]
) -> np.ndarray:
    """A copy of the HxWx3 photo with each box (x0, y0, x1, y1 in its pixels) outlined in its
    class's colour and captioned."""
    picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    width = max(1, round(min(picture.size) / 150))
    for (x0, y0, x1, y1), cls, caption in zip(boxes, classes, captions):
        colour = tuple(int(c) for c in BOX_COLOURS[int(cls) % len(BOX_COLOURS)])
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=colour, width=width)
        left, top, right, bottom = draw.textbbox((x0, y0), caption)
        top_at = y0 - (bottom - top) - 2 if y0 >= bottom - top + 2 else y0
        draw.rectangle([x0, top_at, x0 + right - left + 2, top_at + bottom - top + 2], fill=colour)
        draw.text((x0 + 1, top_at), caption, fill=(0, 0, 0))
    return np.asarray(picture)


def detection_panels(
    image: np.ndarray, truth: np.ndarray, found: np.ndarray, class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """The image with its true boxes, and with the predicted ones scoring >= SHOWN_SCORE
    (rows: x0, y0, x1, y1 as fractions, then class for `truth`, score and class for `found`)."""
    h, w = image.shape[:2]
    scale = np.array([w, h, w, h])
    truth = truth[truth[:, 4] >= 0]
    found = found[(found[:, 5] >= 0) & (found[:, 4] >= SHOWN_SCORE)]
    true_panel = draw_boxes(
        image, truth[:, :4] * scale, truth[:, 4], [class_names[int(c)] for c in truth[:, 4]]
    )
    captions = [f"{class_names[int(c)]} {s:.2f}" for s, c in found[:, 4:6]]
    return true_panel, draw_boxes(image, found[:, :4] * scale, found[:, 5], captions)


def detection_predictions_figure(
    images: np.ndarray, truths: np.ndarray, detections: np.ndarray, class_names: Sequence[str]
) -> plt.Figure:
    """True boxes | predicted boxes for a few validation images, columns titled."""
    n = len(images)
    fig, axes = plt.subplots(n, 2, figsize=(6.5, 3 * n + 0.3), squeeze=False)
    titles = ("true boxes", f"predicted boxes (score >= {SHOWN_SCORE})")
    for row, (image, truth, found) in enumerate(zip(images, truths, detections)):
        for ax, panel, title in zip(
            axes[row], detection_panels(image, truth, found, class_names), titles
        ):
            ax.imshow(panel)
            ax.set_axis_off()
            if row == 0:
                ax.set_title(title, fontsize=10)
    fig.tight_layout(w_pad=1.0)
    return fig


def save_png(pixels: np.ndarray, path: Path) -> Path:
    """An HxW (grey) or HxWx3 uint8 array as a PNG file."""
    write_atomic(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))
    return path


def heatmap_panel(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """The photo | the photo under a 0..1 heatmap in the jet colours (the book's Grad-CAM
    picture), one HxWx3 uint8 image; `heatmap` has the photo's height and width."""
    colours = matplotlib.colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3] * 255
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colours
    overlaid = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return np.concatenate([image.astype(np.uint8), overlaid], axis=1)


def save_confusion_matrix(matrix: np.ndarray, class_names: list[str], path: Path) -> None:
    save_figure(confusion_matrix_figure(matrix, class_names), path)


def confusion_matrix_figure(matrix: np.ndarray, class_names: list[str]) -> plt.Figure:
    """Counts per (true, predicted) class, shaded by the share of each true class."""
    matrix = np.asarray(matrix)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.6 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of true class")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (row, col), count in np.ndenumerate(matrix):
        color = "white" if share[row, col] > 0.5 else "black"
        ax.text(col, row, str(count), ha="center", va="center", color=color)
    fig.tight_layout()
    return fig


def save_curves(history: dict[str, list[float]], path: Path) -> None:
    """Loss and each metric per epoch, train vs validation, one panel each; the per-class IoUs
    (validation) share one last panel."""
    skip = ("val_", CLASS_IOU)
    names = [k for k in history if not k.startswith(skip) and k not in ("epoch", "learning_rate")]
    prefix = f"val_{CLASS_IOU}"
    classes = [k for k in history if k.startswith(prefix)]
    panels = len(names) + bool(classes)
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.4), squeeze=False)
    if classes:
        ax = axes[0][-1]
        for key in classes:
            epochs = np.arange(1, len(history[key]) + 1)
            ax.plot(epochs, history[key], "o-", label=key.removeprefix(prefix))
        _label(ax, "validation IoU per class")
    for ax, name in zip(axes[0], names):
        epochs = np.arange(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], "o-", label="train")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], "s-", label="validation")
        _label(ax, name)
    fig.tight_layout()
    save_figure(fig, path)


def _label(ax: plt.Axes, title: str) -> None:
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    ax.legend()


def segmentation_predictions_figure(
    images: np.ndarray, truths: np.ndarray, probs: np.ndarray, class_names: Sequence[str]
) -> plt.Figure:
    """The chapter's figure: input, true mask and predicted mask for a few validation images,
    each column titled, a gap between panels (an all-background prediction never merges into
    the truth beside it) and the class colours named in a legend."""
    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(9, 3 * n + 0.6), squeeze=False)
    for row, (image, truth, prob) in enumerate(zip(images, truths, probs)):
        panels = (image.astype(np.uint8), colorize(truth), colorize(np.argmax(prob, axis=-1)))
        for ax, panel, title in zip(axes[row], panels, ("input", "true mask", "predicted mask")):
            ax.imshow(panel)
            ax.set_axis_off()
            if row == 0:
                ax.set_title(title)
    colours = [PALETTE[i % len(PALETTE)] / 255 for i in range(len(class_names))]
    handles = [Patch(facecolor=c, edgecolor="grey", label=n) for c, n in zip(colours, class_names)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    fig.tight_layout(rect=(0, 0.6 / (3 * n + 0.6), 1, 1), w_pad=1.5)
    return fig


def save_segmentation_predictions(
    images: np.ndarray,
    truths: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    path: Path,
) -> None:
    save_figure(segmentation_predictions_figure(images, truths, probs, class_names), path)


def save_classification_predictions(
    images: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: list[str],
    path: Path,
) -> None:
    """Validation images titled with true and predicted class and the predicted probability.

    `probs` are per-class probabilities (one row per image); wrong predictions are titled red.
    """
    cols = min(4, len(images))
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3 * cols, 3.4 * rows), squeeze=False, layout="constrained"
    )
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, image, label, prob in zip(axes.ravel(), images, labels, probs):
        pred = int(np.argmax(prob))
        ax.imshow(np.clip(image, 0, 255).astype(np.uint8))
        ax.set_title(
            f"true {class_names[int(label)]}\npred {class_names[pred]} ({prob[pred]:.2f})",
            color="black" if pred == int(label) else "red",
            fontsize=9,
        )
    save_figure(fig, path)


def figure_image(fig: plt.Figure) -> np.ndarray:
    """A figure as an HxWx3 uint8 array (for TensorBoard images); closes the figure."""
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def save_figure(fig: plt.Figure, path: Path) -> None:
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
