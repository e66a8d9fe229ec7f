"""Pairs whose LR is not a bicubic downscale: blur, then bicubic x1/4, then noise, then JPEG.

    python benchmarks/degraded_pairs.py data/benchmarks/x4/BSD100/hr --out data/degraded

A user's own LR images (a game's low-resolution render, a phone's photo, a video frame) rarely come
from the bicubic downscale the public data sets and the general model use. These pairs stand in
for them when measuring how much fine-tuning from the general model brings on another degradation
(docs/model-card.md). Each HR image in the folder is written to OUT/hr as a PNG (cropped to a
multiple of the scale), and its LR to OUT/lr under the same name, made by: a Gaussian blur (sigma
1.2 HR pixels), the bicubic downscale, Gaussian noise (sigma 4 of 255, seeded by the image's name,
so the pairs are the same on every machine), and a JPEG round trip at quality 75.
"""

import argparse
import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from sr_core.images import bicubic_downscale, crop_to_multiple, list_images, read_rgb, write_png

BLUR_SIGMA, NOISE_SIGMA, JPEG_QUALITY = 1.2, 4.0, 75


def degrade(hr: np.ndarray, scale: int, seed: int) -> np.ndarray:
    """The LR of `hr`: blur, bicubic downscale by `scale`, noise, JPEG (see the module's text)."""
    blurred = np.array(Image.fromarray(hr).filter(ImageFilter.GaussianBlur(BLUR_SIGMA)))
    lr = bicubic_downscale(blurred, scale).astype(np.float32)
    lr += np.random.default_rng(seed).normal(0.0, NOISE_SIGMA, lr.shape)
    encoded = io.BytesIO()
    Image.fromarray(np.clip(np.rint(lr), 0, 255).astype(np.uint8)).save(encoded, "JPEG", quality=JPEG_QUALITY)
    return np.array(Image.open(encoded).convert("RGB"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("hr", type=Path, help="a folder of HR images")
    parser.add_argument("--out", type=Path, required=True, help="the folder hr/ and lr/ are written to")
    parser.add_argument("--scale", type=int, default=4)
    args = parser.parse_args()
    images = list_images(args.hr)
    for path in images:
        seed = int.from_bytes(hashlib.sha256(path.name.encode()).digest()[:8], "little")
        hr = crop_to_multiple(read_rgb(path), args.scale)
        write_png(args.out / "hr" / f"{path.stem}.png", hr)
        write_png(args.out / "lr" / f"{path.stem}.png", degrade(hr, args.scale, seed))
    print(f"wrote {len(images)} pairs to {args.out}/hr and {args.out}/lr")


if __name__ == "__main__":
    main()
