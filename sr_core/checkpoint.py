"""Self-describing checkpoints: weights plus the model config and the resolved params.

Only plain containers and tensors are stored, so `torch.load(path, weights_only=True)` reads them.
"""

import logging
from pathlib import Path
from typing import Any

import torch

from sr_core.config import build, to_dict
from sr_core.files import atomic_write
from sr_core.model import ModelConfig, SRResNet

log = logging.getLogger(__name__)


def save_checkpoint(path: str | Path, model: SRResNet, **info: Any) -> None:
    """Writes the model's weights, its config and any plain `info` (epoch, metrics, params)."""
    checkpoint = {"model_config": to_dict(model.config), "state_dict": model.state_dict(), **info}
    with atomic_write(path) as f:
        torch.save(checkpoint, f)


def load_checkpoint(path: str | Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as error:
        raise ValueError(f"{path}: cannot load checkpoint ({error})") from error


def load_model(path: str | Path, device: torch.device) -> SRResNet:
    """The checkpoint's model on `device`, in eval mode (channels_last on CUDA, as in training)."""
    checkpoint = load_checkpoint(path)
    model = SRResNet(build(ModelConfig, checkpoint["model_config"], f"{path} model_config"))
    model.load_state_dict(checkpoint["state_dict"])
    model = model.to(device).eval()
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def save_train_state(path: str | Path, state: dict) -> None:
    """The resume state: everything `train` needs to continue after the epoch it was written at."""
    with atomic_write(path) as f:
        torch.save(state, f)


def load_train_state(path: str | Path, fingerprint: str, epochs: int) -> dict | None:
    """The resume state at `path` if a run of the same fingerprint stopped there before `epochs`.

    A finished run is not resumed: DVC reruns a finished stage only when something it depends on
    changed (code, data), so that is a new run.
    """
    if not Path(path).exists():
        return None
    state = load_checkpoint(path)
    if state.get("fingerprint") != fingerprint:
        log.info("%s is from a run with other params (%s, not %s): starting afresh",
                 path, state.get("fingerprint"), fingerprint)
        return None
    if state["epoch"] >= epochs:
        log.info("%s is from a finished run (%d epochs): starting afresh", path, state["epoch"])
        return None
    return state
