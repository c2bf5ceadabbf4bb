"""A keras.applications backbone (Xception by default) with the chapter's classifier head.

`model.freeze_backbone=true` is the chapter's feature extraction / first fine-tuning phase: only
the head trains, and the frozen BatchNormalization layers run in inference mode.
"""

from __future__ import annotations

import keras
from keras import layers

from cvtrain.models.backbones import load_backbone
from cvtrain.models.blocks import classifier_head
from cvtrain.models.model_config import BackboneClassifier


def build(
    cfg: BackboneClassifier, input_shape: tuple[int, int, int], num_classes: int
) -> keras.Model:
    backbone = load_backbone(cfg.backbone, input_shape, cfg.weights, cfg.freeze_backbone)
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.GlobalAveragePooling2D()(backbone(inputs))
    outputs = classifier_head(x, num_classes, cfg.dropout)
    return keras.Model(inputs, outputs, name=f"{cfg.backbone}_classifier")
