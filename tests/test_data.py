"""File index, split and tf.data pipeline on generated data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_config
from PIL import Image

from cvtrain.data import oxford_pets, synthetic_pets
from cvtrain.data.index import FileIndex, sniff_image, split_index
from cvtrain.data.sources import load_index
from cvtrain.errors import ConfigError, DataError
from cvtrain.tasks.specs import SEGMENTATION


def _index(n: int) -> FileIndex:
    names = tuple(f"img_{i:03d}.jpg" for i in range(n))
    return FileIndex(SEGMENTATION, names, names, ("a", "b"))


def test_split_is_the_chapters_seeded_shuffle_with_validation_last():
    import random

    index = _index(50)
    split = split_index(index, val_samples=10, seed=1337)
    expected = list(index.images)
    random.Random(1337).shuffle(expected)
    assert list(split.train.images) == expected[:40]
    assert list(split.val.images) == expected[40:]


def test_limit_caps_samples_and_split_is_reproducible():
    a = split_index(_index(50), val_samples=5, limit=20)
    b = split_index(_index(50), val_samples=5, limit=20)
    assert (len(a.train), len(a.val)) == (15, 5)
    assert a == b
    frac = split_index(_index(50), val_fraction=0.2)
    assert (len(frac.train), len(frac.val)) == (40, 10)


def test_validation_as_large_as_the_dataset_is_a_config_error():
    with pytest.raises(ConfigError, match="data.val_samples=20 leaves no training data"):
        split_index(_index(20), val_samples=20)


def test_synthetic_pets_is_deterministic_and_uses_trimap_values():
    photo_a, trimap_a = synthetic_pets.make_sample(3)
    photo_b, trimap_b = synthetic_pets.make_sample(3)
    assert np.array_equal(photo_a, photo_b) and np.array_equal(trimap_a, trimap_b)
    assert set(np.unique(trimap_a)) == {1, 2, 3}
    assert photo_a.shape[:2] == trimap_a.shape and photo_a.dtype == np.uint8
    assert not np.array_equal(synthetic_pets.make_sample(4)[1], trimap_a)


def test_data_root_defaults_to_the_cache_dir_and_is_generated_once(tmp_path, monkeypatch):
    monkeypatch.setenv("CVTRAIN_DATA_DIR", str(tmp_path))
    cfg = make_config("data=synthetic_pets", "data.num_samples=8")
    index, _ = load_index(cfg.data, "segmentation")
    root = tmp_path / "synthetic_pets"
    assert all(Path(p).is_relative_to(root) for p in index.images) and len(index) == 8
    written = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    load_index(cfg.data, "segmentation")
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == written


def test_synthetic_pets_written_in_oxford_layout(pets_root):
    assert oxford_pets.has_layout(pets_root)
    pairs = oxford_pets.image_mask_pairs(pets_root)
    assert len(pairs) == 40
    image, mask = pairs[0]
    assert sniff_image(image) == "jpeg" and Image.open(mask).size == Image.open(image).size


def test_oxford_index_keeps_jpgs_with_trimaps_and_skips_the_rest(tmp_path):
    images, trimaps = tmp_path / "images", tmp_path / "annotations" / "trimaps"
    images.mkdir(parents=True)
    trimaps.mkdir(parents=True)
    for stem in ("Bengal_1", "beagle_2", "pug_3", ".hidden"):
        Image.new("RGB", (20, 20)).save(images / f"{stem}.jpg")
    for stem in ("Bengal_1", "beagle_2", ".hidden"):
        Image.new("L", (20, 20), 2).save(trimaps / f"{stem}.png")
    (images / "Bengal_1.mat").write_bytes(b"matlab")
    (images / "empty.jpg").write_bytes(b"")
    Image.new("L", (20, 20), 2).save(trimaps / "empty.png")
    cfg = make_config("data=oxford_pets", f"data.root={tmp_path}")
    index, dropped = load_index(cfg.data, "segmentation")
    assert [p.rsplit("/", 1)[-1] for p in index.images] == ["Bengal_1.jpg", "beagle_2.jpg"]
    assert [p.rsplit("/", 1)[-1] for p in dropped] == ["empty.jpg"]
    assert index.mask_offset == 1 and index.num_classes == 3


def test_classification_task_on_a_segmentation_source_is_refused(pets_root):
    cfg = make_config("data=synthetic_pets", f"data.root={pets_root}", "data.num_samples=40")
    with pytest.raises(ConfigError, match="is a segmentation dataset"):
        load_index(cfg.data, "classification")


def test_missing_dataset_is_a_data_error(tmp_path):
    cfg = make_config(f"data.root={tmp_path}")
    with pytest.raises(DataError, match="data=synthetic_pets"):
        load_index(cfg.data, "segmentation")


def test_pipeline_batches_images_and_class_ids(pets_root):
    from cvtrain.data.pipeline import build_dataset
    from cvtrain.data.sources import load_split

    cfg = make_config(
        "data=synthetic_pets", f"data.root={pets_root}", "data.num_samples=40",
        "data.image_size=[24,40]", "data.batch_size=8", "data.val_samples=8",
    )  # fmt: skip
    split, _ = load_split(cfg.data, "segmentation")
    images, masks = next(iter(build_dataset(split.train, cfg.data, training=True, seed=1)))
    assert images.shape == (8, 24, 40, 3) and images.dtype.name == "float32"
    assert masks.shape == (8, 24, 40, 1)
    assert set(np.unique(masks.numpy())) <= {0, 1, 2}
    assert float(images.numpy().min()) >= 0 and float(images.numpy().max()) <= 255


def copy_pairs(source: Path, root: Path, count: int) -> list[tuple[Path, Path]]:
    """The first `count` image/trimap pairs of `source`, copied to a new Oxford-layout `root`
    that a test may damage."""
    (root / "images").mkdir(parents=True)
    (root / "annotations" / "trimaps").mkdir(parents=True)
    pairs = oxford_pets.image_mask_pairs(source)[:count]
    for image, mask in pairs:
        (root / "images" / image.name).write_bytes(image.read_bytes())
        (root / "annotations" / "trimaps" / mask.name).write_bytes(mask.read_bytes())
    return pairs


def test_a_truncated_image_is_dropped_without_failing_the_epoch(pets_root, tmp_path):
    from cvtrain.data.pipeline import build_dataset

    root = tmp_path / "pets"
    pairs = copy_pairs(pets_root, root, 6)
    broken = root / "images" / pairs[0][0].name
    broken.write_bytes(broken.read_bytes()[:300])  # JPEG header intact, body cut off
    index = oxford_pets.index_root(root)
    cfg = make_config("data.image_size=[16,16]", "data.batch_size=2")
    ds = build_dataset(index, cfg.data, training=False, seed=0)
    seen = sum(int(x.shape[0]) for x, _ in ds)
    assert seen == 5


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_a_cached_pass_reads_the_cache_not_the_files(cache, pets_root, tmp_path):
    """data.cache: after the first pass images come from the cache, decoded and resized, so
    a later pass (disk: a later run too) yields the same batches with the files gone."""
    from dataclasses import replace

    from cvtrain.data.pipeline import build_dataset

    root, cache_dir = tmp_path / "pets", tmp_path / "cache"
    copy_pairs(pets_root, root, 6)
    index = oxford_pets.index_root(root)
    cfg = make_config("data.image_size=[16,16]", "data.batch_size=4", f"data.cache={cache}")
    ds = build_dataset(index, cfg.data, training=False, seed=0, cache_dir=cache_dir)
    first = [(x.numpy(), y.numpy()) for x, y in ds]
    assert sum(len(x) for x, _ in first) == 6
    assert bool(list(cache_dir.glob("val-*.index"))) == (cache == "disk")

    (root / "images").rename(tmp_path / "moved")
    uncached = build_dataset(index, replace(cfg.data, cache="none"), training=False, seed=0)
    assert not list(uncached)  # without a cache every file is unreadable now
    if cache == "disk":
        ds = build_dataset(index, cfg.data, training=False, seed=0, cache_dir=cache_dir)
    second = [(x.numpy(), y.numpy()) for x, y in ds]
    assert len(second) == len(first)
    for (x1, y1), (x2, y2) in zip(first, second):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_tf_data_autotune_follows_the_config_and_the_core_count(monkeypatch):
    from cvtrain.data import pipeline

    def enabled(*overrides):
        return pipeline.pipeline_options(make_config(*overrides).data).autotune.enabled

    assert enabled("data.autotune=true") is True
    assert enabled("data.autotune=false") is False
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 2)
    assert enabled() is False  # on 2 cores the autotuner's threads slow training down
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 16)
    assert enabled() is True
    assert pipeline.pipeline_options(make_config().data).deterministic is True
    options = pipeline.pipeline_options(make_config("data.deterministic=false").data)
    assert options.deterministic is False  # parallel reads may reorder


def test_a_source_of_the_other_task_is_refused_before_it_generates_anything(tmp_path):
    with pytest.raises(ConfigError, match="use one of: oxford_pets, synthetic_pets"):
        make_config("task=segmentation", "data=synthetic_shapes", f"data.root={tmp_path / 's'}")
    cfg = make_config("task=classification", "data=synthetic_shapes", f"data.root={tmp_path / 's'}")
    with pytest.raises(ConfigError, match="use one of: oxford_pets, synthetic_pets"):
        load_index(cfg.data, "segmentation")
    assert not (tmp_path / "s").exists()
