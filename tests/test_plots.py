"""What the run dir's figures show: curves.png and predictions.png."""

from __future__ import annotations

import numpy as np
import pytest

from cvtrain import plots


@pytest.fixture
def figures(monkeypatch):
    """The figures the plots module would save, kept open for inspection."""
    saved = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: saved.append(fig))
    yield saved
    for fig in saved:
        plots.plt.close(fig)


def test_curves_show_loss_and_metrics_train_vs_validation(figures, tmp_path):
    history = {
        "epoch": [0, 1],
        "loss": [1.0, 0.8],
        "mean_iou": [0.2, 0.3],
        "val_loss": [1.1, 0.9],
        "val_mean_iou": [0.1, 0.2],
    }
    plots.save_curves(history, tmp_path / "curves.png")
    (fig,) = figures
    panels = {ax.get_title(): ax for ax in fig.axes}
    assert set(panels) == {"loss", "mean_iou"}
    for name, ax in panels.items():
        lines = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
        assert lines == {"train": history[name], "validation": history[f"val_{name}"]}


def test_per_class_iou_shares_one_validation_panel(figures, tmp_path):
    history = {"loss": [1.0], "iou_pet": [0.5], "val_loss": [1.1]}
    history |= {"val_iou_pet": [0.4], "val_iou_border": [0.0]}
    plots.save_curves(history, tmp_path / "curves.png")
    (fig,) = figures
    assert [ax.get_title() for ax in fig.axes] == ["loss", "validation IoU per class"]
    lines = {line.get_label(): list(line.get_ydata()) for line in fig.axes[1].get_lines()}
    assert lines == {"pet": [0.4], "border": [0.0]}


def test_segmentation_predictions_show_input_true_and_predicted_mask(figures, tmp_path):
    images = np.zeros((2, 8, 8, 3), np.float32)
    truths = np.zeros((2, 8, 8), np.int32)
    probs = np.full((2, 8, 8, 3), 1 / 3, np.float32)
    names = ["pet", "background", "border"]
    plots.save_segmentation_predictions(images, truths, probs, names, tmp_path / "p.png")
    (fig,) = figures
    titles = [ax.get_title() for ax in fig.axes[:3]]
    assert titles == ["input", "true mask", "predicted mask"] and len(fig.axes) == 6
    (legend,) = fig.legends  # the class colours named
    assert [t.get_text() for t in legend.get_texts()] == names
    left, right = fig.axes[0].get_position(), fig.axes[1].get_position()
    assert right.x0 - left.x1 > 0.01  # a gap between input and truth


def test_classification_predictions_show_true_and_predicted_class_and_probability(
    figures, tmp_path
):
    images = np.zeros((2, 8, 8, 3), np.float32)
    probs = np.array([[0.9, 0.1], [0.3, 0.7]], np.float32)
    plots.save_classification_predictions(
        images, np.array([0, 0]), probs, ["cat", "dog"], tmp_path / "p.png"
    )
    (fig,) = figures
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["true cat\npred cat (0.90)", "true cat\npred dog (0.70)"]
