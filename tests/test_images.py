import numpy as np
import pytest
import torch

from conftest import save
from sr_core.images import ImageError, image_to_tensor, read_rgb, tensor_to_image


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


def test_tensor_round_trip(rng):
    img = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    tensor = image_to_tensor(img)
    assert tensor.shape == (3, 4, 6) and tensor.dtype == torch.float32 and tensor.max() <= 1
    np.testing.assert_array_equal(tensor_to_image(tensor), img)
    np.testing.assert_array_equal(tensor_to_image(torch.full((3, 1, 1), 2.0))[0, 0], [255, 255, 255])
