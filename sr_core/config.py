"""params.yaml -> frozen pydantic models, every value checked when loaded, every error at once.

params.yaml must set every key (DVC's `-S` overrides only keys that exist, and a key left out would
silently fall back to a default), and may not set unknown or duplicate ones. Numbers are read from
strings because `dvc exp run -S lr=1e-5` writes `1e-05`, which YAML reads as a string; a boolean is
never taken for a number nor a number for a boolean, and no number may be infinite or NaN. Each
field's valid range or choices are declared on it, so an error can state them.
"""

import difflib
import os
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError, model_validator
from pydantic.fields import FieldInfo

from sr_core.files import read_yaml_mapping

Precision = Literal["auto", "bf16", "fp16", "fp32"]  # see device.resolve_precision
PRECISIONS = typing.get_args(Precision)
CompileMode = Literal["eager", "default", "reduce-overhead", "max-autotune"]  # not compiled, or torch.compile's modes
COMPILE_MODES = typing.get_args(CompileMode)


def not_a_boolean(value: Any) -> Any:
    """YAML's true is not 1 (pydantic's lax mode would take it for one)."""
    if isinstance(value, bool):
        raise ValueError("a boolean")
    return value


Int = Annotated[int, BeforeValidator(not_a_boolean)]
Number = Annotated[float, BeforeValidator(not_a_boolean)]
Flag = Annotated[bool, Strict()]  # true or false: not 1, nor "yes"
Text = Annotated[str, Field(pattern=r"\S")]  # not blank
OptionalPath = Annotated[str, Field(description='a path, or "" for none')]
Device = Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu, cuda or cuda:N")]


class Section(BaseModel):
    """A part of params.yaml: immutable, and a key it does not declare is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ModelConfig(Section):
    """SRResNet's shape (see model.py). Defaults are the reference script's network; a checkpoint
    written before an option existed loads with that option's default."""

    scale: Literal[2, 4, 8] = 4  # the upscaling factor; a power of two (PixelShuffle(2) stages)
    num_blocks: Int = Field(16, ge=1)
    num_features: Int = Field(64, ge=1)
    bicubic_residual: Flag = False
    activation: Literal["relu", "prelu"] = "relu"  # head and residual blocks
    upsampler_activation: Literal["relu", "prelu", "none"] = "relu"  # after each PixelShuffle
    batch_norm: Flag = True  # in every residual block and after the body
    res_scale: Number = Field(1.0, gt=0, le=1)  # residual blocks' outputs are scaled by this


class DemoConfig(Section):
    """The bundled demo data set, cut from the photographs shipped inside scikit-image."""

    out_dir: Text = "data/demo"
    train_images: tuple[Text, ...] = Field(("astronaut", "camera", "chelsea", "coffee", "rocket"), min_length=1)
    test_images: tuple[Text, ...] = Field(("cell", "colorwheel"), min_length=1)
    tile_size: Int = Field(128, ge=1)  # HR side of each training tile (a multiple of model.scale)
    min_tile_std: Number = Field(20.0, ge=0)  # tiles flatter than this are skipped


class DataConfig(Section):
    """Paired folders: the same file names in lr/ and hr/, HR exactly `model.scale` times the LR;
    more training folders, each with hr/ and optionally lr/ (without it, each LR is made from its HR
    by bicubic downscaling, the literature's degradation)."""

    train_lr_dir: Text = "data/demo/train/lr"
    train_hr_dir: Text = "data/demo/train/hr"
    extra_train_dirs: tuple[Text, ...] = ()  # e.g. (data/datasets/T91, data/datasets/BSD200)
    test_lr_dir: Text = "data/demo/test/lr"
    sample_submission: OptionalPath = ""  # the SRGD competition's sample_submission.csv: its rows, ids, order


class SplitConfig(Section):
    val_split: Number = Field(0.15, gt=0, lt=1)  # training picks its best on val
    seed: Int = Field(42, ge=0)
    method: Literal["reference", "stable"] = "reference"  # see data.split_names


class TrainConfig(Section):
    epochs: Int = Field(100, ge=1)
    batch_size: Int = Field(8, ge=1)
    patch_size: Int = Field(0, ge=0)  # HR patch side, a multiple of model.scale; 0 trains on whole images like the reference script
    patches_per_image: Int = Field(1, ge=1)  # random patches cut from each training image per epoch
    augment: Flag = True  # random flips and 90-degree rotations
    schedule: Literal["constant", "cosine", "step"] = "constant"
    warmup_epochs: Int = Field(0, ge=0)
    step_epochs: Int = Field(30, ge=1)  # step schedule: multiply the learning rate by step_gamma every step_epochs
    step_gamma: Number = Field(0.5, gt=0, le=1)
    ema_decay: Number = Field(0.0, ge=0, lt=1)  # EMA of the weights validated and saved; 0 = off
    loss: Literal["l1", "mse"] = "l1"
    precision: Precision = "auto"  # auto: bf16 from sm_80, fp16 with loss scaling on sm_60/70/75, else fp32
    tf32: Flag = False  # TF32 tensor cores for float32 convolutions and matmuls (sm_80 and newer)
    deterministic: Flag = False  # deterministic algorithms only, cuDNN's benchmark off (docs/scale-and-gpus.md)
    compile: CompileMode = "eager"  # torch.compile's mode (reduce-overhead: CUDA graphs)
    decode_cache: Literal["auto", "memory", "disk"] = "auto"  # where decoded pairs live (stores.residency)
    val_every: Int = Field(1, ge=1)  # validate every N epochs (and always after the last)
    time_limit_minutes: Number = Field(0.0, ge=0)  # end when this is spent; the schedule fits it (0: none; schedule.py)
    init_from: OptionalPath = ""  # a model checkpoint whose weights training starts from ("": from scratch)
    seed: Int = Field(0, ge=0)
    device: Device = "auto"
    processes: Int = Field(1, ge=1)  # training processes on this machine, one per GPU: above 1 the stage runs under torchrun


class EvaluateConfig(Section):
    benchmarks: tuple[Text, ...] = ()  # folders with hr/ (and lr/) scored besides the val split
    num_samples: Int = Field(4, ge=1)  # images of each set shown in the side-by-side plot
    sample_crop: Int = Field(128, ge=1)  # HR side of each crop in it (at least 3 x model.scale)


class InferenceConfig(Section):
    """How the model runs on images (validation, evaluate, predict, upscale); none of it changes
    what is trained."""

    tile: Int = Field(512, ge=0)  # LR side above which an image runs in overlapping tiles, and batches of
    # same-size images hold at most tile x tile LR pixels (0: whole images, one at a time)
    precision: Precision = "auto"  # as train.precision (auto: bf16 from sm_80, fp16 on sm_60/70/75)
    device: Device = "auto"  # evaluate and predict (validation runs where training does)
    workers: Int = Field(0, ge=0)  # threads that decode and encode images around the network (0: one per core)
    png_compress_level: Int = Field(6, ge=0, le=9)  # zlib level of the predicted PNGs: 0 (fast, large) .. 9 (slow, small)
    self_ensemble: Flag = False  # the mean of the model's outputs on the 8 flips and turns of each image (8x the time)


class PredictConfig(Section):
    model: Text = "models/best.pt"  # paths.model, or one of its exports (paths.onnx, paths.safetensors)


class SubmitConfig(Section):
    # png: the reference script's file (id = the file's name, Encoded_Image = base64 PNG);
    # rle: the SRGD competition's (id, filename, rle: its run-length cells, see competition.py)
    format: Literal["png", "rle"] = "png"


class PathsConfig(Section):
    """Every file the pipeline writes; dvc.yaml reads these same keys through templating."""

    data_folders: Text = "data/folders.json"  # the data folder params, once check_data found each folder
    sample_submission_hash: Text = "data/sample_submission.json"  # data.sample_submission's SHA-256, for submit
    split: Text = "data/split.json"
    rejects: Text = "data/rejects.csv"
    split_metrics: Text = "metrics/split.json"
    init_from_hash: Text = "models/init_from.json"  # the sha256 of train.init_from's content, which train depends on
    model: Text = "models/best.pt"
    onnx: Text = "models/best.onnx"  # the export stage's files (see export.py)
    safetensors: Text = "models/best.safetensors"
    train_state: Text = "models/last.pt"  # resume state, written every epoch
    decode_cache: Text = ".cache/decoded"  # decoded training images when they do not fit in memory
    train_metrics: Text = "metrics/train.json"
    history: Text = "metrics/history.csv"
    eval_metrics: Text = "metrics/eval.json"
    eval_images: Text = "metrics/eval_images.csv"
    eval_samples: Text = "metrics/eval_samples.png"
    predictions: Text = "data/predictions"
    submission: Text = "submission.csv"


class Params(Section):
    lr: Number = Field(1e-4, gt=0)
    demo: DemoConfig = DemoConfig()
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    inference: InferenceConfig = InferenceConfig()
    predict: PredictConfig = PredictConfig()
    submit: SubmitConfig = SubmitConfig()
    paths: PathsConfig = PathsConfig()

    @model_validator(mode="after")
    def keys_agree(self) -> "Params":
        """The checks that involve two keys, each problem on a line of its own."""
        scale, problems = self.model.scale, []
        for name, value in (("train.patch_size", self.train.patch_size), ("demo.tile_size", self.demo.tile_size)):
            if value % scale:
                problems.append(f"{name} must be a multiple of model.scale ({scale}); got {value}")
        init_from = os.path.normpath(self.train.init_from) if self.train.init_from else None
        for name in ("model", "train_state"):
            if init_from == os.path.normpath(getattr(self.paths, name)):
                problems.append(f"train.init_from must not be paths.{name} ({init_from}), which training "
                                f"overwrites; copy the checkpoint elsewhere first (e.g. models/init/)")
        if self.evaluate.sample_crop < 3 * scale:  # a crop's PSNR-Y cuts `scale` pixels from each border
            problems.append(f"evaluate.sample_crop must be at least 3 x model.scale ({3 * scale}), so each crop "
                            f"keeps pixels once the scoring border is cut; got {self.evaluate.sample_crop}")
        if problems:
            raise ValueError("\n".join(problems))
        return self


def is_section(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, Section)


KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string, not blank"}
BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def requirement(info: FieldInfo) -> str:
    """What a field takes, in words: its choices, or its kind and range (`a number in (0, 1]`)."""
    kind = info.annotation
    if info.description:
        return info.description
    if typing.get_origin(kind) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(kind)))
    if typing.get_origin(kind) is tuple:
        return "a list of strings" + (", not empty" if any(hasattr(m, "min_length") for m in info.metadata) else "")
    if is_section(kind):
        return "a mapping of its keys"
    limits = {name: getattr(m, name) for m in info.metadata for name in BOUNDS if hasattr(m, name)}
    if len(limits) == 2:  # a lower and an upper bound: an interval
        low, high = ("gt" if "gt" in limits else "ge"), ("lt" if "lt" in limits else "le")
        return (f"{KINDS[kind]} in {'(' if low == 'gt' else '['}{limits[low]:g}, "
                f"{limits[high]:g}{')' if high == 'lt' else ']'}")
    finite = "a finite number" if kind is float else KINDS[kind]  # a number > 0 may not be inf either
    return " ".join([finite, *(f"{BOUNDS[name]} {value:g}" for name, value in limits.items())])


def section_at(cls: type[Section], path: list[str]) -> type[Section]:
    for name in path:
        cls = cls.model_fields[name].annotation
    return cls


def describe(error: dict, cls: type[Section], where: str) -> list[str]:
    """One validation error of pydantic's as lines naming the key, what it takes and the value given."""
    *parents, name = [part for part in error["loc"] if isinstance(part, str)] or [""]  # no list indices
    if error["type"] == "extra_forbidden":
        keys = list(section_at(cls, parents).model_fields)
        close = difflib.get_close_matches(name, keys, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return [f"{'.'.join([where, *parents])}: unknown key {name}{hint}; valid keys: {', '.join(keys)}"]
    if not name and error["type"] == "value_error":  # Params.keys_agree's problems
        return [f"{where}.{line}" for line in str(error["ctx"]["error"]).splitlines()]
    if not name:
        return [f"{where} must be a mapping of keys; got {error['input']!r}"]
    info = section_at(cls, parents).model_fields[name]
    return [f"{'.'.join([where, *parents, name])} must be {requirement(info)}; got {error['input']!r}"]


def missing_keys(cls: type[Section], values: dict, where: str) -> list[str]:
    """A line for each section of `values` that lacks some of `cls`'s keys, down the tree."""
    lines = []
    missing = [name for name in cls.model_fields if name not in values]
    if missing:
        lines.append(f"{where}: missing key(s) {', '.join(missing)}; every param must be set")
    for name, info in cls.model_fields.items():
        if isinstance(values.get(name), dict) and is_section(info.annotation):
            lines += missing_keys(info.annotation, values[name], f"{where}.{name}")
    return lines


def build(cls: type[Section], values: Any, where: str = "params", complete: bool = False) -> Any:
    """`cls` from a mapping, every value checked; if `complete`, every key must be given. One error
    names every problem, each with its key from `where` down, what it takes and the value given."""
    problems = missing_keys(cls, values, where) if complete and isinstance(values, dict) else []
    try:
        config = cls.model_validate(values)
    except ValidationError as error:
        problems += [line for e in error.errors() for line in describe(e, cls, where)]
    if len(problems) == 1:
        raise ValueError(problems[0])
    if problems:
        raise ValueError(f"{len(problems)} problems:\n" + "\n".join(f"  {line}" for line in problems))
    return config


def read_params(path: str | Path = "params.yaml") -> dict:
    """The mapping params.yaml at `path` holds, unchecked but for YAML, duplicate keys and its shape."""
    return read_yaml_mapping(path, "params")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Every param from `path`, which must set each one (see the module's docstring)."""
    values = read_params(path)
    try:
        return build(Params, values, complete=True)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
