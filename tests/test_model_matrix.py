"""Every model through every mode: one tiny training epoch, then evaluate, predict and export in
every format with its parity check (DeepLabV3+: each format on one of its three backbones).
`pytest -s` prints the parity figure of each export."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import (
    FEW,
    FROZEN_DEEPLAB,
    SEG_CONVNET,
    XCEPTION,
    make_config,
    tiny_classification,
    tiny_segmentation,
    train_run,
)
from PIL import Image

from cvtrain import rundir
from cvtrain.inference.export_formats import FORMATS
from cvtrain.modes.evaluate import run as evaluate_run
from cvtrain.modes.export import run as export_run
from cvtrain.modes.predict import run as predict_run
from cvtrain.rundir.saved import load_runs
from cvtrain.tasks.classification import CSV
from cvtrain.tasks.segmentation import MASKS

pytestmark = pytest.mark.slow

SEGMENTATION = {
    "seg_convnet": list(SEG_CONVNET),
    "unet": ["model=unet", "model.filters=[8,16]"],
    "unet_separable_residual": [
        "model=unet",
        "model.filters=[8,16]",
        "model.separable=true",
        "model.residual=true",
    ],
    "deeplabv3plus_mobilenetv2": list(FROZEN_DEEPLAB),  # its backbone frozen
    **{
        f"deeplabv3plus_{backbone}": [
            "model=deeplabv3plus",
            f"model.backbone={backbone}",
            "model.filters=[16,8]",
            "model.atrous_rates=[1,2]",
            f"data.image_size=[{size},{size}]",
        ]
        for backbone, size in (("resnet50", 32), ("xception", 72))
    },
}
CLASSIFICATION = {
    "mini_xception": ["model=mini_xception"],
    "residual_convnet": ["model=residual_convnet", "model.width=0.5"],
    "xception": list(XCEPTION),
}
MODELS = [*SEGMENTATION, *CLASSIFICATION]
# Every model trains with FEW (tests/conftest.py): small enough to keep the whole matrix to a few
# minutes. These runs other test modules read too: conftest trains them, with the same overrides.
SHARED = {
    "seg_convnet": "seg_convnet_run",
    "deeplabv3plus_mobilenetv2": "frozen_deeplab_run",
    "xception": "xception_run",
}
# DeepLabV3+ is one model on three backbones: each export format runs on one backbone, so every
# format exports DeepLabV3+ and every backbone is exported (the xception classifier takes the
# Xception backbone through every format). The other models go through every format.
DEEPLAB_EXPORTS = {
    "deeplabv3plus_mobilenetv2": ("saved_model", "tflite"),
    "deeplabv3plus_resnet50": ("onnx",),
    "deeplabv3plus_xception": ("keras",),
}
EXPORTS = [(name, fmt) for name in MODELS for fmt in DEEPLAB_EXPORTS.get(name, FORMATS)]
# The export test takes `trained` with these pairs and the format as "<model>/<format>", a value
# of its own for each test, so that pytest still runs each model's tests together (it groups
# module-scoped parameters by value) and trains each model once.
EXPORT_CASES = [(name, f"{name}/{fmt}") for name, fmt in EXPORTS]


@pytest.fixture(scope="module", params=MODELS)
def trained(request, pets_root, tmp_path_factory):
    """(name, run dir, a folder of input photos) for each model, trained once."""
    name = request.param
    base = tmp_path_factory.mktemp(name)
    if name in SEGMENTATION:
        overrides = tiny_segmentation(pets_root, *SEGMENTATION[name], *FEW)
        if name in SHARED:
            run_dir, shared = request.getfixturevalue(SHARED[name])
            assert shared == overrides
        else:
            run_dir = train_run(base / "run", *overrides)
        photos = sorted((pets_root / "images").glob("*.jpg"))[:2]
    else:
        if name in SHARED:
            run_dir, shapes = request.getfixturevalue(SHARED[name])
        else:
            shapes = base / "shapes"
            extra = (*CLASSIFICATION[name], *FEW, "data.batch_size=8")
            run_dir = train_run(base / "run", *tiny_classification(shapes, *extra))
        photos = sorted(shapes.rglob("*.jpg"))[:2]
    inputs = base / "inputs"
    inputs.mkdir()
    for photo in photos:
        (inputs / photo.name).write_bytes(photo.read_bytes())
    return name, run_dir, inputs


def test_train_writes_a_checkpoint_that_scores_its_best_epoch(trained):
    name, run_dir, _ = trained
    metrics = rundir.read_json(run_dir / rundir.METRICS)
    assert metrics["epochs_run"] == metrics["best_epoch"] == 1
    assert np.isfinite(metrics["best_val_loss"])
    if name in SEGMENTATION:
        assert 0 <= metrics["final"]["val_mean_iou"] <= 1
    assert (run_dir / rundir.CHECKPOINT).stat().st_size > 0


def test_a_plain_call_of_the_checkpoint_is_inference(trained):
    """No layer may switch the model into training mode: `model(x)` is `model(x, training=False)`
    (a Resizing layer inside DeepLabV3+ once made its BatchNormalization use batch statistics)."""
    _, run_dir, _ = trained
    (saved,) = load_runs(make_config("mode=evaluate", f"run={run_dir}"))
    model = saved.load_model()
    assert model.name.startswith(saved.config.model.name)  # the configured model (xception_...)
    images = np.random.default_rng(0).uniform(0, 255, (4, *model.input_shape[1:])).astype("f4")
    np.testing.assert_allclose(model(images), model(images, training=False), atol=1e-6)


def test_evaluate_reproduces_the_best_epochs_val_loss(trained, tmp_path):
    _, run_dir, _ = trained
    cfg = make_config("mode=evaluate", f"run={run_dir}", f"output={tmp_path}")
    report = evaluate_run(cfg, [], tmp_path)
    logged = rundir.read_json(run_dir / rundir.METRICS)
    assert report["metrics"]["loss"] == pytest.approx(logged["best_val_loss"], abs=1e-3)


def test_predict_writes_one_result_per_input(trained, tmp_path):
    name, run_dir, inputs = trained
    cfg = make_config("mode=predict", f"run={run_dir}", f"input={inputs}", f"output={tmp_path}")
    predict_run(cfg, [], tmp_path)
    photos = sorted(inputs.iterdir())
    if name in SEGMENTATION:
        for photo in photos:
            mask = np.asarray(Image.open(tmp_path / MASKS / f"{photo.stem}.png"))
            assert mask.shape == Image.open(photo).size[::-1]  # the photo's own size
            assert set(np.unique(mask)) <= {1, 2, 3}
    else:
        with open(tmp_path / CSV, newline="") as f:
            rows = list(csv.DictReader(f))
        assert [r["file"] for r in rows] == [str(p) for p in photos]
        assert all(0.5 <= float(r["probability"]) <= 1 for r in rows)


@pytest.mark.parametrize(
    ("trained", "case"),
    EXPORT_CASES,
    ids=[f"{name}-{fmt}" for name, fmt in EXPORTS],
    indirect=["trained"],
    scope="module",
)
def test_export_passes_its_parity_check(trained, case, tmp_path):
    name, run_dir, _ = trained
    fmt = case.split("/")[1]
    cfg = make_config("mode=export", f"run={run_dir}", f"format={fmt}", f"output={tmp_path}")
    result = export_run(cfg, [], tmp_path)
    print(f"\nparity {name} {fmt}: max |exported - in-memory| = {result.max_abs_diff:.2e}")
    assert result.path.exists() and result.max_abs_diff <= FORMATS[fmt].tolerance
