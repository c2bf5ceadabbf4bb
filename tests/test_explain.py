"""mode=explain (Grad-CAM): heatmaps are hot where the evidence for a class is, for classification
and segmentation runs; the feature map inside nested backbones; class and layer overrides."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import make_config, run_cli, tiny_segmentation, train_run
from helpers import run_probe, untrained_run
from PIL import Image

from cvtrain.data import synthetic_pets, synthetic_shapes
from cvtrain.errors import ConfigError
from cvtrain.modes.explain import CSV, HEATMAPS
from cvtrain.modes.explain import run as explain_run

# image_folder sorts the class folders: blue = 0, red = 1 (the sigmoid unit's class)
DISC_COLOURS = {"blue": (40, 60, 210), "red": (210, 40, 40)}


def disc_image(seed: int, colour: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A coloured disc at a random place on grey noise, and the disc's mask: the only evidence
    of the class is the disc, so the test knows where a heatmap must be hot."""
    rng = np.random.default_rng(seed)
    image = rng.normal(rng.uniform(70, 190), 25, (size, size, 1)).repeat(3, axis=-1)
    radius = rng.uniform(5, 8) * size / 48
    cy, cx = rng.uniform(radius, size - radius, 2)
    yy, xx = np.mgrid[:size, :size]
    mask = np.hypot(yy - cy, xx - cx) < radius
    image[mask] = DISC_COLOURS[colour]
    return np.clip(image, 0, 255).astype(np.uint8), mask


@pytest.fixture(scope="module")
def disc_run(tmp_path_factory) -> Path:
    """The default classifier (mini_xception, 3 blocks: a 6x6 map at 48 px) trained to tell red
    discs from blue ones; 8 short epochs are enough for it to get them right."""
    tmp = tmp_path_factory.mktemp("discs")
    for i in range(96):
        colour = ("red", "blue")[i % 2]
        (tmp / "data" / colour).mkdir(parents=True, exist_ok=True)
        Image.fromarray(disc_image(i, colour, 48)[0]).save(tmp / "data" / colour / f"{i}.png")
    return train_run(
        tmp / "run",
        "task=classification",
        "data=image_folder",
        f"data.root={tmp / 'data'}",
        "data.image_size=[48,48]",
        "data.batch_size=8",
        "data.val_fraction=0.25",
        "model=mini_xception",
        "model.filters=[16,32,64]",
        "model.dropout=0",
        "model.bn_momentum=0.8",
        "optimizer=adam",
        "optimizer.lr=3e-3",
        "trainer.epochs=8",
        "trainer.prediction_images=0",
    )


@pytest.fixture(scope="module")
def disc_inputs(tmp_path_factory) -> tuple[Path, dict[str, tuple[str, np.ndarray]]]:
    """16 unseen disc images at 64 px (not the model's 48): stem -> (colour, disc mask)."""
    folder = tmp_path_factory.mktemp("disc_inputs")
    truth = {}
    for i in range(5000, 5016):
        colour = ("red", "blue")[i % 2]
        image, mask = disc_image(i, colour, 64)
        Image.fromarray(image).save(folder / f"disc{i}.png")
        truth[f"disc{i}"] = (colour, mask)
    return folder, truth


def explain(*overrides: str):
    cfg = make_config("mode=explain", *overrides)
    return explain_run(cfg, [], run_dir=Path(cfg.output))  # every test sets output=


def read_rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / CSV) as f:
        return {Path(row["file"]).stem: row for row in csv.DictReader(f)}


def heatmap(out: Path, stem: str) -> np.ndarray:
    return np.asarray(Image.open(out / HEATMAPS / f"{stem}.png"), np.float32) / 255


def heat_inside_and_outside(out: Path, masks: dict[str, np.ndarray]) -> tuple[float, float]:
    """Mean heat on the evidence and on the rest, averaged over the images."""
    maps = {stem: heatmap(out, stem) for stem in masks}
    inside = np.mean([maps[s][m].mean() for s, m in masks.items()])
    outside = np.mean([maps[s][~m].mean() for s, m in masks.items()])
    return float(inside), float(outside)


@pytest.mark.slow
def test_classification_heatmap_is_hot_on_the_evidence_of_the_class(
    disc_run, disc_inputs, tmp_path
):
    folder, truth = disc_inputs
    out = tmp_path / "predicted"
    result = explain(f"run={disc_run}", f"input={folder}", f"output={out}")
    assert result.layer == "add_2"  # the last block's output, just before global pooling
    rows = read_rows(out)
    assert sorted(rows) == sorted(truth)
    assert sum(rows[stem]["class"] == colour for stem, (colour, _) in truth.items()) >= 14
    inside, outside = heat_inside_and_outside(out, {s: m for s, (_, m) in truth.items()})
    assert inside > 1.5 * outside, (inside, outside)
    panel = np.asarray(Image.open(out / "disc5000.png"))
    assert panel.shape == (64, 128, 3)  # the image | the heatmap over it, at the input's size
    np.testing.assert_array_equal(panel[:, :64], np.asarray(Image.open(folder / "disc5000.png")))
    assert np.abs(panel[:, 64:].astype(int) - panel[:, :64]).mean() > 10

    # explain.class=0 (blue): the same class for every image, scored by its own probability, and
    # on a red disc (evidence against blue) colder than the red class's heatmap.
    blue = tmp_path / "blue"
    explain(f"run={disc_run}", f"input={folder}", f"output={blue}", "explain.class=0")
    blue_rows = read_rows(blue)
    for stem, row in rows.items():
        p_blue = float(row["score"]) if row["class"] == "blue" else 1 - float(row["score"])
        assert blue_rows[stem]["class"] == "blue"
        assert float(blue_rows[stem]["score"]) == pytest.approx(p_blue, abs=2e-6)
    red_discs = {s: m for s, (c, m) in truth.items() if c == "red" and rows[s]["class"] == "red"}
    assert heat_inside_and_outside(blue, red_discs)[0] < heat_inside_and_outside(out, red_discs)[0]


def test_explain_takes_one_run_and_needs_input(tmp_path):
    with pytest.raises(ConfigError, match="mode=explain takes one run, not an ensemble"):
        make_config("mode=explain", f"run=[{tmp_path},{tmp_path}]", f"input={tmp_path}")
    with pytest.raises(ConfigError, match="mode=explain needs input="):
        make_config("mode=explain", f"run={tmp_path}")


def book_grad_cam(model, layer: str, image: np.ndarray, class_id: int) -> np.ndarray:
    """The book's Grad-CAM (9.4.3), for a layer of the top-level model and a sigmoid output."""
    import keras
    import tensorflow as tf

    grad_model = keras.Model(model.input, [model.get_layer(layer).output, model.output])
    with tf.GradientTape() as tape:
        features, preds = grad_model(image[None].astype(np.float32), training=False)
        score = preds[:, 0] if class_id == 1 else 1 - preds[:, 0]
    pooled = tf.reduce_mean(tape.gradient(score, features), axis=(0, 1, 2))
    heat = np.maximum((features[0] * pooled).numpy().mean(axis=-1), 0)
    heat = tf.image.resize(heat[..., None] / heat.max(), image.shape[:2])[..., 0]
    return heat.numpy()


@pytest.mark.slow
def test_layer_override_gives_that_layers_grad_cam_and_bad_layers_fail(disc_run, tmp_path):
    import keras

    from cvtrain.rundir.saved import load_runs

    model = load_runs(make_config("mode=evaluate", f"run={disc_run}"))[0].load_model()
    layer = [x.name for x in model.layers if isinstance(x, keras.layers.Add)][-2]  # a block back
    image, _ = disc_image(7000, "red", 48)  # the model's own size: nothing is resized on the way in
    (tmp_path / "in").mkdir()
    Image.fromarray(image).save(tmp_path / "in" / "red.png")

    out = tmp_path / "out"
    result = explain(
        f"run={disc_run}",
        f"input={tmp_path / 'in'}",
        f"output={out}",
        f"explain.layer={layer}",
        "explain.class=red",
    )
    assert result.layer == layer
    expected = book_grad_cam(model, layer, image, class_id=1)
    np.testing.assert_allclose(heatmap(out, "red"), expected, atol=1.5 / 255)

    with pytest.raises(ConfigError, match="explain.layer='nope' is not a layer of mini_xception"):
        explain(
            f"run={disc_run}", f"input={tmp_path / 'in'}", f"output={out}", "explain.layer=nope"
        )
    with pytest.raises(ConfigError, match="explain.layer='probability' does not output one 4-D"):
        explain(
            f"run={disc_run}",
            f"input={tmp_path / 'in'}",
            f"output={out}",
            "explain.layer=probability",
        )


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory) -> Path:
    """A small U-Net that learns the synthetic pets within a few epochs."""
    tmp = tmp_path_factory.mktemp("seg")
    root = synthetic_pets.generate(tmp / "pets", num_samples=64)
    return train_run(
        tmp / "run",
        *tiny_segmentation(
            root,
            "data.num_samples=64",
            "model=unet",
            "model.filters=[32,64]",
            "model.bn_momentum=0.8",
            "optimizer=adam",
            "optimizer.lr=3e-3",
            "trainer.epochs=5",
        ),
    )


@pytest.fixture(scope="module")
def pet_inputs(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """12 unseen pet photos of their own sizes (and a text file): stem -> trimap."""
    folder = tmp_path_factory.mktemp("pet_inputs")
    trimaps = {}
    for i in range(5000, 5012):
        photo, trimap = synthetic_pets.make_sample(i)
        Image.fromarray(photo).save(folder / f"pet{i}.png")
        trimaps[f"pet{i}"] = trimap
    (folder / "notes.txt").write_text("not an image")
    return folder, trimaps


@pytest.mark.slow
def test_cli_segmentation_heatmap_of_the_pet_class_is_hot_on_the_pet(seg_run, pet_inputs, tmp_path):
    folder, trimaps = pet_inputs
    out = tmp_path / "explain"
    proc = run_cli("mode=explain", f"run={seg_run}", f"input={folder}", f"output={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "explained 12 of 13 images" in proc.stdout and "skipped 1" in proc.stdout
    rows = read_rows(out)
    assert sorted(rows) == sorted(trimaps)
    assert {row["class"] for row in rows.values()} == {"pet"}  # the first non-background class
    for stem, trimap in trimaps.items():
        assert heatmap(out, stem).shape == trimap.shape  # at the photo's own size
    pet = {stem: trimap == 1 for stem, trimap in trimaps.items()}
    background = {stem: trimap == 2 for stem, trimap in trimaps.items()}
    on_pet = heat_inside_and_outside(out, pet)[0]
    on_background = heat_inside_and_outside(out, background)[0]
    assert on_pet > 2 * on_background, (on_pet, on_background)


@pytest.mark.slow
def test_bad_explain_class_fails_with_one_line_before_tensorflow(seg_run, pet_inputs, tmp_path):
    folder, _ = pet_inputs
    proc = run_probe(
        "mode=explain",
        f"run={seg_run}",
        f"input={folder}",
        "explain.class=tail",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0] == (
        "cvtrain: error: explain.class='tail' is not a class of this dataset; "
        "use one of pet, background, border (or its id 0..2)"
    )
    assert "TF_NOT_IMPORTED" in proc.stdout


def test_feature_maps_inside_nested_backbones_are_computed_with_the_output():
    """The map is found inside a keras.applications backbone nested two models deep, and the
    split model gives the model's own output and the backbone layer's own activations."""
    import keras

    from cvtrain.inference.gradcam import GradCam
    from cvtrain.models import build_model
    from cvtrain.models.model_config import BackboneClassifier, DeepLabV3Plus

    x = np.random.default_rng(0).uniform(0, 255, (1, 71, 71, 3)).astype(np.float32)
    model = build_model(BackboneClassifier(backbone="xception"), (71, 71, 3), 2)
    assert GradCam(model).layer_name == "backbone/xception/block14_sepconv2_act"
    gradcam = GradCam(model, "block13_sepconv2_act")
    assert gradcam.layer_name == "backbone/xception/block13_sepconv2_act"
    feature, output = gradcam.features(x)
    np.testing.assert_allclose(output, model(x, training=False), atol=1e-5)
    base = model.get_layer("backbone").get_layer("xception")
    inner = keras.Model(base.input, base.get_layer("block13_sepconv2_act").output)
    np.testing.assert_allclose(feature, inner(x / 127.5 - 1, training=False), atol=1e-4)

    # DeepLabV3+: the default map is the decoder's, before the logits; the backbone's two
    # outputs feed the rest of the model when the map is inside it.
    cfg = DeepLabV3Plus(backbone="mobilenetv2", filters=[16, 8])
    model = build_model(cfg, (32, 32, 3), 3)
    default = GradCam(model)
    assert "/" not in default.layer_name
    assert model.layers[model.layers.index(model.get_layer("logits")) - 1].name == (
        default.layer_name
    )
    gradcam = GradCam(model, "block_13_expand_relu")
    assert gradcam.layer_name == "backbone/mobilenetv2_features/block_13_expand_relu"
    feature, output = gradcam.features(x[:, :32, :32])
    np.testing.assert_allclose(output, model(x[:, :32, :32], training=False), atol=1e-5)
    assert feature.shape == (1, 2, 2, 576)


@pytest.mark.slow
def test_xception_classifier_run_is_explained(xception_run, tmp_path):
    run, _ = xception_run  # conftest's: also the model matrix's xception run
    (tmp_path / "in").mkdir()
    for i in (1000, 1001):
        image, _ = synthetic_shapes.make_sample(i, 2)
        Image.fromarray(image).save(tmp_path / "in" / f"shape{i}.png")
    out = tmp_path / "out"
    result = explain(f"run={run}", f"input={tmp_path / 'in'}", f"output={out}")
    assert result.layer == "backbone/xception/block14_sepconv2_act"
    rows = read_rows(out)
    assert sorted(rows) == ["shape1000", "shape1001"]
    assert {row["class"] for row in rows.values()} <= {"circle", "triangle"}
    for stem in rows:
        image = np.asarray(Image.open(tmp_path / "in" / f"{stem}.png"))
        assert heatmap(out, stem).shape == image.shape[:2]
        assert np.asarray(Image.open(out / f"{stem}.png")).shape == (
            image.shape[0],
            2 * image.shape[1],
            3,
        )


def test_segmentation_score_is_the_mean_probability_of_the_class(pets_root, tmp_path):
    import keras

    from cvtrain import rundir

    inputs = keras.Input((32, 32, 3))
    init = keras.initializers.RandomNormal(stddev=0.05, seed=0)  # far from uniform probabilities
    features = keras.layers.Conv2D(4, 3, padding="same", activation="relu", kernel_initializer=init)
    classify = keras.layers.Conv2D(3, 1, activation="softmax", kernel_initializer=init)
    model = keras.Model(inputs, classify(features(inputs)))
    run_dir = untrained_run(tmp_path / "run", *tiny_segmentation(pets_root), model=model)
    photo = Image.open(next((pets_root / "images").glob("*.jpg"))).convert("RGB").resize((32, 32))
    (tmp_path / "in").mkdir()
    photo.save(tmp_path / "in" / "photo.png")
    overrides = (f"run={run_dir}", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}")
    explain_run(make_config("mode=explain", *overrides), [], tmp_path)
    with open(tmp_path / "out" / CSV, newline="") as f:
        (row,) = csv.DictReader(f)
    model = keras.saving.load_model(run_dir / rundir.CHECKPOINT)
    probs = model.predict(np.asarray(photo, np.float32)[None], verbose=0)[0]
    assert row["class"] == "0"  # no manifest: ids; the first class not named background
    assert float(row["score"]) == pytest.approx(probs[..., 0].mean(), abs=2e-6)
    assert probs[..., 0].max() - probs[..., 0].mean() > 0.01  # a max would show
