"""Data verification on a folder with every kind of bad file, built here in the Oxford layout."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import make_config, run_cli
from helpers import verified_split
from PIL import Image

from cvtrain.data.sources import load_index, load_split
from cvtrain.data.verify import verify
from cvtrain.errors import DataError
from cvtrain.rundir import BAD_FILES

GOOD = [f"good_{i}" for i in range(6)]
EXPECTED = {
    "truncated.jpg": "unreadable image",
    "empty.jpg": "empty file",
    "text.jpg": "not an image",
    "nomask.jpg": "no mask",
    "wrongsize.png": "mask size",
    "seven.png": "mask values",
}


def write_pair(root: Path, stem: str, trimap: np.ndarray | None = None, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    photo = rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)
    Image.fromarray(photo).save(root / "images" / f"{stem}.jpg", quality=90)
    if trimap is None:
        trimap = rng.integers(1, 4, size=(32, 32), dtype=np.uint8)  # 1 pet, 2 bg, 3 border
    Image.fromarray(trimap).save(root / "annotations" / "trimaps" / f"{stem}.png")


@pytest.fixture
def bad_root(tmp_path) -> Path:
    root = tmp_path / "pets"
    (root / "images").mkdir(parents=True)
    (root / "annotations" / "trimaps").mkdir(parents=True)
    for i, stem in enumerate(GOOD):
        write_pair(root, stem, seed=i)
    write_pair(root, "truncated", seed=10)
    jpeg = (root / "images" / "truncated.jpg").read_bytes()
    (root / "images" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    write_pair(root, "empty", seed=11)
    (root / "images" / "empty.jpg").write_bytes(b"")
    write_pair(root, "text", seed=12)
    (root / "images" / "text.jpg").write_text("this is not a photo\n")
    write_pair(root, "nomask", seed=13)
    (root / "annotations" / "trimaps" / "nomask.png").unlink()
    write_pair(root, "wrongsize", np.full((16, 16), 2, np.uint8), seed=14)
    seven = np.full((32, 32), 2, np.uint8)
    seven[:4, :4] = 7
    write_pair(root, "seven", seven, seed=15)
    return root


def names(split) -> list[str]:
    return sorted(Path(p).stem for p in split.train.images + split.val.images)


def pets_config(root: Path, *extra: str):
    return make_config(
        "task=segmentation",
        "data=oxford_pets",
        f"data.root={root}",
        "data.image_size=[32,32]",
        "data.val_samples=2",
        *extra,
    )


def test_every_bad_file_is_found_reported_and_skipped(bad_root, tmp_path):
    cfg = pets_config(bad_root)
    split, scan = verified_split(cfg, tmp_path / "run")
    assert scan is None and names(split) == GOOD

    lines = (tmp_path / "run" / BAD_FILES).read_text().splitlines()
    found = {Path(line.split("\t")[1]).name: line.split("\t")[0] for line in lines}
    assert found == EXPECTED
    assert any("values {7} outside 1..3" in line for line in lines)

    # The second run reuses the scan (same files, same sizes and mtimes) and finds the same.
    index, dropped = load_index(cfg.data, "segmentation")
    again = verify(index, dropped, tmp_path / "run2")
    assert again.cached
    assert {Path(p.path).name: p.kind for p in again.problems} == EXPECTED
    # A changed file invalidates the cache.
    write_pair(bad_root, "good_0", np.full((32, 32), 7, np.uint8))
    assert not verify(index, dropped, tmp_path / "run3").cached


def test_on_bad_error_refuses_and_names_the_list(bad_root, tmp_path):
    cfg = pets_config(bad_root, "data.on_bad=error")
    with pytest.raises(DataError, match=r"6 bad data files \(listed in .*bad_files.txt"):
        verified_split(cfg, tmp_path / "run", defer=True)  # never deferred: nothing trains first


def test_wrong_label_mapping_is_an_error_that_names_the_fix(tmp_path):
    root = tmp_path / "zero_based"
    (root / "images").mkdir(parents=True)
    (root / "annotations" / "trimaps").mkdir(parents=True)
    for i in range(5):
        write_pair(root, f"s{i}", np.random.default_rng(i).integers(0, 3, (32, 32), np.uint8))
    cfg = pets_config(root)
    for defer in (False, True):  # a deferred scan checks a sample of masks first
        with pytest.raises(DataError, match=r"values \{0, 1, 2\}.*set data.mask_offset=0"):
            verified_split(cfg, tmp_path / "run", defer=defer)
    split, _ = verified_split(pets_config(root, "data.mask_offset=0"), tmp_path)
    assert len(split.train) + len(split.val) == 5


def test_the_split_does_not_depend_on_the_scan(bad_root, tmp_path):
    """Bad samples leave the split they were drawn into: fixing a file reshuffles nothing, and
    a first run (scan deferred) and a second (scan cached) train on the same split."""
    cfg = pets_config(bad_root)
    whole, _ = load_split(cfg.data, "segmentation")
    split, _ = verified_split(cfg, tmp_path / "run")
    assert split.val.images == tuple(p for p in whole.val.images if Path(p).stem in GOOD)
    assert split.train.images == tuple(p for p in whole.train.images if Path(p).stem in GOOD)


def test_a_first_run_scans_in_the_background_and_reports_at_the_end(bad_root, tmp_path):
    cfg = pets_config(bad_root)
    split, scan = verified_split(cfg, tmp_path / "run", defer=True)
    assert scan is not None
    assert not (tmp_path / "run" / BAD_FILES).exists()  # nothing decoded yet but a few masks
    bad = scan.finish()  # what the first epoch's end calls
    assert {Path(p).name for p in bad} == set(EXPECTED)
    found = (tmp_path / "run" / BAD_FILES).read_text()
    assert all(name in found for name in EXPECTED)
    again, scan = verified_split(cfg, tmp_path / "run2", defer=True)  # cached: applied up front
    assert scan is None and names(again) == GOOD


def test_verify_false_skips_the_scan(bad_root, tmp_path):
    cfg = pets_config(bad_root, "data.verify=false")
    split, _ = load_split(cfg.data, "segmentation")
    assert set(names(split)) > set(GOOD)  # files the scan would have skipped are still there


@pytest.mark.parametrize("stem", ["truncated", "wrongsize", "seven"])
def test_pipeline_drops_a_sample_the_scan_did_not_see(bad_root, stem):
    """A file damaged after the scan, or not scanned yet: undecodable, a mask of another size,
    mask values outside the classes."""
    from cvtrain.data.pipeline import build_dataset

    cfg = pets_config(bad_root, "data.verify=false", "data.batch_size=4")
    index, _ = load_index(cfg.data, "segmentation")
    good = [i for i, p in enumerate(index.images) if Path(p).stem in GOOD]
    index = index.take(good)
    trimap = bad_root / "annotations" / "trimaps" / f"{stem}.png"
    index = replace(
        index,
        images=(*index.images, str(bad_root / "images" / f"{stem}.jpg")),
        targets=(*index.targets, str(trimap)),
    )
    ds = build_dataset(index, cfg.data, training=False, seed=0)
    masks = [y.numpy() for _, y in ds]
    assert sum(len(m) for m in masks) == len(GOOD)
    assert max(int(m.max()) for m in masks) <= 2


@pytest.mark.slow
def test_verify_data_mode_prints_the_table_and_writes_bad_files(bad_root, tmp_path):
    run = tmp_path / "run"
    args = ["mode=verify_data", "data=oxford_pets", f"data.root={bad_root}", f"hydra.run.dir={run}"]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    for kind in EXPECTED.values():
        assert kind in done.stdout
    assert len((run / BAD_FILES).read_text().splitlines()) == 6

    failed = run_cli(*args[:-1], "data.on_bad=error", f"hydra.run.dir={tmp_path / 'run2'}")
    assert failed.returncode == 2
    assert failed.stderr.startswith("cvtrain: error: 6 bad data files")


@pytest.mark.slow
def test_first_run_reports_the_background_scan_after_the_first_epoch(bad_root, tmp_path):
    args = [
        *("task=segmentation", "data=oxford_pets", f"data.root={bad_root}"),
        *("data.image_size=[32,32]", "data.val_samples=2", "data.batch_size=4"),
        *("model.width=0.25", "trainer.epochs=2", "trainer.prediction_images=0"),
    ]
    first = run_cli(*args, f"hydra.run.dir={tmp_path / 'first'}")
    assert first.returncode == 0, first.stderr[-2000:]
    out = first.stdout
    order = [out.index(s) for s in ("first training step done", "Data problems", "epoch 2/2")]
    assert order == sorted(order), out  # trained at once; the scan reported after epoch 1
    listed = (tmp_path / "first" / BAD_FILES).read_text()
    assert all(name in listed for name in EXPECTED)
