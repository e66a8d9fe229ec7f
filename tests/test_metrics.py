import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import structural_similarity

from sr_core.data import list_folder, load_pair
from sr_core.images import bicubic_upscale
from sr_core.metrics import batch_metrics, crop_border, image_metrics, psnr_rgb, psnr_y, rgb_to_y, ssim_y

BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "x4"
needs_benchmarks = pytest.mark.skipif(not BENCHMARKS.is_dir(),
                                      reason=f"{BENCHMARKS} is absent (it exists only in the project's workplace)")


def test_y_is_matlab_bt601():
    pixels = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    np.testing.assert_allclose(rgb_to_y(pixels)[0], [16, 16 + 65.481 + 128.553 + 24.966,
                                                     16 + 65.481, 16 + 128.553, 16 + 24.966])


def test_psnr_rgb_of_a_one_level_error():
    hr_img = np.zeros((16, 16, 3), np.uint8)
    assert psnr_rgb(hr_img + 1, hr_img) == pytest.approx(20 * math.log10(255))  # MSE 1
    measured = batch_metrics(torch.from_numpy(hr_img + 1)[None], torch.from_numpy(hr_img)[None], 4, ssim=False)
    assert measured["psnr_rgb"].item() == pytest.approx(20 * math.log10(255))


def test_psnr_y_ignores_the_border():
    hr_img = np.full((16, 16, 3), 100, np.uint8)
    sr_img = hr_img.copy()
    sr_img[:4] = 0  # all of the error lies in the 4-pixel border
    sr_img[8, 8] = 101  # one pixel off by one level in each of R, G, B -> Y off by 219/255
    y_error = (65.481 + 128.553 + 24.966) / 255
    expected = 10 * math.log10(255**2 / (y_error**2 / 64))  # 8x8 pixels left after the crop
    assert psnr_y(sr_img, hr_img, border=4) == pytest.approx(expected)
    assert crop_border(hr_img, 4).shape == (8, 8, 3)
    for strip_pixels in (None, 16, 10**6):  # strips of one row, and the whole image at once
        measured = batch_metrics(torch.from_numpy(sr_img)[None], torch.from_numpy(hr_img)[None], 4, False,
                                 strip_pixels)
        assert measured["psnr_y"].item() == pytest.approx(expected)


def test_identical_images():
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert psnr_rgb(img, img) == math.inf
    assert ssim_y(img, img, 4) == pytest.approx(1.0)
    measured = batch_metrics(torch.from_numpy(img)[None], torch.from_numpy(img)[None], 4)
    assert measured["psnr_rgb"].item() == measured["psnr_y"].item() == math.inf
    assert measured["ssim"].item() == pytest.approx(1.0) and measured["mae"].item() == 0


def test_ssim_is_wang_et_al_on_y():
    rng = np.random.default_rng(1)
    hr_img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    sr_img = np.clip(hr_img + rng.normal(0, 10, hr_img.shape), 0, 255).astype(np.uint8)
    hr_y, sr_y = rgb_to_y(hr_img)[4:-4, 4:-4], rgb_to_y(sr_img)[4:-4, 4:-4]
    expected = structural_similarity(hr_y, sr_y, data_range=255, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    assert ssim_y(sr_img, hr_img, 4) == pytest.approx(expected)
    assert 0 < expected < 1
    measured = batch_metrics(torch.from_numpy(sr_img)[None], torch.from_numpy(hr_img)[None], 4)
    assert measured["ssim"].item() == pytest.approx(expected, abs=1e-6)


def test_image_metrics_keys_and_shape_check():
    img = np.zeros((24, 24, 3), np.uint8)
    assert set(image_metrics(img, img + 2, 4)) == {"competition_score", "psnr_rgb", "psnr_y", "mae", "mse", "ssim"}
    assert image_metrics(img + 51, img, 4, ssim=False)["mae"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="differ in shape"):
        psnr_rgb(img, img[:-1])
    tensor = torch.from_numpy(img)[None]
    assert list(batch_metrics(tensor, tensor + 2, 4)) == ["competition_score", "psnr_rgb", "psnr_y", "mae", "mse", "ssim"]
    with pytest.raises(ValueError, match="differ in shape"):
        batch_metrics(tensor, tensor[:, :-1], 4)
    with pytest.raises(ValueError, match="SSIM needs 11x11 pixels after cutting the border; 16x10 are left"):
        batch_metrics(tensor[:, :18], tensor[:, :18], 4)


def assert_matches_reference(pairs_of_images: list[tuple[np.ndarray, np.ndarray]], **kwargs) -> None:
    """batch_metrics on each (sr_img, hr_img) equals the numpy reference: 1e-4 dB and 1e-5 SSIM."""
    for sr_img, hr_img in pairs_of_images:
        reference = image_metrics(sr_img, hr_img, 4)
        measured = batch_metrics(torch.from_numpy(sr_img)[None], torch.from_numpy(hr_img)[None], 4, **kwargs)
        for key in ("psnr_rgb", "psnr_y", "competition_score"):
            assert measured[key].item() == pytest.approx(reference[key], abs=1e-4), key
        assert measured["ssim"].item() == pytest.approx(reference["ssim"], abs=1e-5)
        for key in ("mae", "mse"):
            assert measured[key].item() == pytest.approx(reference[key], rel=1e-5), key


@needs_benchmarks
@pytest.mark.slow
@pytest.mark.parametrize("name", ["Set5", "Set14", "BSD100"])
def test_batch_metrics_equal_the_reference_on_the_benchmarks(name):
    """Every image of Set5 and Set14; BSD100's hundred photographs are of two shapes (480x320, either
    way up), so every tenth of them, both shapes among them, proves as much."""
    pairs, _ = list_folder(BENCHMARKS / name)
    images = [(bicubic_upscale(lr_img, 4), hr_img) for lr_img, hr_img in
              (load_pair(pair, 4) for pair in (pairs[::10] if name == "BSD100" else pairs))]
    assert len({hr_img.shape for _, hr_img in images}) >= 2
    assert_matches_reference(images)


@pytest.fixture(scope="module")
def images_1080p() -> list[tuple[np.ndarray, np.ndarray]]:
    """Two 1920x1080 HR photographs (scikit-image's), and SR images: bicubic from a 4x smaller LR."""
    import skimage.data
    images = []
    for photo in (skimage.data.astronaut(), skimage.data.coffee()):
        hr_img = np.array(Image.fromarray(photo).resize((1920, 1080), Image.Resampling.LANCZOS))
        lr_img = np.array(Image.fromarray(hr_img).resize((480, 270), Image.Resampling.BICUBIC))
        images.append((bicubic_upscale(lr_img, 4), hr_img))
    return images


@pytest.mark.slow
def test_batch_metrics_equal_the_reference_at_1080p(images_1080p):
    assert_matches_reference(images_1080p)  # as on a CPU: strips of rows
    assert_matches_reference(images_1080p, strip_pixels=10**8)  # as on a GPU: whole images


def test_a_batch_measures_each_image_as_alone(images_1080p):
    crop = np.s_[:270, :960]  # two strips of rows each on a CPU: as many as the property needs
    sr = torch.from_numpy(np.stack([sr_img[crop] for sr_img, _ in images_1080p]))
    hr = torch.from_numpy(np.stack([hr_img[crop] for _, hr_img in images_1080p]))
    for strip_pixels in (None, 10**8):  # per image on a CPU, the whole batch at once on a GPU
        batch = batch_metrics(sr, hr, 4, strip_pixels=strip_pixels)
        for i in range(len(sr)):
            alone = batch_metrics(sr[i:i + 1], hr[i:i + 1], 4)
            for key, values in batch.items():
                assert values[i].item() == pytest.approx(alone[key].item(), rel=1e-6, abs=1e-9), key


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
