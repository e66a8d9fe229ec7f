"""SRResNet (Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a Generative
Adversarial Network", CVPR 2017), with the variants the literature since has measured.

Defaults are the reference script's network: 16 residual blocks of Conv3x3-BN-ReLU-Conv3x3-BN,
64 features, ReLU where the paper has PReLU, x4 (1,549,443 parameters). The options (`ModelConfig`):

- ``activation``: ``relu`` (the reference script) or ``prelu`` (the paper; one slope per channel),
  in the head and in every residual block.
- ``upsampler_activation``: after each PixelShuffle, ``relu`` (the reference script), ``prelu``
  (the paper) or ``none`` (EDSR's linear upsampler). A ReLU there can die for good: when the
  network's output is a correction added to bicubic, the first Adam steps at a high learning rate
  silence the correction, and ReLUs fed by the previous ReLU's non-negative outputs all turn off
  together, after which no gradient reaches them (see docs/recipes.md).
- ``batch_norm``: BatchNorm in the blocks and after the body (the reference script), or none
  (EDSR, BasicSR's MSRResNet: faster steps, less memory, the same behaviour in train and eval).
- ``res_scale``: each block's output is scaled by this before it is added (EDSR's residual scaling).
- ``bicubic_residual``: ours; adds a bicubic upsampling of the input to the output, so the network
  learns only the detail bicubic misses and starts at bicubic quality instead of below it.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from sr_core.config import ModelConfig


def activation(name: str, num_features: int) -> nn.Module:
    """A fresh activation layer: ReLU, PReLU with one slope per channel, or the identity."""
    if name == "prelu":
        return nn.PReLU(num_features)
    return nn.ReLU(inplace=True) if name == "relu" else nn.Identity()


def conv_bn(num_features: int, batch_norm: bool) -> list[nn.Module]:
    """Conv3x3 (C -> C), followed by BatchNorm when `batch_norm`."""
    conv = nn.Conv2d(num_features, num_features, 3, padding=1)
    return [conv, nn.BatchNorm2d(num_features)] if batch_norm else [conv]


class ResidualBlock(nn.Module):
    """Conv3x3-BN-act-Conv3x3-BN (BN optional), scaled by `res_scale`, plus identity."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config.num_features
        self.res_scale = config.res_scale
        self.body = nn.Sequential(*conv_bn(c, config.batch_norm), activation(config.activation, c),
                                  *conv_bn(c, config.batch_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.body(x)
        return x + (residual if self.res_scale == 1 else self.res_scale * residual)  # x1: no kernel to launch


class Upsampler(nn.Sequential):
    """log2(scale) stages of Conv3x3 (C -> 4C) + PixelShuffle(2) + activation."""

    def __init__(self, config: ModelConfig):
        c, stages = config.num_features, []
        for _ in range(int(math.log2(config.scale))):
            stages += [nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2), activation(config.upsampler_activation, c)]
        super().__init__(*stages)


def receptive_radius(config: ModelConfig) -> int:
    """LR pixels on each side of a position that can change the network's output there: tiles that
    overlap by this much give the same result as the whole image."""
    radius = 4 + 2 * config.num_blocks + 1  # head 9x9, two 3x3 per block, body tail 3x3
    radius += sum(1 / 2**i for i in range(int(math.log2(config.scale))))  # upsampler 3x3 at 1x, 2x, ...
    radius += 4 / config.scale  # tail 9x9 at the output resolution
    if config.bicubic_residual:
        radius = max(radius, 2)  # bicubic reads 2 LR pixels on each side
    return math.ceil(radius)


class SRResNet(nn.Module):
    """Maps an LR batch (N, 3, H, W) in 0..1 to an SR batch (N, 3, scale*H, scale*W), unclamped."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config.num_features
        self.head = nn.Sequential(nn.Conv2d(3, c, 9, padding=4), activation(config.activation, c))
        self.blocks = nn.Sequential(*[ResidualBlock(config) for _ in range(config.num_blocks)])
        self.body_tail = nn.Sequential(*conv_bn(c, config.batch_norm))
        self.upsampler = Upsampler(config)
        self.tail = nn.Conv2d(c, 3, 9, padding=4)

    @property
    def device(self) -> torch.device:
        return self.tail.weight.device

    def forward(self, lr_img: torch.Tensor) -> torch.Tensor:
        features = self.head(lr_img)
        features = features + self.body_tail(self.blocks(features))  # global skip
        sr_img = self.tail(self.upsampler(features))
        if self.config.bicubic_residual:
            sr_img = sr_img + F.interpolate(
                lr_img, scale_factor=self.config.scale, mode="bicubic", align_corners=False
            )
        return sr_img


def inference_bytes(config: ModelConfig, lr_pixels: int) -> int:
    """About the most memory the network's float32 activations take at once on `lr_pixels` LR
    pixels without gradients: at the last upsampling stage, the convolution's output and the
    pixel-shuffled and activated copies of it, `num_features` x scale^2 values a pixel each (2.5
    of them in all; measured on the CPU: 2.0 for 16 x 64, 2.3 for 4 x 32), plus the body's features
    and the bicubic image."""
    features, area = config.num_features, config.scale ** 2
    return 4 * lr_pixels * (int(2.5 * features * area) + 4 * features + 6 * area)
