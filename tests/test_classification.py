"""Classification: models, data sources, augmentation and artefacts, on tiny generated data."""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_picture, make_config, run_cli, tiny_classification, train_run
from helpers import checkpoint_scores
from PIL import Image

from cvtrain.config.schema import AugmentConfig, LossConfig
from cvtrain.data import cats_vs_dogs, synthetic_shapes
from cvtrain.data.download import Remote
from cvtrain.data.sources import load_index, load_split
from cvtrain.errors import ConfigError, DataError
from cvtrain.tasks.specs import CLASSIFICATION, SEGMENTATION


def build(name: str, shape: tuple[int, int, int], num_classes: int, **kw):
    from cvtrain.models import build_model, config_of_model

    return build_model(config_of_model(name)(**kw), shape, num_classes)


def jpeg(path: Path, size=(40, 40), mode="RGB", seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "CMYK": 4}.get(mode)
    shape = (size[1], size[0], channels) if channels else (size[1], size[0])
    image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG")
    return path.read_bytes()


def shapes_config(root: Path, *extra: str):
    return make_config(*tiny_classification(root, *extra))


# --- models ---------------------------------------------------------------------------------


def test_mini_xception_has_the_books_parameter_count():
    model = build("mini_xception", (180, 180, 3), 2, filters=[32, 64, 128, 256, 512], dropout=0.5)
    assert model.count_params() == 721_857
    assert model.output.shape == (None, 1)


def test_residual_convnet_has_the_books_parameter_count():
    model = build("residual_convnet", (32, 32, 3), 2, filters=[32, 64, 128])
    assert model.count_params() == 297_697


def test_model_configs_compose_to_the_book_models():
    cfg = make_config("task=classification")
    assert (cfg.data.source, cfg.model.name, cfg.optimizer.name) == (
        "cats_vs_dogs",
        "mini_xception",
        "rmsprop",
    )
    from cvtrain.models import build_model

    assert build_model(cfg.model, (180, 180, 3), 2).count_params() == 721_857
    cfg = make_config("task=classification", "model=residual_convnet")
    assert build_model(cfg.model, (32, 32, 3), 2).count_params() == 297_697


@pytest.mark.parametrize("num_classes", [2, 5])
def test_head_follows_the_number_of_classes(num_classes):
    from cvtrain.tasks import get_task

    model = build("residual_convnet", (32, 32, 3), num_classes, filters=[8, 16], width=1.0)
    probs = model.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0)
    class_names = [f"class{i}" for i in range(num_classes)]
    loss, metrics = get_task(CLASSIFICATION).loss_and_metrics(
        class_names, LossConfig(), None, (32, 32)
    )
    names = [m.name for m in metrics]
    if num_classes == 2:
        assert probs.shape == (2, 1) and loss == "binary_crossentropy"
        assert names == ["accuracy", "auc"]
    else:
        assert probs.shape == (2, 5) and loss == "sparse_categorical_crossentropy"
        np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
        assert names == ["accuracy"]


def test_xception_backbone_freezes_for_fine_tuning():
    kw = {"backbone": "xception", "dropout": 0.5}
    frozen = build("xception", (71, 71, 3), 3, freeze_backbone=True, **kw)
    assert [w.shape for w in frozen.trainable_weights] == [(2048, 3), (3,)]
    trainable = build("xception", (71, 71, 3), 2, **kw)
    assert trainable.count_params() == 20_861_480 + 2049  # keras.applications Xception + head


# --- data sources ---------------------------------------------------------------------------


def test_image_folder_reads_every_documented_extension(tmp_path):
    root = tmp_path / "folder"
    for i, ext in enumerate(("jpg", "jpeg", "png", "gif", "bmp")):
        for label in ("a", "b"):
            (root / label).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / label / f"{i}.{ext}")
    (root / "a" / "notes.txt").write_text("not an image")
    cfg = make_config("task=classification", "data=image_folder", f"data.root={root}")
    index, dropped = load_index(cfg.data, CLASSIFICATION)
    assert sorted(Path(p).name for p in index.images if "/a/" in p) == [
        "0.jpg",
        "1.jpeg",
        "2.png",
        "3.gif",
        "4.bmp",
    ]
    assert len(index) == 10 and not dropped


@pytest.mark.slow
def test_image_folder_skips_bad_files_and_trains_on_the_rest(tmp_path):
    root = tmp_path / "pets"
    for i in range(6):
        jpeg(root / "cat" / f"good{i}.jpg", seed=i)
        jpeg(root / "dog" / f"good{i}.JPEG", seed=10 + i)
    whole = jpeg(root / "cat" / "truncated.jpg", seed=99)
    (root / "cat" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "dog" / "empty.jpg").write_bytes(b"")
    Image.new("RGB", (30, 20), (200, 10, 10)).save(root / "dog" / "png_named.jpg", format="PNG")
    jpeg(root / "cat" / "gray.jpg", mode="L", seed=3)
    jpeg(root / "dog" / "cmyk.jpg", mode="CMYK", seed=4)
    (root / "dog" / "notes.txt").write_text("not an image")

    cfg = make_config(
        "task=classification",
        "data=image_folder",
        f"data.root={root}",
        "data.image_size=[32,32]",
        "data.batch_size=4",
        "data.val_fraction=0.25",
        "model=residual_convnet",
        "model.width=0.25",
        "trainer.epochs=1",
        "trainer.prediction_images=2",
    )
    index, dropped = load_index(cfg.data, CLASSIFICATION)
    assert sorted(Path(p).name for p in dropped) == ["empty.jpg", "truncated.jpg"]
    assert index.class_names == ("cat", "dog") and len(index) == 15
    names = {Path(p).name: label for p, label in zip(index.images, index.targets)}
    assert names["png_named.jpg"] == 1 and names["cmyk.jpg"] == 1 and names["gray.jpg"] == 0

    from cvtrain.data.pipeline import build_dataset

    images = np.concatenate(
        [x.numpy() for x, _ in build_dataset(index, cfg.data, training=False, seed=0)]
    )
    assert images.shape == (15, 32, 32, 3)  # grayscale, CMYK and the PNG all decode to RGB

    from cvtrain.training.trainer import train

    split, _ = load_split(cfg.data, CLASSIFICATION)
    result = train(cfg, split, tmp_path / "run", state=None)
    assert np.isfinite(result.history["loss"]).all()
    assert (tmp_path / "run" / "confusion_matrix.png").is_file()
    assert_picture(tmp_path / "run" / "confusion_matrix.png", (390, 240))  # 2 classes


def test_split_layout_is_used_as_given(tmp_path):
    root = tmp_path / "cats_vs_dogs_small"
    counts = {"train": 4, "validation": 2, "test": 3}
    for subset, n in counts.items():
        for name in ("cat", "dog"):
            for i in range(n):
                jpeg(root / subset / name / f"{name}.{i}.jpg", size=(16, 16), seed=i)
    cfg = make_config("task=classification", "data=image_folder", f"data.root={root}")
    split, _ = load_split(cfg.data, CLASSIFICATION)
    assert len(split.train) == 8 and len(split.val) == 4
    assert all("/train/" in p for p in split.train.images)
    assert all("/validation/" in p for p in split.val.images)
    assert sorted(split.val.targets) == [0, 0, 1, 1]


def test_image_folder_errors_say_the_fix(tmp_path):
    cfg = make_config("task=classification", "data=image_folder")
    with pytest.raises(DataError, match="needs data.root"):
        load_index(cfg.data, CLASSIFICATION)
    (tmp_path / "only").mkdir()
    jpeg(tmp_path / "only" / "a.jpg")
    cfg = make_config("task=classification", "data=image_folder", f"data.root={tmp_path}")
    with pytest.raises(DataError, match="at least two class folders"):
        load_index(cfg.data, CLASSIFICATION)
    jpeg(tmp_path / "other" / "b.jpg")
    with pytest.raises(ConfigError, match="classification dataset but task=segmentation"):
        make_config("task=segmentation", "data=image_folder", f"data.root={tmp_path}")
    cfg = make_config("task=classification", "data=image_folder", f"data.root={tmp_path}")
    with pytest.raises(ConfigError, match="classification dataset but task=segmentation"):
        load_index(cfg.data, SEGMENTATION)


@pytest.fixture
def http_dir(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_cats_vs_dogs_download_verifies_extracts_and_drops_non_jfif(http_dir, tmp_path, caplog):
    www, url = http_dir
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for i in range(3):
            zf.writestr(f"PetImages/Cat/{i}.jpg", jpeg(tmp_path / "src" / f"c{i}.jpg", seed=i))
            zf.writestr(f"PetImages/Dog/{i}.jpg", jpeg(tmp_path / "src" / f"d{i}.jpg", seed=9 + i))
        zf.writestr("PetImages/Dog/666.jpg", b"\xff\xd8\xff\xe1 Exif but no JFIF" + bytes(100))
        zf.writestr("PetImages/Cat/Thumbs.db", b"windows thumbnail cache")
    (www / "kagglecatsanddogs_5340.zip").write_bytes(buffer.getvalue())
    root = tmp_path / "cats_vs_dogs"

    wrong = Remote(f"{url}/kagglecatsanddogs_5340.zip", None, len(buffer.getvalue()) + 1)
    with pytest.raises(DataError, match="failed its checksum"):
        cats_vs_dogs.download(root, wrong)
    assert not (root / "PetImages").exists()

    right = Remote(f"{url}/kagglecatsanddogs_5340.zip", None, len(buffer.getvalue()))
    cats_vs_dogs.download(root, right)
    cfg = make_config("task=classification", f"data.root={root}")
    with caplog.at_level(logging.WARNING):
        index, dropped = load_index(cfg.data, CLASSIFICATION)
    assert "dropped 1 of 7 files without a JFIF header" in caplog.text
    assert index.class_names == ("Cat", "Dog") and sorted(index.targets) == [0, 0, 0, 1, 1, 1]
    assert (root / "PetImages" / "Dog" / "666.jpg").is_file()  # counted, never deleted


def test_cats_vs_dogs_missing_says_how_to_get_it(tmp_path):
    cfg = make_config("task=classification", f"data.root={tmp_path}", "data.download=false")
    with pytest.raises(DataError, match="data.download=true"):
        load_index(cfg.data, CLASSIFICATION)


def test_synthetic_shapes_is_deterministic_and_balanced(tmp_path):
    a = synthetic_shapes.generate(tmp_path / "a", num_samples=12, num_classes=3)
    b = synthetic_shapes.generate(tmp_path / "b", num_samples=12, num_classes=3)
    files = sorted(p.relative_to(a) for p in a.rglob("*.jpg"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.jpg")) and len(files) == 12
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    cfg = shapes_config(tmp_path / "c", "data.num_classes=3", "data.num_samples=12")
    index, _ = load_index(cfg.data, CLASSIFICATION)
    assert index.class_names == ("circle", "square", "triangle")
    assert np.bincount(index.targets).tolist() == [4, 4, 4]
    cfg = shapes_config(tmp_path / "e", "data.num_classes=4", "data.num_samples=8")
    assert load_index(cfg.data, CLASSIFICATION)[0].class_names == (
        "circle",
        "square",
        "star",
        "triangle",
    )
    with pytest.raises(ConfigError, match="2 to 4 classes"):
        load_index(shapes_config(tmp_path / "d", "data.num_classes=5").data, CLASSIFICATION)


@pytest.mark.slow
def test_oxford_species_and_breeds_on_the_real_sample(real_sample, tmp_path):
    cfg = make_config(
        "task=classification",
        "data=oxford_pets_species",
        f"data.root={real_sample}",
        "data.image_size=[32,32]",
        "model.width=0.25",
        "trainer.epochs=1",
    )
    index, dropped = load_index(cfg.data, CLASSIFICATION)
    assert index.class_names == ("cat", "dog") and not dropped
    assert np.bincount(index.targets).tolist() == [301, 150]  # Abyssinian + Bengal vs bulldog
    breeds = make_config(
        "task=classification", "data=oxford_pets_breeds", f"data.root={real_sample}"
    )
    index, _ = load_index(breeds.data, CLASSIFICATION)
    assert index.class_names == ("Abyssinian", "Bengal", "american_bulldog")

    from cvtrain.training.trainer import train

    split, _ = load_split(cfg.data, CLASSIFICATION)
    result = train(cfg, split, tmp_path / "run", state=None)
    assert len(result.history["val_accuracy"]) == 1 and np.isfinite(result.history["val_loss"][0])
    # The logged numbers are the saved model's: it scores the validation split the same way.
    scores = checkpoint_scores(tmp_path / "run", cfg, split)
    assert scores["loss"] == pytest.approx(result.history["val_loss"][0], rel=1e-3)
    assert scores["accuracy"] == pytest.approx(result.history["val_accuracy"][0], abs=1e-3)


# --- augmentation ---------------------------------------------------------------------------


def augmented_epochs(index, data, seed: int, epochs: int = 2):
    from cvtrain.data.pipeline import build_dataset

    ds = build_dataset(index, data, training=True, seed=seed)
    return [[(x.numpy(), y.numpy()) for x, y in ds] for _ in range(epochs)]


def test_augmentation_is_seeded_per_epoch_and_training_only(tmp_path):
    import keras

    from cvtrain.data.pipeline import build_dataset

    cfg = shapes_config(tmp_path, "data.num_samples=16", "data.augment.flip=true")
    cfg.data.augment = AugmentConfig(flip=True, rotation=0.1, zoom=0.2)
    index, _ = load_index(cfg.data, CLASSIFICATION)
    keras.utils.set_random_seed(1)
    first = augmented_epochs(index, cfg.data, seed=7)
    keras.utils.set_random_seed(1)
    again = augmented_epochs(index, cfg.data, seed=7)
    for a, b in zip(first, again):
        for (xa, ya), (xb, yb) in zip(a, b):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(first[0][0][0], first[1][0][0])  # each epoch differs

    plain = AugmentConfig()
    val_aug = [x.numpy() for x, _ in build_dataset(index, cfg.data, training=False, seed=7)]
    cfg.data.augment = plain
    val_plain = [x.numpy() for x, _ in build_dataset(index, cfg.data, training=False, seed=7)]
    for a, b in zip(val_aug, val_plain):
        np.testing.assert_array_equal(a, b)


def test_segmentation_flip_moves_the_mask_with_the_image(pets_root):
    import tensorflow as tf

    from cvtrain.data.augment import augment_batch

    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (8, 16, 16, 3)), tf.float32)
    masks = tf.constant(rng.integers(0, 3, (8, 16, 16, 1)), tf.int32)
    cfg = AugmentConfig(flip=True)
    out_images, out_masks = augment_batch(cfg, images, masks, tf.constant([3, 4], tf.int64))
    flipped = [not np.array_equal(out_images[i], images[i]) for i in range(8)]
    assert 0 < sum(flipped) < 8
    for i, was_flipped in enumerate(flipped):
        expect = images[i, :, ::-1] if was_flipped else images[i]
        np.testing.assert_allclose(out_images[i], expect, atol=1e-3)
        expect_mask = masks[i, :, ::-1] if was_flipped else masks[i]
        np.testing.assert_array_equal(out_masks[i], expect_mask)
    cfg = AugmentConfig(rotation=0.1, zoom=0.2)
    _, out_masks = augment_batch(cfg, images, masks, tf.constant([3, 4], tf.int64))
    assert set(np.unique(out_masks)) <= {0, 1, 2}  # nearest sampling keeps labels exact


# --- the CLI end to end ---------------------------------------------------------------------


@pytest.mark.slow
def test_cli_trains_a_classifier_that_beats_chance(tmp_path):
    import keras
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    overrides = [
        "task=classification",
        "data=synthetic_shapes",
        f"data.root={tmp_path / 'shapes'}",
        "data.num_samples=400",
        "data.image_size=[32,32]",
        "data.batch_size=16",
        "model=mini_xception",
        "model.width=0.25",
        "model.bn_momentum=0.8",  # short run: validation must not use stale BN statistics
        "optimizer=adam",
        "optimizer.lr=3e-3",
        "trainer.epochs=6",
    ]
    proc = run_cli(*overrides, f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "val_accuracy" in proc.stdout and "val_auc" in proc.stdout
    for name in ("predictions.png", "confusion_matrix.png", "curves.png", "history.csv"):
        assert (run / name).is_file(), name
    assert_picture(run / "predictions.png", (1200, 340))  # 4 validation images in a row
    assert_picture(run / "confusion_matrix.png", (390, 240))
    assert_picture(run / "curves.png", (1350, 340))  # loss, accuracy, auc panels
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"accuracy", "auc", "val_accuracy", "val_auc"} <= set(metrics["final"])
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    loss = [float(row["loss"]) for row in rows]
    assert len(loss) == 6 and loss[-1] < loss[0]

    # Chance = always answering the validation split's majority class.
    cfg = make_config(*overrides)
    split, _ = load_split(cfg.data, cfg.task.name)
    majority = max(np.bincount(split.val.targets)) / len(split.val)
    assert max(float(row["val_accuracy"]) for row in rows) > majority + 0.05
    assert metrics["best"]["val_auc"] > 0.6

    model = keras.models.load_model(run / "checkpoints" / "best.keras")
    probs = model.predict(np.zeros((3, 32, 32, 3), np.float32), verbose=0)
    assert probs.shape == (3, 1) and ((probs >= 0) & (probs <= 1)).all()

    events = EventAccumulator(str(run / "tensorboard" / "validation"), size_guidance={"tensors": 0})
    events.Reload()
    assert "confusion_matrix" in events.Tags()["tensors"]
    assert len(events.Tensors("confusion_matrix")) == 6  # one image per epoch


@pytest.mark.slow
def test_small_data_recipe_trains_a_tiny_run_watched_for_validation_at_chance(
    tmp_path, monkeypatch
):
    """experiment=small_data_classification composes over any data and trains; its epochs go
    to the watch that says why validation sits at chance, with the recipe's BN momentum."""
    from cvtrain import rundir
    from cvtrain.training.callbacks import StuckAtChance

    seen = []
    monkeypatch.setattr(
        StuckAtChance,
        "on_epoch_end",
        lambda self, epoch, logs=None: seen.append((self.bn_momentum, dict(logs))),
    )
    recipe = ["experiment=small_data_classification", "trainer.prediction_images=0"]
    run_dir = train_run(tmp_path / "run", *tiny_classification(tmp_path / "shapes", *recipe))
    metrics = rundir.read_json(run_dir / rundir.METRICS)
    assert metrics["epochs_run"] == 1 and np.isfinite(metrics["best_val_loss"])
    ((momentum, logs),) = seen
    assert momentum == 0.9 and {"accuracy", "val_accuracy"} <= set(logs)
