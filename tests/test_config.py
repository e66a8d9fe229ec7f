from pathlib import Path

import pytest
import yaml

from conftest import REPO, documented_experiment, write_params
from sr_core.config import ModelConfig, Params, build, load_params
from sr_core.model import SRResNet


def test_repo_params_load():
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert params.model.scale == 4


def test_dvc_written_numbers_are_coerced(tmp_path):
    # `dvc exp run -S lr=1e-5` writes 1e-05, which YAML reads as a string
    params = load_params(write_params(tmp_path, {"lr": "1e-05", "train": {"epochs": "3", "augment": "false"}}))
    assert params.lr == 1e-5
    assert params.train.epochs == 3
    assert params.train.augment is False


def test_unknown_keys_are_errors_that_list_the_valid_keys(tmp_path):
    with pytest.raises(ValueError, match=r"params.train: unknown key\(s\) epoch; valid keys: epochs"):
        load_params(write_params(tmp_path, {"train": {"epoch": 3}}))


def test_bad_choice_lists_the_choices(tmp_path):
    with pytest.raises(ValueError, match="train.schedule must be one of constant, cosine"):
        load_params(write_params(tmp_path, {"train": {"schedule": "linear"}}))


def test_non_integer_for_an_int_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="params.train.batch_size must be a whole number"):
        load_params(write_params(tmp_path, {"train": {"batch_size": 2.5}}))


def test_non_positive_lr_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"params.lr must be a number > 0; got 0.0"):
        load_params(write_params(tmp_path, {"lr": 0}))


def test_documented_reference_command_gives_the_reference_scripts_setting():
    params = documented_experiment("reference")
    assert params.model == ModelConfig()  # its network, whatever the demo's defaults
    assert sum(p.numel() for p in SRResNet(params.model).parameters()) == 1_549_443
    assert params.lr == 1e-4
    assert (params.train.epochs, params.train.batch_size, params.train.patch_size) == (100, 8, 0)
    assert (params.train.patches_per_image, params.train.ema_decay, params.train.bf16) == (1, 0, False)  # one pass
    assert (params.train.schedule, params.train.loss, params.train.augment) == ("constant", "l1", False)
    assert (params.split.val_split, params.split.seed) == (0.15, 42)


def test_documented_general_command_gives_the_general_setting():
    params = documented_experiment("general")
    assert params.model == ModelConfig(num_blocks=16, num_features=32, bicubic_residual=True, activation="relu",
                                       upsampler_activation="prelu", batch_norm=False)
    assert (params.lr, params.train.warmup_epochs, params.train.ema_decay) == (1e-3, 4, 0)
    assert params.data.extra_train_dirs == ("../shared/datasets/T91", "../shared/datasets/BSD200")
    assert [Path(folder).name for folder in params.evaluate.benchmarks] == ["Set5", "Set14", "BSD100"]
    assert (params.train.schedule, params.train.time_limit_minutes, params.train.augment) == ("cosine", 10, True)
