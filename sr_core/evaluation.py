"""Scoring the model and the bicubic baseline on pairs, and the side-by-side figure."""

from collections.abc import Iterable

import numpy as np
from tqdm import tqdm

from sr_core.data import Pair, load_pair
from sr_core.images import bicubic_upscale
from sr_core.inference import upscale
from sr_core.metrics import image_metrics
from sr_core.model import SRResNet

MEASURES = ("psnr_y", "ssim", "psnr_rgb")


def score_images(images: Iterable[tuple[str, np.ndarray, np.ndarray]], scale: int, model: SRResNet | None = None,
                 bicubic: bool = False, ssim: bool = True, tile: int = 0) -> list[dict]:
    """One row per (name, lr_img, hr_img): name, HR size, the model's measures and bicubic's
    (prefixed `bicubic_`)."""
    rows = []
    for name, lr_img, hr_img in images:
        row = {"name": name, "width": hr_img.shape[1], "height": hr_img.shape[0]}
        if model is not None:
            row |= image_metrics(upscale(model, lr_img, tile), hr_img, scale, ssim)
        if bicubic:
            bicubic_metrics = image_metrics(bicubic_upscale(lr_img, scale), hr_img, scale, ssim)
            row |= {f"bicubic_{key}": value for key, value in bicubic_metrics.items()}
        rows.append(row)
    return rows


def score_pairs(pairs: list[Pair], scale: int, model: SRResNet | None = None, bicubic: bool = False,
                ssim: bool = True, tile: int = 0) -> list[dict]:
    """`score_images` over pairs decoded one at a time, so a large set never sits in memory."""
    images = ((pair.name, *load_pair(pair, scale)) for pair in tqdm(pairs, desc="scoring", unit="img", leave=False))
    return score_images(images, scale, model, bicubic, ssim, tile)


def mean_metrics(rows: list[dict]) -> dict[str, float]:
    """The mean of every float column of `rows`."""
    keys = [key for key, value in rows[0].items() if isinstance(value, float)]
    return {key: float(np.mean([row[key] for row in rows])) for key in keys}


def summarize(rows: list[dict]) -> dict:
    """Means of model and bicubic rows side by side, and the model's gain over bicubic."""
    means = mean_metrics(rows)
    return {
        "num_images": len(rows),
        "model": {key: means[key] for key in MEASURES},
        "bicubic": {key: means[f"bicubic_{key}"] for key in MEASURES},
        "gain_over_bicubic": {key: means[key] - means[f"bicubic_{key}"] for key in MEASURES},
    }


def side_by_side(model: SRResNet, pairs: list[Pair], scale: int, crop: int) -> np.ndarray:
    """One row per pair of centre crops: bicubic | model | HR, as an HWC uint8 image."""
    rows = []
    for pair in pairs:
        lr_img, hr_img = load_pair(pair, scale)
        lr_crop = min(crop // scale, *lr_img.shape[:2])
        y, x = (lr_img.shape[0] - lr_crop) // 2, (lr_img.shape[1] - lr_crop) // 2
        lr_img = lr_img[y:y + lr_crop, x:x + lr_crop]
        hr_img = hr_img[scale * y:scale * (y + lr_crop), scale * x:scale * (x + lr_crop)]
        rows.append(np.hstack([bicubic_upscale(lr_img, scale), upscale(model, lr_img), hr_img]))
    width = max(row.shape[1] for row in rows)
    return np.vstack([np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0))) for row in rows])
