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
def upscale(model: SRResNet, lr_img: np.ndarray, tile: int = 0) -> np.ndarray:
    """HWC uint8 LR -> HWC uint8 SR, `scale` times larger, on the model's device.

    With `tile` > 0, images larger than `tile` LR pixels on a side run in tiles that overlap by the
    model's receptive radius, so memory stays bounded and the result equals the whole-image one.
    """
    device = next(model.parameters()).device
    lr = image_to_tensor(lr_img)[None].to(device)
    height, width = lr.shape[-2:]
    if not tile or (height <= tile and width <= tile):
        return tensor_to_image(model(lr)[0])
    s, margin = model.config.scale, model.receptive_radius()
    sr = torch.empty(3, s * height, s * width)  # assembled on the host, not in device memory
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            y_end, x_end = min(y + tile, height), min(x + tile, width)
            top, left = max(y - margin, 0), max(x - margin, 0)
            out = model(lr[..., top:min(y_end + margin, height), left:min(x_end + margin, width)])[0]
            sr[:, s * y:s * y_end, s * x:s * x_end] = \
                out[:, s * (y - top):s * (y_end - top), s * (x - left):s * (x_end - left)].cpu()
    return tensor_to_image(sr)


def prediction_path(out_dir: str | Path, lr_path: Path) -> Path:
    """Where the SR image of `lr_path` goes: the same name, as PNG."""
    return Path(out_dir) / f"{lr_path.stem}.png"


def predict_folder(model: SRResNet, lr_dir: str | Path, out_dir: str | Path, tile: int = 0) -> list[Path]:
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
        write_png(out_path, upscale(model, read_rgb(lr_path), tile))
        written.append(out_path)
    log.info("wrote %d predictions to %s", len(written), out_dir)
    return written
