"""The config contract: task defaults, overrides, and validation before TensorFlow loads."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
from conftest import make_config

from cvtrain.cli.validate import validate
from cvtrain.errors import ConfigError
from cvtrain.modes import MODES


def test_segmentation_task_selects_the_chapter_setup():
    cfg = make_config("task=segmentation")
    assert cfg.task.name == "segmentation"
    assert cfg.data.source == "oxford_pets"
    assert cfg.model.name == "seg_convnet"
    assert cfg.optimizer.name == "rmsprop"
    assert cfg.data.val_samples == 1000 and cfg.data.split_seed == 1337
    assert cfg.data.image_size == [200, 200]


def test_command_line_groups_override_the_task_defaults():
    cfg = make_config("task=segmentation", "data=synthetic_pets", "optimizer=adam")
    assert cfg.data.source == "synthetic_pets"
    assert cfg.optimizer.name == "adam"


def test_demo_experiment_trains_offline():
    cfg = make_config("experiment=demo_segmentation")
    assert cfg.data.source == "synthetic_pets"
    assert cfg.trainer.epochs >= 5


def test_demo_classification_is_mini_xception_on_generated_shapes():
    cfg = make_config("experiment=demo_classification")
    assert cfg.task.name == "classification"
    assert cfg.data.source == "synthetic_shapes" and cfg.model.name == "mini_xception"


def test_detection_task_and_demo_compose():
    cfg = make_config("task=detection")
    assert (cfg.data.source, cfg.model.name, cfg.loss.name) == (
        "oxford_pets_heads",
        "retinanet",
        "retinanet",
    )
    assert make_config("task=segmentation").loss.name == "crossentropy"  # each task its own
    demo = make_config("experiment=demo_detection")
    assert (demo.task.name, demo.data.source) == ("detection", "synthetic_boxes")


def test_small_data_detection_recipe_is_the_measured_one_on_any_data():
    cfg = make_config("experiment=small_data_detection", "data=detection_folder", "data.root=x")
    assert (cfg.task.name, cfg.data.source, cfg.model.name) == (
        "detection",
        "detection_folder",
        "retinanet",
    )
    assert cfg.data.image_size == [224, 224] and cfg.model.bn_momentum == 0.9
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.schedule) == (
        "adam",
        2e-3,
        "cosine",
    )
    assert cfg.trainer.epochs == 100 and cfg.model.width == 1.0
    augment = cfg.data.augment
    assert (augment.flip, augment.zoom, augment.translation, augment.rotation) == (
        True,
        0.2,
        0.15,
        0,
    )


def test_small_data_recipe_is_the_measured_one_on_any_data():
    """The settings README's table measured; the data source stays the user's choice."""
    cfg = make_config("experiment=small_data_segmentation", "data=mask_folder", "data.root=x")
    assert cfg.data.source == "mask_folder" and cfg.data.image_size == [128, 128]
    assert (cfg.model.name, cfg.model.filters, cfg.model.bn_momentum) == (
        "unet",
        [16, 32, 64, 128],
        0.9,
    )
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.schedule) == (
        "adam",
        2e-3,
        "cosine",
    )
    assert cfg.loss.name == "crossentropy_dice" and cfg.trainer.epochs == 40
    augment = cfg.data.augment
    assert (augment.flip, augment.zoom, augment.rotation) == (True, 0.1, 0.05)
    assert (cfg.data.batch_size, cfg.data.val_samples, cfg.data.val_fraction) == (16, None, 0.15)


def test_book_presets_are_the_chapters_settings():
    seg = make_config("experiment=book_segmentation")
    assert (seg.data.source, seg.model.name, seg.optimizer.name) == (
        "oxford_pets",
        "seg_convnet",
        "rmsprop",
    )
    assert seg.data.image_size == [200, 200] and seg.data.batch_size == 64
    assert (seg.data.split_seed, seg.data.val_samples) == (1337, 1000)
    assert (seg.model.filters, seg.model.width) == ([64, 128, 256], 1.0)  # 2,880,643 parameters
    assert (seg.optimizer.lr, seg.trainer.epochs) == (1e-3, 50)

    cls = make_config("experiment=book_classification")
    assert (cls.data.source, cls.model.name, cls.optimizer.name) == (
        "cats_vs_dogs",
        "mini_xception",
        "rmsprop",
    )
    assert cls.data.image_size == [180, 180] and cls.data.batch_size == 32
    assert (cls.data.augment.flip, cls.data.augment.rotation, cls.data.augment.zoom) == (
        True,
        0.1,
        0.2,
    )
    assert (cls.model.dropout, cls.optimizer.lr, cls.trainer.epochs) == (0.5, 1e-3, 100)


@pytest.mark.parametrize(
    ("overrides", "on"),
    [
        (["task=classification"], True),  # cats_vs_dogs
        (["task=classification", "data=oxford_pets_species"], True),
        (["task=classification", "data=oxford_pets_breeds"], True),
        (["task=classification", "data=image_folder"], True),
        (["task=classification", "data=synthetic_shapes"], False),
        (["task=segmentation", "data=synthetic_pets"], False),
    ],
)
def test_augmentation_is_on_by_default_for_real_photos_only(overrides, on):
    augment = make_config(*overrides).data.augment
    expected = (True, 0.1, 0.2) if on else (False, 0.0, 0.0)
    assert (augment.flip, augment.rotation, augment.zoom) == expected


def test_documented_defaults():
    cfg = make_config()
    assert cfg.model.bn_momentum == 0.99  # Keras's default
    assert cfg.trainer.port == 8888  # SLURM: task i listens on trainer.port + i
    assert make_config("mode=runs").path == "outputs"


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("trainer.epochs=0", "trainer.epochs=0 must be >= 1"),
        ("data.batch_size=0", "data.batch_size=0 must be >= 1"),
        ("data.image_size=[4,64]", "data.image_size=[4, 64]"),
        ("data.val_samples=-5", "data.val_samples=-5 must be >= 1"),
        ("trainer.precision=fp8", "trainer.precision='fp8' is not one of"),
        ("optimizer.lr=0", "optimizer.lr=0.0 must be > 0"),
        ("optimizer.lr=inf", "optimizer.lr=inf must be > 0"),
        ("trainer.early_stopping.patience=-1", "trainer.early_stopping.patience=-1 must be >= 0"),
        ("trainer.early_stopping.min_delta=nan", "trainer.early_stopping.min_delta=nan must be"),
        ("trainer.seed=-1", "trainer.seed=-1 must be between 0 and 4294967295"),
    ],
)
def test_out_of_range_values_name_the_key(override, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        make_config(override)


@pytest.mark.parametrize(
    ("value", "typed"),
    [("true", True), ("false", False), ("auto", "auto"), ("'True'", True), ("AUTO", "auto")],
)
def test_true_false_auto_settings_are_bools_or_auto(value, typed):
    cfg = make_config(f"trainer.jit_compile={value}", f"data.autotune={value}")
    for setting in (cfg.trainer.jit_compile, cfg.data.autotune):
        assert (type(setting), setting) == (type(typed), typed)
    with pytest.raises(ConfigError, match="trainer.jit_compile='maybe' is not one of auto"):
        make_config("trainer.jit_compile=maybe")


def test_unknown_key_is_rejected_even_when_forced_with_plus():
    with pytest.raises(ConfigError, match="unknown key 'trainer.foo'"):
        validate({"trainer": {"foo": 1}})


def test_each_model_and_data_source_takes_its_own_keys_only():
    """model.* and data.* are typed by the chosen model and source: a key another one reads is
    an unknown key (with the nearest of this one's keys), not a setting silently ignored."""
    detector = make_config("task=detection", "model.fpn_channels=32", "data.max_boxes=5")
    assert (type(detector.model).__name__, detector.model.fpn_channels) == ("RetinaNet", 32)
    assert (type(detector.data).__name__, detector.data.max_boxes) == ("BoxData", 5)
    assert make_config("data.mask_offset=0").data.mask_offset == 0  # every mask source maps
    for overrides, line in [
        (["model.fpn_channels=32"], "unknown key 'model.fpn_channels'"),
        (["task=detection", "model.fpn_chanels=32"], "did you mean model.fpn_channels?"),
        (["data=mask_folder", "data.num_samples=3"], "unknown key 'data.num_samples'"),
        (["task=detection", "data.mask_offset=0"], "unknown key 'data.mask_offset'"),
        (["data.verfy=false"], "unknown key 'data.verfy'; did you mean data.verify?"),
        (["model.name=unett"], "did you mean unet?"),
        (["data.source=oxford_pet"], "data.source='oxford_pet' is not one of"),
        (["model=unet", "model.width=wide"], "model.width: Value 'wide'"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(line)):
            make_config(*overrides)


def test_every_model_and_source_config_holds_exactly_its_own_keys():
    """configs/model/<name>.yaml lists every key its model's settings class has (so `cvtrain
    --cfg job` shows them all), and a data preset only keys its source reads."""
    from omegaconf import OmegaConf

    from cvtrain.config.schema import DataConfig
    from cvtrain.data.sources import config_of_source
    from cvtrain.models import MODELS, config_of_model
    from cvtrain.paths import config_dir

    common = {f.name for f in fields(DataConfig)}
    for name in MODELS:
        keys = set(OmegaConf.load(f"{config_dir()}/model/{name}.yaml"))
        assert keys | {"bn_momentum"} == {f.name for f in fields(config_of_model(name))}, name
    for preset in sorted(Path(config_dir(), "data").glob("*.yaml")):
        keys = set(OmegaConf.load(preset))
        own = {f.name for f in fields(config_of_source(OmegaConf.load(preset).source))}
        assert keys <= own and own - common <= keys, preset.name


def test_every_mode_the_schema_accepts_is_wired_in_the_cli():
    import inspect

    from cvtrain.cli.main import MODES as CLI_MODES

    assert set(MODES) == set(CLI_MODES)
    for name, mode in MODES.items():  # one signature for every mode
        assert list(inspect.signature(mode.function()).parameters) == [
            "cfg",
            "overrides",
            "run_dir",
        ], name


def test_small_data_classification_recipe_is_the_measured_one_on_any_data():
    """README's table: the chapter's model with BN momentum 0.9, Adam 1e-3 cosine, 30 epochs."""
    cfg = make_config("experiment=small_data_classification", "data=image_folder", "data.root=x")
    assert cfg.task.name == "classification" and cfg.data.source == "image_folder"
    assert (cfg.model.name, cfg.model.bn_momentum, cfg.model.dropout) == ("mini_xception", 0.9, 0.5)
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.schedule) == (
        "adam",
        1e-3,
        "cosine",
    )
    assert (cfg.data.image_size, cfg.data.batch_size, cfg.trainer.epochs) == ([128, 128], 32, 30)
    augment = cfg.data.augment
    assert (augment.flip, augment.rotation, augment.zoom) == (True, 0.1, 0.2)
