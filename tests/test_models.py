"""The chapter's segmentation model."""

from __future__ import annotations

import pytest
from conftest import make_config

from cvtrain.errors import ConfigError
from cvtrain.models import build_model


def test_seg_convnet_matches_the_books_parameter_count():
    model = build_model(make_config().model, (200, 200, 3), 3)
    assert model.count_params() == 2_880_643
    assert model.output_shape == (None, 200, 200, 3)
    assert model.layers[-1].dtype_policy.name == "float32"


@pytest.fixture
def mixed_float16():
    """The global policy training sets on a GPU, restored afterwards for the other tests."""
    import keras

    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


@pytest.mark.parametrize(
    ("overrides", "shape"),
    [
        (("model=seg_convnet", "model.width=0.25"), (32, 32, 3)),
        (("model=unet", "model.width=0.25"), (32, 32, 3)),
        (("task=classification", "model=mini_xception", "model.width=0.25"), (32, 32, 3)),
    ],
)
def test_mixed_float16_computes_in_float16_but_outputs_float32(mixed_float16, overrides, shape):
    """Softmax/sigmoid in float16 saturates and breaks the loss: the last layer stays float32."""
    import keras
    import numpy as np

    model = build_model(make_config(*overrides).model, shape, 3)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs[0].compute_dtype == "float16"
    assert model.layers[-1].compute_dtype == "float32"
    outputs = model(np.zeros((1, *shape), "float32"), training=False)
    assert keras.backend.standardize_dtype(outputs.dtype) == "float32"


def test_seg_convnet_width_and_stages_are_configurable():
    cfg = make_config("model.width=0.5", "model.filters=[16,32]").model
    model = build_model(cfg, (36, 48, 3), 5)
    assert model.output_shape == (None, 36, 48, 5)
    assert model.count_params() < 100_000


def test_model_width_multiplies_every_filter_count():
    import keras

    def filters(model, width):
        cfg = make_config(f"model={model}", f"model.width={width}").model
        layers = build_model(cfg, (32, 32, 3), 3).layers
        kinds = (keras.layers.Conv2D, keras.layers.Conv2DTranspose, keras.layers.SeparableConv2D)
        convs = [layer for layer in layers if isinstance(layer, kinds)]
        return [layer.filters for layer in convs[:-1]]  # the last conv is the classifier

    for model in ("seg_convnet", "unet"):
        full, half = filters(model, 1.0), filters(model, 0.5)
        assert len(full) >= 6 and half == [f // 2 for f in full], model


def test_seg_convnet_refuses_sizes_it_cannot_reconstruct():
    with pytest.raises(
        ConfigError, match=r"divisible by 8, got \[180, 180\]; use data.image_size=\[176,176\]"
    ):
        build_model(make_config().model, (180, 180, 3), 3)


def test_bn_momentum_reaches_every_batchnorm_nested_backbones_included():
    import keras

    def batchnorms(layer):
        found = [layer] if isinstance(layer, keras.layers.BatchNormalization) else []
        for child in getattr(layer, "layers", ()):
            found += batchnorms(child)
        return found

    cfg = make_config(
        "model=deeplabv3plus", "model.backbone=mobilenetv2", "model.bn_momentum=0.8"
    ).model
    model = build_model(cfg, (64, 64, 3), 3)
    momenta = {bn.momentum for bn in batchnorms(model)}
    assert momenta == {0.8}
    assert any(isinstance(layer, keras.Model) for layer in model.layers)  # a nested backbone


def test_an_unfrozen_backbone_keeps_its_fixed_preprocessing_frozen():
    from cvtrain.models.backbones import load_backbone

    backbone = load_backbone("resnet50", (32, 32, 3), "none", False)
    assert backbone.trainable
    assert not backbone.get_layer("rgb_to_bgr_minus_mean").trainable
