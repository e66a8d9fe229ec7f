"""Reading and writing images. Arrays are HWC uint8 RGB (0..255) everywhere in this project.

RGBA, palette, greyscale and 16-bit inputs become RGB on read; the alpha channel is dropped (the
reference data's alpha is always opaque). A file that does not decode raises ImageError naming it.
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image

from sr_core.files import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageError(ValueError):
    """An input image that cannot be used; the message names the file and the problem."""


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB. 16-bit greyscale is scaled, not clipped, to 8 bits."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = Image.fromarray((np.asarray(image, dtype=np.uint32) >> 8).astype(np.uint8))
    return image.convert("RGB")


def read_rgb(path: str | Path) -> np.ndarray:
    """Decodes `path` fully to an HWC uint8 RGB array."""
    try:
        with Image.open(path) as image:
            image.load()
            return np.array(to_rgb(image))  # a writable copy, so torch.from_numpy can share it
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"{path}: cannot decode image ({error})") from error


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"{path}: cannot read image header ({error})") from error


def encode_png(rgb: np.ndarray, compress_level: int = 6) -> bytes:
    """PNG bytes of an HWC uint8 image; zlib's `compress_level` 0..9 trades time for size (6 is
    zlib's and Pillow's default; README, "Predict and submit at speed", has the measured trade-off)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def write_png(path: str | Path, rgb: np.ndarray, compress_level: int = 6) -> None:
    with atomic_write(path) as f:
        f.write(encode_png(rgb, compress_level))


def resize_bicubic(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """HW or HWC uint8 resized with Pillow's bicubic (a = -0.5, antialiased when shrinking).

    It reproduces MATLAB's imresize closely: the x4 benchmark LR files to a mean absolute difference
    of 0.17/255, and the published bicubic PSNR/SSIM rows (tests/test_benchmark.py).
    """
    return np.array(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))


def bicubic_downscale(hr_img: np.ndarray, scale: int) -> np.ndarray:
    """The literature's LR: HR cropped to a multiple of `scale`, then Pillow bicubic with antialiasing."""
    height, width = hr_img.shape[0] // scale, hr_img.shape[1] // scale
    return resize_bicubic(crop_to_multiple(hr_img, scale), width, height)


def bicubic_upscale(lr_img: np.ndarray, scale: int) -> np.ndarray:
    """The baseline every table compares with: Pillow bicubic upsampling by `scale`."""
    return resize_bicubic(lr_img, scale * lr_img.shape[1], scale * lr_img.shape[0])


def crop_to_multiple(img: np.ndarray, scale: int) -> np.ndarray:
    """The top-left part of `img` whose sides are multiples of `scale` (MATLAB's modcrop)."""
    return img[:img.shape[0] - img.shape[0] % scale, :img.shape[1] - img.shape[1] % scale]
