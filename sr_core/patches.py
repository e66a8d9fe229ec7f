"""Training batches of random patches, cut in a constant number of tensor operations wherever the
decoded images live: on the GPU, in RAM, or on disk when they exceed RAM.

A batch is drawn in one go: the next images of a random order (each image once before any
repeats), a uniform position in each and one of the 8 flips and 90-degree turns (4 without the
turns when patches are not square), one random draw per quantity. It is then cut in two gathers,
whatever its size:
1. `index_select` of row segments: the patch's HR rows and LR rows, each as a row of the HR
   patch's width in bytes, from a flat uint8 buffer of HWC images (an LR row reads past its patch;
   the extra bytes are never used). Each sample becomes a block of `scale * h + h` rows.
2. `index_select` of pixels from those blocks through a table made once per flip/turn, which
   both turns the patch and splits HR from LR. Without augmentation this gather is skipped.

On disk (`StripStore`) each image is kept as overlapping vertical strips 4 patches wide, each
stored row by row with every LR row after its `scale` HR rows, so that a patch (HR and LR) is one
contiguous read; background threads read the batch ahead of the training step.
"""

import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sr_core.data import Pair, cache_key, load_pair, lr_shape
from sr_core.files import write_bytes
from sr_core.parallel import num_workers, ordered_map

STRIP_PATCHES = 4  # a disk strip is this many patches wide: reads of ~4x a patch, ~1.33x the decoded bytes on disk
READ_THREADS = 16  # concurrent disk reads of a batch (measured: 8 threads doubled a single thread's reads)
PREFETCH = 4  # batches prepared ahead of the training step


@dataclass(frozen=True)
class Draw:
    """One batch's random draws: image index, patch top-left (LR pixels) and flip/turn of each sample."""
    images: np.ndarray
    y: np.ndarray
    x: np.ndarray
    transforms: np.ndarray


def transform_coordinates(height: int, width: int, transform: int) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel of a patch of `height` x `width` after `transform` (bit 0: flip top-bottom,
    bit 1: flip left-right, bit 2: transpose), the row and column it comes from."""
    out_h, out_w = (width, height) if transform & 4 else (height, width)
    i, j = np.mgrid[0:out_h, 0:out_w]
    rows, cols = (j, i) if transform & 4 else (i, j)
    if transform & 1:
        rows = height - 1 - rows
    if transform & 2:
        cols = width - 1 - cols
    return rows, cols


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


class PatchBatcher:
    """Batches of aligned (lr_img, hr_img) as NCHW float tensors in 0..1 on `device`.

    `store` holds the decoded pairs: an `ImageStore` (on the training device or in RAM) or a
    `StripStore` (on disk). With `patch_size` > 0 each sample is a random patch (HR side
    `patch_size`); with 0 it is a whole image (the reference script's mode; the images must then
    share one size). When the store is not on `device` (RAM or disk feeding a GPU, disk feeding
    the CPU), a background thread prepares the next batches (pinned on CUDA); the batches are the
    same either way, so a run's history does not depend on where the images live.
    """

    def __init__(self, store: "ImageStore | StripStore", patch_size: int, augment: bool, device: torch.device,
                 seed: int, batch_size: int):
        s = store.scale
        if patch_size % s:
            raise ValueError(f"patch_size ({patch_size}) must be a multiple of scale ({s})")
        sizes = {tuple(size) for size in store.lr_shapes.tolist()}
        p = patch_size // s
        if p and min(min(size) for size in sizes) < p:
            raise ValueError(f"train.patch_size {patch_size} needs LR images of at least {p} px "
                             f"a side; the smallest is {min(sizes, key=min)}")
        if not p and len(sizes) > 1:
            raise ValueError(f"whole-image batches (patch_size 0) need images of one size; found {len(sizes)}")
        self.store, self.device, self.batch_size = store, device, batch_size
        self.max_value = torch.tensor(255.0, device=device)  # a tensor: a Python number costs 4 more operations
        self.patch = (p, p) if p else next(iter(sizes))
        h, w = self.patch
        kinds = ((0, 1, 2, 3, 4, 5, 6, 7) if h == w else (0, 1, 2, 3)) if augment else (0,)
        self.table = None  # pixel indices of one sample block for each flip/turn; None: no pixel gather
        if augment:
            block = []
            for kind in kinds:
                hr_rows, hr_cols = transform_coordinates(s * h, s * w, kind)
                lr_rows, lr_cols = transform_coordinates(h, w, kind)
                block.append(np.concatenate([(hr_rows * s * w + hr_cols).ravel(),
                                             ((s * h + lr_rows) * s * w + lr_cols).ravel()]))
            block_pixels = (s * h + h) * s * w
            offsets = torch.arange(batch_size).mul_(block_pixels).view(-1, 1)
            index_dtype = torch.int32 if batch_size * block_pixels < 2**31 else torch.int64  # int32: measured faster
            self.table = torch.from_numpy(np.stack(block)).to(store.device, index_dtype)
            self.offsets = offsets.to(store.device, index_dtype)
        self.num_kinds = len(kinds)
        self.num_images = len(store.lr_shapes)
        self.rng = np.random.default_rng(seed)
        self.order, self.position = self.rng.permutation(self.num_images), 0
        self._state = self._draw_state()
        self.prefetch = store.device != device or isinstance(store, StripStore)
        self._queue, self._thread, self._stop = None, None, threading.Event()

    # --- the draws: numpy on the host, one call per quantity ---------------------------------
    def _draw_state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "order": self.order.tolist(), "position": self.position}

    def draw(self) -> Draw:
        """The next batch's images, positions and flips/turns."""
        needed, images = self.batch_size, []
        while needed:
            if self.position == self.num_images:
                self.order, self.position = self.rng.permutation(self.num_images), 0
            taken = self.order[self.position:self.position + needed]
            images.append(taken)
            self.position += len(taken)
            needed -= len(taken)
        images = np.concatenate(images)
        shapes = self.store.lr_shapes[images]
        h, w = self.patch
        y = self.rng.integers(0, shapes[:, 0] - h + 1)
        x = self.rng.integers(0, shapes[:, 1] - w + 1)
        return Draw(images, y, x, self.rng.integers(0, self.num_kinds, self.batch_size))

    # --- the cut: a constant number of tensor operations a batch ------------------------------
    def cut(self, draw: Draw) -> torch.Tensor:
        """The batch as uint8 pixels on the store's device: for each sample its HR patch then its LR
        patch (see `views`), row by row, HWC."""
        source, starts = self.store.rows(draw, self.patch)
        row_bytes = 3 * self.store.scale * self.patch[1]
        segments = source.as_strided((source.numel() - row_bytes + 1, row_bytes), (1, 1))
        blocks = segments.index_select(0, torch.from_numpy(starts).to(source.device, non_blocking=True))
        if self.table is None:
            return blocks
        kinds = torch.from_numpy(draw.transforms).to(source.device, non_blocking=True)
        pixels = self.table.index_select(0, kinds).add_(self.offsets)
        return blocks.view(-1, 3).index_select(0, pixels.view(-1))

    def views(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(lr, hr) NCHW uint8 views of `cut`'s output: strides only, no copy. Each sample is its HR
        patch's rows, then its LR patch's rows: as row segments of the HR width (no augmentation),
        or as pixels, flipped or turned."""
        s, (h, w), n = self.store.scale, self.patch, self.batch_size
        sample, lr_row = ((s * h + h) * s * w * 3, 3 * s * w) if self.table is None else ((s * s + 1) * h * w * 3, 3 * w)
        hr = pixels.as_strided((n, 3, s * h, s * w), (sample, 1, 3 * s * w, 3))
        lr = pixels.as_strided((n, 3, h, w), (sample, 1, lr_row, 3), pixels.storage_offset() + 3 * s * s * h * w)
        return lr, hr

    def prepared(self) -> tuple[torch.Tensor, dict]:
        """The next batch's pixels (pinned when they will travel to a GPU) and the draws' state after it."""
        pixels = self.cut(self.draw())
        if self.device.type == "cuda" and pixels.device.type == "cpu":
            pixels = pixels.pin_memory()
        return pixels, self._draw_state()

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch as (lr, hr) float tensors in 0..1 on `device` (channels_last on CUDA)."""
        if self.prefetch:
            if self._thread is None:
                self._start()
            item = self._queue.get()
            if isinstance(item, BaseException):
                self.close()
                raise item
            pixels, self._state = item
        else:
            pixels, self._state = self.prepared()
        if pixels.device != self.device:
            pixels = pixels.to(self.device, non_blocking=True)
        memory_format = torch.channels_last if self.device.type == "cuda" else torch.contiguous_format
        return tuple(torch.empty(view.shape, device=self.device, memory_format=memory_format).copy_(view)
                     .div_(self.max_value) for view in self.views(pixels))

    # --- resume and the background thread ----------------------------------------------------
    def state(self) -> dict:
        """The draws' state after the last batch returned by `sample` (the resume point)."""
        return self._state

    def set_state(self, state: dict) -> None:
        self.close()
        self._restore(state)
        self._state = state

    @staticmethod
    def check_state(state: dict, num_images: int) -> None:
        """Raises where `state` cannot resume the draws over `num_images` images (see `set_state`)."""
        np.random.default_rng().bit_generator.state = state["rng"]
        order = np.asarray(state["order"], dtype=np.int64)
        if not np.array_equal(np.sort(order), np.arange(num_images)) or not 0 <= state["position"] <= num_images:
            raise ValueError(f"batch draws over {order.size} images, not {num_images}")

    def _restore(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.order, self.position = np.array(state["order"], dtype=np.int64), state["position"]

    def _start(self) -> None:
        self._queue, self._stop = queue.Queue(PREFETCH), threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(self._queue, self._stop), daemon=True,
                                        name="patch-batches")
        self._thread.start()

    def _produce(self, out: queue.Queue, stop: threading.Event) -> None:
        def put(item) -> None:
            while not stop.is_set():
                try:
                    return out.put(item, timeout=0.1)
                except queue.Full:
                    continue

        try:
            while not stop.is_set():
                put(self.prepared())
        except BaseException as error:  # handed to the training loop, which raises it
            put(error)

    def close(self) -> None:
        """Stops the background thread; the draws go back to the last batch returned."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._restore(self._state)
