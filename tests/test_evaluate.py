"""mode=evaluate: a checkpoint measured on its own validation split matches what training logged;
ensembles report every member and their average."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import (
    assert_picture,
    make_config,
    run_cli,
    tiny_classification,
    tiny_segmentation,
)
from helpers import untrained_run

from cvtrain import rundir
from cvtrain.data.index import class_id
from cvtrain.errors import ConfigError
from cvtrain.metrics.evaluation import (
    classification_metrics,
    confusion,
    nll_sum,
    roc_auc,
    segmentation_metrics,
)
from cvtrain.modes.evaluate import eval_index, evaluate, run
from cvtrain.rundir.saved import load_runs


@pytest.fixture
def runs(seg_runs):
    """conftest's two seeded segmentation runs (run_a, run_b), shared with test_predict.py."""
    return seg_runs


def evaluate_runs(*overrides: str) -> tuple:
    cfg = make_config("mode=evaluate", *overrides)
    return cfg, load_runs(cfg, overrides)


@pytest.mark.slow
def test_evaluating_the_checkpoint_reproduces_the_best_epoch_val_metrics(runs, tmp_path):
    cfg = make_config("mode=evaluate", f"run={runs[0]}")
    report = run(cfg, [], run_dir=tmp_path)
    logged = rundir.read_json(runs[0] / rundir.METRICS)["best"]
    got = report["metrics"]
    for name in ("loss", "pixel_accuracy", "mean_iou"):
        assert got[name] == pytest.approx(logged[f"val_{name}"], abs=1e-3), name
    assert report["data"]["files"] == 8  # data.val_samples of the run
    assert rundir.read_json(runs[0] / "eval" / "metrics.json") == report
    assert not list(tmp_path.iterdir())  # a single run's results go into the run itself


@pytest.mark.slow
def test_ignore_class_leaves_border_pixels_out(runs, tmp_path):
    everything = evaluate(evaluate_runs(f"run={runs[0]}")[1], tmp_path / "all")["metrics"]
    _, saved = evaluate_runs(f"run={runs[0]}", "eval.ignore_class=border")
    scored = evaluate(saved, tmp_path / "no_border")["metrics"]
    assert set(scored["per_class"]) == {"pet", "background"}
    assert 0 < scored["pixels"] < everything["pixels"]
    ious = [v["iou"] for v in scored["per_class"].values()]
    assert scored["mean_iou"] == pytest.approx(np.mean(ious))
    with pytest.raises(ConfigError, match="eval.ignore_class='tail'.*pet, background, border"):
        evaluate(evaluate_runs(f"run={runs[0]}", "eval.ignore_class=tail")[1], tmp_path / "x")


@pytest.mark.slow
def test_ensemble_reports_each_member_and_their_average(runs, tmp_path, capsys):
    cfg = make_config("mode=evaluate", f"run=[{runs[0]},{runs[1]}]")
    report = run(cfg, [], run_dir=tmp_path)
    out = capsys.readouterr().out
    for name in ("run_a", "run_b", "ensemble", "mean_iou", "dice pet"):
        assert name in out
    members = report["members"]
    assert list(members) == [str(runs[0]), str(runs[1])]
    single = rundir.read_json(runs[0] / rundir.METRICS)["best"]["val_loss"]
    assert members[str(runs[0])]["loss"] == pytest.approx(single, abs=1e-3)
    # Averaging probabilities: by Jensen, the ensemble's cross-entropy is at most the members' mean.
    assert report["metrics"]["loss"] <= np.mean([m["loss"] for m in members.values()]) + 1e-6
    assert rundir.read_json(tmp_path / "eval" / "metrics.json") == report

    # Recomputed here: each member on the split alone, then the mean of their probabilities.
    from cvtrain.data.pipeline import build_dataset

    saved = load_runs(cfg)
    data = replace(saved[0].config.data, cache="none")
    batches = list(
        build_dataset(eval_index(saved[0].config, tmp_path), data, training=False, seed=0)
    )
    masks = np.concatenate([m.numpy() for _, m in batches])
    probs = [
        np.concatenate([model.predict(images, verbose=0) for images, _ in batches])
        for model in (s.load_model() for s in saved)
    ]

    def metrics(p):
        matrix = confusion(masks, p.argmax(-1), 3)
        return segmentation_metrics(matrix, nll_sum(masks, p), ("pet", "background", "border"))

    for path, p in zip(runs, probs):
        assert members[str(path)]["loss"] == pytest.approx(metrics(p)["loss"], rel=1e-4)
    ensemble, expected = report["metrics"], metrics((probs[0] + probs[1]) / 2)
    for name in ("loss", "pixel_accuracy", "mean_iou"):
        assert ensemble[name] == pytest.approx(expected[name], rel=1e-4), name
    for member in members.values():  # so using one member alone would show
        assert abs(ensemble["loss"] - member["loss"]) > 1e-3


def test_run_dir_errors_are_one_line_and_say_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="needs run=<run dir>"):
        make_config("mode=evaluate")
    with pytest.raises(ConfigError, match="not a cvtrain run dir"):
        evaluate_runs(f"run={tmp_path}")


def test_ensemble_members_share_the_task_and_the_first_members_data(pets_root, tmp_path):
    seg = tiny_segmentation(pets_root)
    a = untrained_run(tmp_path / "a", *seg)
    b = untrained_run(tmp_path / "b", *seg, "data.val_samples=4")
    shapes = untrained_run(tmp_path / "c", *tiny_classification(tmp_path / "shapes"))
    with pytest.raises(ConfigError, match="an ensemble needs runs of one task"):
        evaluate_runs(f"run=[{a},{shapes}]")
    report = run(make_config("mode=evaluate", f"run=[{b},{a}]"), [], tmp_path / "hydra")
    assert report["data"]["files"] == 4  # the first member's data.val_samples
    assert (tmp_path / "hydra" / "eval" / "metrics.json").is_file()  # the invocation's own dir
    assert not (a / "eval").exists() and not (b / "eval").exists()


def test_checkpoints_are_loaded_with_safe_mode(pets_root, tmp_path):
    import keras

    inputs = keras.Input((32, 32, 3))
    lambda_model = keras.Model(inputs, keras.layers.Lambda(lambda x: x / 255.0)(inputs))
    run_dir = untrained_run(tmp_path / "run", *tiny_segmentation(pets_root), model=lambda_model)
    (saved,) = evaluate_runs(f"run={run_dir}")[1]
    with pytest.raises(ValueError, match="safe_mode"):  # arbitrary code in a checkpoint
        saved.load_model()


def test_ignore_class_is_given_by_name_or_id():
    names = ("pet", "background", "border")
    assert class_id("border", names, "eval.ignore_class") == 2
    assert class_id("2", names, "eval.ignore_class") == 2


def test_segmentation_metrics_by_hand():
    # rows true, columns predicted: pet, background, border
    matrix = np.array([[3, 1, 0], [1, 4, 1], [0, 2, 2]])
    m = segmentation_metrics(matrix, nll=14.0, class_names=("pet", "background", "border"))
    assert m["pixel_accuracy"] == pytest.approx(9 / 14)
    assert m["loss"] == pytest.approx(1.0)
    assert m["per_class"]["pet"] == pytest.approx({"iou": 3 / 5, "dice": 6 / 8})
    assert m["per_class"]["background"]["iou"] == pytest.approx(4 / 9)
    assert m["mean_iou"] == pytest.approx((3 / 5 + 4 / 9 + 2 / 5) / 3)
    no_border = segmentation_metrics(matrix, 14.0, ("pet", "background", "border"), ignore=2)
    assert no_border["pixel_accuracy"] == pytest.approx(7 / 10)
    # background predicted on border pixels no longer counts; border predicted elsewhere does
    assert no_border["per_class"]["background"]["iou"] == pytest.approx(4 / 7)
    assert no_border["mean_iou"] == pytest.approx((3 / 5 + 4 / 7) / 2)


def test_roc_auc_counts_ties_half():
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert roc_auc(np.array([1, 1]), np.array([0.2, 0.9])) is None


@pytest.mark.slow
def test_cli_evaluate_with_a_data_override_leaves_no_outputs_dir(runs, tmp_path):
    done = run_cli("mode=evaluate", f"run={runs[1]}", "data.val_samples=4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = rundir.read_json(runs[1] / "eval" / "metrics.json")
    assert report["data"]["files"] == 4
    assert "pixel_accuracy" in done.stdout
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_cli_ensemble_results_go_to_a_fresh_outputs_dir(pets_root, tmp_path):
    a = untrained_run(tmp_path / "a", *tiny_segmentation(pets_root))
    b = untrained_run(tmp_path / "b", *tiny_segmentation(pets_root, "trainer.seed=2"))
    done = run_cli("mode=evaluate", f"run=[{a},{b}]", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (metrics,) = (tmp_path / "outputs").glob("*/*/eval/metrics.json")  # outputs/<date>/<time>/
    assert list(rundir.read_json(metrics)["members"]) == [str(a), str(b)]
    assert not (a / "eval").exists() and not (b / "eval").exists()


@pytest.mark.slow
def test_classification_reproduces_val_metrics_with_a_confusion_matrix(shape_runs, tmp_path):
    run_dir = shape_runs[1][0]  # conftest's: two epochs, shared with test_predict.py
    report = run(make_config("mode=evaluate", f"run={run_dir}"), [], tmp_path)
    logged = rundir.read_json(run_dir / rundir.METRICS)["best"]
    got = report["metrics"]
    assert got["loss"] == pytest.approx(logged["val_loss"], abs=1e-3)
    assert got["accuracy"] == pytest.approx(logged["val_accuracy"], abs=1e-3)
    (tn, fp), (fn, tp) = got["confusion_matrix"]
    assert tn + fp + fn + tp == report["data"]["files"]
    # Keras estimates AUC over threshold bins; ours is exact: allow one (positive, negative) pair.
    pairs = (tn + fp) * (fn + tp)
    assert got["roc_auc"] == pytest.approx(logged["val_auc"], abs=1 / pairs + 1e-6)
    assert got["recall"] == pytest.approx(tp / (tp + fn))
    assert (run_dir / "eval" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert_picture(run_dir / "eval" / "confusion_matrix.png", (390, 240))


def test_multiclass_metrics_are_macro_averages():
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 2, 0]]  # predicted 0, 1, 1, 1, 2, 0
    m = classification_metrics(labels, probs, ("a", "b", "c"))
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["b"] == pytest.approx({"precision": 2 / 3, "recall": 1, "f1": 0.8})
    assert m["recall"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert "roc_auc" not in m
