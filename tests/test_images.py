import io
import struct
import zlib

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, PngImagePlugin

from conftest import save
from sr_core.config import InferenceConfig, ModelConfig
from sr_core.data import check_pairs
from sr_core.evaluation import load_sets, score_pairs
from sr_core.images import ImageError, encode_png, image_size, read_image, read_rgb
from sr_core.inference import predict_folder, upscale_files
from sr_core.model import SRResNet


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


def png_16_bit(values: np.ndarray, significant_bits: int | None = None) -> bytes:
    """A 16-bit PNG of `values` (HxWxC uint16, C 3 or 4; Pillow cannot write 16-bit colour), with an
    sBIT chunk when `significant_bits` is given."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width, channels = values.shape
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in values)
    sbit = chunk(b"sBIT", bytes([significant_bits] * channels)) if significant_bits else b""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, {3: 2, 4: 6}[channels],
                                                               0, 0, 0))
            + sbit + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("channels", [3, 4])
def test_16_bit_colour_reads_as_round_v_over_257_and_says_so(tmp_path, rng, caplog, channels):
    values = rng.integers(0, 65536, (6, 7, channels), dtype=np.uint16)
    values[0, :2] = [[65535] * channels, [0] * channels]
    (tmp_path / "deep.png").write_bytes(png_16_bit(values))
    tifffile.imwrite(tmp_path / "deep.tiff", values[..., :3], compression="zlib")  # read through libtiff
    tifffile.imwrite(tmp_path / "raw.tiff", values[..., :3])  # little-endian, uncompressed
    expected = np.round(values / 257).astype(np.uint8)
    for name in ("deep.png", "deep.tiff", "raw.tiff"):
        decoded = read_image(tmp_path / name)
        np.testing.assert_array_equal(decoded.rgb, expected[..., :3])
        assert decoded.notes["deeper_than_8_bits"].startswith("16-bit samples (")
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png").alpha, expected[..., 3] if channels == 4 else None)
    read_rgb(tmp_path / "deep.png")
    assert [m for m in caplog.messages if "bit samples" in m] == [
        f"{tmp_path / 'deep.png'}: 16-bit samples (0..65535) scaled to 8 bits as round(v x 255 / 65535)"]


def test_a_12_bit_image_in_16_bits_scales_by_its_sbit_and_is_refused_where_the_file_does_not_say(tmp_path, rng):
    values = rng.integers(32, 4049, (5, 6, 3), dtype=np.uint16)  # a 12-bit render stored in 16 bits
    values[0, :2] = [[32] * 3, [4048] * 3]
    (tmp_path / "sbit.png").write_bytes(png_16_bit(values, significant_bits=12))
    np.testing.assert_array_equal(read_rgb(tmp_path / "sbit.png"), np.round(values / 4095 * 255).astype(np.uint8))
    assert read_rgb(tmp_path / "sbit.png").max() > 200  # not near black
    (tmp_path / "unsaid.png").write_bytes(png_16_bit(values))
    with pytest.raises(ImageError, match=f"{tmp_path / 'unsaid.png'}: 16-bit samples whose values \\(32..4048\\) "
                                         f"all fit 12 bits: a 10- or 12-bit image stored in 16 bits, or a very dark"):
        read_rgb(tmp_path / "unsaid.png")


def test_every_reader_names_a_16_bit_file_once_and_the_submission_stays_8_bit(tmp_path, rng, caplog):
    """The split, predict, the benchmark and sr-upscale each say once which file was scaled."""
    lr16 = rng.integers(0, 65536, (6, 7, 3), dtype=np.uint16)
    lr16[0, :2] = [[0] * 3, [65535] * 3]
    hr = rng.integers(0, 256, (24, 28, 3), dtype=np.uint8)
    for folder in ("lr", "test"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "deep.png").write_bytes(png_16_bit(lr16))
    save(tmp_path / "hr" / "deep.png", hr)
    torch.manual_seed(0)
    model = SRResNet(ModelConfig(num_blocks=1, num_features=8)).eval()
    config = InferenceConfig(workers=2)

    def named(run) -> int:
        caplog.clear()
        run()
        return sum("scaled to 8 bits as round(v x 255 / 65535)" in message and "deep.png" in message
                   for message in caplog.messages)

    assert named(lambda: check_pairs(tmp_path / "lr", tmp_path / "hr", 4)) == 1
    assert named(lambda: score_pairs(load_sets([tmp_path])[tmp_path.name], 4, model, bicubic=True)) == 1
    assert named(lambda: predict_folder(model, tmp_path / "test", tmp_path / "pred", config)) == 1
    assert named(lambda: upscale_files(model, [tmp_path / "test" / "deep.png"], tmp_path / "up", config,
                                       keep_alpha_and_profile=True)) == 1
    with Image.open(tmp_path / "pred" / "deep.png") as prediction:
        assert prediction.mode == "RGB" and prediction.size == (28, 24)
