"""The config contract: task defaults, overrides, and validation before TensorFlow loads."""

from __future__ import annotations

import pytest
from conftest import make_config

from cvtrain.config import validate
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


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("trainer.epochs=0", "trainer.epochs=0 must be >= 1"),
        ("data.batch_size=0", "data.batch_size=0 must be >= 1"),
        ("data.image_size=[4,64]", "data.image_size=[4, 64]"),
        ("data.val_samples=-5", "data.val_samples=-5 must be >= 1"),
        ("trainer.precision=fp8", "trainer.precision='fp8' is not one of"),
        ("optimizer.lr=0", "optimizer.lr=0.0 must be > 0"),
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


def test_every_mode_the_schema_accepts_is_wired_in_the_cli():
    import inspect

    from cvtrain.cli import MODES as CLI_MODES

    assert set(MODES) == set(CLI_MODES)
    for name, mode in MODES.items():  # one signature for every mode
        assert list(inspect.signature(mode.function()).parameters) == [
            "cfg",
            "overrides",
            "run_dir",
        ], name
