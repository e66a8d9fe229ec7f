"""The general model that comes with the package: small, loaded without pickle, its card's figures
reproduced, and what `sr-upscale` runs when given no model, from an installed wheel as much as from
the repo."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from safetensors import safe_open

from conftest import REPO, save
from sr_core.checkpoint import GENERAL_MODEL, load_model
from sr_core.commands.benchmark import main as benchmark_main
from sr_core.commands.upscale import main as upscale_main
from sr_core.data import list_folder
from sr_core.images import bicubic_downscale, bicubic_upscale, read_rgb
from sr_core.metrics import psnr_y
from test_benchmark import BENCHMARKS, needs_benchmarks

CARD = REPO / "docs" / "model-card.md"


def card_row(set_name: str) -> list[str]:
    """The cells of the card's results row for `set_name`: | set | PSNR-Y | SSIM | PSNR-Y x8 | SSIM x8 | ..."""
    rows = [line for line in CARD.read_text().splitlines() if line.startswith(f"| {set_name} |")]
    assert len(rows) == 1, f"{CARD} has {len(rows)} rows for {set_name}"
    return [cell.strip().strip("*") for cell in rows[0].strip("|").split("|")]


def test_the_weights_file_is_small_and_holds_no_pickle():
    assert GENERAL_MODEL.stat().st_size <= 10 * 2**20
    header_size = int.from_bytes(GENERAL_MODEL.read_bytes()[:8], "little")  # safetensors: a JSON header, then tensors
    header = json.loads(GENERAL_MODEL.read_bytes()[8:8 + header_size])
    assert all(entry["dtype"] == "F32" for name, entry in header.items() if name != "__metadata__")
    with safe_open(GENERAL_MODEL, "pt") as weights:
        assert len(weights.keys()) == len(header) - 1
    model = load_model(GENERAL_MODEL, torch.device("cpu"))
    assert (model.config.scale, model.config.num_blocks, model.config.num_features) == (4, 16, 32)
    assert f"{sum(p.numel() for p in model.parameters()):,}" in CARD.read_text()


@needs_benchmarks
@pytest.mark.parametrize("self_ensemble", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_the_cards_set5_figures_are_reproduced(tmp_path, self_ensemble):
    benchmark_main([str(BENCHMARKS / "Set5"), "--out", str(tmp_path), "--device", "cpu",
                    *(["--self-ensemble"] if self_ensemble else [])])  # no model: the general one
    measured = json.loads((tmp_path / "metrics.json").read_text())["Set5"]["model"]
    cells = card_row("Set5")
    psnr, ssim = (cells[3], cells[4]) if self_ensemble else (cells[1], cells[2])
    assert abs(measured["psnr_y"] - float(psnr)) < 0.01 and abs(measured["ssim"] - float(ssim)) < 0.0001


def photo() -> tuple:
    """A photograph of none of the general model's training sets (scikit-image's, installed with it):
    a 256 x 384 HR crop, and its LR by the bicubic downscale."""
    hr = skimage.data.stereo_motorcycle()[0][100:356, 150:534]
    return hr, bicubic_downscale(hr, 4)


@pytest.mark.slow  # pip builds and installs a wheel
def test_sr_upscale_with_no_model_beats_bicubic_from_an_installed_wheel(tmp_path):
    """The wheel holds the weights: installed alone (its dependencies from this environment), its
    console script upscales a photo in a folder that holds nothing else."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "wheel")], check=True, capture_output=True, timeout=300)  # this setuptools
    (wheel,) = (tmp_path / "wheel").glob("sr_core-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    hr, lr = photo()
    work = tmp_path / "work"
    save(work / "photo.png", lr)
    installed = {"PYTHONPATH": str(tmp_path / "site"), "PATH": f"{Path(sys.executable).parent}"}
    where = subprocess.run([sys.executable, "-c", "import sr_core; print(sr_core.__file__)"], cwd=work,
                           env=installed, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(tmp_path / "site"))
    result = subprocess.run([str(tmp_path / "site" / "bin" / "sr-upscale"), "photo.png", "--out", "up"], cwd=work,
                            env=installed, capture_output=True, text=True, timeout=300)  # its console script
    assert result.returncode == 0, result.stderr
    ours, bicubic = psnr_y(read_rgb(work / "up" / "photo.png"), hr, 4), psnr_y(bicubic_upscale(lr, 4), hr, 4)
    assert ours > bicubic + 1.0, (ours, bicubic)
    assert sorted(p.name for p in work.rglob("*")) == ["photo.png", "photo.png", "up"]


def test_sr_upscale_takes_a_model_or_none(tmp_path, command_line):
    hr, lr = photo()
    save(tmp_path / "photo.png", lr)
    for model, out in (([], "general"), ([GENERAL_MODEL], "given")):
        result = command_line(upscale_main, *model, tmp_path / "photo.png", "--out", tmp_path / out)
        assert result.status == 0, result.err
    assert (read_rgb(tmp_path / "general" / "photo.png") == read_rgb(tmp_path / "given" / "photo.png")).all()
    alone = command_line(upscale_main, GENERAL_MODEL, "--out", tmp_path / "up")
    assert alone.status == 2 and "give the images or folders to upscale after the model" in alone.err


def test_degraded_pairs_are_not_bicubic_are_the_same_on_every_run_and_pair_up(tmp_path):
    hr, bicubic_lr = photo()
    save(tmp_path / "hr" / "photo.jpg", hr[:, :-3])  # a side that is no multiple of 4: cropped
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "degraded_pairs.py"), str(tmp_path / "hr"), "--out",
                    str(tmp_path / "pairs")], check=True, capture_output=True, env={"PYTHONPATH": str(REPO)}, timeout=120)
    pairs, rejects = list_folder(tmp_path / "pairs")
    assert rejects == [] and [pair.name for pair in pairs] == ["photo.png"]
    lr = read_rgb(tmp_path / "pairs" / "lr" / "photo.png")
    assert lr.shape == (64, 95, 3) and read_rgb(tmp_path / "pairs" / "hr" / "photo.png").shape == (256, 380, 3)
    sys.path.insert(0, str(REPO / "benchmarks"))
    from degraded_pairs import degrade
    hr_cropped = read_rgb(tmp_path / "pairs" / "hr" / "photo.png")
    assert (degrade(hr_cropped, 4, seed=1) == degrade(hr_cropped, 4, seed=1)).all()
    assert not (degrade(hr_cropped, 4, seed=1) == degrade(hr_cropped, 4, seed=2)).all()  # the noise's seed
    assert np.abs(lr.astype(int) - bicubic_lr[:, :95]).mean() > 5  # blur, noise and JPEG: far from bicubic
