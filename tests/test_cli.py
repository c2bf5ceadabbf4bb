"""`cvtrain` as a user runs it: errors, help, and one end-to-end training run."""

from __future__ import annotations

import csv
import json
import zipfile

import numpy as np
import pytest
from conftest import assert_picture, make_config, run_cli
from helpers import run_probe
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from cvtrain.cli.main import describe_hydra_error
from cvtrain.errors import UserError


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("data.val_samples=-5", "data.val_samples=-5 must be >= 1"),
        (
            "trainer.epochs=abc",
            "trainer.epochs: Value 'abc' of type 'str' could not be converted to Integer",
        ),
        ("model=nope", "unknown model 'nope'; choose one of:"),
        ("trainer.epochz=3", "unknown key 'trainer.epochz'"),
        ("data.image_size=[180,180]", "seg_convnet with 3 stages needs data.image_size divisible"),
        ("model=mini_xception", "model=mini_xception is a classification model"),
        # one batch larger than any machine's memory: tf.data would drop every image unsaid
        ("data.image_size=[96000,96000]", "GiB for one batch of images alone, more than"),
    ],
)
def test_bad_override_fails_with_one_line_before_tensorflow(override, fragment, tmp_path):
    proc = run_probe(override, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("cvtrain: error: ") and fragment in lines[0]
    assert "TF_NOT_IMPORTED" in proc.stdout
    assert not (tmp_path / "run").exists(), "a failed validation leaves no run dir behind"


def error_line(*overrides: str) -> str:
    """The one line `cvtrain <overrides>` prints, from composition or validation (in-process)."""
    try:
        make_config(*overrides)
    except UserError as exc:
        return str(exc)
    except (HydraException, OmegaConfBaseException) as exc:
        return describe_hydra_error(exc)
    pytest.fail(f"{overrides} composed without an error")


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        (
            "trainer.epoch=3",
            "unknown key 'trainer.epoch'; did you mean trainer.epochs? "
            "(every key: `cvtrain --cfg job`)",
        ),
        ("+trainer.epoch=3", "unknown key 'trainer.epoch'; did you mean trainer.epochs?"),
        ("trainer.early_stoping.enabled=true", "did you mean trainer.early_stopping?"),
        ("model=unett", "unknown model 'unett'; did you mean unet? Choose one of: deeplabv3plus"),
        ("modle=unet", "unknown key 'modle'; did you mean mode or model?"),
        ("+experimnt=demo_segmentation", "unknown key 'experimnt'; did you mean experiment?"),
        (
            "trainer.precision=mixed_float61",
            "not one of auto, float32, mixed_float16, "
            "mixed_bfloat16; did you mean mixed_float16 or mixed_bfloat16?",
        ),  # fmt: skip
        (
            "data.cache=memroy",
            "data.cache='memroy' is not one of none, memory, disk; did you mean memory?",
        ),  # fmt: skip
    ],
)
def test_misspelt_names_suggest_the_nearest(override, fragment):
    line = error_line(override)
    assert fragment in line and "\n" not in line


def test_no_suggestion_when_nothing_is_close():
    line = error_line("trainer.zzzz=1")
    assert line == "unknown key 'trainer.zzzz'; check the spelling or see `cvtrain --cfg job`"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["evaluate", "predict", "export", "explain"])
def test_a_bad_run_dir_is_reported_before_tensorflow(mode, tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"")  # predict/explain check their input first
    args = (f"run={tmp_path / 'nowhere'}", f"input={tmp_path / 'x.jpg'}")
    proc = run_probe(f"mode={mode}", *args, f"hydra.run.dir={tmp_path / 'r'}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"cvtrain: error: run={tmp_path / 'nowhere'} is not a cvtrain run dir (no "
        ".hydra/config.yaml); pass a training output dir such as outputs/<date>/<time>"
    ]
    assert "TF_NOT_IMPORTED" in proc.stdout


@pytest.mark.slow
def test_misspelt_optional_group_fails_instead_of_being_skipped(tmp_path):
    """Hydra silently skips a missing option of an optional group (experiment, debug...)."""
    run = tmp_path / "run"
    # mode=runs: were the typo skipped, the run would list past runs and exit 0 (no training).
    args = ["experiment=demo_segmentaton", "mode=runs", f"path={tmp_path}", f"hydra.run.dir={run}"]
    proc = run_probe(*args, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "cvtrain: error: unknown experiment 'demo_segmentaton'; did you mean demo_segmentation? "
        "Choose one of: book_classification, book_segmentation, demo_classification, "
        "demo_detection, demo_segmentation, small_data_classification, small_data_detection, "
        "small_data_segmentation"
    )
    assert "TF_NOT_IMPORTED" in proc.stdout and not run.exists()


@pytest.mark.slow
def test_model_error_lists_the_valid_options():
    proc = run_cli("model=nope")
    assert "seg_convnet" in proc.stderr


@pytest.mark.slow
def test_help_and_cfg_job():
    help_ = run_cli("--help")
    assert help_.returncode == 0
    assert "cvtrain" in help_.stdout and "model: " in help_.stdout
    assert "Examples:" in help_.stdout  # groups, options, examples
    job = run_cli("task=segmentation", "optimizer.lr=0.0003", "--cfg", "job")
    assert job.returncode == 0
    assert "lr: 0.0003" in job.stdout and "name: seg_convnet" in job.stdout


@pytest.mark.slow
def test_missing_oxford_data_says_how_to_get_it(tmp_path):
    proc = run_cli("task=segmentation", f"data.root={tmp_path / 'nowhere'}", "data.download=false")
    assert proc.returncode == 2
    assert "data.download=true" in proc.stderr and "data=synthetic_pets" in proc.stderr


@pytest.mark.slow
def test_segmentation_run_writes_the_run_dir_contract(cli_seg_run):
    import keras
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, proc = cli_seg_run  # conftest's `cvtrain <tiny segmentation>`, shared with test_tf_logging
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Training finished" in proc.stdout and "tensorboard --logdir" in proc.stdout
    assert str(run) in proc.stdout  # the run directory is printed
    log = (run / "cvtrain.log").read_text()  # the run's log, in the run dir
    assert "parameters, precision float32" in log and "epoch 2/2: " in log

    for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
        assert (run / ".hydra" / name).is_file()
    for name in ("history.csv", "metrics.json", "manifest.json", "curves.png", "predictions.png"):
        assert (run / name).stat().st_size > 0, name
    # loss, pixel_accuracy, mean_iou, IoU per class panels
    assert_picture(run / "curves.png", (1800, 340))
    assert_picture(run / "predictions.png", (900, 660))  # 2 rows: input, truth, prediction; legend
    with open(run / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_val_loss"] == pytest.approx(min(float(r["val_loss"]) for r in rows))
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["seed"] == 42 and manifest["dataset"]["samples"] == 40

    best = run / "checkpoints" / "best.keras"
    with zipfile.ZipFile(best) as archive:  # what a plain Keras install cannot deserialise
        assert "compile_config" not in json.loads(archive.read("config.json"))
    model = keras.models.load_model(best)
    masks = model.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0)
    assert masks.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(masks.sum(-1), 1.0, rtol=1e-4)

    tags = {}
    for split in ("train", "validation"):
        acc = EventAccumulator(str(run / "tensorboard" / split), size_guidance={"tensors": 0})
        acc.Reload()
        tags[split] = set(acc.Tags()["tensors"]) | set(acc.Tags()["scalars"])
        assert "epoch_loss" in tags[split]
    assert "epoch_learning_rate" in tags["train"]
    assert "predictions" in tags["validation"]


def test_help_lists_every_config_group_and_the_config_the_overrides_compose():
    from pathlib import Path

    from cvtrain.cli import help_page
    from cvtrain.paths import config_dir

    text = help_page.render(["task=classification", "--help"])
    groups = [p for p in Path(config_dir()).iterdir() if p.is_dir() and p.name != "hydra"]
    assert groups
    for group in groups:  # a new config folder is listed without any code change
        options = ", ".join(sorted(f.stem for f in group.glob("*.yaml")))
        assert f"\n{group.name}: {options}\n" in text
    assert "name: mini_xception" in text and "\nhydra:" not in text  # task=classification's config
    assert text.startswith("cvtrain: config-driven training") and "Examples:" in text
