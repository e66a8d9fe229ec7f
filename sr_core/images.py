"""Reading and writing images. Arrays are HWC uint8 RGB (0..255) everywhere in this project.

RGBA, palette, greyscale, CMYK and 16-bit inputs become RGB on read; 16-bit samples are scaled to
8 bits by their real range, with a note (`to_eight_bits`). One rule for every reader:
an EXIF orientation tag is applied, as viewers and OpenCV apply it. What reading cannot keep is
said, never dropped silently: `read_image` returns a note for an alpha channel that is not fully
opaque (its RGB is used, the alpha kept apart for the callers that carry it) and for a colour
profile that is not sRGB. Modes without a fixed meaning as RGB are refused, and so are files of
several frames (animations, multi-page TIFFs), whose first frame is not "the image".
A file that cannot be used raises ImageError naming it and the reason.

Pillow's decompression-bomb guard is replaced by `open_image`'s, whose limit each caller sets:
inputs up to MAX_INPUT_PIXELS, and a submission's PNG exactly the size it must have (an x4
prediction of a large test image can exceed Pillow's 179 Mpx and must still be checked).
"""

import io
import logging
import os
import stat
import struct
import sys
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageCms, ImageOps

from sr_core.files import write_bytes

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MAX_INPUT_PIXELS = 1 << 28  # 268 Mpx, e.g. 16384 x 16384 (805 MB as RGB); a larger input is refused
UNUSABLE_MODES = {"F": "32-bit float pixels have no fixed range", "LAB": "Pillow cannot convert Lab to RGB"}

Image.MAX_IMAGE_PIXELS = None  # see the module's docstring: open_image checks sizes instead


class ImageError(ValueError):
    """An input image that cannot be used; the message names the file and the problem."""


SPECIAL_FILES = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
                 stat.S_IFBLK: "a block device"}


def special_file(path: str | Path) -> str | None:
    """What `path` (or what it links to) is when it is a FIFO, a socket or a device, which reading
    would block on or never end: None for a regular file, a folder, or a broken link."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # a broken link or a missing file fails by its name when it is read
        return None
    return SPECIAL_FILES.get(stat.S_IFMT(mode))


def name_key(name: str) -> str:
    """A file name as macOS, Windows and most shared drives compare names: Unicode-normalised (NFC;
    macOS writes NFD) and case-folded. Two names with one key are one file there."""
    return unicodedata.normalize("NFC", name).casefold()


def how_names_differ(a: str, b: str) -> str:
    """Why two names of one `name_key` are two names: case, Unicode normalisation, or both."""
    if unicodedata.normalize("NFC", a) == unicodedata.normalize("NFC", b):
        return "Unicode normalisation"
    return "case" if a.casefold() == b.casefold() else "case and Unicode normalisation"


def list_images(folder: str | Path, quiet: bool = False) -> list[Path]:
    """The images directly in `folder` (by suffix, see IMAGE_SUFFIXES), sorted by name.

    Symbolic links are listed whatever they point to, so a broken one fails by its name when it is
    read instead of vanishing. Other entries are skipped with a warning that names them; FIFOs,
    sockets and devices (which reading would block on) with a warning of their own, never opened
    (no warning when `quiet`: a folder listed a second time). Two images whose names differ only in
    case or Unicode normalisation (`name_key`) are an error: on the file systems most users have
    they are one file, and their outputs or ids would clash.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    entries = sorted(folder.iterdir())
    named = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()]
    special = {p.name: kind for p in named if (kind := special_file(p))}
    images = [p for p in named if p.name not in special]
    if special and not quiet:
        log.warning("%s: skipping %d entries that are not regular files: %s", folder, len(special),
                    ", ".join(f"{name} ({kind})" for name, kind in special.items()))
    by_key = {}
    for path in images:
        by_key.setdefault(name_key(path.name), []).append(path.name)
    clashes = [names for names in by_key.values() if len(names) > 1]
    if clashes:
        raise ValueError(f"{folder}: " + "; ".join(
            f"{' and '.join(map(ascii, names))} differ only in {how_names_differ(*names[:2])}" for names in clashes)
            + ": macOS, Windows and most shared drives take such names for one file; rename one of each")
    skipped = sorted({p.name for p in entries} - {p.name for p in named})
    if skipped and not quiet:
        log.warning("%s: skipping %d entries that are not image files (%s): %s%s", folder, len(skipped),
                    " ".join(IMAGE_SUFFIXES), ", ".join(skipped[:5]), ", ..." if len(skipped) > 5 else "")
    return images


def file_states(paths: list[Path]) -> dict[str, tuple[int, int]]:
    """Each file's size and modification time by its path (a file gone is left out): a file added,
    removed, replaced or edited in place shows as a difference between two of these."""
    states = {}
    for path in paths:
        try:
            stat_result = os.stat(path)
        except FileNotFoundError:
            continue
        states[str(path)] = (stat_result.st_size, stat_result.st_mtime_ns)
    return states


def changes(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> str:
    """What differs between two `file_states`, e.g. "added a.png; changed b.png" ("" for nothing)."""
    parts = [(what, sorted(names)) for what, names in (
        ("added", after.keys() - before.keys()), ("removed", before.keys() - after.keys()),
        ("changed", {name for name in before.keys() & after.keys() if before[name] != after[name]}))]
    return "; ".join(f"{what} {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}"
                     for what, names in parts if names)


@contextmanager
def open_image(source: str | Path | IO[bytes], name: str | Path, max_pixels: int = MAX_INPUT_PIXELS
               ) -> Iterator[Image.Image]:
    """`source` opened with Pillow (header read, pixels not yet decoded). Raises ImageError naming
    `name` when it cannot be opened or decoded (in the `with` block too), or claims more than
    `max_pixels` pixels (checked before any pixel is decoded). A path to a FIFO, a socket or a
    device is refused without opening it: reading it would block or never end."""
    if isinstance(source, (str, Path)) and (kind := special_file(source)):
        raise ImageError(f"{name}: {kind}, not a file; give an image file")
    try:
        with Image.open(source) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(f"{name}: {width}x{height} is {width * height:,} pixels, over the {max_pixels:,} "
                                 f"allowed here (a guard against decompression bombs)")
            frames = getattr(image, "n_frames", 1)
            if frames > 1 and image.format != "MPO":  # an MPO's first frame is its main picture, by its spec
                raise ImageError(f"{name}: {frames} frames (an animation or a multi-page file); only single "
                                 f"images are read: save the frame you mean as a file of its own")
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
    """Any usable PIL mode as 8-bit RGB (see UNUSABLE_MODES); 16-bit greyscale comes scaled by
    `read_image`."""
    if image.mode in UNUSABLE_MODES:
        raise ValueError(f"mode {image.mode}: {UNUSABLE_MODES[image.mode]}; save it as 8- or 16-bit RGB or greyscale")
    return image.convert("RGB")


GREY_16_MODES = ("I;16", "I;16B", "I;16L", "I")  # "I" holds 32-bit integers: 16-bit values are read from it
SWAPPED_16 = {"16B": "16L", "16L": "16B", "16N": "16B" if sys.byteorder == "little" else "16L"}


def with_rawmode(tile: tuple, swap: bool = False) -> tuple[str, tuple]:
    """How a tile's bytes become pixels (its decoder's first argument: a string, or a tuple's first
    item), and the tile with that mode's byte order swapped when `swap` (see SWAPPED_16)."""
    codec, extents, offset, args = tile[:4]
    mode = args if isinstance(args, str) else args[0]
    if swap:
        head, _, depth = mode.rpartition(";")
        swapped = f"{head};{SWAPPED_16[depth]}"
        args = swapped if isinstance(args, str) else (swapped, *args[1:])
        tile = tile._replace(args=args) if hasattr(tile, "_replace") else (codec, extents, offset, args)  # Pillow < 11
    return mode, tile


def sixteen_bit_values(path: str | Path, image: Image.Image) -> np.ndarray | None:
    """The samples of a 16-bit image as uint16 (HxW grey, HxWxC colour), None for an 8-bit one.
    Pillow reads 16-bit colour at 8 bits, keeping each sample's high byte, and has no 16-bit colour
    mode; decoding the file a second time with the byte order swapped gives the low bytes (read
    before `image` is loaded: loading drops the tiles)."""
    if image.mode in GREY_16_MODES:
        return None  # Pillow keeps the values: read after loading
    modes = {with_rawmode(tile)[0] for tile in image.tile}
    if not any(mode.rpartition(";")[2] in SWAPPED_16 for mode in modes):
        return None
    if not all(mode.startswith(("RGB;", "RGBA;")) for mode in modes):
        raise ImageError(f"{path}: 16-bit samples of {', '.join(sorted(modes))} are not read here; save it as "
                         f"16-bit RGB, RGBA or greyscale, or as 8-bit")
    with Image.open(path) as again:
        again.tile = [with_rawmode(tile, swap=True)[1] for tile in again.tile]
        low = np.asarray(again)
    return np.asarray(image).astype(np.uint16) << 8 | low


def significant_bits(path: str | Path) -> int | None:
    """The bits a PNG says its samples use (its sBIT chunk: 12 for a 12-bit image stored in 16
    bits), None where it does not say. Pillow does not read the chunk; it comes before the pixels."""
    with open(path, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            return None
        while len(header := f.read(8)) == 8:
            length, kind = struct.unpack(">I4s", header)
            if kind == b"sBIT":
                return max(f.read(length)) or None
            if kind in (b"IDAT", b"IEND"):
                return None
            f.seek(length + 4, os.SEEK_CUR)
    return None


def to_eight_bits(path: str | Path, values: np.ndarray) -> tuple[np.ndarray, str]:
    """16-bit samples scaled to 8 bits by their real range, round(v x 255 / (2^bits - 1)), and the
    note that says so. The bits are the PNG's sBIT where it has one, else 16; samples that all fit
    12 bits without an sBIT are refused: a 10- or 12-bit image stored in 16 bits and a very dark
    16-bit one read differently, and the file does not say which it is."""
    top = int(values.max()) if values.size else 0
    bits = significant_bits(path) or 16
    if top > 2**bits - 1:
        raise ImageError(f"{path}: its PNG sBIT says {bits} significant bits, but it holds values up to {top}")
    if bits == 16 and top < 2**12:
        raise ImageError(f"{path}: 16-bit samples whose values ({int(values.min())}..{top}) all fit 12 bits: a 10- "
                         f"or 12-bit image stored in 16 bits, or a very dark 16-bit one, which scale differently to "
                         f"8 bits; save it with a PNG sBIT chunk giving its bits, or as 8-bit")
    full = 2**bits - 1
    eight = ((values.astype(np.uint32) * 510 + full) // (2 * full)).astype(np.uint8)  # round(v * 255 / full)
    return eight, f"{bits}-bit samples ({int(values.min())}..{top}) scaled to 8 bits as round(v x 255 / {full})"


ORIENTATION_TAG = 0x0112
TURNED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1: as stored). Before the pixels are decoded, only what the header
    holds: Pillow's PNG reader would decode the whole image to look for an eXIf chunk after the
    pixel data, which the PNG spec does not allow, so such a chunk counts only once decoded."""
    if image.format == "PNG" and "exif" not in image.info:  # after decoding, the whole file was read
        return 1
    value = image.getexif().get(ORIENTATION_TAG, 1)
    return value if value in range(1, 9) else 1


@dataclass(frozen=True)
class Decoded:
    """An image as every reader sees it (EXIF orientation applied), with what RGB cannot hold."""

    rgb: np.ndarray  # HWC uint8
    alpha: np.ndarray | None  # HW uint8 when the file has an alpha channel or a transparent colour
    icc_profile: bytes | None
    orientation: int  # the EXIF orientation that was applied (1: none)
    notes: dict[str, str]  # kind -> what a reader that keeps RGB only must say: alpha dropped, a non-sRGB profile


def profile_name(icc_profile: bytes) -> str:
    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))).strip()
    except (OSError, ImageCms.PyCMSError):
        return "an unreadable profile"


def read_image(path: str | Path) -> Decoded:
    """Decodes `path` fully: RGB, any alpha, the ICC profile, with the EXIF orientation applied."""
    notes = {}
    with open_image(path, path) as image:
        deep = sixteen_bit_values(path, image)
        image.load()
        if deep is not None:
            eight, notes["deeper_than_8_bits"] = to_eight_bits(path, deep)
            image.frombytes(eight.tobytes())  # in place: the file's EXIF, profile and tags stay with it
        orientation = exif_orientation(image)
        if orientation != 1:
            image = ImageOps.exif_transpose(image)
        icc_profile = image.info.get("icc_profile") or None
        if "A" in image.getbands():
            alpha = np.asarray(image.getchannel("A"))
        elif "transparency" in image.info:  # a palette or a colour key marked transparent
            alpha = np.asarray(image.convert("RGBA").getchannel("A"))
        else:
            alpha = None
        if image.mode in GREY_16_MODES:
            values = np.asarray(image, dtype=np.int64)
            if values.size and (values.min() < 0 or values.max() > 0xFFFF):
                raise ImageError(f"{path}: mode {image.mode}: values {values.min()}..{values.max()} are not 16-bit")
            grey, notes["deeper_than_8_bits"] = to_eight_bits(path, values)
            image = Image.fromarray(grey)
        rgb = np.array(to_rgb(image))  # a writable copy, so torch.from_numpy can share it
    if alpha is not None and (see_through := int(np.count_nonzero(alpha < 255))):
        notes["alpha_not_opaque"] = (f"alpha is not opaque in {see_through:,} of {alpha.size:,} pixels: its RGB "
                                     f"is used as it is and the alpha is dropped")
    if icc_profile and "srgb" not in (name := profile_name(icc_profile)).lower():
        notes["non_srgb_profile"] = f"colour profile {name!r} is not sRGB: its values are used as sRGB, so colours may shift"
    return Decoded(rgb, alpha, icc_profile, orientation, notes)


KEPT_WITH_ALPHA = ("alpha_not_opaque", "non_srgb_profile")  # what a reader that keeps alpha and profile keeps


def warn_dropped(path: str | Path, decoded: Decoded, kept: tuple[str, ...] = (), where: str = "") -> None:
    """A warning naming `path` for each thing a reader that keeps RGB only (and the `kept` notes'
    kinds) drops or changes (`Decoded.notes`), saying `where` that shows (", in its prediction")."""
    for kind, note in decoded.notes.items():
        if kind not in kept:
            log.warning("%s: %s%s", path, note, where)


def read_rgb(path: str | Path) -> np.ndarray:
    """Decodes `path` fully to an HWC uint8 RGB array (see `read_image`), saying what it dropped."""
    decoded = read_image(path)
    warn_dropped(path, decoded)
    return decoded.rgb


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) as every reader sees it (EXIF orientation applied), from the header only."""
    with open_image(path, path) as image:
        width, height = image.size
        return (height, width) if exif_orientation(image) in TURNED else (width, height)


def encode_png(rgb: np.ndarray, compress_level: int = 6, alpha: np.ndarray | None = None,
               icc_profile: bytes | None = None) -> bytes:
    """PNG bytes of an HWC uint8 image, RGBA with `alpha`, carrying `icc_profile`; zlib's
    `compress_level` 0..9 trades time for size (6 is zlib's and Pillow's default;
    docs/scale-and-gpus.md has the measured trade-off)."""
    buffer = io.BytesIO()
    image = Image.fromarray(rgb if alpha is None else np.dstack([rgb, alpha]))
    image.save(buffer, format="PNG", compress_level=compress_level, **({"icc_profile": icc_profile} if icc_profile else {}))
    return buffer.getvalue()


def write_png(path: str | Path, rgb: np.ndarray, compress_level: int = 6, alpha: np.ndarray | None = None,
              icc_profile: bytes | None = None) -> None:
    write_bytes(path, encode_png(rgb, compress_level, alpha, icc_profile))


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
