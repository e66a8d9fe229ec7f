"""Self-describing checkpoints: weights plus the model config and the resolved params.

Only plain containers and tensors are stored, and only such files are loaded
(`torch.load(path, weights_only=True)`): unpickling anything else could run code from the file.
Checkpoints are serialised in memory, then written atomically (`files.write_bytes`).
"""

import io
import logging
import pickle
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from sr_core.config import ModelConfig, build, to_dict
from sr_core.files import write_bytes
from sr_core.model import SRResNet

log = logging.getLogger(__name__)


def _save(path: str | Path, content: dict) -> None:
    buffer = io.BytesIO()
    torch.save(content, buffer)
    write_bytes(path, buffer.getbuffer())


def save_checkpoint(path: str | Path, model: SRResNet, **info: Any) -> None:
    """Writes the model's weights, its config and any plain `info` (epoch, metrics, params)."""
    _save(path, {"model_config": to_dict(model.config), "state_dict": model.state_dict(), **info})


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


def load_model(path: str | Path, device: torch.device, scale: int | None = None) -> SRResNet:
    """The checkpoint's model on `device`, in eval mode (channels_last on CUDA, as in training).

    With `scale`, a model of another scale is refused (its outputs would be the wrong size).
    """
    checkpoint = load_checkpoint(path)
    missing = [key for key in ("model_config", "state_dict") if key not in checkpoint]
    if missing:
        raise ValueError(f"{path}: not a model checkpoint (no {' or '.join(missing)}); a model is what the "
                         f"train stage writes to paths.model, not its resume state")
    model = SRResNet(build(ModelConfig, checkpoint["model_config"], f"{path}: model_config"))
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as error:
        first = str(error).splitlines()[1:2] or [str(error)]
        raise ValueError(f"{path}: the weights do not fit its model_config {to_dict(model.config)} "
                         f"({first[0].strip()})") from error
    if scale is not None and model.config.scale != scale:
        raise ValueError(f"{path}: a x{model.config.scale} model, but model.scale is {scale}")
    model = model.to(device).eval()
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def save_train_state(path: str | Path, state: dict) -> None:
    """The resume state: everything `train` needs to continue after the epoch it was written at."""
    _save(path, state)


def load_train_state(path: str | Path, fingerprint: str, epochs: int) -> dict | None:
    """The resume state at `path` if a run of the same fingerprint stopped there before `epochs`.

    A finished run is not resumed: DVC reruns a finished stage only when something it depends on
    changed (code, data), so that is a new run. A state that cannot be read is renamed to
    `PATH.TIME.unreadable` with a warning, and training starts afresh.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = load_checkpoint(path)
        run, epoch = state["fingerprint"], state["epoch"]
    except (ValueError, KeyError) as error:
        aside = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}.unreadable")
        path.rename(aside)
        log.warning("%s; set aside as %s, training starts afresh", error if isinstance(error, ValueError)
                    else f"{path}: not a resume state (no {error})", aside)
        return None
    if run != fingerprint:
        log.info("%s is from a run with other params (%s, not %s): starting afresh", path, run, fingerprint)
        return None
    if epoch >= epochs or state.get("finished"):
        log.info("%s is from a finished run (%d epochs): starting afresh", path, epoch)
        return None
    return state
