"""params.yaml -> typed, frozen dataclasses.

Unknown keys are errors (a typo must not silently fall back to a default), and numbers are
coerced from strings because `dvc exp run -S lr=1e-5` writes `1e-05`, which YAML reads as a string.
"""

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sr_core.model import ModelConfig


@dataclass(frozen=True)
class DemoConfig:
    """The bundled demo data set, cut from the photographs shipped inside scikit-image."""

    out_dir: str = "data/demo"
    train_images: tuple[str, ...] = ("astronaut", "camera", "chelsea", "coffee", "rocket")
    test_images: tuple[str, ...] = ("cell", "colorwheel")
    tile_size: int = 128  # HR side of each training tile
    min_tile_std: float = 20.0  # tiles flatter than this are skipped


@dataclass(frozen=True)
class DataConfig:
    """Paired folders: the same file names in lr/ and hr/, HR exactly `model.scale` times the LR."""

    train_lr_dir: str = "data/demo/train/lr"
    train_hr_dir: str = "data/demo/train/hr"
    test_lr_dir: str = "data/demo/test/lr"


@dataclass(frozen=True)
class SplitConfig:
    val_split: float = 0.15
    seed: int = 42


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    batch_size: int = 8
    patch_size: int = 0  # HR patch side; 0 trains on whole images like the seed
    patches_per_image: int = 1  # random patches cut from each training image per epoch
    augment: bool = True  # random flips and 90-degree rotations
    schedule: str = "constant"  # constant | cosine | step
    warmup_epochs: int = 0
    step_epochs: int = 30  # step schedule: multiply the lr by step_gamma every step_epochs
    step_gamma: float = 0.5
    ema_decay: float = 0.0  # EMA of the weights for validation and the saved model; 0 = off
    loss: str = "l1"
    bf16: bool = True  # bf16 autocast on CUDA (never on the CPU)
    compile: bool = False  # torch.compile the training step
    decode_cache: str = "auto"  # decoded training images: memory | disk | auto (memory if they fit)
    val_every: int = 1  # validate every N epochs (and always after the last)
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        _check_choice("train.schedule", self.schedule, ("constant", "cosine", "step"))
        _check_choice("train.loss", self.loss, ("l1", "mse"))
        _check_choice("train.decode_cache", self.decode_cache, ("auto", "memory", "disk"))
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.patch_size < 0 or self.patches_per_image < 1 or self.batch_size < 1 or self.val_every < 1:
            raise ValueError(f"train: patch_size >= 0, patches_per_image >= 1, batch_size >= 1, val_every >= 1; "
                             f"got {self}")


@dataclass(frozen=True)
class EvaluateConfig:
    benchmarks: tuple[str, ...] = ()  # folders with hr/ (and lr/) scored besides the val split
    num_samples: int = 4  # images of each set shown in the side-by-side plot
    sample_crop: int = 128  # HR side of each crop in it


@dataclass(frozen=True)
class InferenceConfig:
    """How the model runs on images (validation, evaluate, predict, upscale); none of it changes
    what is trained."""

    tile: int = 512  # LR side above which an image runs in overlapping tiles, and batches of same-size
    # images hold at most tile x tile LR pixels (0: whole images, one at a time)
    bf16: bool = True  # bf16 autocast on CUDA (never on the CPU)
    workers: int = 0  # threads that decode and encode images around the network (0: one per core)
    png_compress_level: int = 6  # zlib level of the predicted PNGs: 0 (fast, large) .. 9 (slow, small)

    def __post_init__(self) -> None:
        if self.tile < 0 or self.workers < 0 or not 0 <= self.png_compress_level <= 9:
            raise ValueError(f"inference: tile >= 0, workers >= 0, png_compress_level in 0..9; got {self}")


@dataclass(frozen=True)
class PathsConfig:
    """Every file the pipeline writes; dvc.yaml reads these same keys through templating."""

    split: str = "data/split.json"
    rejects: str = "data/rejects.csv"
    split_metrics: str = "metrics/split.json"
    model: str = "models/best.pt"
    train_state: str = "models/last.pt"  # resume state, written every epoch
    decode_cache: str = ".cache/decoded"  # decoded training images when they do not fit in memory
    train_metrics: str = "metrics/train.json"
    history: str = "metrics/history.csv"
    eval_metrics: str = "metrics/eval.json"
    eval_images: str = "metrics/eval_images.csv"
    eval_samples: str = "metrics/eval_samples.png"
    predictions: str = "data/predictions"
    submission: str = "submission.csv"


@dataclass(frozen=True)
class Params:
    lr: float = 1e-4
    demo: DemoConfig = field(default_factory=DemoConfig)
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _coerce(value: Any, kind: Any, where: str) -> Any:
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be a mapping, got {value!r}")
        return build(kind, value, where)
    origin = typing.get_origin(kind)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be a list, got {value!r}")
        (item_kind, _) = typing.get_args(kind)
        return tuple(_coerce(v, item_kind, where) for v in value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise ValueError(f"{where} must be true or false, got {value!r}")
    if kind in (int, float):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where} must be a number, got {value!r}") from None
        if kind is int:
            if not number.is_integer():
                raise ValueError(f"{where} must be a whole number, got {value!r}")
            return int(number)
        return number
    if kind is str:
        return str(value)
    raise TypeError(f"{where}: unsupported field type {kind}")


def build(cls: type, values: dict, where: str = "params") -> Any:
    """Builds dataclass `cls` from a mapping, rejecting unknown keys and coercing types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(value, hints[name], f"{where}.{name}") for name, value in values.items()}
    return cls(**kwargs)


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read params: {error}") from error
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    try:
        return build(Params, values)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: {error}") from error


def to_dict(config: Any) -> dict:
    """A config as plain dicts/lists, for checkpoints and metrics files."""
    return dataclasses.asdict(config)
