"""Scoring the model and the bicubic baseline on pairs, and the side-by-side figure of crops; a
benchmark of sets (Set5, Set14, BSD100, the val split, ...) as a per-image CSV, per-set means in a
JSON and the figure, which the evaluate stage and `sr-benchmark` write.

Measures are taken on the model's device (`metrics.batch_metrics`), on same-size batches; only
scalars come back to the host.
"""

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from sr_core.config import InferenceConfig
from sr_core.data import Pair, list_folder, load_pair, read_pair
from sr_core.files import write_csv, write_json
from sr_core.images import ImageError, bicubic_upscale, write_png
from sr_core.inference import Model, configured, run_precision, same_size_batches, stack, upscale, upscale_into
from sr_core.metrics import batch_metrics, min_scored_side
from sr_core.parallel import num_workers, ordered_map

log = logging.getLogger(__name__)

MEASURES = ("psnr_y", "ssim", "psnr_rgb", "competition_score")


def model_metrics(model: Model, lr: torch.Tensor, hr: torch.Tensor, ssim: bool, tile: int = 0,
                  precision: str = "fp32") -> dict[str, torch.Tensor]:
    """The measures of the model's output for each (lr, hr) of a batch (NHWC uint8), as (N,)
    tensors on the model's device, where the SR images stay."""
    device = model.device
    sr = torch.empty(hr.shape, dtype=torch.uint8, device=device)
    upscale_into(model, lr, sr, tile, precision)
    return batch_metrics(sr, hr.to(device), model.config.scale, ssim)


def score_pairs(pairs: list[Pair], scale: int, model: Model | None = None, bicubic: bool = False,
                ssim: bool = True, config: InferenceConfig = InferenceConfig()) -> list[dict]:
    """One row per pair: name, HR size, the model's measures and bicubic's (prefixed `bicubic_`).

    Each pair is decoded once, in `config.workers` threads that also make the bicubic baseline, a
    few pairs ahead of the device, so a large set never sits in memory. Pairs that cannot be used
    (see `load_pair`, and HR images too small to score) are all reported in one ImageError at the end;
    what reading a pair drops or changes (`data.read_pair`) is a warning naming the file.
    """
    device = model.device if model is not None else torch.device("cpu")
    precision = run_precision(model, config.precision)[0] if model is not None else "fp32"
    workers, min_side = num_workers(config.workers), min_scored_side(scale)

    def decode(pair: Pair) -> tuple[str, np.ndarray, np.ndarray, np.ndarray | None] | ImageError:
        try:
            lr_img, hr_img, notes = read_pair(pair, scale)
        except ImageError as error:
            return error
        for _, message in notes:  # what reading dropped or changed, each file named once
            log.warning("%s", message)
        if min(hr_img.shape[:2]) < min_side:
            return ImageError(f"{pair.hr_path}: HR is {hr_img.shape[1]}x{hr_img.shape[0]}; scoring needs at least "
                              f"{min_side}x{min_side} ({scale} px cut from each border, then SSIM's window)")
        return pair.name, lr_img, hr_img, bicubic_upscale(lr_img, scale) if bicubic else None

    rows, errors = [], []

    def usable(decoded):
        for item in tqdm(decoded, total=len(pairs), desc="scoring", unit="img", leave=False):
            if isinstance(item, ImageError):
                errors.append(str(item))
            elif not errors:  # after a failure, only decode on, to report every pair that fails
                yield item

    with ThreadPoolExecutor(workers) as pool:
        decoded = ordered_map(pool, decode, pairs, ahead=2 * workers)
        for batch in same_size_batches(usable(decoded), lambda item: item[1].shape[:2], config.tile):
            names, lr_imgs, hr_imgs, bicubic_imgs = zip(*batch)
            hr = stack(hr_imgs).to(device)
            measured = {}
            if model is not None:
                measured |= model_metrics(model, stack(lr_imgs), hr, ssim, config.tile, precision)
            if bicubic:
                baseline = batch_metrics(stack(bicubic_imgs).to(device), hr, scale, ssim)
                measured |= {f"bicubic_{key}": value for key, value in baseline.items()}
            values = torch.stack(list(measured.values()), dim=1).tolist()  # one transfer per batch
            rows += [{"name": name, "width": hr_img.shape[1], "height": hr_img.shape[0], **dict(zip(measured, row))}
                     for name, hr_img, row in zip(names, hr_imgs, values)]
    if errors:
        raise ImageError(f"{len(errors)} of {len(pairs)} pairs cannot be used: " + "; ".join(errors))
    return rows


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


@dataclass(frozen=True)
class Sample:
    """Aligned centre crops of one image (HWC uint8) and their PSNR-Y against the HR crop."""

    title: str  # set/image name
    crops: dict[str, np.ndarray]  # column title -> crop; the last is the reference
    psnr_y: dict[str, float]  # column title -> PSNR-Y in dB (not for the reference)


def sample_crops(upscalers: dict[str, Callable[[np.ndarray], np.ndarray]], pairs: list[tuple[str, Pair]], scale: int,
                 crop: int) -> list[Sample]:
    """The centre crop (HR side `crop`, or the whole image if smaller) of each (set name, pair): one
    column per upscaler (e.g. bicubic and a model), each run on the LR crop alone, then the HR."""
    samples = []
    for set_name, pair in pairs:
        lr_img, hr_img = load_pair(pair, scale)
        lr_crop = min(crop // scale, *lr_img.shape[:2])
        y, x = (lr_img.shape[0] - lr_crop) // 2, (lr_img.shape[1] - lr_crop) // 2
        lr_img = np.ascontiguousarray(lr_img[y:y + lr_crop, x:x + lr_crop])
        hr_img = np.ascontiguousarray(hr_img[scale * y:scale * (y + lr_crop), scale * x:scale * (x + lr_crop)])
        crops = {name: upscaled(lr_img) for name, upscaled in upscalers.items()} | {"HR": hr_img}
        hr = torch.from_numpy(hr_img)[None]
        psnr_y = {name: batch_metrics(torch.from_numpy(img)[None], hr, scale, ssim=False)["psnr_y"].item()
                  for name, img in crops.items() if name != "HR"}
        samples.append(Sample(f"{set_name}/{pair.name}", crops, psnr_y))
    return samples


def model_and_bicubic(model: Model, precision: str = "fp32") -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """The upscalers of the evaluate figure: bicubic, then the model."""
    scale = model.config.scale
    return {
        "bicubic": lambda lr_img: bicubic_upscale(lr_img, scale),
        "model": lambda lr_img: upscale(model, lr_img, precision=precision),
    }


def figure(samples: list[Sample], heading: str = "PSNR-Y of each crop under it", font_size: int = 14) -> np.ndarray:
    """The samples as one HWC uint8 image that reads without the README: a heading and the column
    titles on top; for each sample its set/image name, the crops, and each crop's PSNR-Y under it."""
    font = ImageFont.load_default(size=font_size)
    columns = list(samples[0].crops)
    captions = {sample.title: [f"PSNR-Y {sample.psnr_y[name]:.2f} dB" if name in sample.psnr_y else ""
                               for name in columns] for sample in samples}
    # a column is as wide as its widest crop or caption, and a margin: small crops' captions do not run together
    side = max([crop.shape[1] for sample in samples for crop in sample.crops.values()] +
               [int(font.getlength(text)) + 16 for text in columns + sum(captions.values(), [])])
    texts = [heading] + [sample.title for sample in samples]
    width = max(len(columns) * side, *(int(font.getlength(text)) + 8 for text in texts))

    def band(texts: list[str]) -> np.ndarray:
        """A white band with texts[i] drawn at the left of column i."""
        image = Image.new("RGB", (width, font_size + 8), "white")
        draw = ImageDraw.Draw(image)
        for i, text in enumerate(texts):
            draw.text((i * side + 4, 4), text, fill="black", font=font)
        return np.asarray(image)

    rows = [band([heading]), band(columns)]
    for sample in samples:
        row = np.hstack([np.pad(crop, ((0, 0), (0, side - crop.shape[1]), (0, 0)), constant_values=255)
                         for crop in sample.crops.values()])
        rows += [band([sample.title]), np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)), constant_values=255),
                 band(captions[sample.title])]
    return np.vstack(rows)


# Below this PSNR-Y gain over bicubic a model has learnt little: the demo's gains 0.16 dB on its val
# split after its first epoch and 2.4 dB after ten.
LEARNT_LITTLE_DB = 0.5


def load_sets(folders: list[str | Path]) -> dict[str, list[Pair]]:
    """Each folder's pairs (hr/ with or without lr/) under the folder's name, listed, not decoded.

    A benchmark must be complete: a file without its partner is an error that lists them all, and
    so is a file that cannot be used when it is scored (see `evaluation.score_pairs`).
    """
    sets = {}
    for folder in map(Path, folders):
        if folder.name in sets:
            raise ValueError(f"{folder}: another benchmark folder is also named {folder.name!r}")
        pairs, rejects = list_folder(folder)
        if rejects or not pairs:
            problems = "; ".join(f"{r.name}: {r.reason}" for r in rejects) or "no images in hr/"
            raise ValueError(f"{folder}: {problems}")
        sets[folder.name] = pairs
    return sets


def benchmark(model: Model, sets: dict[str, list[Pair]], scale: int, inference: InferenceConfig,
              num_samples: int, crop: int, rows_path: str | Path, metrics_path: str | Path,
              figure_path: str | Path) -> dict:
    """Scores every set, writes the three files, and returns the per-set summary."""
    model = configured(model, inference)
    rows, summary = [], {}
    for name, pairs in sets.items():
        set_rows = score_pairs(pairs, scale, model, bicubic=True, ssim=True, config=inference)
        rows += [{"set": name, **row} for row in set_rows]
        summary[name] = summarize(set_rows)
        log.info("%s (%d images): PSNR-Y %.3f dB, SSIM %.4f | bicubic %.3f dB, %.4f", name, len(pairs),
                 summary[name]["model"]["psnr_y"], summary[name]["model"]["ssim"],
                 summary[name]["bicubic"]["psnr_y"], summary[name]["bicubic"]["ssim"])
        gain = summary[name]["gain_over_bicubic"]["psnr_y"]
        if gain < LEARNT_LITTLE_DB:
            log.warning("%s: the model's PSNR-Y is %+.2f dB against bicubic's, so it has learnt little: train it "
                        "longer (train.epochs, or train.time_limit_minutes)", name, gain)
    write_csv(rows_path, rows)
    write_json(metrics_path, summary)
    samples = [(name, pair) for name, pairs in sets.items() for pair in pairs[:num_samples]]
    precision, _ = run_precision(model, inference.precision)
    write_png(figure_path, figure(sample_crops(model_and_bicubic(model, precision), samples, scale, crop)))
    return summary
