"""Self-describing checkpoints: weights plus the model config and the resolved params.

Only plain containers and tensors are stored, so `torch.load(path, weights_only=True)` reads them.
"""

from pathlib import Path
from typing import Any

import torch

from sr_core.config import build
from sr_core.files import atomic_write
from sr_core.model import ModelConfig, SRResNet


def save_checkpoint(path: str | Path, model: SRResNet, **info: Any) -> None:
    """Writes the model's weights, its config and any plain `info` (epoch, metrics, params)."""
    checkpoint = {"model_config": vars(model.config), "state_dict": model.state_dict(), **info}
    with atomic_write(path) as f:
        torch.save(checkpoint, f)


def load_checkpoint(path: str | Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as error:
        raise ValueError(f"{path}: cannot load checkpoint ({error})") from error


def load_model(path: str | Path, device: torch.device) -> SRResNet:
    """The checkpoint's model on `device`, in eval mode."""
    checkpoint = load_checkpoint(path)
    model = SRResNet(build(ModelConfig, checkpoint["model_config"], f"{path} model_config"))
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()
