"""mode=export: a finished run as a servable artefact, checked against the model in memory.

Every format takes raw uint8 images of any size and resizes them (bilinear, as training does;
the keras format skips training's rounding to uint8, a difference below one intensity step):
- saved_model: signature `serving_default` (uint8 images -> probabilities; segmentation
  probabilities at each input's size) plus `serve` (float32 0..255 at the training size).
- tflite: the `serving_default` signature, converted to TFLite builtins.
- onnx: the same function as an ONNX graph (tf2onnx; input `images`, any height and width),
  checked through onnxruntime. Needs the `onnx` extra.
- keras: a .keras model, a resize op + the trained model (output at the training size).
Exports compute in float32, also for a mixed-precision run. The exported file is reloaded and
its outputs compared with the in-memory model on a batch.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvtrain.artifacts import atomic_path
from cvtrain.config import RunConfig
from cvtrain.console import console
from cvtrain.ensemble import SavedRun, load_runs, output_dir
from cvtrain.tasks import get_task

log = logging.getLogger(__name__)

# Largest |exported - in-memory| allowed per probability (TFLite kernels round differently).
TOLERANCE = {"saved_model": 1e-5, "keras": 1e-5, "tflite": 1e-4, "onnx": 1e-4}
FILENAMES = {
    "saved_model": "saved_model",
    "keras": "model.keras",
    "tflite": "model.tflite",
    "onnx": "model.onnx",
}
ONNX_OPSET = 17  # onnxruntime >= 1.14 runs it; Resize with half-pixel centres as tf.image.resize
PARITY_SEED = 0


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float
    tolerance: float


def run(cfg: RunConfig, overrides: Sequence[str], hydra_dir: Path) -> ExportResult:
    runs = load_runs(cfg, overrides)
    return export(runs[0], cfg.format, output_dir(cfg, runs, hydra_dir, "export"))


def parity_images(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Seeded uint8 batches: one at the training size, one at an awkward other size."""
    rng = np.random.default_rng(PARITY_SEED)
    odd = (size[0] * 3 // 2 + 7, size[1] + 5)
    return (
        rng.integers(0, 256, (2, *size, 3), dtype=np.uint8),
        rng.integers(0, 256, (2, *odd, 3), dtype=np.uint8),
    )


def export(saved: SavedRun, fmt: str, out_dir: Path) -> ExportResult:
    from cvtrain.serving import float32_model, model_image_size, raw_predictor

    model = float32_model(saved.load_model())
    size = model_image_size(model)
    predict_raw = raw_predictor(model, get_task(saved.config.task.name).dense)
    batches = parity_images(size)
    path = out_dir / FILENAMES[fmt]
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "keras":
        diff = export_keras(model, size, path, batches)
    elif fmt == "onnx":
        diff = export_onnx(predict_raw, path, batches)
    else:
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".saved_model-") as tmp:
            saved_model = Path(tmp) / "saved_model"
            write_saved_model(model, predict_raw, size, saved_model)
            if fmt == "saved_model":
                diff = check_saved_model(saved_model, model, predict_raw, batches)
                replace_dir(saved_model, path)
            else:
                diff = export_tflite(saved_model, predict_raw, path, batches)
    result = ExportResult(path, fmt, diff, TOLERANCE[fmt])
    if diff > result.tolerance:
        raise RuntimeError(
            f"export parity check failed: exported {fmt} differs from the in-memory model by "
            f"{diff:.2e} > {result.tolerance:.0e} (written to {path} for inspection)"
        )
    console.print(
        f"exported {fmt} to {path}; parity check passed: max |exported - in-memory| = "
        f"{diff:.2e} <= {result.tolerance:.0e} on {sum(len(b) for b in batches)} images"
    )
    console.print(USAGE[fmt].format(path=path), markup=False, soft_wrap=True)
    return result


def replace_dir(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(src, dst)


def write_saved_model(model, predict_raw: Callable, size, path: Path) -> None:
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", predict_raw)
    archive.add_endpoint(
        "serve",
        lambda inputs: model(inputs, training=False),
        input_signature=[tf.TensorSpec([None, *size, 3], tf.float32, name="inputs")],
    )
    archive.write_out(str(path), verbose=False)


def _max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def check_saved_model(path: Path, model, predict_raw: Callable, batches) -> float:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    serve, raw = loaded.signatures["serve"], loaded.signatures["serving_default"]
    at_size = batches[0].astype(np.float32)
    expected = model(at_size, training=False)
    diffs = [_max_diff(serve(inputs=tf.constant(at_size))["output_0"], expected)]
    diffs += [_max_diff(raw(images=tf.constant(b))["output_0"], predict_raw(b)) for b in batches]
    return max(diffs)


def export_tflite(saved_model: Path, predict_raw: Callable, path: Path, batches) -> float:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model), signature_keys=["serving_default"]
    )
    flatbuffer = converter.convert()
    with atomic_path(path) as tmp:
        tmp.write_bytes(flatbuffer)
    with warnings.catch_warnings():  # tf.lite.Interpreter points at ai_edge_litert; both work
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner("serving_default")
    return max(_max_diff(runner(images=b)["output_0"], predict_raw(b)) for b in batches)


def export_onnx(predict_raw: Callable, path: Path, batches) -> float:
    import onnxruntime
    import tf2onnx

    from cvtrain.serving import RAW_IMAGES

    proto, _ = tf2onnx.convert.from_function(
        predict_raw, input_signature=[RAW_IMAGES], opset=ONNX_OPSET
    )
    with atomic_path(path) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return max(_max_diff(session.run(None, {"images": b})[0], predict_raw(b)) for b in batches)


def export_keras(model, size, path: Path, batches) -> float:
    import keras

    # An op, not the Resizing layer, which would put the model's BatchNormalization in training
    # mode whenever the file is called without training=False (keras-team/keras#23166).
    images = keras.Input((None, None, 3), dtype="uint8", name="images")
    resized = keras.ops.image.resize(
        keras.ops.cast(images, "float32"), size, interpolation="bilinear"
    )
    full = keras.Model(images, model(resized), name=f"{model.name}_raw_input")
    with atomic_path(path) as tmp:
        full.save(tmp)
    loaded = keras.saving.load_model(path, safe_mode=True)
    # Called plainly, as a user would: the file must infer without being told training=False.
    return max(_max_diff(loaded(b), full.predict(b, verbose=0)) for b in batches)


USAGE = {
    "saved_model": (
        "load it:  m = tf.saved_model.load('{path}')\n"
        "          probs = m.signatures['serving_default'](images=uint8_batch)['output_0']\n"
        "serve it: docker run -p 8501:8501 -v {path}:/models/cvtrain/1 "
        "-e MODEL_NAME=cvtrain tensorflow/serving\n"
        "          POST /v1/models/cvtrain:predict with uint8 images [batch, H, W, 3]"
    ),
    "keras": (
        "load it:  m = keras.saving.load_model('{path}')\n"
        "          probs = m.predict(uint8_batch)  # any H x W; output at the training size"
    ),
    "onnx": (
        "load it:  s = onnxruntime.InferenceSession('{path}')\n"
        "          probs = s.run(None, {{'images': uint8_batch}})[0]  # any H x W"
    ),
    "tflite": (
        "load it:  it = tf.lite.Interpreter(model_path='{path}')  (or ai_edge_litert)\n"
        "          probs = it.get_signature_runner('serving_default')(images=uint8_batch)"
        "['output_0']"
    ),
}
