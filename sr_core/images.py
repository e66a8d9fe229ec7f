"""Reading and writing images. Arrays are HWC uint8 RGB (0..255) everywhere in this project.

RGBA, palette, greyscale, CMYK and 16-bit inputs become RGB on read; the alpha channel is dropped
(the reference data's alpha is always opaque). Modes without a fixed meaning as RGB are refused.
A file that cannot be used raises ImageError naming it and the reason.

Pillow's decompression-bomb guard is replaced by `open_image`'s, whose limit each caller sets:
inputs up to MAX_INPUT_PIXELS, and a submission's PNG exactly the size it must have (an x4
prediction of a large test image can exceed Pillow's 179 Mpx and must still be checked).
"""

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from sr_core.files import write_bytes

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MAX_INPUT_PIXELS = 1 << 28  # 268 Mpx, e.g. 16384 x 16384 (805 MB as RGB); a larger input is refused
UNUSABLE_MODES = {"F": "32-bit float pixels have no fixed range", "LAB": "Pillow cannot convert Lab to RGB"}

Image.MAX_IMAGE_PIXELS = None  # see the module's docstring: open_image checks sizes instead


class ImageError(ValueError):
    """An input image that cannot be used; the message names the file and the problem."""


def list_images(folder: str | Path) -> list[Path]:
    """The images directly in `folder` (by suffix, see IMAGE_SUFFIXES), sorted by name.

    Symbolic links are listed whatever they point to, so a broken one fails by its name when it is
    read instead of vanishing. Other entries are skipped with a warning that names them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    entries = sorted(folder.iterdir())
    images = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()]
    skipped = sorted({p.name for p in entries} - {p.name for p in images})
    if skipped:
        log.warning("%s: skipping %d entries that are not image files (%s): %s%s", folder, len(skipped),
                    " ".join(IMAGE_SUFFIXES), ", ".join(skipped[:5]), ", ..." if len(skipped) > 5 else "")
    return images


@contextmanager
def open_image(source: str | Path | IO[bytes], name: str | Path, max_pixels: int = MAX_INPUT_PIXELS
               ) -> Iterator[Image.Image]:
    """`source` opened with Pillow (header read, pixels not yet decoded). Raises ImageError naming
    `name` when it cannot be opened or decoded (in the `with` block too), or claims more than
    `max_pixels` pixels (checked before any pixel is decoded)."""
    try:
        with Image.open(source) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(f"{name}: {width}x{height} is {width * height:,} pixels, over the {max_pixels:,} "
                                 f"allowed here (a guard against decompression bombs)")
            yield image
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError) as error:
        if isinstance(error, OSError) and error.errno is not None:  # the file, not its content
            link = Path(source) if isinstance(source, (str, Path)) else None
            target = f" (a symbolic link to {link.readlink()})" if link is not None and link.is_symlink() else ""
            raise ImageError(f"{name}: cannot open{target}: {error.strerror}") from error
        raise ImageError(f"{name}: cannot decode image ({error})") from error


def to_rgb(image: Image.Image) -> Image.Image:
    """Any usable PIL mode as 8-bit RGB (see UNUSABLE_MODES). 16-bit greyscale is scaled, not
    clipped, to 8 bits; 32-bit integer greyscale must hold 16-bit values."""
    if image.mode in UNUSABLE_MODES:
        raise ValueError(f"mode {image.mode}: {UNUSABLE_MODES[image.mode]}; save it as 8- or 16-bit RGB or greyscale")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.int64)
        if values.size and (values.min() < 0 or values.max() > 0xFFFF):
            raise ValueError(f"mode {image.mode}: values {values.min()}..{values.max()} are not 16-bit")
        image = Image.fromarray((values >> 8).astype(np.uint8))
    return image.convert("RGB")


def read_rgb(path: str | Path) -> np.ndarray:
    """Decodes `path` fully to an HWC uint8 RGB array."""
    with open_image(path, path) as image:
        image.load()
        return np.array(to_rgb(image))  # a writable copy, so torch.from_numpy can share it


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header, without decoding the pixels."""
    with open_image(path, path) as image:
        return image.size


def encode_png(rgb: np.ndarray, compress_level: int = 6) -> bytes:
    """PNG bytes of an HWC uint8 image; zlib's `compress_level` 0..9 trades time for size (6 is
    zlib's and Pillow's default; docs/scale-and-gpus.md has the measured trade-off)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def write_png(path: str | Path, rgb: np.ndarray, compress_level: int = 6) -> None:
    write_bytes(path, encode_png(rgb, compress_level))


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
