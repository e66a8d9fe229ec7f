"""Image quality measures, on HWC uint8 RGB arrays (SR output already rounded to 8 bits).

- `psnr_rgb`: the seed's and the Kaggle leaderboard's measure, over all RGB pixels.
- `psnr_y` and `ssim_y`: the literature's protocol. Y of ITU-R BT.601 as MATLAB's rgb2ycbcr
  computes it (16 + (65.481 R + 128.553 G + 24.966 B) / 255), `scale` pixels cut from every
  border, peak 255 in float64; SSIM of Wang et al. (11x11 Gaussian window, sigma 1.5,
  K1 0.01, K2 0.03, population covariance).
"""

import numpy as np
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def _check_shapes(sr_img: np.ndarray, hr_img: np.ndarray) -> None:
    if sr_img.shape != hr_img.shape:
        raise ValueError(f"SR {sr_img.shape} and HR {hr_img.shape} differ in shape")


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """HWC uint8 RGB -> HW float64 Y in 16..235."""
    return rgb2ycbcr(rgb)[..., 0]


def crop_border(img: np.ndarray, border: int) -> np.ndarray:
    return img[border:-border, border:-border] if border else img


def _psnr(sr: np.ndarray, hr: np.ndarray) -> float:
    with np.errstate(divide="ignore"):  # identical images: inf, as the definition says
        return float(peak_signal_noise_ratio(hr, sr, data_range=255))


def psnr_rgb(sr_img: np.ndarray, hr_img: np.ndarray) -> float:
    _check_shapes(sr_img, hr_img)
    return _psnr(sr_img, hr_img)


def psnr_y(sr_img: np.ndarray, hr_img: np.ndarray, border: int) -> float:
    _check_shapes(sr_img, hr_img)
    return _psnr(crop_border(rgb_to_y(sr_img), border), crop_border(rgb_to_y(hr_img), border))


def ssim_y(sr_img: np.ndarray, hr_img: np.ndarray, border: int) -> float:
    _check_shapes(sr_img, hr_img)
    sr_y, hr_y = crop_border(rgb_to_y(sr_img), border), crop_border(rgb_to_y(hr_img), border)
    return float(structural_similarity(hr_y, sr_y, data_range=255, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, K1=0.01, K2=0.03))


def image_metrics(sr_img: np.ndarray, hr_img: np.ndarray, scale: int, ssim: bool = True) -> dict[str, float]:
    """All measures of one SR image against its HR; `scale` is also the border cut for Y."""
    metrics = {
        "psnr_rgb": psnr_rgb(sr_img, hr_img),
        "psnr_y": psnr_y(sr_img, hr_img, scale),
        "mae": float(np.abs(sr_img / 255.0 - hr_img / 255.0).mean()),
        "mse": float(np.square(sr_img / 255.0 - hr_img / 255.0).mean()),
    }
    if ssim:
        metrics["ssim"] = ssim_y(sr_img, hr_img, scale)
    return metrics
