"""Image quality measures of 8-bit images (the SR output already rounded to 8 bits).

- `psnr_rgb`: the reference script's measure and its competition's leaderboard's, over all RGB pixels.
- `competition_score`: the public SRGD competition's score ("super-resolution-in-video-games" on
  Kaggle): 20 log10(255) - 10 log10(m + 1e-6), at most 100, where m is the mean of the squared
  differences of all pixels computed as its scorer computes them, in 8-bit unsigned arithmetic,
  which wraps: a difference d counts as d^2 mod 256, so 16 and 240 count as 0 and 1 as 1. It is
  not a PSNR (docs/results.md).
- `psnr_y` and `ssim`: the literature's protocol. Y of ITU-R BT.601 as MATLAB's rgb2ycbcr
  computes it (16 + (65.481 R + 128.553 G + 24.966 B) / 255), `scale` pixels cut from every
  border, peak 255; SSIM of Wang et al. (11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03,
  population covariance), averaged over the positions where the window fits.

Two implementations of the one protocol:
- `batch_metrics`: batched torch operations on the device the images are on (the model's), so
  the pipeline brings only scalars back to the host. This is what training, evaluation and the
  benchmarks use.
- `image_metrics`: numpy and scikit-image on the host, one image at a time. It is the reference:
  tests hold `batch_metrics` to it (1e-4 dB, 1e-5 SSIM) on the standard benchmarks and at 1080p.
  scikit-image is imported where the reference runs: with the scipy it loads, it would add about
  a second and a half to the start of every stage, none of which uses it.
"""

import math

import numpy as np
import torch

Y_WEIGHTS = (65.481 / 255, 128.553 / 255, 24.966 / 255)  # BT.601 Y per unit of R, G, B in 0..255
SSIM_C1, SSIM_C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
SSIM_WINDOW = 11  # the Gaussian's support: 2 * int(3.5 * sigma + 0.5) + 1, as scikit-image truncates it
STRIP_PIXELS = 1 << 17  # on a CPU, metrics run in strips of rows this large, to stay in cache
COMPETITION_PEAK, COMPETITION_EPS, COMPETITION_CAP = 20 * math.log10(255), 1e-6, 100.0


def min_scored_side(scale: int) -> int:
    """The smallest HR side the protocol can score: `scale` pixels cut from each border, then
    SSIM's window."""
    return 2 * scale + SSIM_WINDOW


def _check_shapes(sr_img: np.ndarray, hr_img: np.ndarray) -> None:
    if sr_img.shape != hr_img.shape:
        raise ValueError(f"SR {sr_img.shape} and HR {hr_img.shape} differ in shape")


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """HWC uint8 RGB -> HW float64 Y in 16..235."""
    from skimage.color import rgb2ycbcr
    return rgb2ycbcr(rgb)[..., 0]


def crop_border(img: np.ndarray, border: int) -> np.ndarray:
    return img[border:-border, border:-border] if border else img


def _psnr(sr: np.ndarray, hr: np.ndarray) -> float:
    from skimage.metrics import peak_signal_noise_ratio
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
    from skimage.metrics import structural_similarity
    sr_y, hr_y = crop_border(rgb_to_y(sr_img), border), crop_border(rgb_to_y(hr_img), border)
    return float(structural_similarity(hr_y, sr_y, data_range=255, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, K1=0.01, K2=0.03))


def competition_score(sr_img: np.ndarray, hr_img: np.ndarray) -> float:
    """The competition's score of one prediction against its truth (uint8 arrays of one shape, in
    any channel order: every pixel counts alike)."""
    _check_shapes(sr_img, hr_img)
    wrapped = (hr_img.astype(np.uint8) - sr_img.astype(np.uint8)) ** 2  # uint8: wraps, as the scorer's does
    return min(COMPETITION_PEAK - 10 * math.log10(float(wrapped.mean()) + COMPETITION_EPS), COMPETITION_CAP)


def image_metrics(sr_img: np.ndarray, hr_img: np.ndarray, scale: int, ssim: bool = True) -> dict[str, float]:
    """All measures of one SR image against its HR; `scale` is also the border cut for Y."""
    metrics = {
        "competition_score": competition_score(sr_img, hr_img),
        "psnr_rgb": psnr_rgb(sr_img, hr_img),
        "psnr_y": psnr_y(sr_img, hr_img, scale),
        "mae": float(np.abs(sr_img / 255.0 - hr_img / 255.0).mean()),
        "mse": float(np.square(sr_img / 255.0 - hr_img / 255.0).mean()),
    }
    if ssim:
        metrics["ssim"] = ssim_y(sr_img, hr_img, scale)
    return metrics


def gaussian_taps(sigma: float = 1.5, size: int = SSIM_WINDOW) -> list[float]:
    """The normalised 1-D Gaussian of SSIM's window, as scipy.ndimage.gaussian_filter builds it."""
    taps = [math.exp(-0.5 * (i - size // 2) ** 2 / sigma**2) for i in range(size)]
    return [tap / sum(taps) for tap in taps]


def gaussian_filter_valid(maps: torch.Tensor) -> torch.Tensor:
    """The SSIM window over the last two dims of `maps`, at the positions where it fits.

    Written as shifted in-place sums, separably: on a CPU that is 10x faster than conv2d with a
    one-channel 11-tap kernel (measured at 1080p), and it is just as fast on a GPU.
    """
    taps, height, width = gaussian_taps(), *maps.shape[-2:]
    size = len(taps)
    rows = maps[..., :height - size + 1, :] * taps[0]
    for i in range(1, size):
        rows.add_(maps[..., i:height - size + 1 + i, :], alpha=taps[i])
    out = rows[..., :width - size + 1] * taps[0]
    for i in range(1, size):
        out.add_(rows[..., i:width - size + 1 + i], alpha=taps[i])
    return out


@torch.no_grad()
def batch_metrics(sr: torch.Tensor, hr: torch.Tensor, scale: int, ssim: bool = True,
                  strip_pixels: int | None = None) -> dict[str, torch.Tensor]:
    """The measures of `image_metrics` for each image of a batch, as float64 tensors of shape (N,)
    on the images' device. `sr` and `hr`: NHWC uint8 tensors of one shape, on one device.

    With `strip_pixels` None, a GPU takes the whole batch at once, and a CPU one image at a time in
    strips of rows of STRIP_PIXELS whose temporaries stay in cache (3x faster at 1080p). Sums run in
    float32: torch sums in blocks, so the relative error stays near 1e-7; measured against the
    float64 reference, PSNR agrees within 2e-6 dB and SSIM within 3e-7.
    """
    if sr.shape != hr.shape:
        raise ValueError(f"SR {tuple(sr.shape)} and HR {tuple(hr.shape)} differ in shape")
    if strip_pixels is None and not hr.is_cuda:
        per_image = [batch_metrics(sr[i:i + 1], hr[i:i + 1], scale, ssim, STRIP_PIXELS) for i in range(len(hr))]
        return {key: torch.cat([m[key] for m in per_image]) for key in per_image[0]}
    border, (height, width) = scale, hr.shape[1:3]
    if min(height, width) <= 2 * border:
        raise ValueError(f"images of {width}x{height} have no pixels left after cutting {border} from each border")
    to_y = torch.tensor(Y_WEIGHTS, device=hr.device)
    strip = max(1, strip_pixels // (len(hr) * width)) if strip_pixels else height
    squares, absolutes, y_squares = (torch.zeros(len(hr), device=hr.device) for _ in range(3))
    wrapped = torch.zeros(len(hr), dtype=torch.int64, device=hr.device)
    for top in range(0, height, strip):
        sr_strip, hr_strip = sr[:, top:top + strip], hr[:, top:top + strip]
        wrapped += (hr_strip - sr_strip).square_().sum(dim=(1, 2, 3), dtype=torch.int64)  # uint8: wraps
        diff = sr_strip.float() - hr_strip.float()  # whole numbers: exact
        squares += diff.square().sum(dim=(1, 2, 3))
        absolutes += diff.abs().sum(dim=(1, 2, 3))
        # PSNR-Y needs only the Y difference, taken from the exact RGB difference
        inside = slice(max(border - top, 0), max(height - border - top, 0))  # the strip's rows off the border
        y_diff = diff[:, inside, border:width - border] @ to_y
        y_squares += y_diff.square().sum(dim=(1, 2))
    mse = squares / hr[0].numel()  # on 0..255
    metrics = {
        "competition_score": (COMPETITION_PEAK - 10 * torch.log10(wrapped.double() / hr[0].numel() + COMPETITION_EPS)
                              ).clamp(max=COMPETITION_CAP),
        "psnr_rgb": 10 * torch.log10(255**2 / mse),
        "psnr_y": 10 * torch.log10(255**2 * (height - 2 * border) * (width - 2 * border) / y_squares),
        "mae": absolutes / hr[0].numel() / 255,
        "mse": mse / 255**2,
    }
    if ssim:
        metrics["ssim"] = _ssim(sr[:, border:height - border, border:width - border],
                                hr[:, border:height - border, border:width - border], to_y, strip)
    return {key: value.double() for key, value in metrics.items()}


def _ssim(sr: torch.Tensor, hr: torch.Tensor, to_y: torch.Tensor, strip: int) -> torch.Tensor:
    """Mean SSIM on Y of each image (NHWC uint8, borders already cut), in strips of `strip` rows
    of the SSIM map (each reads SSIM_WINDOW - 1 more rows of the images).

    Each strip is centred on its mean HR Y before filtering, so that the variances (local mean of
    squares minus square of the local mean) keep float32's precision.
    """
    height, width = hr.shape[1:3]
    if min(height, width) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs {SSIM_WINDOW}x{SSIM_WINDOW} pixels after cutting the border; "
                         f"{width}x{height} are left")
    out_rows = height - SSIM_WINDOW + 1
    total = torch.zeros(len(hr), device=hr.device)
    for top in range(0, out_rows, strip):
        rows = slice(top, min(top + strip, out_rows) + SSIM_WINDOW - 1)
        hr_y, sr_y = hr[:, rows].float() @ to_y, sr[:, rows].float() @ to_y  # Y - 16
        centre = hr_y.mean(dim=(1, 2), keepdim=True)
        x, y = hr_y - centre, sr_y - centre
        mean_x, mean_y, squares, products = gaussian_filter_valid(torch.stack([x, y, x * x + y * y, x * y]))
        mu_x, mu_y = mean_x + (centre + 16), mean_y + (centre + 16)
        luminance = (2 * mu_x * mu_y + SSIM_C1) / (mu_x * mu_x + mu_y * mu_y + SSIM_C1)
        structure = ((2 * (products - mean_x * mean_y) + SSIM_C2)
                     / (squares - mean_x * mean_x - mean_y * mean_y + SSIM_C2))
        total += (luminance * structure).sum(dim=(1, 2))
    return total / (out_rows * (width - SSIM_WINDOW + 1))
