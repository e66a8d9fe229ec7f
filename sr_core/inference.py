"""Running a trained model on images."""

import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sr_core.images import image_to_tensor, list_images, read_rgb, tensor_to_image, write_png
from sr_core.model import SRResNet

log = logging.getLogger(__name__)


def pick_device(name: str = "auto") -> torch.device:
    """'auto' is CUDA when present, else CPU; 'cpu', 'cuda' or 'cuda:N' are taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}") from error


@torch.no_grad()
def upscale(model: SRResNet, lr_img: np.ndarray) -> np.ndarray:
    """HWC uint8 LR -> HWC uint8 SR, `scale` times larger, on the model's device."""
    device = next(model.parameters()).device
    return tensor_to_image(model(image_to_tensor(lr_img)[None].to(device))[0])


def prediction_path(out_dir: str | Path, lr_path: Path) -> Path:
    """Where the SR image of `lr_path` goes: the same name, as PNG."""
    return Path(out_dir) / f"{lr_path.stem}.png"


def predict_folder(model: SRResNet, lr_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Upscales every image in `lr_dir` to a PNG of the same name in `out_dir`.

    A file that does not decode stops the run with its name: a submission needs every test image.
    """
    lr_paths = list_images(lr_dir)
    if not lr_paths:
        raise FileNotFoundError(f"{lr_dir}: no images to predict")
    stems = [p.stem for p in lr_paths]
    clashes = sorted(p.name for p in lr_paths if stems.count(p.stem) > 1)
    if clashes:
        raise ValueError(f"{lr_dir}: {', '.join(clashes)} would all be predicted to the same PNG name")
    written = []
    for lr_path in tqdm(lr_paths, desc="predicting", unit="img"):
        out_path = prediction_path(out_dir, lr_path)
        write_png(out_path, upscale(model, read_rgb(lr_path)))
        written.append(out_path)
    log.info("wrote %d predictions to %s", len(written), out_dir)
    return written
