"""The writers behind `format=`: each writes one format, reloads it and returns how far its
outputs are from the in-memory model's (cvtrain.inference.export_formats names them).

Everything is written beside its destination and moved in place: never half an export.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cvtrain.rundir import atomic_path

SCRATCH = ".saved_model-"  # the folders a SavedModel is written and checked in, then moved
ONNX_OPSET = 17  # onnxruntime >= 1.14 runs it; Resize with half-pixel centres as tf.image.resize


@dataclass(frozen=True)
class Exportable:
    """What every exporter gets: the model computing in float32, the uint8-any-size function
    every format serves, the training size and the seeded batches the parity check uses."""

    model: Any
    predict_raw: Callable
    size: tuple[int, int]
    batches: tuple[np.ndarray, np.ndarray]


def remove_scratch(out_dir: Path) -> None:
    """Scratch folders an export killed mid-way left in `out_dir` (only exporters make them)."""
    for path in out_dir.glob(f"{SCRATCH}*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def replace_dir(src: Path, dst: Path) -> None:
    """`src` in place of `dst`; the old one is moved aside first and deleted last, so a kill at
    any moment leaves one of the two whole."""
    if not dst.exists():
        os.replace(src, dst)
        return
    old = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f"{SCRATCH}old-")) / dst.name
    os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old.parent)


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


def check_saved_model(path: Path, job: Exportable) -> float:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    serve, raw = loaded.signatures["serve"], loaded.signatures["serving_default"]
    at_size = job.batches[0].astype(np.float32)
    expected = job.model(at_size, training=False)
    diffs = [_max_diff(serve(inputs=tf.constant(at_size))["output_0"], expected)]
    diffs += [
        _max_diff(raw(images=tf.constant(b))["output_0"], job.predict_raw(b)) for b in job.batches
    ]
    return max(diffs)


def export_saved_model(job: Exportable, path: Path) -> float:
    """Written and checked in a temp folder, then moved in place: never half a SavedModel."""
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=SCRATCH) as tmp:
        saved_model = Path(tmp) / "saved_model"
        write_saved_model(job.model, job.predict_raw, job.size, saved_model)
        diff = check_saved_model(saved_model, job)
        replace_dir(saved_model, path)
    return diff


def export_tflite(job: Exportable, path: Path) -> float:
    import tensorflow as tf

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=SCRATCH) as tmp:
        saved_model = Path(tmp) / "saved_model"
        write_saved_model(job.model, job.predict_raw, job.size, saved_model)
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
    return max(_max_diff(runner(images=b)["output_0"], job.predict_raw(b)) for b in job.batches)


def export_onnx(job: Exportable, path: Path) -> float:
    import onnxruntime
    import tf2onnx

    from cvtrain.inference.serving import RAW_IMAGES

    proto, _ = tf2onnx.convert.from_function(
        job.predict_raw, input_signature=[RAW_IMAGES], opset=ONNX_OPSET
    )
    with atomic_path(path) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diffs = [
        _max_diff(session.run(None, {"images": b})[0], job.predict_raw(b)) for b in job.batches
    ]
    return max(diffs)


def export_keras(job: Exportable, path: Path) -> float:
    import keras

    # An op, not the Resizing layer, which would put the model's BatchNormalization in training
    # mode whenever the file is called without training=False (keras-team/keras#23166).
    images = keras.Input((None, None, 3), dtype="uint8", name="images")
    resized = keras.ops.image.resize(
        keras.ops.cast(images, "float32"), job.size, interpolation="bilinear"
    )
    full = keras.Model(images, job.model(resized), name=f"{job.model.name}_raw_input")
    with atomic_path(path) as tmp:
        full.save(tmp)
    loaded = keras.saving.load_model(path, safe_mode=True)
    # Called plainly, as a user would: the file must infer without being told training=False.
    return max(_max_diff(loaded(b), full.predict(b, verbose=0)) for b in job.batches)
