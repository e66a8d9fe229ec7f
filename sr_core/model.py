"""SRResNet (Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a Generative
Adversarial Network", CVPR 2017), as the seed built it.

Defaults are the seed's network: 16 residual blocks, 64 features, x4 (1,549,443 parameters).
One option is ours: ``bicubic_residual`` adds a bicubic upsampling of the input to the output, so
the network learns only the detail bicubic misses. It starts at bicubic quality instead of below
it, which is what lets a small CPU demo show learning in minutes.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from sr_core.config import ModelConfig


class ResidualBlock(nn.Module):
    """Conv3x3-BN-ReLU-Conv3x3-BN plus identity."""

    def __init__(self, num_features: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_features, num_features, 3, padding=1),
            nn.BatchNorm2d(num_features),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_features, num_features, 3, padding=1),
            nn.BatchNorm2d(num_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Upsampler(nn.Sequential):
    """log2(scale) stages of Conv3x3 (C -> 4C) + PixelShuffle(2) + ReLU."""

    def __init__(self, num_features: int, scale: int):
        stages = []
        for _ in range(int(math.log2(scale))):
            stages += [
                nn.Conv2d(num_features, 4 * num_features, 3, padding=1),
                nn.PixelShuffle(2),
                nn.ReLU(inplace=True),
            ]
        super().__init__(*stages)


class SRResNet(nn.Module):
    """Maps an LR batch (N, 3, H, W) in 0..1 to an SR batch (N, 3, scale*H, scale*W), unclamped."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config.num_features
        self.head = nn.Sequential(nn.Conv2d(3, c, 9, padding=4), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[ResidualBlock(c) for _ in range(config.num_blocks)])
        self.body_tail = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c))
        self.upsampler = Upsampler(c, config.scale)
        self.tail = nn.Conv2d(c, 3, 9, padding=4)

    def receptive_radius(self) -> int:
        """LR pixels on each side of a position that can change the output there: tiles that
        overlap by this much give the same result as the whole image."""
        c = self.config
        radius = 4 + 2 * c.num_blocks + 1  # head 9x9, two 3x3 per block, body tail 3x3
        radius += sum(1 / 2**i for i in range(int(math.log2(c.scale))))  # upsampler 3x3 at 1x, 2x, ...
        radius += 4 / c.scale  # tail 9x9 at the output resolution
        if c.bicubic_residual:
            radius = max(radius, 2)  # bicubic reads 2 LR pixels on each side
        return math.ceil(radius)

    def forward(self, lr_img: torch.Tensor) -> torch.Tensor:
        features = self.head(lr_img)
        features = features + self.body_tail(self.blocks(features))  # global skip
        sr_img = self.tail(self.upsampler(features))
        if self.config.bicubic_residual:
            sr_img = sr_img + F.interpolate(
                lr_img, scale_factor=self.config.scale, mode="bicubic", align_corners=False
            )
        return sr_img
