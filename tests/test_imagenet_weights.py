"""model.weights=imagenet: keras.applications fetches its own file into Keras' cache, here from
a local server that serves a weights file the test made (never the internet)."""

from __future__ import annotations

import hashlib
import socket

import keras
import numpy as np
import pytest
from helpers import run_probe
from keras.src.applications import efficientnet, mobilenet_v2
from keras.src.backend import config as keras_config
from keras.src.legacy.saving import legacy_h5_format
from keras.src.utils import file_utils

from cvtrain.models.backbone_specs import BACKBONES, imagenet_weights_path
from cvtrain.models.backbones import WeightsUnavailable, load_backbone

SHAPE = (32, 32, 3)
EFFICIENTNET_FILE = "efficientnetb0_notop.h5"


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """Keras' cache in tmp_path. Keras reads KERAS_HOME once, when it is imported, so its copy
    of the folder is pointed there too."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def served_weights(tmp_path_factory):
    """A no-top EfficientNetB0 with random weights, in the legacy .h5 layout of Keras' files."""
    import h5py

    keras.utils.set_random_seed(3)
    source = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=SHAPE)
    path = tmp_path_factory.mktemp("weights") / EFFICIENTNET_FILE
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    return source, path.read_bytes()


def serve_efficientnet(server, monkeypatch, body: bytes, sha256: str) -> None:
    """Keras' EfficientNet module fetches from `server` and expects `sha256`."""
    server.files[f"/{EFFICIENTNET_FILE}"] = body
    monkeypatch.setattr(efficientnet, "BASE_WEIGHTS_PATH", server.url("/"))
    top_hash = efficientnet.WEIGHTS_HASHES["b0"][0]
    monkeypatch.setitem(efficientnet.WEIGHTS_HASHES, "b0", (top_hash, sha256))


def test_imagenet_weights_are_fetched_once_verified_and_loaded(
    served_weights, server, keras_home, monkeypatch, capsys
):
    source, body = served_weights
    serve_efficientnet(server, monkeypatch, body, hashlib.sha256(body).hexdigest())
    cached = imagenet_weights_path("efficientnetb0", SHAPE)
    assert cached == keras_home / "models" / EFFICIENTNET_FILE  # where Keras puts it

    backbone = load_backbone("efficientnetb0", SHAPE, "imagenet")
    assert server.requests == [(f"/{EFFICIENTNET_FILE}", None)]
    assert cached.read_bytes() == body
    assert "Downloading data from" in capsys.readouterr().out  # Keras' own progress report
    base = backbone.get_layer("efficientnetb0")
    for got, want in zip(base.weights, source.weights, strict=True):  # Normalization's included
        np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=want.path)

    load_backbone("efficientnetb0", SHAPE, "imagenet")  # from the cache: no second request
    assert len(server.requests) == 1


def test_a_corrupted_download_is_refused_in_one_line(
    served_weights, server, keras_home, monkeypatch
):
    _, body = served_weights
    middle = len(body) // 2
    corrupted = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]  # one byte
    serve_efficientnet(server, monkeypatch, corrupted, hashlib.sha256(body).hexdigest())
    with pytest.raises(WeightsUnavailable) as info:
        load_backbone("efficientnetb0", SHAPE, "imagenet")
    message = str(info.value)
    assert "\n" not in message and "corrupted file" in message
    assert f"to {keras_home / 'models' / EFFICIENTNET_FILE}, or set model.weights=none" in message


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined or non-square")  # 32 px: 224's
def test_offline_is_one_line_naming_the_file_and_where_it_goes(keras_home, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(mobilenet_v2, "BASE_WEIGHT_PATH", f"http://127.0.0.1:{port}/")
    with pytest.raises(WeightsUnavailable) as info:
        load_backbone("mobilenetv2", SHAPE, "imagenet")
    message = str(info.value)
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"  # not 32 px
    url = f"https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/{name}"
    assert f"copy {url} to {keras_home / 'models' / name}, or set model.weights=none" in message
    assert "URL fetch failure" in message and "\n" not in message
    assert not (keras_home / "models" / name).exists()  # no partial file left behind


@pytest.mark.parametrize(
    ("name", "size"),
    [("xception", 71), ("resnet50", 32), ("mobilenetv2", 96), ("efficientnetb0", 32)],
)
def test_the_urls_in_messages_are_the_ones_keras_fetches(name, size, keras_home, monkeypatch):
    """The error names the file and URL keras.applications itself asks keras.utils.get_file
    for (cache_subdir "models"), so an offline user copies the right file to the right place."""
    asked = {}

    def get_file(fname, origin, cache_subdir, **kw):
        asked.update(fname=fname, origin=origin, cache_subdir=cache_subdir)
        raise OSError("no network in tests")

    monkeypatch.setattr(file_utils, "get_file", get_file)
    shape = (size, size, 3)
    with pytest.raises(WeightsUnavailable, match="no network in tests"):
        load_backbone(name, shape, "imagenet")
    assert asked["origin"] == BACKBONES[name].imagenet_url(shape)
    assert (asked["cache_subdir"], asked["fname"]) == (
        "models",
        imagenet_weights_path(name, shape).name,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("model.backbone=vgg16", "model.backbone='vgg16' is not one of none, xception,"),
        ("model.weights=/nowhere/w.h5", "model.weights='/nowhere/w.h5' is not a file"),
    ],
)
def test_bad_backbone_or_weights_file_is_refused_before_tensorflow(override, fragment, tmp_path):
    proc = run_probe("model=unet", override, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2 and "TF_NOT_IMPORTED" in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cvtrain: error: {fragment}"), proc.stderr
