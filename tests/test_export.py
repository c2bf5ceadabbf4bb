"""mode=export: each format reloads, passes its parity check and takes raw uint8 images."""

from __future__ import annotations

import re
import zipfile

import numpy as np
import pytest
from conftest import make_config, tiny_segmentation, train_run
from PIL import Image

from cvtrain.errors import ConfigError
from cvtrain.inference.export_formats import FORMATS
from cvtrain.modes.export import run as export_run
from cvtrain.modes.predict import run as predict_run
from cvtrain.rundir.saved import load_runs
from cvtrain.tasks.segmentation import MASKS


@pytest.fixture
def seg_run(seg_convnet_run):
    # conftest's (the model matrix's seg_convnet): two narrow stages, as TFLite conversion time
    # grows with the graph
    return seg_convnet_run[0]


@pytest.fixture(scope="module")
def photo(pets_root) -> np.ndarray:
    """A real photo at its own size (not the model's), as raw uint8."""
    return np.asarray(Image.open(next((pets_root / "images").glob("*.jpg"))).convert("RGB"))


def export(run_dir, fmt: str, out):
    return export_run(make_config("mode=export", f"run={run_dir}", f"format={fmt}"), [], out)


@pytest.mark.slow
def test_saved_model_serves_raw_images_like_predict(seg_run, photo, tmp_path, capsys):
    import tensorflow as tf

    result = export(seg_run, "saved_model", tmp_path)
    printed = capsys.readouterr().out  # how to load or serve it
    assert f"tf.saved_model.load('{result.path}')" in printed and "tensorflow/serving" in printed
    assert result.path == seg_run / "export" / "saved_model"
    assert result.max_abs_diff <= FORMATS["saved_model"].tolerance
    loaded = tf.saved_model.load(str(result.path))
    probs = loaded.signatures["serving_default"](images=tf.constant(photo[None]))["output_0"]
    assert probs.shape == (1, *photo.shape[:2], 3)  # at the photo's own size
    np.testing.assert_allclose(probs.numpy().sum(-1), 1, atol=1e-5)
    # `serve`: float32 0..255 at the training size, the same probabilities.
    at_size = photo[None, :32, :32]
    served = loaded.signatures["serve"](inputs=tf.constant(at_size.astype(np.float32)))
    raw = loaded.signatures["serving_default"](images=tf.constant(at_size))["output_0"]
    np.testing.assert_allclose(served["output_0"], raw, atol=1e-5)

    # The served model and mode=predict give the same mask for the same photo.
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "photo.png")
    cfg = make_config("mode=predict", f"run={seg_run}", f"input={folder}", f"output={tmp_path}")
    predict_run(cfg, [], tmp_path)
    mask = np.asarray(Image.open(tmp_path / MASKS / "photo.png"))
    np.testing.assert_array_equal(mask, probs.numpy()[0].argmax(-1) + 1)


@pytest.mark.slow
def test_keras_file_loads_safely_and_takes_uint8_of_any_size(seg_run, photo, tmp_path):
    import keras

    result = export(seg_run, "keras", tmp_path)
    assert result.max_abs_diff <= FORMATS["keras"].tolerance
    loaded = keras.saving.load_model(result.path, safe_mode=True)
    with zipfile.ZipFile(result.path) as archive:  # only Keras layers: opens without cvtrain
        assert "cvtrain" not in archive.read("config.json").decode()
    model = load_runs(make_config("mode=evaluate", f"run={seg_run}"))[0].load_model()
    probs = loaded.predict(photo[None], verbose=0)
    assert probs.shape == (1, 32, 32, 3)  # resized to the training size
    # Fed an image already at the training size, it is exactly the trained model.
    at_size = photo[None, :32, :32]
    np.testing.assert_allclose(
        loaded.predict(at_size, verbose=0),
        model.predict(at_size.astype(np.float32), verbose=0),
        atol=1e-5,
    )


@pytest.mark.slow
def test_tflite_runs_in_the_interpreter_within_tolerance(seg_run, photo, tmp_path):
    import tensorflow as tf

    from cvtrain.inference.serving import raw_predictor

    result = export(seg_run, "tflite", tmp_path)
    assert result.path.suffix == ".tflite" and result.max_abs_diff <= FORMATS["tflite"].tolerance
    runner = tf.lite.Interpreter(model_path=str(result.path)).get_signature_runner()
    probs = runner(images=photo[None])["output_0"]
    model = load_runs(make_config("mode=evaluate", f"run={seg_run}"))[0].load_model()
    expected = raw_predictor(model, segmentation=True)(photo[None]).numpy()
    assert probs.shape == expected.shape == (1, *photo.shape[:2], 3)
    np.testing.assert_allclose(probs, expected, atol=FORMATS["tflite"].tolerance)


@pytest.mark.slow  # seg_run trains
def test_onnx_takes_raw_uint8_of_any_size_like_predict(seg_run, photo, tmp_path):
    import onnxruntime

    from cvtrain.inference.serving import raw_predictor

    result = export(seg_run, "onnx", tmp_path)
    assert result.path == seg_run / "export" / "model.onnx"
    assert result.max_abs_diff <= FORMATS["onnx"].tolerance
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    probs = session.run(None, {"images": photo[None]})[0]
    model = load_runs(make_config("mode=evaluate", f"run={seg_run}"))[0].load_model()
    expected = raw_predictor(model, segmentation=True)(photo[None]).numpy()
    assert probs.shape == expected.shape == (1, *photo.shape[:2], 3)  # the photo's own size
    np.testing.assert_allclose(probs, expected, atol=FORMATS["onnx"].tolerance)


def test_onnx_without_its_extra_says_how_to_install_it(tmp_path, monkeypatch):
    import cvtrain.cli.validate

    real = cvtrain.cli.validate.find_spec
    monkeypatch.setattr(
        cvtrain.cli.validate, "find_spec", lambda name: None if name == "tf2onnx" else real(name)
    )
    message = "format=onnx needs tf2onnx: pip install 'cvtrain[onnx]'"
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config("mode=export", f"run={tmp_path}", "format=onnx")


def test_unknown_format_and_ensembles_fail_at_validation(tmp_path):
    with pytest.raises(
        ConfigError, match="format='pb' is not one of saved_model, keras, tflite, onnx"
    ):
        make_config("mode=export", f"run={tmp_path}", "format=pb")
    with pytest.raises(ConfigError, match="takes one run"):
        make_config("mode=export", f"run=[{tmp_path},{tmp_path}]")


@pytest.mark.slow
def test_a_mixed_precision_run_exports_to_tflite_in_float32(pets_root, photo, tmp_path):
    import keras
    import tensorflow as tf

    from cvtrain.inference.serving import raw_predictor

    overrides = ("model.filters=[16,32]", "trainer.epochs=1", "trainer.prediction_images=0")
    try:
        run_dir = train_run(
            tmp_path / "run",
            *tiny_segmentation(pets_root, *overrides, "trainer.precision=mixed_float16"),
        )
    finally:
        keras.mixed_precision.set_dtype_policy("float32")  # training leaves its policy set
    result = export(run_dir, "tflite", tmp_path / "out")
    assert result.max_abs_diff <= FORMATS["tflite"].tolerance
    runner = tf.lite.Interpreter(model_path=str(result.path)).get_signature_runner()
    exported = runner(images=photo[None])["output_0"]
    mixed = load_runs(make_config("mode=evaluate", f"run={run_dir}"))[0].load_model()
    assert mixed.layers[2].dtype_policy.name == "mixed_float16"
    # float16 rounding is all that separates the export from the run as trained
    np.testing.assert_allclose(exported, raw_predictor(mixed, True)(photo[None]), atol=1e-2)
