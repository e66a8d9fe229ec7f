"""The training loop: one function, read top to bottom.

Per epoch: train on random patches (or whole images) -> score the val split -> append a history
row -> keep the checkpoint with the best val RGB PSNR (the seed's selection rule).
"""

import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from sr_core.checkpoint import save_checkpoint
from sr_core.config import Params, to_dict
from sr_core.data import Pair, PairDataset
from sr_core.evaluation import mean_metrics, score_pairs
from sr_core.files import write_csv
from sr_core.inference import pick_device
from sr_core.model import SRResNet

log = logging.getLogger(__name__)

LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}


def lr_factor(step: int, schedule: str, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the base learning rate at `step`: linear warmup, then constant or cosine to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "cosine":
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


def train(params: Params, train_pairs: list[Pair], val_pairs: list[Pair],
          model_path: str | Path, history_path: str | Path) -> dict:
    """Trains SRResNet, writing the best checkpoint and the per-epoch history; returns a summary."""
    cfg, scale = params.train, params.model.scale
    if not train_pairs or not val_pairs:
        raise ValueError(f"training needs train and val pairs; got {len(train_pairs)} and {len(val_pairs)}")
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    model = SRResNet(params.model).to(device)
    dataset = PairDataset(train_pairs, scale, cfg.patch_size, cfg.patches_per_image, cfg.augment)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                        num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0,
                        pin_memory=device.type == "cuda")
    if len(loader) == 0:
        raise ValueError(f"{len(dataset)} training samples do not fill one batch of {cfg.batch_size}")
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    steps_per_epoch = len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(
        step, cfg.schedule, cfg.warmup_epochs * steps_per_epoch, cfg.epochs * steps_per_epoch))
    loss_fn = LOSSES[cfg.loss]
    num_params = sum(p.numel() for p in model.parameters())
    log.info("training %d parameters on %s: %d train / %d val pairs, %d steps per epoch",
             num_params, device, len(train_pairs), len(val_pairs), steps_per_epoch)

    history, best = [], None
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=device)  # summed on the device: no host sync per step
        for lr_img, hr_img in tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False):
            lr_img = lr_img.to(device, non_blocking=True)
            hr_img = hr_img.to(device, non_blocking=True)
            loss = loss_fn(model(lr_img), hr_img)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach()

        model.eval()
        val = mean_metrics(score_pairs(val_pairs, scale, model, ssim=False, tile=params.inference.tile))
        row = {
            "epoch": epoch,
            "train_loss": loss_sum.item() / steps_per_epoch,
            "val_loss": val["mae" if cfg.loss == "l1" else "mse"],
            "val_psnr_rgb": val["psnr_rgb"],
            "val_psnr_y": val["psnr_y"],
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - epoch_start,
        }
        history.append(row)
        write_csv(history_path, history)
        if best is None or row["val_psnr_rgb"] > best["val_psnr_rgb"]:
            best = row
            save_checkpoint(model_path, model, epoch=epoch, val_psnr_rgb=row["val_psnr_rgb"],
                            val_psnr_y=row["val_psnr_y"], params=to_dict(params))
        log.info("epoch %d/%d: train loss %.5f, val loss %.5f, val PSNR %.3f dB (Y %.3f dB), %.1f s",
                 epoch, cfg.epochs, row["train_loss"], row["val_loss"], row["val_psnr_rgb"],
                 row["val_psnr_y"], row["seconds"])

    return {
        "best_epoch": best["epoch"],
        "best_val_psnr_rgb": best["val_psnr_rgb"],
        "best_val_psnr_y": best["val_psnr_y"],
        "epochs": cfg.epochs,
        "steps": cfg.epochs * steps_per_epoch,
        "num_params": num_params,
        "device": str(device),
        "train_seconds": time.perf_counter() - start,
    }
