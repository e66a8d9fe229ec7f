import shlex
from pathlib import Path

import pytest
import yaml

from conftest import REPO, write_params
from sr_core.config import Params, build, load_params
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


def readme_experiment(name: str) -> Params:
    """The params of the README's `dvc exp run -n NAME ...` line, `-S key=value` applied as DVC does
    (each key must already be in params.yaml, or DVC would not override it)."""
    lines = (REPO / "README.md").read_text().splitlines()
    words = shlex.split(next(text for text in lines if text.startswith(f"dvc exp run -n {name} ")))
    values = yaml.safe_load((REPO / "params.yaml").read_text())
    for flag, assignment in zip(words, words[1:]):
        if flag == "-S":
            key, value = assignment.split("=", 1)
            *parents, leaf = key.split(".")
            target = values
            for parent in parents:
                target = target[parent]
            assert leaf in target, f"{key} is not in params.yaml, so DVC would not override it"
            target[leaf] = yaml.safe_load(value)
    return build(Params, values, complete=True)


def test_readme_seed_command_gives_the_seed_setting():
    params = readme_experiment("seed")
    model = SRResNet(params.model)
    assert sum(p.numel() for p in model.parameters()) == 1_549_443
    assert params.lr == 1e-4
    assert (params.train.epochs, params.train.batch_size, params.train.patch_size) == (100, 8, 0)
    assert (params.train.schedule, params.train.loss, params.train.augment) == ("constant", "l1", False)
    assert (params.split.val_split, params.split.seed) == (0.15, 42)


def test_readme_general_command_gives_the_general_setting():
    params = readme_experiment("general")
    assert sum(p.numel() for p in SRResNet(params.model).parameters()) == 1_549_443  # the seed's network
    assert params.data.extra_train_dirs == ("../shared/datasets/T91", "../shared/datasets/BSD200")
    assert [Path(folder).name for folder in params.evaluate.benchmarks] == ["Set5", "Set14", "BSD100"]
    assert (params.train.schedule, params.train.time_limit_minutes, params.train.augment) == ("cosine", 10, True)
