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

The decoded images live in a store (see stores.py); when it is not on the training device,
background threads prepare the batches ahead of the training step.
"""

import queue
import threading

import numpy as np
import torch

from sr_core.stores import Draw, ImageStore, StripStore

PREFETCH = 4  # batches prepared ahead of the training step


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
