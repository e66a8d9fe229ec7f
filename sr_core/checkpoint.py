"""Self-describing checkpoints: weights plus the model config and the resolved params.

Only plain containers and tensors are stored, and only such files are loaded
(`torch.load(path, weights_only=True)`): unpickling anything else could run code from the file.
Checkpoints are serialised in memory, then written atomically (`files.write_bytes`).
"""

import io
import json
import logging
import os
import pickle
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sr_core.config import ModelConfig, Params, build
from sr_core.files import write_bytes
from sr_core.model import SRResNet
from sr_core.onnx_model import MODEL_CONFIG_KEY, OnnxModel, load_onnx
from sr_core.param_changes import describe_differences, param_differences, stage_params

log = logging.getLogger(__name__)

GENERAL_MODEL = Path(__file__).parent / "weights" / "general-x4.safetensors"  # shipped; docs/model-card.md
MODEL_SUFFIXES = (".pt", ".safetensors", ".onnx")
MODEL_HELP = "a model: the train stage's checkpoint (.pt), or an export of it (.safetensors, .onnx)"
OPTIONAL_MODEL_HELP = (f"MODEL, {MODEL_HELP}, is optional: where none is given, the general x4 model that comes "
                       "with the package (docs/model-card.md)")


def _save(path: str | Path, content: dict) -> None:
    buffer = io.BytesIO()
    torch.save(content, buffer)
    write_bytes(path, buffer.getbuffer())


def save_checkpoint(path: str | Path, model: SRResNet, **info: Any) -> None:
    """Writes the model's weights, its config and any plain `info` (epoch, metrics, params)."""
    _save(path, {"model_config": model.config.model_dump(), "state_dict": model.state_dict(), **info})


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint at `path` as a dict; ValueError naming it when it cannot be read or is not one."""
    if not Path(path).exists():
        raise ValueError(f"{path} does not exist")
    try:
        f = open(path, "rb")
    except OSError as error:
        raise ValueError(f"{path}: cannot read checkpoint: {error.strerror}") from error
    try:
        with f, warnings.catch_warnings():  # torch warns about pickle protocols before refusing a file
            warnings.simplefilter("ignore", UserWarning)
            content = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"{path}: not a checkpoint: it is damaged, or holds Python objects besides tensors and "
                         f"plain containers, which are never loaded since that could run code from the file") from error
    except Exception as error:  # noqa: BLE001 (arbitrary bytes fail in arbitrary ways: IndexError, KeyError, ...)
        reason = str(error).splitlines()[0] if str(error) else "the file is empty or cut short"
        raise ValueError(f"{path}: not a checkpoint, or damaged ({reason})") from error
    if not isinstance(content, dict):
        raise ValueError(f"{path}: not a checkpoint (holds a {type(content).__name__}, not a dict)")
    return content


def read_safetensors(path: str | Path) -> tuple[dict, dict]:
    """The model config and weights of a safetensors export (see `export`), which holds no code."""
    from safetensors import SafetensorError, safe_open  # only here: the GPU check runs without it

    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            state_dict = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path}: not a safetensors file, or damaged ({error})") from error
    if MODEL_CONFIG_KEY not in metadata:
        raise ValueError(f"{path}: no {MODEL_CONFIG_KEY!r} in its metadata, so not a model sr-export "
                         f"wrote; its tensors alone do not say which network they fit")
    try:
        return json.loads(metadata[MODEL_CONFIG_KEY]), state_dict
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: its {MODEL_CONFIG_KEY} metadata is not JSON ({error})") from error


def read_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """The model config and weights of a checkpoint of the train stage."""
    checkpoint = load_checkpoint(path)
    missing = [key for key in ("model_config", "state_dict") if key not in checkpoint]
    if missing:
        raise ValueError(f"{path}: not a model checkpoint (no {' or '.join(missing)}); a model is what the "
                         f"train stage writes to paths.model, not its resume state")
    return checkpoint["model_config"], checkpoint["state_dict"]


def build_model(path: str | Path, config: dict, state_dict: dict) -> SRResNet:
    """The network of `config` with `state_dict`'s weights, in eval mode; errors name `path`."""
    model = SRResNet(build(ModelConfig, config, f"{path}: model_config"))
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, TypeError, AttributeError) as error:
        first = str(error).splitlines()[1:2] or [str(error)]
        raise ValueError(f"{path}: the weights do not fit its model_config {model.config.model_dump()} "
                         f"({first[0].strip()})") from error
    return model.eval()


def model_and_others(paths: list[Path]) -> tuple[Path, list[Path]]:
    """The model a command was given as its first path (a file with a model's suffix), else the
    shipped general model; and the paths after it. Image and folder names never carry those suffixes,
    so `sr-upscale photo.png` and `sr-upscale models/best.pt photo.png` both read as meant."""
    if paths and paths[0].suffix.lower() in MODEL_SUFFIXES:
        return paths[0], paths[1:]
    return GENERAL_MODEL, paths


def load_model(path: str | Path, device: torch.device, scale: int | None = None) -> SRResNet | OnnxModel:
    """The model at `path` on `device`, in eval mode: a checkpoint of the train stage (.pt), or one
    of its exports (.safetensors, .onnx; see `export`), which the ONNX one runs in onnxruntime.
    The PyTorch model is channels_last on CUDA, as in training.

    With `scale`, a model of another scale is refused (its outputs would be the wrong size).
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    if path.suffix.lower() == ".onnx":
        model = load_onnx(path, device)
    else:
        read = read_safetensors if path.suffix.lower() == ".safetensors" else read_checkpoint
        model = build_model(path, *read(path)).to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
    if scale is not None and model.config.scale != scale:
        raise ValueError(f"{path}: a x{model.config.scale} model, but model.scale is {scale}")
    return model


def save_train_state(path: str | Path, state: dict) -> None:
    """The resume state: everything `train` needs to continue after the epoch it was written at."""
    _save(path, state)


def hold_train_state(path: str | Path) -> None:
    """Locks the resume state at `path` for this process (and torchrun, if it execs that) until it
    ends, through a hidden lock file beside it: a second training on the same files (a `dvc repro`
    or `python stages/train.py` started meanwhile) would overwrite this one's, so it stops at once."""
    import fcntl  # POSIX: the project trains on Linux and macOS

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)  # never closed: held to the end
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ValueError(f"{path}: another training is running on it (process {holder}), and two would overwrite "
                         f"each other's files: wait for it to end, or stop it") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    os.set_inheritable(fd, True)


def load_train_state(path: str | Path, fingerprint: str, epochs: int, sources: str, pixels: str = "",
                     check: Callable[[dict], object] = lambda state: None) -> dict | None:
    """The resume state at `path` if a run of the same fingerprint wrote it on the same pixels
    (`pixels`, see data.pixels_digest), with `state["finished"]` true when that run ended (its last
    epoch, or its time limit).

    A finished run is reused only when its code and data (`sources`, see training.sources_stamp)
    are the same too: DVC reruns a stage whose outputs it recorded only when something it depends
    on changed, which makes a new run; a finished run it did not record (params.yaml edited
    meanwhile, `dvc` killed) is reused. A state that cannot be read, or that `check` (which
    applies every part of it to spare objects) cannot apply, is renamed to `PATH.TIME.unreadable`
    with a warning, and training starts afresh.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = load_checkpoint(path)
        run, epoch = state["fingerprint"], state["epoch"]
    except (ValueError, KeyError) as error:
        set_aside(path, str(error) if isinstance(error, ValueError) else f"{path}: not a resume state (no {error})")
        return None
    if run != fingerprint:
        log.info("%s is from a run with other params (%s, not %s): starting afresh", path, run, fingerprint)
        return None
    if state.get("pixels", "") != pixels:
        log.info("%s is from a run on other pixels: the hash of the training pairs' pixels that the split "
                 "records differs, though their names may be the same: starting afresh", path)
        return None
    try:
        check(state)
    except (KeyError, ValueError, RuntimeError, TypeError, IndexError, AttributeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        set_aside(path, f"{path}: a resume state that cannot be applied ({reason})")
        return None
    state["finished"] = bool(state.get("finished")) or epoch >= epochs
    if state["finished"] and state.get("sources") != sources:
        log.info("%s is from a finished run (%d epochs) of other code or data: starting afresh", path, epoch)
        return None
    if state["finished"]:
        log.info("%s is from a finished run (%d epochs) of these params, code and data: its model, history and "
                 "metrics are written again without training", path, epoch)
    return state


def set_aside(path: Path, why: str) -> None:
    """Renames a resume state that cannot serve to `PATH.TIME.unreadable` (kept for a look, never
    read again), with one warning saying why."""
    aside = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}.unreadable")
    path.rename(aside)
    log.warning("%s; set aside as %s, training starts afresh", why, aside)


def require_trained_with(path: str | Path, params: Params) -> None:
    """Refuses the train stage's model (`path` is `params.paths.model`) when the params stored in it
    differ from `params` in a key the train stage tracks: DVC's record of that stage would not be
    this model's (a stage run by hand, or `dvc repro -s`, after params.yaml changed). Other models
    (exports, checked when written; a model from elsewhere) hold no such record and pass."""
    if os.path.normpath(path) != os.path.normpath(params.paths.model):
        return
    stored = load_checkpoint(path).get("params")
    if stored is None:
        raise ValueError(f"{path}: holds no training params, so it is not the train stage's model")
    differences = param_differences(stored, params.model_dump(), stage_params("train"))
    if differences:
        raise ValueError(f"{path} was trained with other params than params.yaml's "
                         f"({describe_differences(differences, 'there', 'in params.yaml')}): run dvc repro to "
                         f"train with params.yaml's values, or restore those the model was trained with")
