"""Scoring the model and the bicubic baseline on paired images, and the side-by-side figure."""

import numpy as np
from tqdm import tqdm

from sr_core.data import Pair
from sr_core.images import read_rgb, resize_bicubic
from sr_core.inference import upscale
from sr_core.metrics import image_metrics
from sr_core.model import SRResNet


def bicubic_upscale(lr_img: np.ndarray, scale: int) -> np.ndarray:
    """The baseline: Pillow's bicubic, which reproduces MATLAB's and so the published bicubic rows."""
    return resize_bicubic(lr_img, scale * lr_img.shape[1], scale * lr_img.shape[0])


def score_pairs(model: SRResNet, pairs: list[Pair], scale: int, ssim: bool = True,
                bicubic: bool = False) -> list[dict]:
    """One row per pair: its name and the model's measures (and bicubic's, prefixed `bicubic_`)."""
    rows = []
    for pair in tqdm(pairs, desc="scoring", unit="img", leave=False):
        lr_img, hr_img = read_rgb(pair.lr_path), read_rgb(pair.hr_path)
        row = {"name": pair.name, **image_metrics(upscale(model, lr_img), hr_img, scale, ssim)}
        if bicubic:
            bicubic_metrics = image_metrics(bicubic_upscale(lr_img, scale), hr_img, scale, ssim)
            row |= {f"bicubic_{key}": value for key, value in bicubic_metrics.items()}
        rows.append(row)
    return rows


def mean_metrics(rows: list[dict]) -> dict[str, float]:
    """The mean of every numeric column of `rows`."""
    keys = [key for key, value in rows[0].items() if isinstance(value, float)]
    return {key: float(np.mean([row[key] for row in rows])) for key in keys}


def side_by_side(model: SRResNet, pairs: list[Pair], scale: int, crop: int) -> np.ndarray:
    """One row per pair of centre crops: bicubic | model | HR, as an HWC uint8 image."""
    rows = []
    for pair in pairs:
        lr_img, hr_img = read_rgb(pair.lr_path), read_rgb(pair.hr_path)
        lr_crop = min(crop // scale, *lr_img.shape[:2])
        y, x = (lr_img.shape[0] - lr_crop) // 2, (lr_img.shape[1] - lr_crop) // 2
        lr_img = lr_img[y:y + lr_crop, x:x + lr_crop]
        hr_img = hr_img[scale * y:scale * (y + lr_crop), scale * x:scale * (x + lr_crop)]
        rows.append(np.hstack([bicubic_upscale(lr_img, scale), upscale(model, lr_img), hr_img]))
    width = max(row.shape[1] for row in rows)
    return np.vstack([np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0))) for row in rows])
