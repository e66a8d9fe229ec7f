"""Pairs decoded once, where they live, and whole-image batches for validation.

The reference script decoded two PNGs per sample, every step. Here every pair is decoded once into
uint8 arrays: on the GPU when they fit there beside a training step, else in RAM, else on disk
(`residency`). Training patches are cut from them by `patches.PatchBatcher`; the val pairs are
scored again and again from `ImageBatches`.
"""

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sr_core.config import ModelConfig
from sr_core.data import Pair, cache_key, load_pair
from sr_core.files import size_text, write_bytes
from sr_core.images import image_size
from sr_core.inference import same_size_batches
from sr_core.model import inference_bytes, receptive_radius
from sr_core.parallel import num_workers


def decoded_bytes(pair: Pair, scale: int) -> int:
    """The bytes of the pair once decoded (HR and LR, RGB uint8), read from the HR file's header."""
    width, height = image_size(pair.hr_path)
    return 3 * width * height * (scale * scale + 1) // (scale * scale)


def decode_pairs(pairs: list[Pair], scale: int, cache_dir: str | Path | None = None, workers: int = 0
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every pair as (lr_img, hr_img) HWC uint8, decoded once, in `workers` threads (0: one per core).

    With `cache_dir`, the arrays are saved there as .npy files (named by `data.cache_key`) and memory-mapped
    copy-on-write (writable for torch, never written back).
    """
    def decode(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        if cache_dir is None:
            return load_pair(pair, scale)
        key = cache_key(pair, scale)
        lr_file, hr_file = Path(cache_dir) / f"{key}.lr.npy", Path(cache_dir) / f"{key}.hr.npy"
        if not (lr_file.exists() and hr_file.exists()):
            for path, img in zip((lr_file, hr_file), load_pair(pair, scale)):
                buffer = io.BytesIO()
                np.save(buffer, img)
                write_bytes(path, buffer.getbuffer())  # concurrent ranks, a kill or a full disk leave no half file
        return np.load(lr_file, mmap_mode="c"), np.load(hr_file, mmap_mode="c")

    with ThreadPoolExecutor(num_workers(workers)) as pool:
        return list(tqdm(pool.map(decode, pairs), total=len(pairs), desc="decoding", unit="pair", leave=False))


GPU_STEP_MARGIN = 1.5  # times a training step's measured peak kept free beside images on a GPU
GPU_RESERVE = 2**30  # and this for cuDNN's workspaces and the allocator's slack


def validation_bytes(lr_shapes: list[tuple[int, int]], config: ModelConfig, tile: int) -> int:
    """About the most device memory one validation pass takes: the network's float32 activations
    (`model.inference_bytes`) on the largest batch `ImageBatches` forms of LR images of
    `lr_shapes`, as `upscale_into` cuts it into tiles (with their margins), and that batch's HR
    and SR images (uint8). fp32's activations: a bound for bf16 and fp16."""
    scale, margin = config.scale, 2 * receptive_radius(config)
    largest = 0
    for batch in same_size_batches(lr_shapes, lambda shape: tuple(shape), tile):
        height, width = batch[0]
        piece = min(tile + margin, height) * min(tile + margin, width) if tile else height * width
        images = 2 * 3 * scale * scale * height * width  # its HR and its SR
        largest = max(largest, len(batch) * images + inference_bytes(config, len(batch) * piece))
    return largest


def residency(data_bytes: int, decode_cache: str, ram_available: int, processes: int,
              gpu_free: int | None = None, step_peak: int | None = None, val_peak: int = 0) -> tuple[str, str]:
    """Where the decoded pairs of a training run live, "gpu", "ram" or "disk", and why, for the log.

    On a GPU when they fit in its free memory (`gpu_free`) beside `GPU_STEP_MARGIN` times the
    measured peak of a training step, a validation pass (`val_peak`, see `validation_bytes`) and
    `GPU_RESERVE`; else in RAM when `decode_cache` says so or when each of the node's `processes`
    can hold them in half the available RAM; else on disk.
    """
    if decode_cache == "disk":
        return "disk", "train.decode_cache is disk"
    reasons = []
    if gpu_free is not None:
        fits = data_bytes + GPU_STEP_MARGIN * step_peak + val_peak + GPU_RESERVE <= gpu_free
        reasons.append(f"{size_text(data_bytes)} decoded + {GPU_STEP_MARGIN} x {size_text(step_peak)} for a training "
                       f"step + {size_text(val_peak)} for validation + {size_text(GPU_RESERVE)} "
                       f"{'fit in' if fits else 'exceed'} the {size_text(gpu_free)} free on the GPU")
        if fits:
            return "gpu", reasons[0]
    fits = processes * data_bytes < ram_available / 2
    reasons.append(f"{processes} x {size_text(data_bytes)} decoded {'fit in' if fits else 'exceed'} half the "
                   f"{size_text(ram_available)} of RAM available")
    if decode_cache == "memory":
        return "ram", "; ".join(reasons + ["train.decode_cache is memory"])
    return ("ram" if fits else "disk"), "; ".join(reasons)


class ImageBatches:
    """Whole decoded pairs as (lr, hr) NHWC uint8 batches of one size, for scoring again and again.

    The pairs are grouped once (see `same_size_batches`) and kept on `store` (the GPU, when
    `residency` chose it; else the host); each iteration stacks them into batches on `device`.
    """

    def __init__(self, decoded: list[tuple[np.ndarray, np.ndarray]], tile: int, device: torch.device,
                 store: torch.device = torch.device("cpu")):
        images = [(torch.from_numpy(lr).to(store), torch.from_numpy(hr).to(store)) for lr, hr in decoded]
        self.batches = list(same_size_batches(images, lambda pair: tuple(pair[0].shape[:2]), tile))
        self.device = device

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.batches:
            yield tuple(torch.stack(images).to(self.device, non_blocking=True) for images in zip(*batch))

