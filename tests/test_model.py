import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sr_core.config import build
from sr_core.model import ModelConfig, SRResNet


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_default_config_is_the_reference_scripts_network():
    model = SRResNet(ModelConfig())
    assert num_params(model) == 1_549_443
    assert len(model.blocks) == 16
    kinds = [type(m) for m in model.blocks[0].body]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d]
    assert [type(m) for m in model.upsampler] == [nn.Conv2d, nn.PixelShuffle, nn.ReLU] * 2
    assert model.blocks[0].res_scale == 1.0 and not model.config.bicubic_residual


def test_a_checkpoint_config_from_before_the_options_is_the_reference_network():
    config = build(ModelConfig, {"scale": 4, "num_blocks": 16, "num_features": 64, "bicubic_residual": False})
    assert config == ModelConfig()


def test_prelu_has_one_slope_per_channel_in_the_head_blocks_and_upsampler():
    relu = SRResNet(ModelConfig(num_blocks=2, num_features=8))
    prelu = SRResNet(ModelConfig(num_blocks=2, num_features=8, activation="prelu", upsampler_activation="prelu"))
    slopes = [m for m in prelu.modules() if isinstance(m, nn.PReLU)]
    assert len(slopes) == 1 + 2 + 2 and all(m.weight.numel() == 8 for m in slopes)
    assert num_params(prelu) == num_params(relu) + 5 * 8
    assert not any(isinstance(m, nn.ReLU) for m in prelu.modules())


def test_upsampler_without_activation_is_affine():
    model = SRResNet(ModelConfig(num_blocks=1, num_features=8, upsampler_activation="none")).eval()
    up, features = model.upsampler, torch.rand(1, 8, 3, 4)
    assert not any(isinstance(m, (nn.ReLU, nn.PReLU)) for m in up)
    torch.testing.assert_close(up(features) + up(-features), 2 * up(torch.zeros_like(features)))  # f(x)+f(-x) = 2f(0)


def test_without_batch_norm_train_and_eval_agree():
    model = SRResNet(ModelConfig(num_blocks=2, num_features=8, batch_norm=False))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    lr_img = torch.rand(2, 3, 6, 5)
    torch.testing.assert_close(model.train()(lr_img), model.eval()(lr_img))
    with_bn = SRResNet(ModelConfig(num_blocks=2, num_features=8))
    assert num_params(with_bn) - num_params(model) == 2 * 8 * (2 * 2 + 1)  # weight and bias of 5 BatchNorms


def test_res_scale_scales_each_blocks_output():
    model = SRResNet(ModelConfig(num_blocks=1, num_features=8, res_scale=0.1)).eval()
    block, x = model.blocks[0], torch.rand(1, 8, 5, 5)
    torch.testing.assert_close(block(x), x + 0.1 * block.body(x))


@pytest.mark.parametrize("scale", [2, 4])
def test_output_is_scale_times_the_input(scale):
    model = SRResNet(ModelConfig(scale=scale, num_blocks=2, num_features=8)).eval()
    assert model(torch.rand(2, 3, 10, 7)).shape == (2, 3, 10 * scale, 7 * scale)


def test_bicubic_residual_adds_bicubic_upsampling():
    model = SRResNet(ModelConfig(num_blocks=1, num_features=8, bicubic_residual=True)).eval()
    torch.nn.init.zeros_(model.tail.weight)
    torch.nn.init.zeros_(model.tail.bias)
    lr_img = torch.rand(1, 3, 6, 5)
    expected = F.interpolate(lr_img, scale_factor=4, mode="bicubic", align_corners=False)
    torch.testing.assert_close(model(lr_img), expected)


@pytest.mark.parametrize("key, value, message", [
    ("scale", 3, "model.scale must be one of 2, 4, 8; got 3"),
    ("activation", "gelu", "model.activation must be one of relu, prelu; got 'gelu'"),
    ("upsampler_activation", "tanh", "model.upsampler_activation must be one of relu, prelu, none; got 'tanh'"),
    ("res_scale", 0.0, r"model.res_scale must be a number in \(0, 1\]; got 0.0"),
])
def test_bad_model_options_are_rejected_with_the_choices(key, value, message):
    with pytest.raises(ValueError, match=message):
        build(ModelConfig, {key: value}, "model")
