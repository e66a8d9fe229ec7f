import pytest
import torch
import torch.nn.functional as F

from sr_core.model import ModelConfig, SRResNet


def test_seed_network_has_the_seed_parameter_count():
    model = SRResNet(ModelConfig())
    assert sum(p.numel() for p in model.parameters()) == 1_549_443
    assert len(model.blocks) == 16


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


def test_bad_scale_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="2, 4, 8"):
        ModelConfig(scale=3)
