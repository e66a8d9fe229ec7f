import io

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from conftest import save
from sr_core.images import ImageError, encode_png, image_size, read_rgb


def test_rgba_drops_the_alpha(tmp_path, rng):
    rgba = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    save(tmp_path / "a.png", rgba)
    img = read_rgb(tmp_path / "a.png")
    assert img.shape == (5, 7, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, rgba[..., :3])


def test_greyscale_becomes_three_equal_channels(tmp_path, rng):
    grey = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    save(tmp_path / "g.png", grey)
    img = read_rgb(tmp_path / "g.png")
    assert img.shape == (5, 7, 3)
    for channel in range(3):
        np.testing.assert_array_equal(img[..., channel], grey)


def test_palette_becomes_rgb(tmp_path, rng):
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    save(tmp_path / "p.png", rgb, mode="P")
    assert read_rgb(tmp_path / "p.png").shape == (5, 7, 3)


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    grey16 = np.array([[0, 256, 65535]], dtype=np.uint16)
    save(tmp_path / "g16.png", grey16)
    np.testing.assert_array_equal(read_rgb(tmp_path / "g16.png")[0, :, 0], [0, 1, 255])


def test_corrupt_file_names_the_file(tmp_path, rng):
    save(tmp_path / "ok.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes((tmp_path / "ok.png").read_bytes()[:100])
    with pytest.raises(ImageError, match="truncated.png"):
        read_rgb(truncated)


def test_png_compress_level_trades_size_not_pixels(rng):
    smooth = np.repeat(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], 48, axis=0).repeat(3, axis=2)
    img = np.clip(smooth + rng.integers(0, 3, smooth.shape), 0, 255).astype(np.uint8)
    sizes = {}
    for level in (0, 1, 6, 9):
        png = encode_png(img, level)
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), img)
        sizes[level] = len(png)
    assert sizes[0] > sizes[1] >= sizes[6] >= sizes[9]
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="PNG")
    assert encode_png(img) == buffer.getvalue()  # the default level is Pillow's own default


def test_image_size_follows_exif_orientation_from_the_header_alone(tmp_path, monkeypatch):
    """A portrait photo stored turned (orientation 6) is measured as a viewer shows it, and no
    pixel is decoded to find out: image_size runs for every HR and test image."""
    upright = np.zeros((12, 16, 3), np.uint8)
    stored = Image.fromarray(np.rot90(upright, 1).copy())
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "turned.png", exif=exif)
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", lambda self: pytest.fail("pixels decoded"))
    assert image_size(tmp_path / "turned.png") == (16, 12)
