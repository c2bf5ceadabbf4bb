"""The typed schema of a run: every key, its type, its default and the range it must lie in.

Hydra composes plain YAML; `merge` puts the result into these dataclasses so that unknown keys,
wrong types and out-of-range values fail fast with one readable line. The schema knows no
registry: whether a name is a model, a source or a mode, and whether the parts fit each other,
is checked by cvtrain.config.checks, which reads the registries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cvtrain.config.suggest import did_you_mean
from cvtrain.errors import ConfigError
from cvtrain.paths import config_groups

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
CACHES = ("none", "memory", "disk")
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
LOOPS = ("fit", "custom")
EVAL_SPLITS = ("val", "train", "all", "test")
TRACKERS = ("none", "mlflow")


def check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={message}")


def choice(value: str, key: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        hint = did_you_mean(str(value), choices)
        message = f"{value!r} is not one of {', '.join(choices)}"
        raise ConfigError(f"{key}={message}; {hint}" if hint else f"{key}={message}")


AUTO = "auto"
Auto = Literal["auto"]  # a switch that is neither on nor off: the code decides (cores, device)


def _switch(value: bool | str, key: str) -> bool | Auto:
    """A `true | false | auto` setting as a bool or AUTO. Hydra and YAML read true/false as
    bools; quoted or capitalised spellings are accepted too."""
    if isinstance(value, bool):
        return value
    text = value.lower()
    choice(text, key, (AUTO, "true", "false"))
    return AUTO if text == AUTO else text == "true"


@dataclass
class TaskConfig:
    name: str = "segmentation"


@dataclass
class AugmentConfig:
    """Random transforms applied to the training split in tf.data (never inside the model)."""

    flip: bool = False
    rotation: float = 0.0
    zoom: float = 0.0
    translation: float = 0.0  # a shift of up to this fraction of the height and width

    def __post_init__(self) -> None:
        check(
            0 <= self.rotation <= 1, "data.augment.rotation", f"{self.rotation} must be in [0, 1]"
        )
        check(0 <= self.zoom < 1, "data.augment.zoom", f"{self.zoom} must be in [0, 1)")
        check(
            0 <= self.translation < 1,
            "data.augment.translation",
            f"{self.translation} must be in [0, 1)",
        )


@dataclass
class DataConfig:
    """What every data source has; each source adds its own keys (cvtrain/data/source_config.py)."""

    source: str = "oxford_pets"
    root: str | None = None
    download: bool = True  # a source with a known archive fetches a missing root
    image_size: list[int] = field(default_factory=lambda: [200, 200])
    batch_size: int = 64
    val_samples: int | None = 1000
    val_fraction: float | None = None
    split_seed: int = 1337
    limit: int | None = None
    cache: str = "none"
    deterministic: bool = True  # false: parallel reads may reorder elements (faster)
    # tf.data's autotuner: auto = on with more than 4 CPU cores. On 2 cores its threads compete
    # with training (epochs measured 1.5-2x slower); off, parallel maps still use every core.
    autotune: bool | str = AUTO  # bool | Auto once validated
    verify: bool = True  # decode every file before training (cached by dataset fingerprint)
    on_bad: str = "skip"  # skip | error: what to do with files the verification rejects
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        check(
            len(self.image_size) == 2 and min(self.image_size) >= 8,
            "data.image_size",
            f"{list(self.image_size)} must be [height, width] with both >= 8",
        )
        check(self.batch_size >= 1, "data.batch_size", f"{self.batch_size} must be >= 1")
        if self.val_samples is not None:
            check(self.val_samples >= 1, "data.val_samples", f"{self.val_samples} must be >= 1")
        if self.val_fraction is not None:
            check(
                0 < self.val_fraction < 1,
                "data.val_fraction",
                f"{self.val_fraction} must be between 0 and 1",
            )
        check(
            (self.val_samples is None) != (self.val_fraction is None),
            "data.val_samples",
            "set exactly one of data.val_samples and data.val_fraction (the other to null)",
        )
        if self.limit is not None:
            check(self.limit >= 2, "data.limit", f"{self.limit} must be >= 2")
        choice(self.cache, "data.cache", CACHES)
        self.autotune = _switch(self.autotune, "data.autotune")
        choice(self.on_bad, "data.on_bad", ("skip", "error"))


@dataclass
class ModelConfig:
    """What every model has; each model adds its own keys (cvtrain/models/model_config.py)."""

    name: str = "seg_convnet"
    # BatchNormalization's moving-average momentum (Keras's 0.99 by default). Short runs use
    # ~0.9: at 0.99 the statistics used for validation lag the weights for hundreds of steps.
    bn_momentum: float = 0.99

    def __post_init__(self) -> None:
        check(
            0 < self.bn_momentum < 1,
            "model.bn_momentum",
            f"{self.bn_momentum} must be between 0 and 1",
        )


@dataclass
class OptimizerConfig:
    name: str = "rmsprop"
    lr: float = 1e-3
    momentum: float = 0.0
    schedule: str = "constant"

    def __post_init__(self) -> None:
        check(math.isfinite(self.lr) and self.lr > 0, "optimizer.lr", f"{self.lr} must be > 0")


CLASS_WEIGHTS = ("none", "balanced")


@dataclass
class LossConfig:
    """`loss=`: the training loss (cvtrain/losses/__init__.py) and per-class weights for it."""

    name: str = "crossentropy"
    gamma: float = 2.0  # focal: how much well-classified pixels are discounted
    # none | balanced (from the training masks' pixel counts) | [w0, w1, ...] one per class
    class_weights: Any = "none"  # str | list[float] once validated

    def __post_init__(self) -> None:
        check(self.gamma >= 0, "loss.gamma", f"{self.gamma} must be >= 0")
        weights = "none" if self.class_weights is None else self.class_weights
        if isinstance(weights, str):
            self.class_weights = weights
            choice(weights, "loss.class_weights", CLASS_WEIGHTS)
            return
        check(
            isinstance(weights, list | tuple)
            and bool(weights)
            and all(isinstance(w, int | float) and not isinstance(w, bool) for w in weights)
            and min(weights) >= 0
            and max(weights) > 0,
            "loss.class_weights",
            f"{weights} must be none, balanced or [w0,w1,...]: one weight >= 0 per class, "
            "not all 0",
        )
        self.class_weights = [float(w) for w in weights]


@dataclass
class EarlyStoppingConfig:
    enabled: bool = False
    patience: int = 10
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        key = "trainer.early_stopping"
        check(self.patience >= 0, f"{key}.patience", f"{self.patience} must be >= 0")
        check(
            math.isfinite(self.min_delta) and self.min_delta >= 0,
            f"{key}.min_delta",
            f"{self.min_delta} must be >= 0",
        )


@dataclass
class TrainerConfig:
    epochs: int = 50
    precision: str = "auto"
    seed: int = 42
    deterministic: bool = False
    jit_compile: bool | str = AUTO  # bool | Auto once validated; auto: Keras decides
    steps_per_epoch: int | None = None
    steps_per_execution: int = 1
    strategy: str = "auto"
    loop: str = "fit"
    port: int = 8888  # workers of an srun step listen on port, port + 1, ... on each node
    prediction_images: int = 4
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)

    def __post_init__(self) -> None:
        check(self.epochs >= 1, "trainer.epochs", f"{self.epochs} must be >= 1")
        seeds = f"must be between 0 and {2**32 - 1}"
        check(0 <= self.seed < 2**32, "trainer.seed", f"{self.seed} {seeds}")
        choice(self.precision, "trainer.precision", PRECISIONS)
        self.jit_compile = _switch(self.jit_compile, "trainer.jit_compile")
        if self.steps_per_epoch is not None:
            check(
                self.steps_per_epoch >= 1,
                "trainer.steps_per_epoch",
                f"{self.steps_per_epoch} must be >= 1",
            )
        check(self.prediction_images >= 0, "trainer.prediction_images", "must be >= 0")
        check(
            self.steps_per_execution >= 1,
            "trainer.steps_per_execution",
            f"{self.steps_per_execution} must be >= 1",
        )
        choice(self.strategy, "trainer.strategy", STRATEGIES)
        choice(self.loop, "trainer.loop", LOOPS)
        check(1024 <= self.port <= 65000, "trainer.port", f"{self.port} must be in [1024, 65000]")
        check(
            not (self.strategy == "multi_worker" and self.loop == "fit"),
            "trainer.loop",
            "fit cannot run under trainer.strategy=multi_worker (Keras 3 fit() does not support "
            "MultiWorkerMirroredStrategy); use trainer.loop=custom",
        )


@dataclass
class TrackingConfig:
    """Experiment tracking besides TensorBoard (always on): none, or mlflow
    (cvtrain.tracking.mlflow_run).

    The default URI is a SQLite database in the current directory, MLflow's own default (its
    file store, file:./mlruns, is in maintenance mode: MLflow 3.17 opens it only with
    MLFLOW_ALLOW_FILE_STORE=true).
    """

    name: str = "none"
    uri: str = "sqlite:///mlflow.db"  # any MLflow tracking URI: http://host:5000, sqlite:///...
    experiment: str = "cvtrain"
    # Where a new experiment keeps its artefacts; null = MLflow's default (./mlruns for a
    # database URI, the server's own store for http). An existing experiment keeps its own.
    artifact_location: str | None = None

    def __post_init__(self) -> None:
        choice(self.name, "tracking.name", TRACKERS)
        check(bool(self.uri.strip()), "tracking.uri", "'' is empty; e.g. http://127.0.0.1:5000")
        check(bool(self.experiment.strip()), "tracking.experiment", "'' is empty")


@dataclass
class EvalConfig:
    """mode=evaluate: the split to measure and a class whose true pixels are not scored."""

    split: str = "val"
    ignore_class: str | None = None  # class name or id, e.g. border

    def __post_init__(self) -> None:
        choice(self.split, "eval.split", EVAL_SPLITS)


@dataclass
class PredictConfig:
    """mode=predict: mask value = class id + mask_offset (1 = Oxford trimap values 1/2/3)."""

    mask_offset: int = 1
    overlay_alpha: float = 0.5
    min_score: float = 0.3  # detection: boxes scoring less are left out of predictions.json

    def __post_init__(self) -> None:
        check(self.mask_offset >= 0, "predict.mask_offset", f"{self.mask_offset} must be >= 0")
        check(
            0 <= self.overlay_alpha <= 1,
            "predict.overlay_alpha",
            f"{self.overlay_alpha} must be in [0, 1]",
        )
        check(0 <= self.min_score <= 1, "predict.min_score", f"{self.min_score} must be in [0, 1]")


def _with_keyword_field(name: str, type_: Any, default: Any) -> Callable[[type], type]:
    """A dataclass with a field named like a Python keyword (`explain.class`). It cannot be an
    __init__ argument, so it is init=False (OmegaConf sets it after construction) and left out
    of repr and eq, whose generated code would name it; read it with getattr."""

    def make(cls: type) -> type:
        cls.__annotations__[name] = type_
        setattr(cls, name, field(default=default, init=False, repr=False, compare=False))
        return dataclass(cls)

    return make


@_with_keyword_field("class", str | None, None)
class ExplainConfig:
    """mode=explain (Grad-CAM): `explain.class` (name or id; default: the predicted class, or for
    segmentation the first class not named background) and `explain.layer`, the feature map
    (default: the last 4-D output before the classifier, inside a nested backbone too)."""

    layer: str | None = None

    @property
    def target_class(self) -> str | None:
        return getattr(self, "class")


@dataclass
class RunConfig:
    mode: str = "train"
    task: TaskConfig = field(default_factory=TaskConfig)
    # A DataConfig and a ModelConfig once merged: the class of the source's and of the model's
    # own settings (left untyped here so Hydra composes any source's or model's keys).
    data: Any = field(default_factory=dict)
    model: Any = field(default_factory=dict)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    run: Any = None  # evaluate/predict/export/explain: a run dir, or a list (an ensemble)
    input: str | None = None  # predict/explain: an image file, a folder or a glob
    output: str | None = None  # evaluate/predict/export/explain: where to write (default: run)
    format: str = "saved_model"  # export
    eval: EvalConfig = field(default_factory=EvalConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    path: str = "outputs"  # mode=runs: a run, a sweep or a folder of them to compare

    def __post_init__(self) -> None:
        self.run = run_dirs(self.run)


def run_dirs(run: Any) -> list[str]:
    """`run=dir` or `run=[dir1,dir2]` (an ensemble) as a list of paths."""
    runs = [] if run is None else [run] if isinstance(run, str) else list(run)
    check(all(isinstance(r, str) and r for r in runs), "run", f"{run!r} must be run dirs")
    return runs


# The parts whose keys depend on their kind: part -> (the key naming the kind, the keys of all)
KINDS: dict[str, tuple[str, type]] = {
    "data": ("source", DataConfig),
    "model": ("name", ModelConfig),
}
Settings = Mapping[str, Callable[[str], type]]  # part -> (kind -> its settings class)


def merge(
    cfg: DictConfig | dict[str, Any], settings: Settings, *, own_keys_only: bool = False
) -> RunConfig:
    """A composed config in the schema (keys, types, ranges), with `data` and `model` in the
    settings class of their source and model; ConfigError with one readable line.
    `own_keys_only` drops the keys another kind reads (the configs of runs written when every
    source and model shared one flat class). cvtrain.config.checks adds what needs the
    registries, and knows `settings`."""
    try:
        # Plain containers first: a key added with `+` must not slip past the schema.
        plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
        plain = dict(plain)
        parts = {part: plain.pop(part, None) or {} for part in KINDS}
        run = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RunConfig), plain))
    except OmegaConfBaseException as exc:
        raise ConfigError(describe_omegaconf_error(exc)) from None
    for part, (kind, _) in KINDS.items():
        cls = settings[part](parts[part].get(kind))
        setattr(run, part, typed(cls, parts[part], part, own_keys_only))
    return run  # type: ignore[return-value]


def typed(cls: type, values: dict[str, Any], part: str, own_keys_only: bool) -> Any:
    """`values` as an instance of the dataclass `cls` (every __post_init__ runs)."""
    if own_keys_only:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), values))
    except OmegaConfBaseException as exc:
        raise ConfigError(describe_omegaconf_error(exc, prefix=f"{part}.")) from None


def hydra_schema() -> DictConfig:
    """The schema Hydra composes into (ConfigStore's `schema`): typed everywhere but in `data`
    and `model`, which hold the keys of every kind (`cvtrain --cfg job` shows them) and are
    open to more, since which keys exist depends on the source and the model; merge checks
    them (a misspelt one gets the same one-line error)."""
    schema = OmegaConf.structured(RunConfig)
    for part, (_, common) in KINDS.items():
        schema[part] = OmegaConf.create(OmegaConf.to_container(OmegaConf.structured(common)))
        OmegaConf.set_struct(schema[part], False)
    return schema


def describe_omegaconf_error(exc: OmegaConfBaseException, prefix: str = "") -> str:
    """OmegaConf messages span several lines (full_key, object_type...); keep the useful one.
    `prefix`: where the failing node sits in the whole config (`model.`)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    key = getattr(exc, "full_key", None)
    key = f"{prefix}{key}" if key else key
    if "not in" in first and key:
        return f"unknown key '{key}'; {_nearest_keys(key, exc)}"
    if key:
        return f"{key}: {first}"
    return first


def _nearest_keys(key: str, exc: OmegaConfBaseException) -> str:
    """The valid keys next to a misspelt one (a top-level key may be a group: `modle=unet`)."""
    parent, _, name = key.rpartition(".")
    node = getattr(exc, "parent_node", None)
    names = list(node.keys()) if isinstance(node, DictConfig) else []
    if parent:
        hint = did_you_mean(name, names, prefix=f"{parent}.")
    else:
        hint = did_you_mean(name, [*names, *config_groups()])
    if hint:
        return f"{hint} (every key: `cvtrain --cfg job`)"
    return "check the spelling or see `cvtrain --cfg job`"


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Plain containers for JSON artefacts and hparams."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
