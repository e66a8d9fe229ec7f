"""Stage evaluate: the best model and bicubic on the val split, side by side."""

import logging

from sr_core.checkpoint import load_model
from sr_core.config import load_params
from sr_core.data import read_split
from sr_core.evaluation import mean_metrics, score_pairs, side_by_side
from sr_core.files import write_json
from sr_core.images import write_png
from sr_core.inference import pick_device

MEASURES = ("psnr_rgb", "psnr_y", "ssim")


def evaluate() -> None:
    params = load_params()
    paths, scale = params.paths, params.model.scale
    _, val_pairs = read_split(paths.split, params.data.train_lr_dir, params.data.train_hr_dir)
    model = load_model(paths.model, pick_device(params.train.device))
    means = mean_metrics(score_pairs(model, val_pairs, scale, ssim=True, bicubic=True))
    metrics = {
        "num_images": len(val_pairs),
        "model": {key: means[key] for key in MEASURES},
        "bicubic": {key: means[f"bicubic_{key}"] for key in MEASURES},
        "gain_over_bicubic": {key: means[key] - means[f"bicubic_{key}"] for key in MEASURES},
    }
    write_json(paths.eval_metrics, metrics)
    write_png(paths.eval_samples, side_by_side(model, val_pairs[:params.evaluate.num_samples],
                                               scale, params.evaluate.sample_crop))
    logging.info("val PSNR-Y %.3f dB (bicubic %.3f dB), SSIM %.4f (bicubic %.4f), RGB PSNR %.3f dB",
                 means["psnr_y"], means["bicubic_psnr_y"], means["ssim"], means["bicubic_ssim"],
                 means["psnr_rgb"])


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    evaluate()
