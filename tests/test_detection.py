"""Object detection (task=detection): box labels in each format, bad labels reported and skipped,
boxes moved by augmentation, the loss's anchor matching, COCO scores, and RetinaNet runs through
every mode of the CLI, on generated shapes and on the real sample's head boxes."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import REAL_SAMPLE, make_config, mlflow_overrides, require_real_sample, run_cli
from PIL import Image

from cvtrain import rundir
from cvtrain.data.source_config import BoxData, DetectionFolderData
from cvtrain.data.sources import load_index
from cvtrain.data.verify import checked_index
from cvtrain.errors import ConfigError

# One dog in a 40x30 image, covering pixels x 10..29 and y 5..19 (0-based, inclusive): on pixel
# edges x 10..30 and y 5..20, so as fractions (0.25, 1/6, 0.75, 2/3).
WIDTH, HEIGHT = 40, 30
DOG = (1, 10 / 40, 5 / 30, 30 / 40, 20 / 30)
CLASSES = ["cat", "dog"]


def photo(path: Path, size: tuple[int, int] = (WIDTH, HEIGHT)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def voc(name: str = "dog", box=(11, 6, 30, 20), size=(WIDTH, HEIGHT)) -> str:
    """A Pascal VOC XML of one object; `box` in VOC's 1-based pixel indices."""
    xmin, ymin, xmax, ymax = box
    return (
        f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth>"
        f"</size><object><name>{name}</name><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
        f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object></annotation>"
    )


YOLO_DOG = "1 0.5 0.416667 0.5 0.5\n"  # centre (20, 12.5) px, 20 x 15 px


def coco(boxes: list[dict], size=(WIDTH, HEIGHT)) -> str:
    images = [{"id": 7, "file_name": "a.png", "width": size[0], "height": size[1]}]
    images.append({"id": 8, "file_name": "b.png", "width": WIDTH, "height": HEIGHT})
    categories = [{"id": 3, "name": "cat"}, {"id": 5, "name": "dog"}]
    return json.dumps({"images": images, "annotations": boxes, "categories": categories})


COCO_DOG = {"id": 1, "image_id": 7, "category_id": 5, "bbox": [10, 5, 20, 15], "iscrowd": 0}


def folder(root: Path, fmt: str, label_a: str, label_b: str | None = None) -> DetectionFolderData:
    """<root>/images/{a,b}.png with `label_a` for a (b, a good image, labelled like the DOG)."""
    photo(root / "images" / "a.png")
    photo(root / "images" / "b.png")
    good = {"voc": voc(), "yolo": YOLO_DOG, "coco": None}[fmt]
    if fmt == "coco":
        (root / "annotations.json").write_text(label_a)
    else:
        suffix = ".xml" if fmt == "voc" else ".txt"
        (root / "labels").mkdir(exist_ok=True)
        (root / "labels" / f"a{suffix}").write_text(label_a)
        (root / "labels" / f"b{suffix}").write_text(label_b or good)
    return DetectionFolderData(
        source="detection_folder", root=str(root), format=fmt, classes=CLASSES, val_fraction=0.5,
        val_samples=None,
    )  # fmt: skip


@pytest.mark.parametrize(
    "fmt, label",
    [("voc", voc()), ("yolo", YOLO_DOG), ("coco", coco([COCO_DOG]))],
)
def test_every_format_reads_the_same_box(tmp_path, fmt, label):
    index, dropped = load_index(folder(tmp_path, fmt, label), "detection")
    assert not dropped and not index.label_problems
    boxes = dict(zip((Path(p).name for p in index.images), index.targets))
    assert boxes["a.png"] == (pytest.approx(DOG, abs=1e-6),)
    assert index.class_names == ("cat", "dog")


def test_voc_classes_default_to_every_name_seen_and_yolo_needs_them(tmp_path):
    cfg = folder(tmp_path / "voc", "voc", voc("zebra"), voc("ant"))
    index, _ = load_index(replace(cfg, classes=None), "detection")
    assert index.class_names == ("ant", "zebra")
    cfg = folder(tmp_path / "yolo", "yolo", YOLO_DOG)
    with pytest.raises(ConfigError, match="data.format=yolo needs the class names"):
        load_index(replace(cfg, classes=None), "detection")


def test_an_image_without_a_yolo_label_file_is_a_background_image(tmp_path):
    cfg = folder(tmp_path, "yolo", YOLO_DOG)
    (tmp_path / "labels" / "b.txt").unlink()
    index, _ = load_index(cfg, "detection")
    boxes = dict(zip((Path(p).name for p in index.images), index.targets))
    assert boxes["b.png"] == () and len(boxes["a.png"]) == 1


# (format, label of image a, the problem listed, whether image a stays in the index)
BAD_LABELS = {
    "voc box outside": ("voc", voc(box=(11, 6, 60, 20)), "box outside image", True),
    "voc empty box": ("voc", voc(box=(11, 6, 10, 20)), "empty box", True),
    "voc unknown name": ("voc", voc("horse"), "unknown class", True),
    "voc size disagrees": ("voc", voc(size=(50, 30)), "label size", False),
    "voc unreadable": ("voc", "<annotation><size>", "unreadable label", False),
    "yolo box outside": ("yolo", "1 0.9 0.5 0.5 0.5\n", "box outside image", True),
    "yolo zero area": ("yolo", "1 0.5 0.5 0 0.2\n", "empty box", True),
    "yolo unknown id": ("yolo", "7 0.5 0.5 0.2 0.2\n", "unknown class", True),
    "yolo unreadable": ("yolo", "1 0.5 half 0.2 0.2\n", "unreadable label", False),
    "coco unknown category": (
        "coco",
        coco([COCO_DOG, {**COCO_DOG, "id": 2, "category_id": 9}]),
        "unknown class",
        True,
    ),
    "coco size disagrees": ("coco", coco([COCO_DOG], size=(41, 30)), "label size", False),
}


@pytest.mark.parametrize("case", BAD_LABELS)
def test_a_bad_label_is_listed_by_the_scan_and_skipped(tmp_path, case):
    fmt, label, kind, image_kept = BAD_LABELS[case]
    index, dropped = load_index(folder(tmp_path / "data", fmt, label), "detection")
    kept = checked_index(index, dropped, "skip", tmp_path, use_cache=False)
    listed = (tmp_path / rundir.BAD_FILES).read_text().splitlines()
    assert [line.split("\t")[0] for line in listed] == [kind], listed
    names = [Path(p).name for p in kept.images]
    assert ("a.png" in names) == image_kept and "b.png" in names  # the good image stays
    if image_kept and fmt != "coco":  # the bad box left out; a good one of COCO stays
        assert kept.targets[names.index("a.png")] == ()
    with pytest.raises(Exception, match="bad data files"):
        checked_index(index, dropped, "error", tmp_path, use_cache=False)


def test_oxford_pets_heads_reads_the_real_sample_xmls(tmp_path):
    root = require_real_sample(REAL_SAMPLE, os.environ)
    index, dropped = load_index(BoxData(source="oxford_pets_heads", root=str(root)), "detection")
    xmls = sorted((root / "annotations" / "xmls").glob("*.xml"))
    assert len(index) == len(xmls) == 222 and not dropped and not index.label_problems
    assert index.class_names == ("cat", "dog")
    boxes = dict(zip((Path(p).stem for p in index.images), index.targets))
    # Abyssinian_1.xml: a cat's head at xmin 333, ymin 72, xmax 425, ymax 158 in 600 x 400
    assert boxes["Abyssinian_1"] == (pytest.approx((0, 332 / 600, 71 / 400, 425 / 600, 158 / 400)),)
    objects = sum(xml.read_text().count("<object>") for xml in xmls)  # Bengal_105 has two heads
    assert all(index.targets) and sum(map(len, index.targets)) == objects
    species = {stem: b[0][0] for stem, b in boxes.items()}
    assert all(species[s] == (0 if s[0].isupper() else 1) for s in species)  # cats capitalised


# --- augmentation, loss, scores ---------------------------------------------------------------


def test_augmentation_moves_each_box_with_its_object():
    import tensorflow as tf

    from cvtrain.config.schema import AugmentConfig
    from cvtrain.data.augment import augment_batch
    from cvtrain.data.pipeline import padded_boxes

    images = np.zeros((6, 64, 80, 3), np.float32)
    images[:, 10:30, 20:50] = 255  # a white object at x 20..50, y 10..30 (pixel edges)
    boxes = padded_boxes([((0, 20 / 80, 10 / 64, 50 / 80, 30 / 64),)] * 6, max_boxes=2)
    cfg = AugmentConfig(flip=True, zoom=0.3, translation=0.1)
    out, moved = augment_batch(cfg, tf.constant(images), None, tf.constant([1, 2]), boxes=boxes)
    for image, box in zip(out.numpy(), moved.numpy()):
        ys, xs = np.nonzero(image[..., 0] > 127)
        found = np.array([xs.min() / 80, ys.min() / 64, (xs.max() + 1) / 80, (ys.max() + 1) / 64])
        np.testing.assert_allclose(box[0, :4], found, atol=1.5 / 64)
        assert box[0, 4] == 0 and box[1, 4] == -1  # the class kept, the padding row still padding
    assert len({tuple(np.round(b[0, :4], 3)) for b in moved.numpy()}) > 3  # they did move


def test_the_loss_matches_every_object_and_is_lowest_for_the_true_boxes():
    import tensorflow as tf

    from cvtrain.data.pipeline import padded_boxes
    from cvtrain.losses.anchorwise import RetinaNetLoss, encode, match
    from cvtrain.models.anchors import anchor_boxes
    from cvtrain.models.retinanet import to_corners

    size = (64, 96)
    truth = padded_boxes([((1, 0.1, 0.2, 0.3, 0.5), (0, 0.5, 0.5, 0.95, 0.9)), ()], 3)
    anchors = tf.constant(anchor_boxes(size))
    objects, positive, negative = match(anchors, tf.constant(truth))
    matched_objects = {int(o) for o, p in zip(objects[0], positive[0]) if p}
    assert matched_objects == {0, 1}  # each object has anchors that learn it
    assert not positive[1].numpy().any() and negative[1].numpy().all()  # background only
    matched = tf.gather(tf.constant(truth), objects, batch_dims=1)
    offsets = encode(anchors, matched[..., :4])
    back = to_corners(offsets, anchor_boxes(size)).numpy()
    np.testing.assert_allclose(
        back[positive.numpy()], matched.numpy()[..., :4][positive.numpy()], atol=1e-5
    )

    loss = RetinaNetLoss(size, num_classes=2)
    logits = tf.where(
        positive[..., None] & (tf.one_hot(tf.cast(matched[..., 4], tf.int32), 2) > 0), 8.0, -8.0
    )
    right = tf.concat([offsets, logits], -1)
    wrong = tf.concat([-offsets, -logits], -1)
    assert float(loss(truth, right)) < 0.01 < float(loss(truth, wrong))


def test_the_loss_compiles_with_xla_and_keeps_its_config():
    import tensorflow as tf

    from cvtrain.data.pipeline import padded_boxes
    from cvtrain.losses.anchorwise import RetinaNetLoss
    from cvtrain.models.anchors import num_anchors

    truth = padded_boxes([((1, 0.1, 0.2, 0.6, 0.9),), ()], 2)
    outputs = np.random.default_rng(0).normal(0, 1, (2, num_anchors((64, 64)), 6))
    outputs = tf.constant(outputs, tf.float32)
    loss = RetinaNetLoss((64, 64), num_classes=2, gamma=1.5)
    compiled = tf.function(lambda y, p: loss(y, p), jit_compile=True)
    assert float(compiled(truth, outputs)) == pytest.approx(float(loss(truth, outputs)), rel=1e-5)
    again = RetinaNetLoss.from_config(loss.get_config())
    assert again.gamma == 1.5 and float(again(truth, outputs)) == float(loss(truth, outputs))


def test_coco_scores_perfect_empty_and_missing_classes():
    from cvtrain.metrics.coco import coco_scores

    truth = np.array([[0.1, 0.1, 0.5, 0.5, 0], [0.6, 0.6, 0.9, 0.9, 0], [0, 0, 0, 0, -1]])
    perfect = np.array([[0.1, 0.1, 0.5, 0.5, 0.9, 0], [0.6, 0.6, 0.9, 0.9, 0.8, 0]])
    names = ("cat", "dog")
    scores = coco_scores([truth], [perfect], names, (100, 100))
    assert scores["map"] == scores["map50"] == scores["map75"] == pytest.approx(1.0)
    assert scores["per_class"]["dog"] == {"ap": None, "ap50": None}  # nothing to find
    nothing = np.zeros((3, 6)) + [0, 0, 0, 0, 0, -1]  # what an untrained model detects
    empty = coco_scores([truth], [nothing], names, (100, 100))  # pycocotools would crash
    assert empty["map"] == 0.0 and empty["per_class"]["cat"]["ap50"] == 0.0
    wrong_class = perfect.copy()
    wrong_class[:, 5] = 1
    scores = coco_scores([truth], [wrong_class], names, (100, 100))
    assert scores["map50"] == 0.0 and scores["map50_any_class"] == pytest.approx(1.0)


def test_decoding_runs_in_float32_whatever_the_model_computes_in():
    import tensorflow as tf

    from cvtrain.models.anchors import num_anchors
    from cvtrain.models.retinanet import decode

    size = (64, 64)
    rng = np.random.default_rng(0)
    outputs = rng.normal(0, 1, (2, num_anchors(size), 6)).astype(np.float32)
    outputs[..., 4:] = -6.0  # background everywhere but
    outputs[:, :40, 4] = 2.0 + 0.1 * np.arange(40)  # some confident anchors of class 0
    found = decode(tf.constant(outputs), size)
    half = decode(tf.constant(outputs, tf.float16), size)  # a mixed_float16 model's outputs
    assert found.dtype == half.dtype == tf.float32
    assert found.shape == (2, 100, 6) and (found[..., 4] > 0.5).numpy().sum() >= 2
    kept = found[..., 4] > 0.05
    np.testing.assert_allclose(half.numpy()[kept], found.numpy()[kept], atol=5e-3)
    rows = found.numpy()
    assert ((rows[..., 5] == -1) == (rows[..., 4] == 0)).all()  # padding rows: score 0, class -1
    assert (rows[..., :4] >= 0).all() and (rows[..., :4] <= 1).all()


def test_retinanet_refuses_a_size_its_anchors_do_not_fit():
    with pytest.raises(ConfigError, match=r"divisible by 32.*data.image_size=\[64,96\]"):
        make_config("task=detection", "data=synthetic_boxes", "data.image_size=[60,100]")
    with pytest.raises(ConfigError, match="model=retinanet takes model.backbone=none or one of"):
        make_config("task=detection", "data=synthetic_boxes", "model.backbone=xception")
    with pytest.raises(ConfigError, match="task=detection needs one of retinanet"):
        make_config("task=detection", "data=synthetic_boxes", "model=unet")


# --- RetinaNet through the CLI ----------------------------------------------------------------


def tiny_detection(root: Path, *extra: str) -> list[str]:
    """Overrides for a seconds-long RetinaNet run on generated shapes (float32, as elsewhere)."""
    return [
        "task=detection",
        "data=synthetic_boxes",
        f"data.root={root}",
        "data.num_samples=40",
        "data.image_size=[64,64]",
        "data.batch_size=8",
        "model.filters=[8,8,16,16,32]",
        "model.fpn_channels=16",
        "model.head_convs=1",
        "trainer.epochs=2",
        "trainer.prediction_images=2",
        "trainer.precision=float32",
        *extra,
    ]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """`cvtrain task=detection ...` as a user runs it: (run dir, its overrides, the process)."""
    base = tmp_path_factory.mktemp("detection_cli")
    overrides = [*tiny_detection(base / "shapes"), *mlflow_overrides(base)]
    proc = run_cli(*overrides, f"hydra.run.dir={base / 'run'}")
    return base / "run", overrides, proc


@pytest.mark.slow
def test_training_logs_val_map_every_epoch_in_history_and_tensorboard(cli_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _, proc = cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = (run / rundir.HISTORY).read_text().splitlines()
    assert history[0].split(",") == ["epoch", "loss", "val_loss", "val_map", "val_map50"]
    for row in history[1:]:
        _, loss, val_loss, val_map, val_map50 = map(float, row.split(","))
        assert 0 <= val_map <= val_map50 <= 1 and np.isfinite(loss) and np.isfinite(val_loss)
    assert len(history) == 3
    events = EventAccumulator(str(run / "tensorboard" / "validation"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    scalars = set(tags["scalars"]) | set(tags["tensors"])
    assert {"epoch_map", "epoch_map50", "epoch_loss"} <= scalars
    assert "predictions" in tags["images"] or "predictions" in tags["tensors"]
    assert (run / rundir.PREDICTIONS).is_file() and (run / rundir.CHECKPOINT).is_file()


@pytest.mark.slow
def test_mlflow_logs_val_map_every_epoch(cli_run):
    from mlflow import MlflowClient

    run, _, _ = cli_run
    client = MlflowClient(tracking_uri=f"sqlite:///{run.parent}/mlflow.db")
    (logged,) = client.search_runs([client.get_experiment_by_name("cvtrain").experiment_id])
    rows = [r.split(",") for r in (run / rundir.HISTORY).read_text().splitlines()[1:]]
    for column, name in ((3, "val_map"), (4, "val_map50")):
        history = client.get_metric_history(logged.info.run_id, name)
        values = [m.value for m in sorted(history, key=lambda m: m.step)]
        assert values == pytest.approx([float(r[column]) for r in rows], rel=1e-5)


@pytest.mark.slow
def test_evaluate_scores_the_kept_checkpoint_as_training_did(cli_run):
    run, _, _ = cli_run
    done = run_cli("mode=evaluate", f"run={run}")
    assert done.returncode == 0, done.stderr[-3000:]
    report = rundir.read_json(run / rundir.EVAL / "metrics.json")
    metrics = report["metrics"]
    assert {"map", "map50", "map75", "map50_any_class"} <= set(metrics)
    assert set(metrics["per_class"]) == {"circle", "triangle"}
    rows = [r.split(",") for r in (run / rundir.HISTORY).read_text().splitlines()[1:]]
    best = min(rows, key=lambda r: float(r[2]))  # the best val_loss epoch is the checkpoint
    assert metrics["map"] == pytest.approx(float(best[3]), abs=1e-6)
    assert metrics["map50"] == pytest.approx(float(best[4]), abs=1e-6)


@pytest.mark.slow
def test_resume_continues_with_val_map(cli_run, tmp_path):
    import shutil

    run, overrides, _ = cli_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    done = run_cli(*overrides, "trainer.epochs=3", f"hydra.run.dir={copy}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming after epoch 2" in done.stdout + done.stderr
    rows = (copy / rundir.HISTORY).read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["0", "1", "2"]
    assert all(len(r.split(",")) == 5 for r in rows)


@pytest.mark.slow
def test_ensembles_and_explain_refuse_detection_in_one_line(cli_run, tmp_path):
    run, _, _ = cli_run
    image = photo(tmp_path / "x.png")
    for args, message in (
        (["mode=evaluate", f"run=[{run},{run}]"], "detection runs do not form an ensemble"),
        (["mode=explain", f"run={run}", f"input={image}"], "Grad-CAM of a detection run"),
    ):
        done = run_cli(*args)
        assert done.returncode != 0
        assert done.stderr.strip().splitlines()[-1].startswith("cvtrain: error: ")
        assert message in done.stderr


@pytest.mark.slow
def test_a_sweep_of_detectors_is_summarised_with_their_map(tmp_path):
    import csv

    sweep = tmp_path / "sweep"
    overrides = tiny_detection(
        tmp_path / "shapes", "trainer.epochs=1", "trainer.prediction_images=0"
    )
    done = run_cli(
        "-m", *overrides, "optimizer.lr=1e-3,3e-3", f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with open(sweep / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {r["status"] for r in rows} == {"completed"}
    for row in rows:
        best = rundir.read_json(sweep / row["run"] / rundir.METRICS)["best"]
        assert float(row["val_map"]) == pytest.approx(best["val_map"], abs=1e-4)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """A RetinaNet that has learned to find the shapes: (run dir, the shapes folder)."""
    from conftest import train_run

    base = tmp_path_factory.mktemp("detector")
    overrides = tiny_detection(
        base / "shapes",
        "data.num_samples=240",
        "data.image_size=[96,96]",
        "model.filters=[8,16,32,32,64]",
        "model.fpn_channels=32",
        "model.bn_momentum=0.9",
        "optimizer.lr=3e-3",
        "optimizer.schedule=cosine",
        "trainer.epochs=8",
        "trainer.prediction_images=0",
    )
    return train_run(base / "run", *overrides), base / "shapes"


@pytest.mark.slow
def test_a_detector_learns_to_find_the_shapes(detector):
    rows = (detector[0] / rundir.HISTORY).read_text().splitlines()[1:]
    map50 = [float(r.split(",")[4]) for r in rows]
    # A detector whose boxes, anchors or classes disagree stays near 0 (an untrained one: 0.01).
    assert map50[-1] >= max(0.15, 1.5 * map50[0]), map50


@pytest.mark.slow
def test_predict_writes_boxes_in_each_inputs_own_pixels(detector, tmp_path):
    from cvtrain.modes.predict import run as predict_run

    run, shapes = detector
    inputs = tmp_path / "in"
    inputs.mkdir()
    sources = sorted((shapes / "images").glob("*.jpg"))[:3]
    for i, source in enumerate(sources):  # each at another size than the model's 96 x 96
        with Image.open(source) as im:
            im.resize((im.width + 37 * i, im.height + 11)).save(inputs / f"{source.stem}.png")
    (inputs / "broken.jpg").write_bytes(b"not an image")
    result = predict_run(make_config("mode=predict", f"run={run}", f"input={inputs}"), [], tmp_path)
    entries = json.loads((result.output / "predictions.json").read_text())
    assert [e["file"] for e in entries] == [f"{s.stem}.png" for s in sources]  # broken skipped
    assert result.skipped and result.skipped[0][0].name == "broken.jpg"
    found = 0
    for entry in entries:
        with Image.open(inputs / entry["file"]) as im:
            assert (entry["width"], entry["height"]) == im.size
        assert len(entry["boxes"]) == len(entry["labels"]) == len(entry["scores"])
        for (x0, y0, x1, y1), label, score in zip(entry["boxes"], entry["labels"], entry["scores"]):
            assert 0 <= x0 < x1 <= entry["width"] and 0 <= y0 < y1 <= entry["height"]
            assert label in ("circle", "triangle") and 0.3 <= score <= 1
            found += 1
        with Image.open(result.output / "overlays" / entry["file"]) as overlay:
            assert overlay.size == (entry["width"], entry["height"])
    assert found >= 2  # a detector that learned finds shapes


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["saved_model", "tflite", "onnx"])
def test_every_export_format_detects_like_the_model_with_nms_inside(detector, tmp_path, fmt):
    import tensorflow as tf

    from cvtrain.inference.export_formats import FORMATS
    from cvtrain.modes.export import run as export_run
    from cvtrain.rundir.saved import load_runs
    from cvtrain.tasks.detection import Detection

    run, shapes = detector
    cfg = make_config("mode=export", f"run={run}", f"format={fmt}")
    result = export_run(cfg, [], tmp_path)
    assert result.max_abs_diff <= FORMATS[fmt].tolerance
    images = np.stack(
        [
            np.asarray(Image.open(p).convert("RGB").resize((101, 77)))
            for p in sorted((shapes / "images").glob("*.jpg"))[:4]
        ]
    )
    expected = Detection().serving(load_runs(cfg)[0].load_model())(images).numpy()
    assert expected.shape == (4, 100, 6) and (expected[..., 4] >= 0.3).sum() >= 2
    if fmt == "saved_model":
        served = tf.saved_model.load(str(result.path)).signatures["serving_default"]
        got = served(images=tf.constant(images))["output_0"].numpy()
    elif fmt == "tflite":
        interpreter = tf.lite.Interpreter(model_path=str(result.path))
        got = interpreter.get_signature_runner("serving_default")(images=images)["output_0"]
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"images": images})[0]
    kept = expected[..., 4] >= 0.05  # the detections, NMS done inside the exported graph
    assert (got[..., 4] >= 0.05).sum() == kept.sum()
    np.testing.assert_allclose(got[kept], expected[kept], atol=1e-3)  # boxes, scores, classes


@pytest.mark.slow
def test_the_real_sample_head_boxes_train_and_evaluate_through_the_cli(tmp_path):
    root = require_real_sample(REAL_SAMPLE, os.environ)
    run = tmp_path / "run"
    overrides = [
        "task=detection",
        "data=oxford_pets_heads",
        f"data.root={root}",
        "data.image_size=[64,64]",
        "data.limit=60",
        "model.filters=[8,8,16,16,32]",
        "model.fpn_channels=16",
        "trainer.epochs=1",
        "trainer.prediction_images=2",
        "trainer.precision=float32",
    ]
    done = run_cli(*overrides, f"hydra.run.dir={run}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "48 train / 12 val samples" in " ".join((done.stdout + done.stderr).split())
    done = run_cli("mode=evaluate", f"run={run}")
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = rundir.read_json(run / rundir.EVAL / "metrics.json")
    assert metrics["data"]["files"] == 12
    assert set(metrics["metrics"]["per_class"]) == {"cat", "dog"}
