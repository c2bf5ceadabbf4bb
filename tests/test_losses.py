"""loss=, loss.class_weights and the per-class training metrics (cvtrain/losses/__init__.py and
cvtrain/losses/pixelwise.py, cvtrain/losses/class_weights.py, cvtrain/metrics/epoch.py).

Every loss and metric is checked against NumPy on a batch that holds ignored pixels (label -1)
whose probabilities would change the value if they were counted.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_config, tiny_segmentation, train_run
from helpers import history_rows
from PIL import Image

from cvtrain import rundir
from cvtrain.config.schema import LossConfig
from cvtrain.data.index import FileIndex
from cvtrain.errors import ConfigError
from cvtrain.losses import class_weights
from cvtrain.metrics.evaluation import EPSILON, confusion, segmentation_metrics
from cvtrain.state import resume
from cvtrain.tasks.specs import SEGMENTATION

NAMES = ("pet", "background", "border")
# One image of 2x3 pixels, 3 classes; the last pixel is ignored and confidently wrong.
LABELS = np.array([[[0], [1], [2]], [[1], [1], [-1]]], np.int32)[None]
PROBS = np.array(
    [
        [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.6, 0.1]],
        [[0.2, 0.5, 0.3], [0.4, 0.4, 0.2], [0.01, 0.01, 0.98]],
    ],
    np.float32,
)[None]
WEIGHTS = (1.0, 0.5, 3.0)


def labelled():
    """The labelled pixels' labels and probabilities, flattened (what the losses must see)."""
    labels, probs = LABELS.reshape(-1), PROBS.reshape(-1, 3)
    keep = labels >= 0
    return labels[keep], probs[keep]


def numpy_crossentropy(weights=(1.0, 1.0, 1.0), gamma=0.0):
    labels, probs = labelled()
    p = np.clip(probs[np.arange(len(labels)), labels], EPSILON, 1 - EPSILON)
    return np.mean(np.take(weights, labels) * (1 - p) ** gamma * -np.log(p))


def numpy_dice(weights=(1.0, 1.0, 1.0)):
    labels, probs = labelled()
    truth = np.eye(3)[labels]
    scores = (2 * (truth * probs).sum(0) + 1) / (truth.sum(0) + probs.sum(0) + 1)
    return 1 - np.sum(np.multiply(weights, scores)) / np.sum(weights)


def loss_value(name: str, weights=None, **settings) -> float:
    from cvtrain.losses import build_loss

    loss = build_loss(LossConfig(name=name, **settings), weights)
    return float(loss(LABELS, PROBS))


EXPECTED = {
    "crossentropy": lambda w: numpy_crossentropy(w),
    "focal": lambda w: numpy_crossentropy(w, gamma=2.0),
    "dice": lambda w: numpy_dice(w),
    "crossentropy_dice": lambda w: numpy_crossentropy(w) + numpy_dice(w),
}


@pytest.mark.parametrize("weights", [None, WEIGHTS], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("name", list(EXPECTED))
def test_losses_match_numpy_and_skip_ignored_pixels(name, weights):
    expected = EXPECTED[name](weights or (1.0, 1.0, 1.0))
    assert loss_value(name, weights) == pytest.approx(expected, rel=1e-5)


def test_crossentropy_is_the_chapters_loss_where_nothing_is_ignored():
    import keras

    labels = np.where(LABELS < 0, 2, LABELS)
    keras_loss = keras.losses.SparseCategoricalCrossentropy()(labels, PROBS)
    from cvtrain.losses.pixelwise import Crossentropy

    assert float(Crossentropy()(labels, PROBS)) == pytest.approx(float(keras_loss), rel=1e-6)


def test_focal_with_gamma_0_is_crossentropy():
    assert loss_value("focal", gamma=0.0) == pytest.approx(numpy_crossentropy(), rel=1e-6)


def test_losses_compile_with_xla_and_keep_their_config():
    import tensorflow as tf

    from cvtrain.losses import LOSSES, build_loss

    for name, spec in LOSSES.items():
        if SEGMENTATION not in spec.tasks:  # detection's is built by its task: test_detection.py
            continue
        loss = build_loss(LossConfig(name=name, gamma=1.5), WEIGHTS)
        compiled = tf.function(lambda y, p, loss=loss: loss(y, p), jit_compile=True)
        assert float(compiled(LABELS, PROBS)) == pytest.approx(float(loss(LABELS, PROBS)))
        again = type(loss).from_config(loss.get_config())
        assert float(again(LABELS, PROBS)) == pytest.approx(float(loss(LABELS, PROBS)))


def test_pixel_metrics_come_from_one_matrix_without_ignored_pixels():
    from cvtrain.metrics.epoch import pixel_metrics

    metrics = pixel_metrics(NAMES)
    for _ in range(2):  # two batches; the readers count nothing themselves
        for metric in metrics:
            metric.update_state(LABELS, PROBS)
    got = {m.name: float(m.result()) for m in metrics}
    labels, probs = labelled()
    matrix = 2 * confusion(labels, probs.argmax(-1), 3)
    want = segmentation_metrics(matrix, 0.0, NAMES)
    np.testing.assert_array_equal(np.asarray(metrics[0].counts), matrix)  # counted once
    assert list(got) == ["pixel_accuracy", "mean_iou", "iou_pet", "iou_background", "iou_border"]
    assert got["pixel_accuracy"] == pytest.approx(want["pixel_accuracy"])  # 3 of 5, not 3 of 6
    assert got["mean_iou"] == pytest.approx(want["mean_iou"])
    for name in NAMES:
        assert got[f"iou_{name}"] == pytest.approx(want["per_class"][name]["iou"]), name
    assert got["iou_border"] == 0  # the ignored pixel predicted as border is not a false border
    metrics[0].reset_state()
    assert float(metrics[1].result()) == 0.0


def test_a_class_in_neither_truth_nor_prediction_is_left_out_of_mean_iou():
    from cvtrain.metrics.epoch import pixel_metrics

    metrics = pixel_metrics((*NAMES, "tail"))
    for metric in metrics:
        metric.update_state(LABELS, np.pad(PROBS, [(0, 0), (0, 0), (0, 0), (0, 1)]))
    got = {m.name: float(m.result()) for m in metrics}
    labels, probs = labelled()
    want = segmentation_metrics(confusion(labels, probs.argmax(-1), 3), 0.0, NAMES)
    assert got["mean_iou"] == pytest.approx(want["mean_iou"]) and got["iou_tail"] == 0


def write_masks(root, masks: list[np.ndarray]) -> FileIndex:
    paths = []
    for i, mask in enumerate(masks):
        paths.append(str(root / f"mask{i}.png"))
        Image.fromarray(mask.astype(np.uint8)).save(paths[-1])
    return FileIndex(
        SEGMENTATION, tuple(paths), tuple(paths), NAMES, str(root), mask_values=(1, 2, 3)
    )


def test_balanced_weights_come_from_pixel_counts_without_ignored_values(tmp_path, monkeypatch):
    monkeypatch.setenv("CVTRAIN_DATA_DIR", str(tmp_path / "cache"))
    # Trimap values 1 pet, 2 background, 3 border; 0 and 9 are not classes (ignored).
    one = np.array([[1, 1, 2, 2], [2, 2, 2, 2], [3, 0, 0, 9]])
    two = np.array([[1, 1, 2, 2, 2, 2]])
    index = write_masks(tmp_path, [one, two])
    counts = class_weights.pixel_counts(index)
    assert counts.tolist() == [4, 10, 1]
    weights = class_weights.resolve(LossConfig(class_weights="balanced"), index)
    assert weights == pytest.approx([15 / (3 * 4), 15 / (3 * 10), 15 / (3 * 1)])
    assert sum(w * n for w, n in zip(weights, counts)) == pytest.approx(counts.sum())  # mean 1
    assert len(list((tmp_path / "cache" / "class_pixels").iterdir())) == 1  # cached
    assert class_weights.balanced([5, 0, 5]) == (1.0, 0.0, 1.0)  # no pixels: nothing to learn


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["task=classification", "loss=dice"], "loss=dice is a segmentation loss; task=classi"),
        (["task=classification", "loss.class_weights=balanced"], "takes loss.class_weights=none"),
        (["loss.class_weights=balance"], "did you mean balanced"),
        (["loss.class_weights=[1,-1,2]"], "one weight >= 0 per class"),
        (["loss.name=focl"], "did you mean focal"),
        (["loss=focal", "loss.gamma=-1"], "loss.gamma=-1.0 must be >= 0"),
    ],
)
def test_loss_errors_are_one_line_before_anything_loads(overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        make_config(*overrides)
    assert "\n" not in str(error.value)


def test_a_list_of_weights_needs_one_per_class():
    cfg = make_config("loss.class_weights=[1,2]")
    with pytest.raises(ConfigError, match=r"has 2 weights but the data has 3 classes \(pet, "):
        class_weights.check(cfg.loss, NAMES)
    empty = FileIndex(SEGMENTATION, (), (), NAMES)
    assert class_weights.resolve(make_config("loss.class_weights=[1,2,3]").loss, empty) == (1, 2, 3)


def test_a_resumed_run_keeps_its_loss(tmp_path):
    cfg = make_config("loss=focal")
    resume.save(tmp_path, resume.ResumeState(1, "w.h5", fixed=resume.fixed_settings(cfg, NAMES)))
    (tmp_path / "backup" / "w.h5").touch()  # the file the state names
    assert resume.check_compatible(tmp_path, make_config("loss=focal", "optimizer.lr=1e-4"), NAMES)
    for change in ("loss=dice", "loss.gamma=1", "loss.class_weights=balanced"):
        with pytest.raises(ConfigError, match="keeps its task, model, image size, optimizer, loss"):
            resume.check_compatible(tmp_path, make_config("loss=focal", change), NAMES)


@pytest.mark.slow
def test_a_dice_run_logs_iou_per_class_evaluates_and_exports(pets_root, tmp_path):
    """Trained through train() with balanced weights; evaluate and export load its best.keras."""
    from cvtrain.modes.evaluate import run as evaluate_run
    from cvtrain.modes.export import run as export_run

    run = train_run(
        tmp_path / "run",
        *tiny_segmentation(pets_root, "loss=dice", "loss.class_weights=balanced"),
    )
    header = list(history_rows(run)[0])
    for name in ("pixel_accuracy", "mean_iou", *(f"iou_{n}" for n in NAMES)):
        assert name in header and f"val_{name}" in header, name
    manifest = rundir.read_json(run / rundir.MANIFEST)
    assert manifest["loss"]["name"] == "dice"
    weights = manifest["loss"]["class_weights"]
    assert len(weights) == 3 and weights[NAMES.index("border")] > 1  # the thin class weighs more

    report = evaluate_run(make_config("mode=evaluate", f"run={run}"), [], run_dir=tmp_path)
    logged = rundir.read_json(run / rundir.METRICS)["best"]
    assert report["metrics"]["mean_iou"] == pytest.approx(logged["val_mean_iou"], abs=1e-3)
    export_run(make_config("mode=export", f"run={run}", "format=keras"), [], tmp_path)
    assert (run / "export" / "model.keras").is_file()  # reloaded and compared by the export


@pytest.mark.slow
def test_the_custom_loop_logs_the_same_metrics(pets_root, tmp_path):
    from helpers import train_in_process

    extra = ("loss=crossentropy_dice", "trainer.loop=custom", "trainer.epochs=1")
    train_in_process(pets_root, tmp_path, *extra)
    (row,) = history_rows(tmp_path)
    for name in ("loss", "pixel_accuracy", "mean_iou", *(f"iou_{n}" for n in NAMES)):
        assert 0 <= float(row[f"val_{name}"]) < 10, name
