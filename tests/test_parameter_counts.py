"""The parameter counts the README prints for the segmentation models (3 classes)."""

from __future__ import annotations

import pytest
from conftest import make_config


def count(*overrides: str, size: int = 128) -> int:
    import keras

    from cvtrain.models import build_model

    keras.backend.clear_session()  # the backbones are large: keep one model at a time
    cfg = make_config("task=segmentation", *overrides)
    return build_model(cfg.model, (size, size, 3), 3).count_params()


def test_unet_has_the_readmes_parameter_count():
    assert count("model=unet") == 7_768_527


@pytest.mark.parametrize(
    ("backbone", "millions"),
    [("xception", 24.6), ("resnet50", 17.9), ("mobilenetv2", 6.5), ("efficientnetb0", 7.6)],
)
def test_deeplab_has_the_readmes_parameter_counts_at_128px(backbone, millions):
    params = count("model=deeplabv3plus", f"model.backbone={backbone}")
    assert round(params / 1e6, 1) == millions


@pytest.mark.parametrize(
    ("backbone", "params"),
    [("mobilenetv2", 6_997_219), ("resnet50", 30_572_911), ("efficientnetb0", 9_065_862)],
)
def test_unet_on_a_backbone_has_the_readmes_parameter_counts_at_128px(backbone, params):
    assert count("model=unet", f"model.backbone={backbone}") == params
