import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from sr_core.metrics import crop_border, image_metrics, psnr_rgb, psnr_y, rgb_to_y, ssim_y


def test_y_is_matlab_bt601():
    pixels = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    np.testing.assert_allclose(rgb_to_y(pixels)[0], [16, 16 + 65.481 + 128.553 + 24.966,
                                                     16 + 65.481, 16 + 128.553, 16 + 24.966])


def test_psnr_rgb_of_a_one_level_error():
    hr_img = np.zeros((8, 8, 3), np.uint8)
    assert psnr_rgb(hr_img + 1, hr_img) == pytest.approx(20 * math.log10(255))  # MSE 1


def test_psnr_y_ignores_the_border():
    hr_img = np.full((16, 16, 3), 100, np.uint8)
    sr_img = hr_img.copy()
    sr_img[:4] = 0  # all of the error lies in the 4-pixel border
    sr_img[8, 8] = 101  # one pixel off by one level in each of R, G, B -> Y off by 219/255
    y_error = (65.481 + 128.553 + 24.966) / 255
    expected = 10 * math.log10(255**2 / (y_error**2 / 64))  # 8x8 pixels left after the crop
    assert psnr_y(sr_img, hr_img, border=4) == pytest.approx(expected)
    assert crop_border(hr_img, 4).shape == (8, 8, 3)


def test_identical_images():
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert psnr_rgb(img, img) == math.inf
    assert ssim_y(img, img, 4) == pytest.approx(1.0)


def test_ssim_is_wang_et_al_on_y():
    rng = np.random.default_rng(1)
    hr_img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    sr_img = np.clip(hr_img + rng.normal(0, 10, hr_img.shape), 0, 255).astype(np.uint8)
    hr_y, sr_y = rgb_to_y(hr_img)[4:-4, 4:-4], rgb_to_y(sr_img)[4:-4, 4:-4]
    expected = structural_similarity(hr_y, sr_y, data_range=255, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    assert ssim_y(sr_img, hr_img, 4) == pytest.approx(expected)
    assert 0 < expected < 1


def test_image_metrics_keys_and_shape_check():
    img = np.zeros((24, 24, 3), np.uint8)
    assert set(image_metrics(img, img + 2, 4)) == {"psnr_rgb", "psnr_y", "mae", "mse", "ssim"}
    assert image_metrics(img + 51, img, 4, ssim=False)["mae"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="differ in shape"):
        psnr_rgb(img, img[:-1])


def test_measures_are_taken_after_rounding_to_8_bits():
    import torch

    from sr_core.images import tensor_to_image
    hr_img = np.full((16, 16, 3), 100, np.uint8)
    sr = torch.full((3, 16, 16), 100.4 / 255)  # rounds to the HR exactly
    assert psnr_y(tensor_to_image(sr), hr_img, 4) == math.inf
    sr_img = tensor_to_image(torch.full((3, 16, 16), 100.6 / 255))  # rounds to 101
    assert psnr_rgb(sr_img, hr_img) == pytest.approx(20 * math.log10(255))


def test_greyscale_and_rgba_inputs_are_measured_as_rgb(tmp_path):
    from conftest import save
    from sr_core.images import read_rgb
    rng = np.random.default_rng(2)
    grey = rng.integers(0, 256, (24, 24), dtype=np.uint8)
    save(tmp_path / "grey.png", grey)
    rgba = np.dstack([np.repeat(grey[..., None], 3, axis=2), np.full((24, 24), 255, np.uint8)])
    save(tmp_path / "rgba.png", rgba)
    grey_img, rgba_img = read_rgb(tmp_path / "grey.png"), read_rgb(tmp_path / "rgba.png")
    np.testing.assert_array_equal(grey_img, rgba_img)
    np.testing.assert_allclose(rgb_to_y(grey_img), 16 + grey.astype(float) * 219 / 255)
    assert psnr_y(grey_img, rgba_img, 4) == math.inf
