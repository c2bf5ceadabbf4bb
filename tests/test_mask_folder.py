"""data=mask_folder: your own segmentation data (images/ + masks/ paired by stem), the value
mapping (data.mask_values, data.ignore_index), palette PNGs, split files and eval.split=test."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import make_config, run_cli
from helpers import run_probe, verified_split
from omegaconf import OmegaConf
from PIL import Image

from cvtrain import rundir
from cvtrain.config.schema import to_dict
from cvtrain.data.sources import load_index
from cvtrain.errors import ConfigError, DataError

FORMATS = ("jpg", "png", "bmp", "gif", "jpeg")


def write_folder(root: Path, n: int = 12, values=(0, 255), splits: dict | None = None) -> Path:
    """`n` 32 px photos in mixed formats, each with a mask of a bright square stored as
    values[1] on values[0] (a 0/255 binary mask by default); `splits`: name -> stems."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        mask = np.full((32, 32), values[0], np.uint8)
        y, x = rng.integers(0, 16, 2)
        mask[y : y + 16, x : x + 16] = values[1]
        photo = rng.integers(0, 80, (32, 32, 3)).astype(np.uint8)
        photo[mask == values[1]] += 150
        ext = FORMATS[i % len(FORMATS)]
        Image.fromarray(photo).save(root / "images" / f"s{i:02d}.{ext}")
        Image.fromarray(mask).save(root / "masks" / f"s{i:02d}.png")
    if splits:
        (root / "splits").mkdir()
        for name, stems in splits.items():
            (root / "splits" / f"{name}.txt").write_text("".join(f"{s}\n" for s in stems))
    return root


def folder_config(root: Path, *extra: str):
    return make_config(*folder_args(root), *extra)


def palette_png(path: Path, indices: np.ndarray) -> Path:
    """A palette PNG whose colours' gray levels differ from their indices (TF's channels=1
    decode would give 66, 121, 0, 220 for indices 0, 1, 2, 255)."""
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    palette = [0] * 768
    palette[0:9] = [200, 10, 10, 10, 200, 10, 0, 0, 0]
    palette[765:768] = [224, 224, 192]
    image.putpalette(palette)
    image.save(path)
    return path


def test_palette_pngs_are_read_as_indices_not_gray_levels(tmp_path):
    import tensorflow as tf

    from cvtrain.data.pipeline import class_ids, read_mask
    from cvtrain.data.verify import _check_sample

    indices = np.array([[0, 1, 2, 255]] * 4)
    path = palette_png(tmp_path / "p.png", indices)
    gray = tf.io.decode_png(tf.io.read_file(str(path)), channels=1).numpy()[0, :, 0]
    assert gray.tolist() == [66, 121, 0, 220]  # what TensorFlow alone makes of it
    assert read_mask(str(path)).numpy()[..., 0].tolist() == indices.tolist()
    ids = class_ids(read_mask(str(path)), (0, 1, 2), ignore=255).numpy()[..., 0]
    assert ids.tolist() == [[0, 1, 2, -1]] * 4
    Image.new("RGB", (4, 4)).save(tmp_path / "i.png")
    # The verification scan reads the same values as the pipeline.
    assert _check_sample(str(tmp_path / "i.png"), str(path), True) == ([], [0, 1, 2, 255])


def test_mask_values_map_stored_values_to_class_ids_and_ignore_to_minus_one(tmp_path):
    from cvtrain.data.pipeline import class_ids, read_mask

    stored = np.array([[1, 2, 3, 255]] * 2, np.uint8)
    Image.fromarray(stored).save(tmp_path / "trimap.png")
    ids = class_ids(read_mask(str(tmp_path / "trimap.png")), [1, 2, 3], ignore=255).numpy()
    assert ids[..., 0].tolist() == [[0, 1, 2, -1]] * 2
    binary = np.array([[0, 255]], np.uint8)
    Image.fromarray(binary).save(tmp_path / "binary.png")
    ids = class_ids(read_mask(str(tmp_path / "binary.png")), [255, 0]).numpy()
    assert ids[..., 0].tolist() == [[1, 0]]  # the order of mask_values is the class order


def test_pipeline_drops_a_mask_with_an_unmapped_value(tmp_path):
    from cvtrain.data.pipeline import build_dataset

    root = write_folder(tmp_path / "data", n=6)
    stray = np.asarray(Image.open(root / "masks" / "s03.png")).copy()
    stray[31, 31] = 7  # one pixel, gone after the resize to 8 px: dropped all the same
    Image.fromarray(stray).save(root / "masks" / "s03.png")
    cfg = folder_config(root, "data.image_size=[8,8]", "data.verify=false", "data.batch_size=2")
    index, _ = load_index(cfg.data, "segmentation")
    masks = np.concatenate([y for _, y in build_dataset(index, cfg.data, training=False, seed=0)])
    assert len(index) == 6 and len(masks) == 5
    assert set(np.unique(masks)) <= {0, 1}


def as_16_bit(root: Path, scale: int = 1) -> None:
    """Every mask of `root` saved again as a 16-bit PNG of its values times `scale`."""
    for path in (root / "masks").glob("*.png"):
        values = np.asarray(Image.open(path)).astype(np.uint16) * scale
        Image.fromarray(values).save(path)
        assert Image.open(path).mode.startswith("I"), "not written as 16 bits"


def test_16_bit_masks_are_read_as_their_values(tmp_path):
    from cvtrain.data.pipeline import build_dataset

    root = write_folder(tmp_path / "data", n=4)
    as_16_bit(root)  # 0 and 255 stored in 16 bits: decoded as 8 bits, both would read 0
    cfg = folder_config(root, "data.verify=false", "data.batch_size=4")
    index, _ = load_index(cfg.data, "segmentation")
    masks = np.concatenate([y for _, y in build_dataset(index, cfg.data, training=False, seed=0)])
    assert len(masks) == 4 and set(np.unique(masks)) == {0, 1}


def test_16_bit_values_no_class_can_have_say_to_save_8_bit_masks(tmp_path):
    root = write_folder(tmp_path / "data", n=4)
    as_16_bit(root, scale=257)  # 0 and 65535
    result = run_probe(*folder_args(root), "mode=verify_data", f"hydra.run.dir={tmp_path / 'r'}")
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-2000:]
    assert "mask values {0, 65535}" in errors[0] and "save the masks as 8-bit PNGs" in errors[0]


def test_images_of_any_format_pair_with_masks_by_stem(tmp_path):
    root = write_folder(tmp_path / "data", n=10)
    (root / "masks" / "s09.png").unlink()  # an image without a mask is left out
    index, dropped = load_index(folder_config(root).data, "segmentation")
    assert [Path(p).name for p in index.images[:5]] == [
        "s00.jpg", "s01.png", "s02.bmp", "s03.gif", "s04.jpeg",
    ]  # fmt: skip
    assert len(index) == 9 and not dropped
    assert [Path(p).stem for p in index.targets] == [Path(p).stem for p in index.images]
    assert index.class_names == ("background", "square") and index.class_values == (0, 255)
    split, _ = verified_split(folder_config(root), tmp_path / "run")
    assert (len(split.train), len(split.val), split.test) == (7, 2, None)  # val_fraction 0.2
    assert "s09" in (tmp_path / "run" / rundir.BAD_FILES).read_text()  # reported: no mask


def test_split_files_give_train_val_and_test(tmp_path):
    stems = [f"s{i:02d}" for i in range(12)]
    splits = {"train": stems[:6], "val": stems[6:9], "test": stems[9:11]}  # s11 unlisted
    root = write_folder(tmp_path / "data", splits=splits)
    split, _ = verified_split(folder_config(root), tmp_path / "run")
    assert sorted(Path(p).stem for p in split.train.images) == stems[:6]
    assert sorted(Path(p).stem for p in split.val.images) == stems[6:9]
    assert sorted(Path(p).stem for p in split.test.images) == stems[9:11]
    assert not (tmp_path / "run" / rundir.BAD_FILES).exists()  # s11 is left out, not "bad"

    (root / "splits" / "test.txt").write_text("s10\nnot_there\n")
    with pytest.raises(DataError, match="lists 1 names without both an image and a mask"):
        load_index(folder_config(root).data, "segmentation")
    (root / "splits" / "test.txt").write_text("s00\n")
    with pytest.raises(DataError, match="s00 is listed in two split files"):
        load_index(folder_config(root).data, "segmentation")


def test_eval_split_test_uses_the_given_test_split_or_says_there_is_none(tmp_path):
    from cvtrain.data.synthetic_shapes import generate
    from cvtrain.modes.evaluate import eval_index

    stems = [f"s{i:02d}" for i in range(12)]
    root = write_folder(tmp_path / "data", splits={"train": stems[:8], "val": stems[8:10],
                                                   "test": stems[10:]})  # fmt: skip
    cfg = make_config("mode=evaluate", "run=x", "eval.split=test", *folder_args(root))
    assert sorted(Path(p).stem for p in eval_index(cfg, tmp_path / "e").images) == stems[10:]

    # image_folder's given <root>/{train,validation,test}/<class>/ layout
    shapes = generate(tmp_path / "shapes", num_samples=24, num_classes=2)
    folder = tmp_path / "given"
    for i, image in enumerate(sorted(shapes.rglob("*.jpg"))):
        subset = ("train", "train", "validation", "test")[i % 4]
        (folder / subset / image.parent.name).mkdir(parents=True, exist_ok=True)
        image.rename(folder / subset / image.parent.name / image.name)
    cfg = make_config("mode=evaluate", "run=x", "eval.split=test", "task=classification",
                      "data=image_folder", f"data.root={folder}")  # fmt: skip
    assert {Path(p).parent.parent.name for p in eval_index(cfg, tmp_path / "e2").images} == {"test"}

    unsplit = write_folder(tmp_path / "unsplit")
    cfg = make_config("mode=evaluate", "run=x", "eval.split=test", *folder_args(unsplit))
    with pytest.raises(ConfigError, match="has no test split.*splits/test.txt"):
        eval_index(cfg, tmp_path / "e3")


def folder_args(root: Path) -> list[str]:
    return [
        "task=segmentation",
        "data=mask_folder",
        f"data.root={root}",
        "data.classes=[background,square]",
        "data.mask_values=[0,255]",
        "data.image_size=[32,32]",
        "data.batch_size=16",
        "model.width=0.25",
        "trainer.epochs=1",
        "trainer.prediction_images=2",
        "trainer.precision=float32",
    ]


def test_mapping_errors_are_one_line_config_errors(tmp_path):
    root = write_folder(tmp_path / "data", n=4)
    cases = {
        ("data.mask_values=[0,255,7]",): "data.mask_values=.*one value per class",
        ("data.mask_values=[0,256]",): r"data.mask_values=\[0, 256\] must be stored mask values",
        ("data.ignore_index=255",): "data.ignore_index=255 is also in data.mask_values",
        ("data.mask_offset=1",): "data.mask_offset=1 and data.mask_values both map",
        ("data.classes=[a]",): "data.classes=.*at least two distinct names",
    }
    for extra, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            folder_config(root, *extra)
    base = ("task=segmentation", "data=mask_folder", "data.image_size=[32,32]")
    with pytest.raises(DataError, match="data=mask_folder needs data.root="):
        load_index(make_config(*base, "data.classes=[a,b]").data, "segmentation")
    with pytest.raises(ConfigError, match=r"data=mask_folder needs data.classes=\["):
        load_index(make_config(*base, f"data.root={root}").data, "segmentation")


def test_oxford_layout_keeps_its_values_and_data_mask_offset_maps_onto_them(pets_root):
    pets = ("data=synthetic_pets", f"data.root={pets_root}", "data.num_samples=40")
    assert load_index(make_config(*pets).data, "segmentation")[0].class_values == (1, 2, 3)
    index, _ = load_index(make_config(*pets, "data.mask_offset=0").data, "segmentation")
    assert index.class_values == (0, 1, 2) and index.mask_offset == 0
    with pytest.raises(ConfigError, match=r"needs one value per class: 3 classes \(pet, "):
        load_index(make_config(*pets, "data.mask_values=[1,2]").data, "segmentation")


def test_a_wrong_mapping_is_an_error_naming_the_values_that_fit(tmp_path):
    root = write_folder(tmp_path / "data", n=5)
    cfg = make_config(*folder_args(root), "data.mask_values=null")  # 0, 1 by default
    with pytest.raises(
        DataError,
        match=r"5 of 5 masks .* mask values \{0, 255\}, but the 2 classes \(background, square\) "
        r"are stored as 0..1; set data.mask_values to \[0, 255\] in the order of data.classes",
    ):
        verified_split(cfg, tmp_path / "run")


@pytest.mark.slow
def test_eval_split_test_without_a_test_split_fails_before_tensorflow(tmp_path):
    root = write_folder(tmp_path / "data", n=4)
    run = tmp_path / "run"
    (run / rundir.SAVED_CONFIG).parent.mkdir(parents=True)
    OmegaConf.save(
        OmegaConf.create(to_dict(make_config(*folder_args(root)))), run / rundir.SAVED_CONFIG
    )
    (run / rundir.CHECKPOINT).parent.mkdir(parents=True)
    zipfile.ZipFile(run / rundir.CHECKPOINT, "w").close()  # a .keras is a zip; never loaded
    done = run_probe("mode=evaluate", f"run={run}", "eval.split=test")
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("cvtrain: error:")]
    assert len(errors) == 1 and "has no test split" in errors[0], done.stderr[-2000:]
    assert done.stdout.strip().endswith("TF_NOT_IMPORTED")


@pytest.mark.slow
def test_mask_folder_trains_evaluates_and_predicts_through_the_cli(tmp_path):
    stems = [f"s{i:02d}" for i in range(12)]
    root = write_folder(tmp_path / "data", splits={"train": stems[:8], "val": stems[8:10],
                                                   "test": stems[10:]})  # fmt: skip
    run = tmp_path / "run"
    done = run_cli(*folder_args(root), f"hydra.run.dir={run}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run / rundir.CHECKPOINT).is_file()

    from cvtrain.modes import evaluate, predict

    cfg = make_config("mode=evaluate", f"run={run}", "eval.split=test")
    report = evaluate.run(cfg, ["eval.split=test"], run_dir=tmp_path)
    assert report["split"] == "test" and report["data"]["files"] == 2
    assert report["metrics"]["pixels"] == 2 * 32 * 32
    cfg = make_config("mode=predict", f"run={run}", f"input={root / 'images'}",
                      f"output={tmp_path / 'pred'}", "predict.mask_offset=0")  # fmt: skip
    predict.run(cfg, [], run_dir=tmp_path)
    written = sorted((tmp_path / "pred" / "masks").glob("*.png"))
    assert len(written) == 12
    assert set(np.unique(np.asarray(Image.open(written[0])))) <= {0, 1}
