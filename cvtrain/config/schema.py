"""The typed schema of a run: every key, its type, its default and the range it must lie in.

Hydra composes plain YAML; `merge` puts the result into these dataclasses so that unknown keys,
wrong types and out-of-range values fail fast with one readable line. The schema knows no
registry: whether a name is a model, a source or a mode, and whether the parts fit each other,
is checked by cvtrain.config.checks, which reads the registries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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
BOX_FORMATS = ("voc", "yolo", "coco")  # detection_folder's label files
MAX_MASK_VALUE = 255  # masks are read as 8-bit values (palette PNGs as their indices)


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
    source: str = "oxford_pets"
    root: str | None = None
    download: bool = True  # a source with a known archive fetches a missing root
    image_size: list[int] = field(default_factory=lambda: [200, 200])
    batch_size: int = 64
    val_samples: int | None = 1000
    val_fraction: float | None = None
    split_seed: int = 1337
    limit: int | None = None
    num_samples: int | None = None
    num_classes: int | None = None  # synthetic_shapes: how many shape classes (2-4)
    cache: str = "none"
    deterministic: bool = True  # false: parallel reads may reorder elements (faster)
    # tf.data's autotuner: auto = on with more than 4 CPU cores. On 2 cores its threads compete
    # with training (epochs measured 1.5-2x slower); off, parallel maps still use every core.
    autotune: bool | str = AUTO  # bool | Auto once validated
    verify: bool = True  # decode every file before training (cached by dataset fingerprint)
    on_bad: str = "skip"  # skip | error: what to do with files the verification rejects
    # Segmentation masks (mask_folder and its presets; null = the source's own): class names in
    # id order, the stored mask value of each class, and a stored value left out of the loss and
    # every metric. mask_offset=k is short for mask_values=[k, k+1, ...].
    classes: list[str] | None = None
    mask_values: list[int] | None = None
    mask_offset: int | None = None
    ignore_index: int | None = None
    images_dir: str = "images"  # mask_folder: <root>/<images_dir>/* paired by file stem with
    masks_dir: str = "masks"  # <root>/<masks_dir>/*.png; optional <root>/<splits_dir>/
    splits_dir: str = "splits"  # {train,val,test}.txt (one stem a line) give the split
    format: str = "voc"  # detection_folder: voc | yolo | coco (cvtrain.data.detection_folder)
    max_boxes: int = 50  # detection: boxes per image the pipeline keeps (padded to this count)
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
        if self.num_samples is not None:
            check(self.num_samples >= 2, "data.num_samples", f"{self.num_samples} must be >= 2")
        if self.num_classes is not None:
            check(self.num_classes >= 2, "data.num_classes", f"{self.num_classes} must be >= 2")
        choice(self.cache, "data.cache", CACHES)
        self.autotune = _switch(self.autotune, "data.autotune")
        choice(self.on_bad, "data.on_bad", ("skip", "error"))
        choice(self.format, "data.format", BOX_FORMATS)
        check(self.max_boxes >= 1, "data.max_boxes", f"{self.max_boxes} must be >= 1")
        self._check_mask_mapping()

    def _check_mask_mapping(self) -> None:
        if self.classes is not None:
            check(
                len(self.classes) >= 2 and len(set(self.classes)) == len(self.classes),
                "data.classes",
                f"{list(self.classes)} needs at least two distinct names",
            )
        stored = f"must be stored mask values 0..{MAX_MASK_VALUE} (8-bit PNG)"
        if self.mask_values is not None:
            values = list(self.mask_values)
            check(
                len(set(values)) == len(values) and all(0 <= v <= MAX_MASK_VALUE for v in values),
                "data.mask_values",
                f"{values} {stored}, each once",
            )
            check(
                self.mask_offset is None,
                "data.mask_offset",
                f"{self.mask_offset} and data.mask_values both map mask values; set one of them",
            )
            check(
                self.classes is None or len(self.classes) == len(values),
                "data.mask_values",
                f"{values} needs one value per class: data.classes has {len(self.classes or ())}",
            )
            check(
                self.ignore_index not in values,
                "data.ignore_index",
                f"{self.ignore_index} is also in data.mask_values={values}",
            )
        if self.mask_offset is not None:
            check(self.mask_offset >= 0, "data.mask_offset", f"{self.mask_offset} must be >= 0")
        if self.ignore_index is not None:
            check(
                0 <= self.ignore_index <= MAX_MASK_VALUE,
                "data.ignore_index",
                f"{self.ignore_index} {stored}",
            )


@dataclass
class ModelConfig:
    name: str = "seg_convnet"
    filters: list[int] = field(default_factory=lambda: [64, 128, 256])
    width: float = 1.0
    dropout: float = 0.0
    backbone: str = "none"  # keras.applications name: deeplabv3plus/xception need one, unet may
    weights: str = "none"  # none | imagenet (downloaded into Keras' cache) | a local file
    freeze_backbone: bool = False
    separable: bool = False  # unet/deeplabv3plus: SeparableConv2D instead of Conv2D
    residual: bool = False  # unet: residual connections inside each stage
    atrous_rates: list[int] = field(default_factory=lambda: [6, 12, 18])  # deeplabv3plus ASPP
    # BatchNormalization's moving-average momentum (Keras's 0.99 by default). Short runs use
    # ~0.9: at 0.99 the statistics used for validation lag the weights for hundreds of steps.
    bn_momentum: float = 0.99
    fpn_channels: int = 64  # retinanet: channels of every pyramid level and of its heads
    head_convs: int = 2  # retinanet: 3x3 convolutions in each head before its output

    def __post_init__(self) -> None:
        check(len(self.filters) >= 1, "model.filters", "needs at least one stage")
        check(min(self.filters) >= 1, "model.filters", f"{list(self.filters)} must be >= 1")
        check(self.width > 0, "model.width", f"{self.width} must be > 0")
        check(0 <= self.dropout < 1, "model.dropout", f"{self.dropout} must be in [0, 1)")
        check(
            self.weights in ("none", "imagenet") or Path(self.weights).expanduser().is_file(),
            "model.weights",
            f"{self.weights!r} is not a file; use none, imagenet or the path to a weights file",
        )
        check(
            0 < self.bn_momentum < 1,
            "model.bn_momentum",
            f"{self.bn_momentum} must be between 0 and 1",
        )
        check(self.fpn_channels >= 1, "model.fpn_channels", f"{self.fpn_channels} must be >= 1")
        check(self.head_convs >= 0, "model.head_convs", f"{self.head_convs} must be >= 0")
        check(
            len(self.atrous_rates) >= 1 and min(self.atrous_rates) >= 1,
            "model.atrous_rates",
            f"{list(self.atrous_rates)} needs at least one rate, all >= 1",
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
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
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


def merge(cfg: DictConfig | dict[str, Any]) -> RunConfig:
    """A composed config in the schema (keys, types, ranges); ConfigError with one readable
    line. cvtrain.config.checks.validate adds what needs the registries."""
    schema = OmegaConf.structured(RunConfig)
    try:
        # Plain containers first: a key added with `+` must not slip past the schema.
        plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
        merged = OmegaConf.merge(schema, plain)
        return OmegaConf.to_object(merged)  # runs every __post_init__
    except OmegaConfBaseException as exc:
        raise ConfigError(describe_omegaconf_error(exc)) from None


def describe_omegaconf_error(exc: OmegaConfBaseException) -> str:
    """OmegaConf messages span several lines (full_key, object_type...); keep the useful one."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    key = getattr(exc, "full_key", None)
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
