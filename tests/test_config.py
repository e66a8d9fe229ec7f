
import pytest

from conftest import REPO, write_params
from sr_core.config import Params, build, in_current_keys, load_params


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


def test_params_of_earlier_versions_read_in_todays_keys():
    """What `python -m sr_core.compare` reads at an older commit: bf16 switches and a boolean compile."""
    earlier = {"train": {"epochs": 3, "bf16": False, "compile": False}, "inference": {"bf16": True, "tile": 64}}
    params = build(Params, in_current_keys(earlier))
    assert (params.train.precision, params.train.compile, params.inference.precision) == ("fp32", "eager", "auto")
    assert (params.train.epochs, params.inference.tile) == (3, 64)
    assert earlier["train"]["bf16"] is False  # the caller's mapping is left as it was
    assert in_current_keys({"train": {"compile": True}})["train"]["compile"] == "default"
