import io

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import save
from sr_core.config import InferenceConfig
from sr_core.device import pick_device
from sr_core.images import read_rgb
from sr_core.inference import (SelfEnsemble, configured, predict_folder,
                               same_size_batches, upscale, upscale_stream)
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
    np.testing.assert_array_equal(read_rgb(tmp_path / "pred" / "b.png"),
                                  upscale(model, read_rgb(tmp_path / "test" / "b.jpg")))


def test_predictions_are_byte_identical_whatever_the_workers(tmp_path, model, rng):
    for i, size in enumerate([(9, 7), (9, 7), (9, 7), (5, 11), (9, 7), (30, 20)]):  # runs of sizes; one tiled
        save(tmp_path / "test" / f"{i}.png", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    outputs = {}
    for workers, tile in ((1, 16), (2, 16), (3, 16), (2, 0)):  # tile 0: whole images, one by one
        out_dir = tmp_path / f"pred_{workers}_{tile}"
        predict_folder(model, tmp_path / "test", out_dir, InferenceConfig(tile=tile, workers=workers))
        outputs[workers, tile] = {p.name: p.read_bytes() for p in sorted(out_dir.glob("*.png"))}
    assert len(outputs[1, 16]) == 6
    assert outputs[1, 16] == outputs[2, 16] == outputs[3, 16]
    # against whole images one by one, only float summation order differs
    for name, png in outputs[2, 0].items():
        tiled = np.asarray(Image.open(io.BytesIO(outputs[1, 16][name])), dtype=int)
        assert np.abs(tiled - np.asarray(Image.open(io.BytesIO(png)))).max() <= 1


def test_compress_level_changes_size_not_pixels(tmp_path, model, rng):
    save(tmp_path / "test" / "a.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    for level in (0, 9):
        predict_folder(model, tmp_path / "test", tmp_path / f"pred_{level}", InferenceConfig(png_compress_level=level))
    fast, small = tmp_path / "pred_0" / "a.png", tmp_path / "pred_9" / "a.png"
    assert fast.stat().st_size > small.stat().st_size
    np.testing.assert_array_equal(read_rgb(fast), read_rgb(small))


def test_same_size_images_are_batched_up_to_the_tile_area():
    sizes = [(4, 4), (4, 4), (4, 4), (2, 8), (4, 4)]
    assert [len(b) for b in same_size_batches(sizes, lambda size: size, tile=8)] == [3, 1, 1]
    assert [len(b) for b in same_size_batches(sizes, lambda size: size, tile=6)] == [2, 1, 1, 1]
    assert [len(b) for b in same_size_batches(sizes, lambda size: size, tile=0)] == [1, 1, 1, 1, 1]
    assert list(same_size_batches([(20, 20)], lambda size: size, tile=8)) == [[(20, 20)]]  # tiled alone


def test_a_batch_gives_what_each_image_gives_alone(model, rng):
    lr_imgs = [rng.integers(0, 256, (6, 10, 3), dtype=np.uint8) for _ in range(3)]
    together = list(upscale_stream(model, lr_imgs, tile=64))
    for lr_img, sr_img in zip(lr_imgs, together):
        assert np.abs(sr_img.astype(int) - upscale(model, lr_img)).max() <= 1  # summation order only


def test_output_is_rounded_to_8_bits(rng):
    model = SRResNet(ModelConfig(num_blocks=1, num_features=8)).eval()
    with torch.no_grad():
        model.tail.weight.zero_()
        lr_img = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        model.tail.bias.fill_(100.4 / 255)
        assert (upscale(model, lr_img) == 100).all()
        model.tail.bias.fill_(100.6 / 255)
        assert (upscale(model, lr_img) == 101).all()
        model.tail.bias.fill_(1.7)
        assert (upscale(model, lr_img) == 255).all()  # clamped, not wrapped


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
    with pytest.raises(ValueError, match=r"test/a.jpg, \S*test/a.png would all be written to \S*pred/a.png"):
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


class Repeat:
    """A flip- and turn-equivariant stand-in for a model: each LR pixel repeated 4 x 4."""

    config, device = ModelConfig(num_blocks=1, num_features=8), torch.device("cpu")

    def __call__(self, lr_img: torch.Tensor) -> torch.Tensor:
        return lr_img.repeat_interleave(4, -2).repeat_interleave(4, -1)


def test_self_ensemble_of_an_equivariant_model_is_the_model(rng):
    lr_img = torch.from_numpy(rng.random((2, 3, 5, 7), dtype=np.float32))
    torch.testing.assert_close(SelfEnsemble(Repeat())(lr_img), Repeat()(lr_img))
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(upscale(SelfEnsemble(Repeat()), image), upscale(Repeat(), image))


def test_self_ensemble_is_the_mean_over_the_eight_orientations_turned_back(model, rng):
    """Against numpy's own flips and turns: each output goes back to the input's orientation exactly."""
    lr_img = rng.random((1, 3, 6, 9), dtype=np.float32)  # not square: turned outputs change shape
    with torch.no_grad():
        ensembled = SelfEnsemble(model)(torch.from_numpy(lr_img)).numpy()
        expected = np.zeros_like(ensembled)
        for turns in range(4):
            for flip in (False, True):
                turned = np.rot90(lr_img[..., ::-1] if flip else lr_img, turns, (2, 3)).copy()
                back = np.rot90(model(torch.from_numpy(turned)).numpy(), -turns, (2, 3))
                expected += (back[..., ::-1] if flip else back) / 8
    np.testing.assert_allclose(ensembled, expected, atol=1e-5)
    assert np.abs(ensembled - model(torch.from_numpy(lr_img)).detach().numpy()).max() > 1e-3  # not the plain output


def test_tiled_self_ensemble_equals_the_whole_image(rng):
    torch.manual_seed(0)
    model = SRResNet(ModelConfig(num_blocks=2, num_features=8, bicubic_residual=True)).eval()
    lr_img = rng.integers(0, 256, (37, 29, 3), dtype=np.uint8)
    whole = upscale(SelfEnsemble(model), lr_img)
    tiled = upscale(SelfEnsemble(model), lr_img, tile=10)
    assert np.abs(tiled.astype(int) - whole).max() <= 1  # float summation order may flip a rounding
    assert (tiled != whole).mean() < 0.001
    config = InferenceConfig(self_ensemble=True)
    assert [sr.tolist() for sr in upscale_stream(configured(model, config), [lr_img], tile=10)] == [tiled.tolist()]
