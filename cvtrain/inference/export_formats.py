"""Every `format=` of mode=export in one table, without importing TensorFlow.

Config validation reads the names and the optional extras (so `format=onnx` without tf2onnx is
one line before anything loads); mode=export runs the exporter a format names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExportFormat:
    filename: str  # what the export writes in its output folder
    exporter: str  # "module:function": (Exportable, path) -> max |exported - in-memory|
    tolerance: float  # largest |exported - in-memory| allowed per probability
    usage: str  # how to load or serve it ({path} is filled in)
    needs: tuple[str, ...] = ()  # modules of the optional extra below
    extra: str | None = None  # pip install 'cvtrain[<extra>]'


FORMATS: dict[str, ExportFormat] = {
    "saved_model": ExportFormat(
        "saved_model",
        "cvtrain.inference.exporters:export_saved_model",
        1e-5,
        "load it:  m = tf.saved_model.load('{path}')\n"
        "          outputs = m.signatures['serving_default'](images=uint8_batch)['output_0']\n"
        "serve it: docker run -p 8501:8501 -v {path}:/models/cvtrain/1 "
        "-e MODEL_NAME=cvtrain tensorflow/serving\n"
        "          POST /v1/models/cvtrain:predict with uint8 images [batch, H, W, 3]",
    ),
    "keras": ExportFormat(
        "model.keras",
        "cvtrain.inference.exporters:export_keras",
        1e-5,
        "load it:  m = keras.saving.load_model('{path}')\n"
        "          outputs = m.predict(uint8_batch)  # any H x W; output at the training size",
    ),
    "tflite": ExportFormat(  # TFLite kernels round differently
        "model.tflite",
        "cvtrain.inference.exporters:export_tflite",
        1e-4,
        "load it:  it = tf.lite.Interpreter(model_path='{path}')  (or ai_edge_litert)\n"
        "          outputs = it.get_signature_runner('serving_default')(images=uint8_batch)"
        "['output_0']",
    ),
    "onnx": ExportFormat(
        "model.onnx",
        "cvtrain.inference.exporters:export_onnx",
        1e-4,
        "load it:  s = onnxruntime.InferenceSession('{path}')\n"
        "          outputs = s.run(None, {{'images': uint8_batch}})[0]  # any H x W",
        needs=("tf2onnx", "onnxruntime"),
        extra="onnx",
    ),
}
