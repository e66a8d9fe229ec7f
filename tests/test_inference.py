import numpy as np
import pytest
import torch

from conftest import save
from sr_core.images import read_rgb
from sr_core.inference import pick_device, predict_folder, upscale
from sr_core.model import ModelConfig, SRResNet


@pytest.fixture
def model():
    torch.manual_seed(0)
    return SRResNet(ModelConfig(num_blocks=1, num_features=8)).eval()


def test_upscale_gives_uint8_rgb_four_times_larger(model, rng):
    sr_img = upscale(model, rng.integers(0, 256, (5, 9, 3), dtype=np.uint8))
    assert sr_img.shape == (20, 36, 3) and sr_img.dtype == np.uint8


def test_predict_folder_writes_every_image_as_png(tmp_path, model, rng):
    save(tmp_path / "test" / "a.png", rng.integers(0, 256, (4, 6, 4), dtype=np.uint8))  # RGBA
    save(tmp_path / "test" / "b.jpg", rng.integers(0, 256, (5, 3), dtype=np.uint8))  # greyscale
    written = predict_folder(model, tmp_path / "test", tmp_path / "pred")
    assert [p.name for p in written] == ["a.png", "b.png"]
    assert read_rgb(tmp_path / "pred" / "a.png").shape == (16, 24, 3)
    assert read_rgb(tmp_path / "pred" / "b.png").shape == (20, 12, 3)


def test_a_test_image_that_does_not_decode_stops_prediction(tmp_path, model):
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="broken.png: cannot decode"):
        predict_folder(model, tmp_path / "test", tmp_path / "pred")


def test_device_choice():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        pick_device("tpu")


def test_test_files_that_would_share_a_png_name_are_an_error(tmp_path, model, rng):
    save(tmp_path / "test" / "a.png", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    save(tmp_path / "test" / "a.jpg", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="a.jpg, a.png would all be predicted to the same PNG name"):
        predict_folder(model, tmp_path / "test", tmp_path / "pred")


@pytest.mark.parametrize("bicubic_residual", [False, True])
def test_tiled_upscale_equals_the_whole_image(rng, bicubic_residual):
    torch.manual_seed(0)
    model = SRResNet(ModelConfig(num_blocks=2, num_features=8, bicubic_residual=bicubic_residual)).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so borders matter
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
    lr_img = rng.integers(0, 256, (37, 29, 3), dtype=np.uint8)
    whole = upscale(model, lr_img)
    tiled = upscale(model, lr_img, tile=10)
    assert tiled.shape == whole.shape == (148, 116, 3)
    assert np.abs(tiled.astype(int) - whole).max() <= 1  # float summation order may flip a rounding
    assert (tiled != whole).mean() < 0.001
