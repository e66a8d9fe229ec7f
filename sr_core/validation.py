"""Whole-image batches of the val pairs, decoded once and scored again and again, and the device
memory one validation pass takes (checked before training starts)."""

from collections.abc import Iterator

import numpy as np
import torch

from sr_core.config import ModelConfig
from sr_core.inference import same_size_batches
from sr_core.model import inference_bytes, receptive_radius


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
