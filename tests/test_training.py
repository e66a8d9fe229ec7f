import csv

import pytest
import torch

from sr_core.checkpoint import load_model
from sr_core.config import Params, TrainConfig
from sr_core.data import check_pairs
from sr_core.model import ModelConfig
from sr_core.training import lr_factor, train


def test_lr_schedules():
    assert [lr_factor(s, "constant", 0, 10) for s in (0, 5, 9)] == [1.0, 1.0, 1.0]
    assert lr_factor(0, "cosine", 0, 10) == 1.0
    assert lr_factor(5, "cosine", 0, 10) == pytest.approx(0.5)
    assert lr_factor(10, "cosine", 0, 10) == pytest.approx(0.0)
    assert [lr_factor(s, "cosine", 4, 14) for s in (0, 3, 4)] == [0.25, 1.0, 1.0]


def test_training_writes_history_and_a_weights_only_checkpoint(paired_folder):
    pairs, _ = check_pairs(paired_folder / "lr", paired_folder / "hr", 4)
    params = Params(
        lr=1e-3,
        model=ModelConfig(num_blocks=1, num_features=8, bicubic_residual=True),
        train=TrainConfig(epochs=3, batch_size=2, patch_size=32, patches_per_image=2, num_workers=0,
                          schedule="cosine", device="cpu"),
    )
    model_path, history_path = paired_folder / "best.pt", paired_folder / "history.csv"
    summary = train(params, pairs[:4], pairs[4:], model_path, history_path)

    with open(history_path, newline="") as f:
        history = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in history] == [1, 2, 3]
    best = max(history, key=lambda row: float(row["val_psnr_rgb"]))
    assert summary["best_epoch"] == int(best["epoch"]) and summary["steps"] == 12

    checkpoint = torch.load(model_path, weights_only=True)
    assert checkpoint["epoch"] == summary["best_epoch"]
    assert checkpoint["model_config"] == {"scale": 4, "num_blocks": 1, "num_features": 8, "bicubic_residual": True}
    assert checkpoint["params"]["lr"] == 1e-3
    model = load_model(model_path, torch.device("cpu"))
    assert not model.training
    assert model(torch.rand(1, 3, 5, 5)).shape == (1, 3, 20, 20)


def test_training_without_val_pairs_is_an_error(paired_folder):
    pairs, _ = check_pairs(paired_folder / "lr", paired_folder / "hr", 4)
    with pytest.raises(ValueError, match="needs train and val pairs; got 6 and 0"):
        train(Params(), pairs, [], paired_folder / "m.pt", paired_folder / "h.csv")
