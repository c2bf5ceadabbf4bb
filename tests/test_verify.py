"""Data verification on a folder with every kind of bad file, built here in the Oxford layout."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import make_config, run_cli
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
    split, _ = load_split(cfg.data, "segmentation", verify_in=tmp_path / "run")
    kept = sorted(Path(p).stem for p in split.train.images + split.val.images)
    assert kept == GOOD

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
        load_split(cfg.data, "segmentation", verify_in=tmp_path / "run")


def test_wrong_label_mapping_is_an_error_that_names_the_fix(tmp_path):
    root = tmp_path / "zero_based"
    (root / "images").mkdir(parents=True)
    (root / "annotations" / "trimaps").mkdir(parents=True)
    for i in range(5):
        write_pair(root, f"s{i}", np.random.default_rng(i).integers(0, 3, (32, 32), np.uint8))
    cfg = pets_config(root)
    with pytest.raises(DataError, match=r"values \{0, 1, 2\}.*set data.mask_offset=0"):
        load_split(cfg.data, "segmentation", verify_in=tmp_path / "run")
    split, _ = load_split(pets_config(root, "data.mask_offset=0").data, "segmentation", tmp_path)
    assert len(split.train) + len(split.val) == 5


def test_verify_false_skips_the_scan(bad_root, tmp_path):
    cfg = pets_config(bad_root, "data.verify=false")
    split, _ = load_split(cfg.data, "segmentation", verify_in=tmp_path / "run")
    kept = {Path(p).stem for p in split.train.images + split.val.images}
    assert kept > set(GOOD)  # files the scan would have skipped are still there
    assert not (tmp_path / "run" / BAD_FILES).exists()


def test_pipeline_drops_a_file_the_scan_did_not_see(bad_root):
    from cvtrain.data.pipeline import build_dataset

    cfg = pets_config(bad_root, "data.verify=false", "data.batch_size=4")
    index, _ = load_index(cfg.data, "segmentation")
    trimaps = bad_root / "annotations" / "trimaps"
    index = replace(  # as if a file were damaged after the scan
        index,
        images=(*index.images, str(bad_root / "images" / "truncated.jpg")),
        targets=(*index.targets, str(trimaps / "truncated.png")),
    )
    ds = build_dataset(index, cfg.data, training=False, seed=0)
    seen = sum(int(x.shape[0]) for x, _ in ds)
    assert seen == len(index) - 2  # the truncated image, and seven.png (value 7 is no class)


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
