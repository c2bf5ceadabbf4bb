"""data=voc: Pascal VOC 2012's layout (palette PNG masks, 255 borders ignored, ImageSets lists)
on a tiny generated copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_config, train_run
from helpers import untrained_run, verified_split
from PIL import Image

from cvtrain import rundir
from cvtrain.data.sources import load_index
from cvtrain.errors import DataError


# The VOC colour map (bit-interleaved), as the dataset's palette PNGs carry it.
def voc_palette() -> list[int]:
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


TRAIN = [f"2007_{i:06d}" for i in range(8)]
VAL = [f"2008_{i:06d}" for i in range(4)]


def write_voc(root: Path) -> Path:
    """12 annotated 32 px images (a person or a dog square on background, with a 3 px 255
    border), 3 images without masks (VOC has many), and the train/val/trainval lists."""
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, stem in enumerate(TRAIN + VAL):
        mask = np.zeros((32, 32), np.uint8)
        y, x = rng.integers(3, 13, 2)
        mask[y - 3 : y + 19, x - 3 : x + 19] = 255
        mask[y : y + 16, x : x + 16] = 15 if i % 2 else 12  # person, dog
        photo = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
        photo[mask == 15] += np.uint8(180)
        photo[mask == 12, 2] += np.uint8(180)
        Image.fromarray(photo).save(root / "JPEGImages" / f"{stem}.jpg", quality=95)
        png = Image.fromarray(mask, mode="P")
        png.putpalette(voc_palette())
        png.save(root / "SegmentationClass" / f"{stem}.png")
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)).save(
            root / "JPEGImages" / f"2009_{i:06d}.jpg"
        )
    lists = root / "ImageSets" / "Segmentation"
    for name, stems in (("train", TRAIN), ("val", VAL), ("trainval", TRAIN + VAL)):
        (lists / f"{name}.txt").write_text("".join(f"{s}\n" for s in stems))
    return root


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    return write_voc(tmp_path_factory.mktemp("voc") / "VOC2012")


def voc_args(root: Path, *extra: str) -> list[str]:
    return [
        "task=segmentation",
        "data=voc",
        f"data.root={root}",
        "data.image_size=[32,32]",
        "data.batch_size=16",
        "model.width=0.25",
        "trainer.epochs=1",
        "trainer.prediction_images=2",
        "trainer.precision=float32",
        *extra,
    ]


def test_voc_layout_is_split_by_its_lists_with_21_classes(voc_root, tmp_path):
    cfg = make_config(*voc_args(voc_root))
    split, _ = verified_split(cfg, tmp_path / "run")
    assert sorted(Path(p).stem for p in split.train.images) == TRAIN
    assert sorted(Path(p).stem for p in split.val.images) == VAL
    assert split.test is None  # VOC publishes no test masks
    index = split.train
    assert index.num_classes == 21 and index.class_names[15] == "person"
    assert index.class_values == tuple(range(21)) and index.ignore_value == 255
    # Palette indices (not gray levels) are checked, and images without masks are not "bad".
    assert not (tmp_path / "run" / rundir.BAD_FILES).exists()


def test_pipeline_masks_hold_class_ids_and_minus_one_for_borders(voc_root):
    from cvtrain.data.pipeline import build_dataset

    cfg = make_config(*voc_args(voc_root))
    index, _ = load_index(cfg.data, "segmentation")
    masks = np.concatenate([y for _, y in build_dataset(index, cfg.data, training=False, seed=0)])
    assert len(masks) == 12 and set(np.unique(masks)) == {-1, 0, 12, 15}


def test_missing_voc_says_where_to_get_and_unpack_it(tmp_path):
    cfg = make_config("task=segmentation", "data=voc", f"data.root={tmp_path / 'none'}")
    with pytest.raises(DataError) as error:
        load_index(cfg.data, "segmentation")
    message = str(error.value)
    assert "\n" not in message and "does not download it" in message
    assert "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar" in message
    assert "data.root=<where you unpacked it>/VOCdevkit/VOC2012" in message


def scored_miou(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> float:
    """Mean IoU over the classes present in truth or prediction, by hand."""
    ious = []
    for c in range(num_classes):
        union = np.sum((truth == c) | (pred == c))
        if union:
            ious.append(np.sum((truth == c) & (pred == c)) / union)
    return float(np.mean(ious))


def test_evaluate_leaves_the_255_borders_out_of_every_metric(voc_root, tmp_path):
    """A model that says "background" everywhere: counted as background, the borders would
    raise background IoU (and pixel accuracy) for free."""
    import keras

    from cvtrain.modes import evaluate

    inputs = keras.Input((32, 32, 3))
    bias = keras.initializers.Constant([5.0] + [0.0] * 20)
    head = keras.layers.Conv2D(21, 1, kernel_initializer="zeros", bias_initializer=bias)
    outputs = keras.layers.Softmax()(head(inputs))
    run = untrained_run(tmp_path / "run", *voc_args(voc_root), model=keras.Model(inputs, outputs))
    got = evaluate.run(make_config("mode=evaluate", f"run={run}"), [], run_dir=tmp_path)["metrics"]

    raw = np.stack(
        [np.asarray(Image.open(voc_root / "SegmentationClass" / f"{s}.png")) for s in VAL]
    )
    labelled = raw[raw != 255]
    background = np.mean(labelled == 0)  # IoU of background; dog and person score 0
    assert got["pixels"] == labelled.size < raw.size
    assert got["pixel_accuracy"] == pytest.approx(background)
    assert got["mean_iou"] == pytest.approx(background / 3)
    counted = np.mean(np.where(raw == 255, 0, raw) == 0) / 3  # the borders as background
    assert counted > got["mean_iou"] + 0.02


@pytest.mark.slow
def test_voc_trains_evaluates_without_the_borders_and_predicts(voc_root, tmp_path):
    import keras

    from cvtrain.modes import evaluate, predict

    run = train_run(tmp_path / "run", *voc_args(voc_root, "optimizer.lr=3e-3"))
    report = evaluate.run(make_config("mode=evaluate", f"run={run}"), [], run_dir=tmp_path)
    got = report["metrics"]

    # By hand: the model's predictions against the stored palette indices, 255 left out.
    model = keras.models.load_model(run / rundir.CHECKPOINT)
    stems = sorted(VAL)
    images = np.stack([np.asarray(Image.open(voc_root / "JPEGImages" / f"{s}.jpg")) for s in stems])
    pred = model.predict(images.astype(np.float32), verbose=0).argmax(-1)
    raw = np.stack(
        [np.asarray(Image.open(voc_root / "SegmentationClass" / f"{s}.png")) for s in stems]
    )
    kept = raw != 255
    assert got["pixels"] == kept.sum() < raw.size
    assert got["mean_iou"] == pytest.approx(scored_miou(raw[kept], pred[kept], 21), abs=1e-6)
    # Training's own logs leave the borders out too: its val metrics are the evaluation's.
    logged = rundir.read_json(run / rundir.METRICS)["best"]
    assert got["loss"] == pytest.approx(logged["val_loss"], rel=1e-3)
    assert got["mean_iou"] == pytest.approx(logged["val_mean_iou"], abs=1e-3)

    cfg = make_config("mode=predict", f"run={run}", f"input={voc_root / 'JPEGImages'}",
                      f"output={tmp_path / 'pred'}", "predict.mask_offset=0")  # fmt: skip
    predict.run(cfg, [], run_dir=tmp_path)
    written = sorted((tmp_path / "pred" / "masks").glob("*.png"))
    assert len(written) == 15
    assert np.asarray(Image.open(written[0])).max() <= 20
