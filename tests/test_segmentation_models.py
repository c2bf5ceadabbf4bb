"""U-Net, DeepLabV3+ and keras.applications backbones: shapes, parameters, weights, training."""

from __future__ import annotations

import re
from dataclasses import replace

import keras
import numpy as np
import pytest
from conftest import make_config, run_cli, tiny_segmentation
from helpers import train_in_process

from cvtrain.errors import ConfigError
from cvtrain.models import build_model
from cvtrain.models.backbone_specs import BACKBONES
from cvtrain.models.backbones import BACKBONES as BACKBONE_SPECS
from cvtrain.models.backbones import load_backbone
from cvtrain.models.model_config import DeepLabV3Plus, UNet


def unet_params(filters: list[int], channels: int, classes: int) -> int:
    """A plain U-Net's parameters counted by hand: BN-ReLU-Conv3x3 units, 2x2 transposed convs."""

    def block(cin: int, f: int) -> int:  # two units; BN holds 4 values per input channel
        return 4 * cin + 9 * cin * f + 4 * f + 9 * f * f

    total, cin = 0, channels
    for f in filters:
        total, cin = total + block(cin, f), f
    total, cin = total + block(cin, 2 * cin), 2 * cin
    for f in reversed(filters):
        total, cin = total + 4 * cin * f + block(2 * f, f), f
    return total + 4 * cin + cin * classes + classes


@pytest.mark.parametrize("size", [(32, 32), (36, 20)])  # 36x20 is not divisible by 2^3
def test_unet_output_matches_input_and_parameters_match_hand_count(size):
    model = build_model(UNet(filters=[4, 8, 16]), (*size, 3), 3)
    assert model.output.shape == (None, *size, 3)
    assert model.count_params() == unet_params([4, 8, 16], 3, 3)
    probs = model.predict(np.zeros((1, *size, 3), "float32"), verbose=0)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_unet_variants_keep_shapes_and_change_parameters():
    counts = {}
    for separable in (False, True):
        for residual in (False, True):
            cfg = UNet(filters=[8, 16], separable=separable, residual=residual)
            for size in [(32, 32), (30, 45)]:
                model = build_model(cfg, (*size, 3), 2)
                assert model.output.shape == (None, *size, 2)
            counts[separable, residual] = model.count_params()
    assert counts[True, False] < counts[False, False]  # separable convs are cheaper
    assert counts[False, True] > counts[False, False]  # residual 1x1 projections add weights
    assert counts[True, True] > counts[True, False]
    assert any(isinstance(layer, keras.layers.Add) for layer in model.layers)


def test_unet_too_small_for_its_depth_is_a_config_error():
    with pytest.raises(ConfigError, match=r"at least \[16,16\].*fewer model.filters"):
        build_model(UNet(filters=[4, 8, 16, 32]), (12, 40, 3), 3)


@pytest.mark.parametrize("backbone", ["mobilenetv2", "resnet50", "efficientnetb0"])
def test_unet_on_each_backbone_returns_input_sized_masks(backbone):
    """The skips come from strides 2, 4, 8, 16 (stride 32 is the bottleneck) and the decoder
    returns to the input size: 45x40 rounds up at every stride and is cropped back."""
    cfg = UNet(backbone=backbone, filters=[4, 8, 8, 16], dropout=0.1)
    model = build_model(cfg, (45, 40, 3), 3)
    assert model.output.shape == (None, 45, 40, 3)
    strides = [tuple(t.shape[1:3]) for t in model.get_layer("backbone").outputs]
    assert strides == [(-(-45 // s), -(-40 // s)) for s in (2, 4, 8, 16, 32)]
    images = np.random.default_rng(0).uniform(0, 255, (2, 45, 40, 3)).astype("float32")
    np.testing.assert_allclose(np.sum(model(images, training=False), -1), 1.0, rtol=1e-5)


def test_unet_frozen_backbone_trains_the_decoder_only_with_inference_batchnorm():
    cfg = UNet(backbone="mobilenetv2", filters=[4, 8, 8, 16])
    model = build_model(cfg, (32, 32, 3), 2)
    frozen = build_model(replace(cfg, freeze_backbone=True), (32, 32, 3), 2)
    backbone = frozen.get_layer("backbone")
    assert not backbone.trainable_weights and frozen.trainable_weights
    decoder = model.count_params() - model.get_layer("backbone").count_params()
    assert sum(int(np.prod(w.shape)) for w in frozen.trainable_weights) < decoder  # decoder BN
    for layer in backbone._flatten_layers():  # moving statistics unlike any batch's
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(layer.moving_mean + 0.5)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    for a, b in zip(backbone(images, training=True), backbone(images, training=False)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(frozen(images), frozen(images, training=False), atol=1e-6)


@pytest.mark.parametrize("size", [(64, 64), (72, 88)])  # 72x88 is not divisible by 32
def test_deeplab_mobilenetv2_resizes_to_any_input(size):
    cfg = DeepLabV3Plus(backbone="mobilenetv2", filters=[16, 8], width=1.0)
    model = build_model(cfg, (*size, 3), 3)
    assert model.output.shape == (None, *size, 3)
    backbone = model.get_layer("backbone")
    # Head = ASPP (1x1, three atrous 3x3, pooling, fusion) + decoder; the backbone stops at
    # block 13's expansion, so it holds fewer weights than the full MobileNetV2.
    full = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(*size, 3))
    assert 0 < backbone.count_params() < full.count_params()
    assert [t.shape[1:3] for t in backbone.outputs] == [
        (-(-size[0] // 4), -(-size[1] // 4)),
        (-(-size[0] // 16), -(-size[1] // 16)),
    ]
    assert model.count_params() == build_model(cfg, (96, 96, 3), 3).count_params()


@pytest.mark.parametrize("name", ["resnet50", "xception", "efficientnetb0"])
def test_deeplab_other_backbones_build_at_their_smallest_size(name):
    size = BACKBONE_SPECS[name].min_size
    cfg = DeepLabV3Plus(backbone=name, filters=[8, 8], atrous_rates=[1, 2])
    model = build_model(cfg, (size, size, 3), 2)
    assert model.output.shape == (None, size, size, 2)
    if name == "resnet50":  # caffe preprocessing: RGB->BGR minus the ImageNet mean, frozen
        conv = model.get_layer("backbone").get_layer("rgb_to_bgr_minus_mean")
        pixel = conv(np.array([[[[200.0, 100.0, 50.0]]]], "float32")).numpy().ravel()
        np.testing.assert_allclose(pixel, [50 - 103.939, 100 - 116.779, 200 - 123.68], rtol=1e-5)
        assert not conv.trainable


def test_backbone_errors_are_one_clear_line():
    with pytest.raises(ConfigError, match=r"at least \[71,71\]"):
        load_backbone("xception", (64, 64, 3))
    with pytest.raises(ConfigError, match=r"\[aspp_channels,low_level_channels\]"):
        build_model(DeepLabV3Plus(filters=[8, 8, 8]), (64, 64, 3), 2)


def test_config_validates_backbone_weights_and_rates_before_tensorflow(tmp_path, monkeypatch):
    assert set(BACKBONES) == set(BACKBONE_SPECS)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty cache: the run downloads
    cfg = make_config("model=unet", "model.backbone=mobilenetv2", "model.weights=imagenet")
    assert (cfg.model.backbone, cfg.model.weights) == ("mobilenetv2", "imagenet")
    with pytest.raises(ConfigError, match="model.backbone='vgg16' is not one of"):
        make_config("model=deeplabv3plus", "model.backbone=vgg16")
    with pytest.raises(ConfigError, match="is not a file; use none, imagenet"):
        make_config("model=deeplabv3plus", f"model.weights={tmp_path / 'missing.h5'}")
    with pytest.raises(ConfigError, match="model.atrous_rates"):
        make_config("model=deeplabv3plus", "model.atrous_rates=[0,6]")
    cfg = make_config("model=unet", "model.residual=true").model
    assert (cfg.name, cfg.filters, cfg.residual) == ("unet", [32, 64, 128, 256], True)
    assert (cfg.backbone, cfg.weights, cfg.freeze_backbone) == ("none", "none", False)


def test_backbone_loads_a_local_weights_file(tmp_path):
    keras.utils.set_random_seed(1)
    source = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    path = tmp_path / "mobilenetv2.weights.h5"
    source.save_weights(path)
    keras.utils.set_random_seed(2)
    loaded = load_backbone("mobilenetv2", (32, 32, 3), weights=str(path), features=("stride16",))
    layer = "block_13_expand"
    got = loaded.get_layer("mobilenetv2_features").get_layer(layer).get_weights()[0]
    np.testing.assert_array_equal(got, source.get_layer(layer).get_weights()[0])


@pytest.mark.slow
def test_frozen_backbone_is_unchanged_after_an_epoch_while_the_head_learns(frozen_deeplab_run):
    from cvtrain import rundir
    from cvtrain.training.trainer import setup_runtime

    run_dir, overrides = frozen_deeplab_run  # conftest's: also the model matrix's run
    cfg = make_config(*overrides)
    assert cfg.model.freeze_backbone and cfg.trainer.epochs == 1
    trained = keras.models.load_model(run_dir / "checkpoints" / "best.keras")
    setup_runtime(cfg.trainer)  # the same seed gives the same initial weights
    initial = build_model(cfg.model, (32, 32, 3), 3)
    before = initial.get_layer("backbone")
    after = trained.get_layer("backbone")
    assert not after.trainable and before.non_trainable_weights  # BN moving statistics included
    for b, a in zip(before.weights, after.weights, strict=True):
        np.testing.assert_array_equal(b.numpy(), a.numpy(), err_msg=b.path)
    head_before = initial.get_layer("logits").get_weights()[0]
    assert not np.array_equal(head_before, trained.get_layer("logits").get_weights()[0])
    assert np.isfinite(rundir.read_json(run_dir / rundir.METRICS)["best_val_loss"])


@pytest.mark.slow
def test_unet_on_mobilenetv2_trains_and_reloads(pets_root, tmp_path):
    result, cfg, _ = train_in_process(
        pets_root,
        tmp_path,
        "model=unet",
        "model.backbone=mobilenetv2",
        "data.limit=16",  # 8 + 8 of the shared 40 (data.num_samples=16 would regenerate them)
        "trainer.epochs=1",
        "trainer.prediction_images=0",
    )
    assert np.isfinite(result.best_val_loss)
    model = keras.models.load_model(tmp_path / "checkpoints" / "best.keras")
    assert model.name == "unet" and model.get_layer("backbone").trainable
    assert model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0).shape == (1, 32, 32, 3)


@pytest.mark.slow
def test_cli_reports_unreachable_imagenet_weights_in_one_line(pets_root, tmp_path, monkeypatch):
    """The run tries Keras' download (through a proxy that refuses: no internet in tests) and
    stops with one line saying where the file goes."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for var in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    proc = run_cli(
        *tiny_segmentation(pets_root, "model=deeplabv3plus", "model.backbone=mobilenetv2"),
        "model.weights=imagenet",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("cvtrain: error:")]
    assert len(lines) == 1, proc.stderr[-2000:]
    cached = tmp_path / "keras" / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels"
    assert f"to {cached}_1.0_224_no_top.h5, or set model.weights=none" in lines[0]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["model=deeplabv3plus", "data.image_size=[64,64]"], "at least [71,71], got [64, 64]"),
        (
            ["task=classification", "model=xception", "data.image_size=[64,64]"],
            "model.backbone=xception needs data.image_size of at least [71,71], got [64, 64]",
        ),
        (["model=deeplabv3plus", "model.filters=[8,8,8]"], "model.filters=[aspp_channels,"),
        (["model=unet", "data.image_size=[8,8]"], "at least [16,16], got [8, 8]"),
        (["model=unet", "task=classification"], "task=classification needs one of"),
        (
            ["model=unet", "model.backbone=xception"],
            "model=unet takes model.backbone=none or one of resnet50, mobilenetv2, efficientnetb0",
        ),
        (
            ["model=unet", "model.backbone=resnet50", "model.filters=[8,16]"],
            "model=unet with model.backbone=resnet50 takes 4 model.filters",
        ),
        (
            ["model=unet", "model.backbone=efficientnetb0", "data.image_size=[24,64]"],
            "model.backbone=efficientnetb0 needs data.image_size of at least [32,32]",
        ),
        (["model=deeplabv3plus", "model.backbone=none"], "model.backbone='none' is not one of"),
        (
            ["model=unet", "model.weights=imagenet"],
            "model.weights and model.freeze_backbone need a model.backbone for model=unet",
        ),
    ],
)
def test_model_constraints_are_config_errors_before_any_model_is_built(overrides, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        make_config(*overrides)


def test_deeplab_called_plainly_runs_in_inference_mode():
    """No layer may turn BatchNormalization to training mode behind the caller's back (Keras
    3.15's Resizing layer did: keras-team/keras#23166; this model showed it at once)."""
    cfg = DeepLabV3Plus(backbone="resnet50", filters=[16, 8])
    model = build_model(cfg, (32, 32, 3), 3)
    for layer in model._flatten_layers():  # moving statistics unlike any batch's
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(layer.moving_mean + 0.5)
            layer.moving_variance.assign(layer.moving_variance * 3.0)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    inference = model(images, training=False)
    np.testing.assert_allclose(model(images), inference, atol=1e-6)
    assert not np.allclose(model(images, training=True), inference, atol=1e-3)  # BN matters
