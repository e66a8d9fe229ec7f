"""Training batches cut from images decoded once, and whole-image batches for validation.

The reference script decoded two PNGs per sample, every step. Here every training pair is decoded once into
uint8 arrays — in memory when they fit, else in memory-mapped .npy files on disk (the page cache
then keeps what RAM allows) — and each batch of random patches, or of whole images, is cut from
them by tensor indexing, on the GPU when the images fit in its memory.
"""

import hashlib
import io
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import torch
from tqdm import tqdm

from sr_core.data import Pair, load_pair
from sr_core.files import write_bytes
from sr_core.images import image_size
from sr_core.inference import same_size_batches
from sr_core.parallel import num_workers


def decoded_bytes(pair: Pair, scale: int) -> int:
    """The bytes of the pair once decoded (HR and LR, RGB uint8), read from the HR file's header."""
    width, height = image_size(pair.hr_path)
    return 3 * width * height * (scale * scale + 1) // (scale * scale)


def fits_in_memory(pairs: list[Pair], scale: int) -> bool:
    """Whether this node's processes can each hold the decoded pairs in half the free RAM."""
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    needed = processes * sum(decoded_bytes(pair, scale) for pair in pairs)
    return needed < psutil.virtual_memory().available / 2


def decode_pairs(pairs: list[Pair], scale: int, cache_dir: str | Path | None = None, workers: int = 0
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every pair as (lr_img, hr_img) HWC uint8, decoded once, in `workers` threads (0: one per core).

    With `cache_dir`, the arrays are saved there as .npy files (named by a hash of the source files'
    paths, sizes and modification times, so an edited image is decoded again) and memory-mapped
    copy-on-write (writable for torch, never written back).
    """
    def decode(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        if cache_dir is None:
            return load_pair(pair, scale)
        sources = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns)
                   for p in (pair.lr_path, pair.hr_path) if p is not None]
        key = hashlib.sha256(repr((sources, scale)).encode()).hexdigest()[:32]
        lr_file, hr_file = Path(cache_dir) / f"{key}.lr.npy", Path(cache_dir) / f"{key}.hr.npy"
        if not (lr_file.exists() and hr_file.exists()):
            for path, img in zip((lr_file, hr_file), load_pair(pair, scale)):
                buffer = io.BytesIO()
                np.save(buffer, img)
                write_bytes(path, buffer.getbuffer())  # concurrent ranks, a kill or a full disk leave no half file
        return np.load(lr_file, mmap_mode="c"), np.load(hr_file, mmap_mode="c")

    with ThreadPoolExecutor(num_workers(workers)) as pool:
        return list(tqdm(pool.map(decode, pairs), total=len(pairs), desc="decoding", unit="pair", leave=False))


def storage_device(num_bytes: int, device: torch.device) -> torch.device:
    """Where images that are read again and again should live: on a GPU `device` when they take
    under a third of its free memory, else on the host."""
    if device.type == "cuda" and num_bytes < torch.cuda.mem_get_info(device)[0] / 3:
        return device
    return torch.device("cpu")


class ImageBatches:
    """Whole decoded pairs as (lr, hr) NHWC uint8 batches of one size, for scoring again and again.

    The pairs are grouped once (see `same_size_batches`) and kept on a GPU `device` when they fit
    (see `storage_device`); each iteration stacks them into batches on `device`.
    """

    def __init__(self, decoded: list[tuple[np.ndarray, np.ndarray]], tile: int, device: torch.device):
        store = storage_device(sum(lr.nbytes + hr.nbytes for lr, hr in decoded), device)
        images = [(torch.from_numpy(lr).to(store), torch.from_numpy(hr).to(store)) for lr, hr in decoded]
        self.batches = list(same_size_batches(images, lambda pair: tuple(pair[0].shape[:2]), tile))
        self.device = device

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.batches:
            yield tuple(torch.stack(images).to(self.device, non_blocking=True) for images in zip(*batch))


def augment(lr_img: torch.Tensor, hr_img: torch.Tensor, generator: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random flip and 90-degree turns for both CHW tensors (180 degrees only if not square)."""
    square = lr_img.shape[-1] == lr_img.shape[-2]
    turns = int(torch.randint(4 if square else 2, (), generator=generator)) * (1 if square else 2)
    if torch.randint(2, (), generator=generator):
        lr_img, hr_img = lr_img.flip(-1), hr_img.flip(-1)
    return torch.rot90(lr_img, turns, (-2, -1)), torch.rot90(hr_img, turns, (-2, -1))


class PatchBatcher:
    """Batches of aligned (lr_img, hr_img) as NCHW float tensors in 0..1 on `device`.

    With `patch_size` > 0 each sample is a random patch (HR side `patch_size`); with 0 it is a whole
    image (the reference script's mode; the images must then share one size). Images are visited in a random
    order, each once before any repeats. The decoded images move to a GPU `device` as uint8 when
    they fit in a third of its free memory; else only the batches travel, through pinned memory.
    """

    def __init__(self, decoded: list[tuple[np.ndarray, np.ndarray]], scale: int, patch_size: int,
                 augment: bool, device: torch.device, seed: int):
        if patch_size % scale:
            raise ValueError(f"patch_size ({patch_size}) must be a multiple of scale ({scale})")
        sizes = {lr_img.shape[:2] for lr_img, _ in decoded}
        self.lr_patch = patch_size // scale
        if self.lr_patch and min(min(size) for size in sizes) < self.lr_patch:
            raise ValueError(f"train.patch_size {patch_size} needs LR images of at least {self.lr_patch} px "
                             f"a side; the smallest is {min(sizes, key=min)}")
        if not self.lr_patch and len(sizes) > 1:
            raise ValueError(f"whole-image batches (patch_size 0) need images of one size; found {len(sizes)}")
        self.scale, self.augment, self.device = scale, augment, device
        self.store = storage_device(sum(lr.nbytes + hr.nbytes for lr, hr in decoded), device)
        # CHW views of the HWC arrays; a memory-mapped array stays on disk until a patch is cut
        self.images = [tuple(torch.as_tensor(img).to(self.store).permute(2, 0, 1) for img in pair)
                       for pair in decoded]
        self.generator = torch.Generator().manual_seed(seed)
        self.order, self.position = torch.randperm(len(self.images), generator=self.generator), 0

    def state(self) -> dict:
        return {"rng": self.generator.get_state(), "order": self.order, "position": self.position}

    def set_state(self, state: dict) -> None:
        self.generator.set_state(state["rng"])
        self.order, self.position = state["order"], state["position"]

    def _next_image(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.position == len(self.order):
            self.order, self.position = torch.randperm(len(self.images), generator=self.generator), 0
        self.position += 1
        return self.images[int(self.order[self.position - 1])]

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        g, p, s = self.generator, self.lr_patch, self.scale
        lr_patches, hr_patches = [], []
        for _ in range(batch_size):
            lr_img, hr_img = self._next_image()
            if p:
                y = int(torch.randint(lr_img.shape[1] - p + 1, (), generator=g))
                x = int(torch.randint(lr_img.shape[2] - p + 1, (), generator=g))
                lr_img, hr_img = lr_img[:, y:y + p, x:x + p], hr_img[:, s * y:s * (y + p), s * x:s * (x + p)]
            if self.augment:
                lr_img, hr_img = augment(lr_img, hr_img, g)
            lr_patches.append(lr_img)
            hr_patches.append(hr_img)
        batch = (torch.stack(lr_patches), torch.stack(hr_patches))
        if self.store != self.device:
            batch = tuple(t.pin_memory().to(self.device, non_blocking=True) if self.device.type == "cuda"
                          else t.to(self.device) for t in batch)
        memory_format = torch.channels_last if self.device.type == "cuda" else torch.contiguous_format
        return tuple(t.float().div_(255).contiguous(memory_format=memory_format) for t in batch)
