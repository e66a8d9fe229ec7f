"""params.yaml -> typed, frozen dataclasses, every value checked when loaded.

params.yaml must set every key (DVC's `-S` overrides only keys that exist, and a key left out would
silently fall back to a default), and may not set unknown or duplicate ones. Numbers are coerced
from strings because `dvc exp run -S lr=1e-5` writes `1e-05`, which YAML reads as a string; a
boolean is never taken for a number. Each field's valid range is declared beside it (`bounded`,
`one_of`), so the error message states it.
"""

import dataclasses
import json
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DVC_YAML = Path(__file__).resolve().parent.parent / "dvc.yaml"  # the pipeline beside this package
PRECISIONS = ("auto", "bf16", "fp16", "fp32")  # see device.resolve_precision
COMPILE_MODES = ("eager", "default", "reduce-overhead", "max-autotune")  # not compiled, or torch.compile's modes
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"


@dataclass(frozen=True)
class Bounds:
    """A closed or open interval of numbers; `None` leaves that side unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        return f"{'<' if self.high_open else '<='} {self.high}"


def bounded(default: float, low: float | None = None, high: float | None = None, *, low_open: bool = False,
            high_open: bool = False) -> Any:
    """A dataclass field whose value must lie in the given interval."""
    return field(default=default, metadata={"bounds": Bounds(low, high, low_open, high_open)})


def one_of(default: Any, choices: tuple) -> Any:
    """A dataclass field whose value must be one of `choices`."""
    return field(default=default, metadata={"choices": choices})


def optional_path() -> Any:
    """A dataclass field holding a path, or "" for none (other strings must not be blank)."""
    return field(default="", metadata={"empty_ok": True})


class Checked:
    """Checks every field against its declared bounds or choices, that floats are finite and that
    strings are not empty (`optional_path` fields may be "").

    Messages name the field alone; `build` prefixes where it came from (e.g. params.train.).
    """

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number; got {value}")
            if isinstance(value, str) and not value.strip() and not (f.metadata.get("empty_ok") and value == ""):
                raise ValueError(f"{f.name} must not be empty")
            if "choices" in f.metadata and value not in f.metadata["choices"]:
                choices = ", ".join(map(str, f.metadata["choices"]))
                raise ValueError(f"{f.name} must be one of {choices}; got {value!r}")
            if "bounds" in f.metadata and value not in f.metadata["bounds"]:
                kind = "an integer" if isinstance(value, int) else "a number"
                raise ValueError(f"{f.name} must be {kind} {f.metadata['bounds']}; got {value!r}")


@dataclass(frozen=True)
class ModelConfig(Checked):
    """SRResNet's shape (see model.py). Defaults are the reference script's network; a checkpoint
    written before an option existed loads with that option's default."""

    scale: int = one_of(4, (2, 4, 8))  # the upscaling factor; a power of two (PixelShuffle(2) stages)
    num_blocks: int = bounded(16, 1)
    num_features: int = bounded(64, 1)
    bicubic_residual: bool = False
    activation: str = one_of("relu", ("relu", "prelu"))  # head and residual blocks
    upsampler_activation: str = one_of("relu", ("relu", "prelu", "none"))  # after each PixelShuffle
    batch_norm: bool = True  # in every residual block and after the body
    res_scale: float = bounded(1.0, 0, 1, low_open=True)  # residual blocks' outputs are scaled by this


@dataclass(frozen=True)
class DemoConfig(Checked):
    """The bundled demo data set, cut from the photographs shipped inside scikit-image."""

    out_dir: str = "data/demo"
    train_images: tuple[str, ...] = ("astronaut", "camera", "chelsea", "coffee", "rocket")
    test_images: tuple[str, ...] = ("cell", "colorwheel")
    tile_size: int = bounded(128, 1)  # HR side of each training tile (a multiple of model.scale)
    min_tile_std: float = bounded(20.0, 0)  # tiles flatter than this are skipped

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.train_images or not self.test_images:
            raise ValueError("train_images and test_images must each name at least one image")


@dataclass(frozen=True)
class DataConfig(Checked):
    """Paired folders: the same file names in lr/ and hr/, HR exactly `model.scale` times the LR;
    more training folders, each with hr/ and optionally lr/ (without it, each LR is made from its HR
    by bicubic downscaling, the literature's degradation)."""

    train_lr_dir: str = "data/demo/train/lr"
    train_hr_dir: str = "data/demo/train/hr"
    extra_train_dirs: tuple[str, ...] = ()  # e.g. (data/datasets/T91, data/datasets/BSD200)
    test_lr_dir: str = "data/demo/test/lr"
    sample_submission: str = optional_path()  # the SRGD competition's sample_submission.csv: its rows, ids, order


@dataclass(frozen=True)
class SplitConfig(Checked):
    val_split: float = bounded(0.15, 0, 1, low_open=True, high_open=True)  # training picks its best on val
    seed: int = bounded(42, 0)
    method: str = one_of("reference", ("reference", "stable"))  # see data.split_names


@dataclass(frozen=True)
class TrainConfig(Checked):
    epochs: int = bounded(100, 1)
    batch_size: int = bounded(8, 1)
    patch_size: int = bounded(0, 0)  # HR patch side, a multiple of model.scale; 0 trains on whole images like the reference script
    patches_per_image: int = bounded(1, 1)  # random patches cut from each training image per epoch
    augment: bool = True  # random flips and 90-degree rotations
    schedule: str = one_of("constant", ("constant", "cosine", "step"))
    warmup_epochs: int = bounded(0, 0)
    step_epochs: int = bounded(30, 1)  # step schedule: multiply the lr by step_gamma every step_epochs
    step_gamma: float = bounded(0.5, 0, 1, low_open=True)
    ema_decay: float = bounded(0.0, 0, 1, high_open=True)  # EMA of the weights validated and saved; 0 = off
    loss: str = one_of("l1", ("l1", "mse"))
    precision: str = one_of("auto", PRECISIONS)  # auto: bf16 from sm_80, fp16 with loss scaling on sm_60/70/75, else fp32
    tf32: bool = False  # TF32 tensor cores for float32 convolutions and matmuls (sm_80 and newer)
    deterministic: bool = False  # deterministic algorithms only, cuDNN's benchmark off (docs/scale-and-gpus.md)
    compile: str = one_of("eager", COMPILE_MODES)  # torch.compile the network in this mode (reduce-overhead: CUDA graphs)
    decode_cache: str = one_of("auto", ("auto", "memory", "disk"))  # where decoded pairs live (batches.residency)
    val_every: int = bounded(1, 1)  # validate every N epochs (and always after the last)
    time_limit_minutes: float = bounded(0.0, 0)  # end when this is spent; the schedule fits it (0: none; schedule.py)
    init_from: str = optional_path()  # a model checkpoint whose weights training starts from ("": from scratch)
    seed: int = bounded(0, 0)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    processes: int = bounded(1, 1)  # training processes on this machine, one per GPU: above 1 the stage runs under torchrun

    def __post_init__(self) -> None:
        super().__post_init__()
        require_device_name(self.device)


def require_device_name(name: str) -> None:
    if not re.fullmatch(DEVICE_PATTERN, name):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}")


@dataclass(frozen=True)
class EvaluateConfig(Checked):
    benchmarks: tuple[str, ...] = ()  # folders with hr/ (and lr/) scored besides the val split
    num_samples: int = bounded(4, 1)  # images of each set shown in the side-by-side plot
    sample_crop: int = bounded(128, 1)  # HR side of each crop in it (at least 3 x model.scale)


@dataclass(frozen=True)
class InferenceConfig(Checked):
    """How the model runs on images (validation, evaluate, predict, upscale); none of it changes
    what is trained."""

    tile: int = bounded(512, 0)  # LR side above which an image runs in overlapping tiles, and batches of
    # same-size images hold at most tile x tile LR pixels (0: whole images, one at a time)
    precision: str = one_of("auto", PRECISIONS)  # as train.precision (auto: bf16 from sm_80, fp16 on sm_60/70/75)
    device: str = "auto"  # evaluate and predict (validation runs where training does): auto | cpu | cuda | cuda:N
    workers: int = bounded(0, 0)  # threads that decode and encode images around the network (0: one per core)
    png_compress_level: int = bounded(6, 0, 9)  # zlib level of the predicted PNGs: 0 (fast, large) .. 9 (slow, small)
    self_ensemble: bool = False  # the mean of the model's outputs on the 8 flips and turns of each image (8x the time)

    def __post_init__(self) -> None:
        super().__post_init__()
        require_device_name(self.device)


@dataclass(frozen=True)
class PredictConfig(Checked):
    model: str = "models/best.pt"  # paths.model, or one of its exports (paths.onnx, paths.safetensors)


@dataclass(frozen=True)
class SubmitConfig(Checked):
    # png: the reference script's file (id = the file's name, Encoded_Image = base64 PNG);
    # rle: the SRGD competition's (id, filename, rle: its run-length cells, see competition.py)
    format: str = one_of("png", ("png", "rle"))


@dataclass(frozen=True)
class PathsConfig(Checked):
    """Every file the pipeline writes; dvc.yaml reads these same keys through templating."""

    data_folders: str = "data/folders.json"  # the data folder params, once check_data found each folder
    sample_submission_hash: str = "data/sample_submission.json"  # data.sample_submission's SHA-256, for submit
    split: str = "data/split.json"
    rejects: str = "data/rejects.csv"
    split_metrics: str = "metrics/split.json"
    init_from_hash: str = "models/init_from.json"  # the sha256 of train.init_from's content, which train depends on
    model: str = "models/best.pt"
    onnx: str = "models/best.onnx"  # the export stage's files (see export.py)
    safetensors: str = "models/best.safetensors"
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
class Params(Checked):
    lr: float = bounded(1e-4, 0, low_open=True)
    demo: DemoConfig = field(default_factory=DemoConfig)
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    submit: SubmitConfig = field(default_factory=SubmitConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        scale = self.model.scale
        for name, value in (("train.patch_size", self.train.patch_size), ("demo.tile_size", self.demo.tile_size)):
            if value % scale:
                raise ValueError(f"{name} must be a multiple of model.scale ({scale}); got {value}")
        init_from = os.path.normpath(self.train.init_from) if self.train.init_from else None
        for name in ("model", "train_state"):
            if init_from == os.path.normpath(getattr(self.paths, name)):
                raise ValueError(f"train.init_from must not be paths.{name} ({init_from}), which training "
                                 f"overwrites; copy the checkpoint elsewhere first (e.g. models/init/)")
        if self.evaluate.sample_crop < 3 * scale:  # a crop's PSNR-Y cuts `scale` pixels from each border
            raise ValueError(f"evaluate.sample_crop must be at least 3 x model.scale ({3 * scale}), so each crop "
                             f"keeps pixels once the scoring border is cut; got {self.evaluate.sample_crop}")


def _coerce(value: Any, kind: Any, where: str, complete: bool) -> Any:
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be a mapping, got {value!r}")
        return build(kind, value, where, complete)
    origin = typing.get_origin(kind)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be a list, got {value!r}")
        (item_kind, _) = typing.get_args(kind)
        return tuple(_coerce(v, item_kind, where, complete) for v in value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise ValueError(f"{where} must be true or false, got {value!r}")
    if kind in (int, float):
        try:
            if isinstance(value, bool):  # YAML's true is not 1
                raise TypeError
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where} must be a number, got {value!r}") from None
        if kind is int:
            if not number.is_integer():
                raise ValueError(f"{where} must be a whole number, got {value!r}")
            return int(number)
        return number
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"{where}: unsupported field type {kind}")


def build(cls: type, values: dict, where: str = "params", complete: bool = False) -> Any:
    """Builds dataclass `cls` from a mapping, rejecting unknown keys (and, if `complete`, missing
    ones), coercing types and checking each value's range; errors name the key from `where` down."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(fields)}")
    missing = [name for name in fields if name not in values]
    if complete and missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)}; every param must be set")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(value, hints[name], f"{where}.{name}", complete) for name, value in values.items()}
    try:
        return cls(**kwargs)
    except ValueError as error:
        raise ValueError(f"{where}.{error}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (PyYAML
    keeps the last silently; DVC refuses such a file)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_params(path: str | Path = "params.yaml") -> dict:
    """The mapping params.yaml at `path` holds, unchecked but for YAML, duplicate keys and its shape."""
    path = Path(path)
    try:
        with open(path) as f:  # a stream, so YAML's messages name the file and line
            values = yaml.load(f, Loader=_UniqueKeyLoader)
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read params: {error}") from error
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of params at the top level, found "
                         f"{'nothing' if values is None else type(values).__name__}")
    return values


def load_params(path: str | Path = "params.yaml") -> Params:
    """Every param from `path`, which must set each one (see the module's docstring)."""
    values = read_params(path)
    try:
        return build(Params, values, complete=True)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: {error}") from error


FOLDER_PARAMS = ("data.train_lr_dir", "data.train_hr_dir", "data.extra_train_dirs", "data.test_lr_dir",
                 "evaluate.benchmarks")  # the params that name data folders


def folder_params(params: Params, keys: tuple[str, ...]) -> list[tuple[str, str]]:
    """(key, folder) for each param of `keys` (e.g. `data.train_lr_dir`; a list param gives each entry)."""
    pairs = []
    for key in keys:
        section, name = key.split(".")
        value = getattr(getattr(params, section), name)
        pairs += [(key, folder) for folder in (value if isinstance(value, tuple) else (value,))]
    return pairs


def require_folders(params: Params, *keys: str, root: Path = Path(".")) -> None:
    """Each param of `keys` names a folder that exists (see `folder_params`) under `root`, the folder
    the stages run in, else one error naming the param, so the user knows which line to change."""
    for key, folder in folder_params(params, keys):
        if not (root / folder).is_dir():
            problem = "is not a folder" if (root / folder).exists() else "does not exist"
            raise ValueError(f"{key}: {folder} {problem}; set {key} in params.yaml to your folder")


def require_utf8_names(params: Params, *keys: str) -> None:
    """Every name under the folders of `keys` is UTF-8, else one error naming the first that is not:
    DVC hashes a folder it tracks by its names, and fails on such a name with a codec error that
    names no file (`dvc status` too)."""
    for key, folder in folder_params(params, keys):
        for root, folders, files in os.walk(os.fsencode(folder)):
            for name in sorted(folders + files):
                try:
                    name.decode("utf-8")
                except UnicodeDecodeError:
                    raise ValueError(f"{key}: {os.fsdecode(os.path.join(root, name))!r}: the file name is not UTF-8 "
                                     f"(its bytes are {name!r}), and DVC cannot hash a folder holding it; rename it in "
                                     f"UTF-8 (as Latin-1 it would read {name.decode('latin-1')!r})") from None


def in_current_keys(values: dict) -> dict:
    """Params of an earlier version of the project in today's keys: `train.bf16` and `inference.bf16`
    (true: bf16 where the GPU has it, else fp32) became `precision` (auto; false: fp32), and
    `train.compile` (a boolean) a mode (eager; true: default)."""
    values = {key: dict(value) if isinstance(value, dict) else value for key, value in values.items()}
    for section in ("train", "inference"):
        if "bf16" in values.get(section, {}):
            values[section]["precision"] = "auto" if values[section].pop("bf16") is True else "fp32"
    if isinstance(values.get("train", {}).get("compile"), bool):
        values["train"]["compile"] = "default" if values["train"]["compile"] else "eager"
    return values


def to_dict(config: Any) -> dict:
    """A config as plain dicts/lists, for checkpoints and metrics files."""
    return dataclasses.asdict(config)


def flat(values: dict, prefix: str = "") -> dict[str, Any]:
    """A nested mapping of params as dotted keys (`train.seed`), the way DVC and `-S` name them."""
    items = {}
    for key, value in values.items():
        if isinstance(value, dict):
            items |= flat(value, f"{prefix}{key}.")
        else:
            items[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return items


def stage_params(stage: str) -> tuple[str, ...]:
    """The params.yaml keys (or sections) that `stage` of the project's dvc.yaml lists under
    `params:`, those whose values DVC records in dvc.lock for it."""
    with open(DVC_YAML) as f:
        listed = yaml.safe_load(f)["stages"][stage].get("params", [])
    return tuple(key for entry in listed for key in ([entry] if isinstance(entry, str) else entry.get("params.yaml", [])))


def param_differences(ours: dict, theirs: dict, keys: tuple[str, ...]) -> list[tuple[str, Any, Any]]:
    """(key, ours, theirs) for each dotted key under one of `keys` whose values differ; a key that
    one side lacks counts as None there."""
    ours, theirs = flat(ours), flat(theirs)
    return [(key, ours.get(key), theirs.get(key)) for key in sorted(set(ours) | set(theirs))
            if any(key == k or key.startswith(f"{k}.") for k in keys) and ours.get(key) != theirs.get(key)]


def describe_differences(differences: list[tuple[str, Any, Any]], ours: str, theirs: str) -> str:
    """`key X ours, Y theirs; ...`, the values as params.yaml spells them (JSON-like)."""
    return "; ".join(f"{key} {json.dumps(a)} {ours}, {json.dumps(b)} {theirs}" for key, a, b in differences)
