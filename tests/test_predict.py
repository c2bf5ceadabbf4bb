"""mode=predict: masks at each input's own size with trimap values, overlays, predictions.csv,
unreadable inputs skipped; and the whole chain on the real sample."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import REAL_SAMPLE, make_config, tiny_segmentation
from helpers import untrained_run
from PIL import Image

from cvtrain import rundir
from cvtrain.errors import DataError
from cvtrain.inference.input_files import expand_inputs
from cvtrain.modes.evaluate import run as evaluate_run
from cvtrain.modes.predict import run as predict_run
from cvtrain.rundir.saved import load_runs
from cvtrain.tasks.segmentation import MASKS, OVERLAYS


@pytest.fixture
def seg_run(seg_runs):
    return seg_runs[0]  # conftest's, shared with test_evaluate.py


@pytest.fixture(scope="module")
def mixed_folder(pets_root, tmp_path_factory) -> tuple[Path, dict[str, tuple[int, int]]]:
    """Images of several sizes and formats (one PNG named .jpg), a text file, a truncated JPEG."""
    folder = tmp_path_factory.mktemp("inputs")
    sizes = {}
    for src in sorted((pets_root / "images").glob("*.jpg"))[:2]:
        shutil.copy(src, folder / src.name)
        width, height = Image.open(src).size
        sizes[src.stem] = (height, width)
    photo = Image.open(next((pets_root / "images").glob("*.jpg")))
    photo.resize((77, 45)).save(folder / "lying_png.jpg", format="PNG")
    photo.resize((30, 50)).save(folder / "small.gif")
    photo.resize((32, 32)).save(folder / "model_size.png")
    sizes.update(lying_png=(45, 77), small=(50, 30), model_size=(32, 32))
    (folder / "notes.txt").write_text("not an image")
    jpeg = (pets_root / "images" / f"{next(iter(sizes))}.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    return folder, sizes


def predict(*overrides: str):
    cfg = make_config("mode=predict", *overrides)
    return predict_run(cfg, [], run_dir=Path(cfg.output))  # every test sets output=


@pytest.mark.slow
def test_masks_match_each_inputs_size_with_trimap_values(seg_run, mixed_folder, tmp_path):
    folder, sizes = mixed_folder
    result = predict(f"run={seg_run}", f"input={folder}", f"output={tmp_path}")
    assert sorted(p.name for p, _ in result.skipped) == ["notes.txt", "truncated.jpg"]
    assert sorted(p.stem for p in result.written) == sorted(sizes)
    for stem, size in sizes.items():
        mask = np.asarray(Image.open(tmp_path / MASKS / f"{stem}.png"))
        assert mask.shape == size, stem
        assert set(np.unique(mask)) <= {1, 2, 3}
        assert np.asarray(Image.open(tmp_path / OVERLAYS / f"{stem}.png")).shape == (*size, 3)

    # At the model's own size nothing is resized: the mask is the model's argmax + 1.
    model = load_runs(make_config("mode=evaluate", f"run={seg_run}"))[0].load_model()
    image = np.asarray(Image.open(folder / "model_size.png").convert("RGB"), np.float32)
    expected = model.predict(image[None], verbose=0)[0].argmax(-1) + 1
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / MASKS / "model_size.png")), expected
    )


@pytest.mark.slow
def test_ensemble_of_one_run_twice_predicts_the_same_masks(seg_run, mixed_folder, tmp_path):
    """Segmentation ensembles write masks like a single run (the averaging is checked below)."""
    folder, _ = mixed_folder
    pattern = f"input={folder}/*.jpg"
    single = predict(
        f"run={seg_run}", pattern, f"output={tmp_path / 'one'}", "predict.mask_offset=0"
    )
    both = predict(
        f"run=[{seg_run},{seg_run}]", pattern, f"output={tmp_path / 'two'}", "predict.mask_offset=0"
    )
    assert [p.name for p in single.written] == [p.name for p in both.written]
    for one, two in zip(single.written, both.written):
        assert set(np.unique(np.asarray(Image.open(one)))) <= {0, 1, 2}
        np.testing.assert_array_equal(np.asarray(Image.open(one)), np.asarray(Image.open(two)))


def predicted(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_classification_writes_predictions_csv(shape_runs, tmp_path):
    root, (run_dir, _) = shape_runs
    images = sorted(root.rglob("*.jpg"))[:4]
    classes = rundir.read_json(run_dir / rundir.MANIFEST)["dataset"]["classes"]
    glob = str(root / "**" / "*.jpg")
    result = predict(f"run={run_dir}", f"input={glob}", f"output={tmp_path}")
    rows = predicted(tmp_path / "predictions.csv")
    assert result.written == [tmp_path / "predictions.csv"]
    assert len(rows) == 48 and {r["file"] for r in rows} >= {str(p) for p in images}
    assert {r["label"] for r in rows} <= set(classes)
    assert all(0.5 <= float(r["probability"]) <= 1 for r in rows)  # the predicted class's


@pytest.mark.slow
def test_ensemble_predicts_the_mean_of_its_members_probabilities(shape_runs, tmp_path):
    root, runs = shape_runs
    positive = rundir.read_json(runs[0] / rundir.MANIFEST)["dataset"]["classes"][1]
    glob = f"input={root / '**' / '*.jpg'}"

    def positive_probabilities(*run_dirs: Path, out: str) -> dict[str, float]:
        """file -> P(second class), from the label and probability predictions.csv gives."""
        predict(f"run=[{','.join(map(str, run_dirs))}]", glob, f"output={tmp_path / out}")
        rows = predicted(tmp_path / out / "predictions.csv")
        assert all(float(r["probability"]) >= 0.5 for r in rows)  # the label is the argmax
        return {
            r["file"]: float(r["probability"])
            if r["label"] == positive
            else 1 - float(r["probability"])
            for r in rows
        }

    first, second = (positive_probabilities(run, out=run.name) for run in runs)
    both = positive_probabilities(*runs, out="ensemble")
    assert len(both) == 48 and both.keys() == first.keys() == second.keys()
    assert max(abs(first[f] - second[f]) for f in both) > 1e-3  # the members disagree
    for file, p in both.items():  # written with 6 decimals
        assert p == pytest.approx((first[file] + second[file]) / 2, abs=2e-6), file


def test_input_that_matches_nothing_says_so(tmp_path):
    with pytest.raises(DataError, match="matches no files"):
        expand_inputs(str(tmp_path / "*.jpg"))
    with pytest.raises(Exception, match="needs input="):
        make_config("mode=predict", f"run={tmp_path}")


@pytest.mark.slow
def test_real_sample_train_evaluate_predict(real_run, tmp_path):
    run_dir, _ = real_run  # conftest's: one epoch at 64 px on REAL_SAMPLE, float32
    real_sample = REAL_SAMPLE
    report = evaluate_run(make_config("mode=evaluate", f"run={run_dir}"), [], tmp_path)
    logged = rundir.read_json(run_dir / rundir.METRICS)["best"]
    assert report["metrics"]["loss"] == pytest.approx(logged["val_loss"], abs=1e-3)

    names = ["Abyssinian_34.jpg", "Abyssinian_5.jpg", "Abyssinian_1.jpg"]  # a GIF and a PNG
    names += sorted(p.name for p in (real_sample / "images").glob("[a-z]*.jpg"))[:2]
    folder = tmp_path / "five"
    folder.mkdir()
    for name in names:
        (folder / name).symlink_to(real_sample / "images" / name)
    result = predict(f"run={run_dir}", f"input={folder}", f"output={tmp_path / 'out'}")
    assert len(result.written) == 5 and not result.skipped
    for name in names:
        width, height = Image.open(real_sample / "images" / name).size
        mask = np.asarray(Image.open(tmp_path / "out" / MASKS / f"{Path(name).stem}.png"))
        assert mask.shape == (height, width)
        assert set(np.unique(mask)) <= {1, 2, 3}


def test_predict_and_explain_write_into_the_run_by_default(pets_root, tmp_path):
    from cvtrain.modes.explain import run as explain_run

    run_dir = untrained_run(tmp_path / "run", *tiny_segmentation(pets_root))
    image = next((pets_root / "images").glob("*.jpg"))
    for mode, run in (("predict", predict_run), ("explain", explain_run)):
        run(make_config(f"mode={mode}", f"run={run_dir}", f"input={image}"), [], tmp_path / "h")
    assert (run_dir / "predictions" / MASKS / f"{image.stem}.png").is_file()
    assert (run_dir / "explain" / f"{image.stem}.png").is_file()
    assert not (tmp_path / "h").exists()
