"""Where a training run's decoded pairs live, and the choice of where (`residency`).

The reference script decoded two PNGs per sample, every step. Here every pair is decoded once into
uint8 arrays: on the GPU when they fit there beside a training step, else in RAM (both an
`ImageStore`: one flat buffer), else on disk (a `StripStore`: each image kept as overlapping
vertical strips 4 patches wide, stored row by row with every LR row after its `scale` HR rows, so
that a patch, HR and LR, is one contiguous read). A store gives the rows of a batch's patches;
`sampler.PatchBatcher` draws the batches and cuts them.
"""

import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sr_core.data import Pair, cache_key, load_pair, lr_shape
from sr_core.files import size_text, write_bytes
from sr_core.images import image_size
from sr_core.parallel import num_workers, ordered_map

STRIP_PATCHES = 4  # a disk strip is this many patches wide: reads of ~4x a patch, ~1.33x the decoded bytes on disk
READ_THREADS = 16  # concurrent disk reads of a batch (measured: 8 threads doubled a single thread's reads)
GPU_STEP_MARGIN = 1.5  # times a training step's measured peak kept free beside images on a GPU
GPU_RESERVE = 2**30  # and this for cuDNN's workspaces and the allocator's slack


@dataclass(frozen=True)
class Draw:
    """One batch's random draws: image index, patch top-left (LR pixels) and flip/turn of each sample."""
    images: np.ndarray
    y: np.ndarray
    x: np.ndarray
    transforms: np.ndarray


class ImageStore:
    """Decoded pairs in one flat uint8 buffer on `device` (all LR images, then all HR images, HWC),
    so that any set of patch rows is one `index_select` away."""

    def __init__(self, lr_shapes: list[tuple[int, int]], scale: int, device: torch.device):
        self.scale, self.device = scale, device
        self.lr_shapes = np.array(lr_shapes, dtype=np.int64).reshape(-1, 2)  # (height, width) of each LR
        lr_bytes = 3 * self.lr_shapes.prod(axis=1)
        self.lr_offsets = np.concatenate([[0], np.cumsum(lr_bytes)[:-1]])
        self.hr_offsets = lr_bytes.sum() + scale * scale * self.lr_offsets
        self.data = torch.empty(int(lr_bytes.sum() * (1 + scale * scale)), dtype=torch.uint8, device=device)

    @classmethod
    def decode(cls, pairs: list[Pair], scale: int, device: torch.device, workers: int = 0) -> "ImageStore":
        """Every pair decoded in `workers` threads (0: one per core) straight into the store."""
        store = cls([lr_shape(pair, scale) for pair in pairs], scale, device)
        threads = num_workers(workers)
        with ThreadPoolExecutor(threads) as pool:  # at most 2 decoded pairs a thread wait to be copied in
            decoded = ordered_map(pool, lambda pair: load_pair(pair, scale), pairs, 2 * threads)
            for index, (lr_img, hr_img) in enumerate(tqdm(decoded, total=len(pairs), desc="decoding", unit="pair",
                                                          leave=False)):
                store.put(index, lr_img, hr_img)
        return store

    @classmethod
    def from_arrays(cls, decoded: list[tuple[np.ndarray, np.ndarray]], scale: int, device: torch.device
                    ) -> "ImageStore":
        """A store of (lr_img, hr_img) HWC uint8 arrays already decoded."""
        store = cls([lr_img.shape[:2] for lr_img, _ in decoded], scale, device)
        for index, (lr_img, hr_img) in enumerate(decoded):
            store.put(index, lr_img, hr_img)
        return store

    def put(self, index: int, lr_img: np.ndarray, hr_img: np.ndarray) -> None:
        height, width = self.lr_shapes[index]
        s = self.scale
        if lr_img.shape != (height, width, 3) or hr_img.shape != (s * height, s * width, 3):
            raise ValueError(f"pair {index}: LR {lr_img.shape} and HR {hr_img.shape} are not the "
                             f"{height}x{width} announced and {s} times that")
        for offset, img in ((self.lr_offsets[index], lr_img), (self.hr_offsets[index], hr_img)):
            self.data[offset:offset + img.size].copy_(torch.from_numpy(np.ascontiguousarray(img)).view(-1))

    def rows(self, draw: Draw, patch: tuple[int, int]) -> tuple[torch.Tensor, np.ndarray]:
        """The buffer to cut `draw`'s patches from, and the start of each row segment (see `cut`)."""
        s, h = self.scale, patch[0]
        lr_width = self.lr_shapes[draw.images, 1][:, None]
        hr = (self.hr_offsets[draw.images][:, None] + (s * draw.y[:, None] + np.arange(s * h)) * (3 * s * lr_width)
              + 3 * s * draw.x[:, None])
        lr = self.lr_offsets[draw.images][:, None] + (draw.y[:, None] + np.arange(h)) * (3 * lr_width) + 3 * draw.x[:, None]
        return self.data, np.concatenate([hr, lr], axis=1).ravel()

    def close(self) -> None:
        """Nothing to release: the buffer goes with the store."""


def strip_geometry(widths: np.ndarray, patch_widths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(strip width, step between strips, number of strips) of images `widths` LR pixels wide cut
    for patches `patch_widths` wide: strips `STRIP_PATCHES` patches wide that overlap by a patch,
    the last flush with the right edge; strip j starts at min(j * step, width - strip width)."""
    strip = np.minimum(widths, STRIP_PATCHES * patch_widths)
    step = np.maximum(strip - patch_widths, 1)
    return strip, step, np.where(strip == widths, 1, -(-(widths - strip) // step) + 1)


class StripStore:
    """Decoded pairs as files laid out so that one patch (HR and LR) is one contiguous read (see
    `strips`), for when they exceed RAM. The reads of a batch run in `READ_THREADS` threads and go
    through the page cache, which keeps what RAM allows; `decode` writes the files."""

    def __init__(self, files: list[Path], lr_shapes: list[tuple[int, int]], scale: int, patch_side: int):
        self.files, self.scale, self.device = files, scale, torch.device("cpu")
        s = scale
        self.lr_shapes = np.array(lr_shapes, dtype=np.int64).reshape(-1, 2)
        self.patch_widths = np.full(len(files), patch_side) if patch_side else self.lr_shapes[:, 1]
        self.strip_widths, self.steps, self.strip_counts = strip_geometry(self.lr_shapes[:, 1], self.patch_widths)
        self.record_bytes = 3 * self.strip_widths * (s * s + 1)  # s HR rows of s * width pixels, one LR row
        self.strip_bytes = self.lr_shapes[:, 0] * self.record_bytes
        self.slot_bytes = int((patch_side or self.lr_shapes[:, 0].max()) * self.record_bytes.max())  # one patch's read
        self.row_bytes = int(3 * s * self.patch_widths.max())
        for path, size in zip(files, self.strip_counts * self.strip_bytes):
            if path.stat().st_size != size:
                raise ValueError(f"{path}: {path.stat().st_size} bytes where its layout needs {size}; delete it "
                                 f"and run again")
        self._pool = ThreadPoolExecutor(READ_THREADS)

    @classmethod
    def decode(cls, pairs: list[Pair], scale: int, patch_side: int, cache_dir: str | Path, workers: int = 0
               ) -> "StripStore":
        """Every pair decoded in `workers` threads (0: one per core) into a file of `cache_dir` laid out
        for patches of `patch_side` LR pixels (0: whole images), named by `data.cache_key` (a file
        already there is used as it is). Files are written atomically: concurrent ranks, a kill or a
        full disk leave no half file."""
        def write(pair: Pair) -> Path:
            path = Path(cache_dir) / f"{cache_key(pair, scale, patch_side, STRIP_PATCHES)}.strips"
            if not path.exists():
                write_bytes(path, strips(*load_pair(pair, scale), scale, patch_side))
            return path

        with ThreadPoolExecutor(num_workers(workers)) as pool:
            files = list(tqdm(pool.map(write, pairs), total=len(pairs), desc="decoding to disk", unit="pair", leave=False))
        return cls(files, [lr_shape(pair, scale) for pair in pairs], scale, patch_side)

    def rows(self, draw: Draw, patch: tuple[int, int]) -> tuple[torch.Tensor, np.ndarray]:
        """Reads each patch's records into a slot of a fresh buffer, in threads, and returns the
        buffer and the start of each row segment in it (see `cut`)."""
        s, h = self.scale, patch[0]
        strip_width, record, step = (a[draw.images] for a in (self.strip_widths, self.record_bytes, self.steps))
        strip = np.minimum(draw.x // step, self.strip_counts[draw.images] - 1)
        x_in_strip = draw.x - np.minimum(strip * step, self.lr_shapes[draw.images, 1] - strip_width)
        read_at = strip * self.strip_bytes[draw.images] + draw.y * record
        buffer = np.empty(len(draw.images) * self.slot_bytes + self.row_bytes, dtype=np.uint8)
        view = memoryview(buffer)

        def read(sample: int) -> None:
            start, size = sample * self.slot_bytes, int(h * record[sample])
            path = self.files[draw.images[sample]]
            fd = os.open(path, os.O_RDONLY)
            try:
                if os.preadv(fd, [view[start:start + size]], int(read_at[sample])) != size:
                    raise OSError(f"{path}: shorter than its layout; delete it and run again")
            finally:
                os.close(fd)

        list(self._pool.map(read, range(len(draw.images))))
        slots = (np.arange(len(draw.images)) * self.slot_bytes)[:, None]
        records = np.arange(h)[:, None] * record[:, None, None]
        hr_rows = (records + np.arange(s) * (3 * s * strip_width)[:, None, None]).reshape(-1, s * h)
        hr = slots + hr_rows + 3 * s * x_in_strip[:, None]
        lr = slots + records[:, :, 0] + (3 * s * s * strip_width + 3 * x_in_strip)[:, None]
        return torch.from_numpy(buffer), np.concatenate([hr, lr], axis=1).ravel()

    def close(self) -> None:
        self._pool.shutdown()


def strips(lr_img: np.ndarray, hr_img: np.ndarray, scale: int, patch_side: int) -> bytes:
    """A pair in `StripStore`'s layout for patches of `patch_side` LR pixels (0: whole images): its
    strips (see `strip_geometry`; every patch lies whole in one) one after another, each stored as
    a record per LR row: the `scale` HR rows of that row, then the LR row."""
    height, width = lr_img.shape[:2]
    strip, step, count = (int(a) for a in strip_geometry(np.array(width), np.array(patch_side or width)))
    out = []
    for j in range(count):
        x = min(j * step, width - strip)
        hr = hr_img[:, scale * x:scale * (x + strip)].reshape(height, -1)
        out.append(np.concatenate([hr, lr_img[:, x:x + strip].reshape(height, -1)], axis=1))
    return np.concatenate(out).tobytes()


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
