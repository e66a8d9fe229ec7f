
import pytest
from pydantic import ValidationError

from conftest import REPO, write_params
from sr_core.compare import in_current_keys
from sr_core.config import Params, TrainConfig, build, load_params


def test_repo_params_load():
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert params.model.scale == 4


def test_dvc_written_numbers_are_read_as_numbers(tmp_path):
    # `dvc exp run -S lr=1e-5` writes 1e-05, which YAML reads as a string
    params = load_params(write_params(tmp_path, {"lr": "1e-05", "train": {"epochs": "3", "augment": False}}))
    assert params.lr == 1e-5
    assert params.train.epochs == 3
    assert params.train.augment is False


def test_every_error_of_a_params_file_is_named_in_one_message_with_what_is_valid(tmp_path):
    path = write_params(tmp_path, {"lr": -1, "train": {"schedule": "linear", "epoch": 3},
                                   "inference": {"png_compress_level": 10}})
    with pytest.raises(ValueError) as error:
        load_params(path)
    assert str(error.value).splitlines() == [
        f"{path}: 4 problems:",
        "  params.lr must be a finite number > 0; got -1",
        "  params.train.schedule must be one of constant, cosine, step; got 'linear'",
        "  params.train: unknown key epoch (did you mean epochs?); valid keys: " + ", ".join(TrainConfig.model_fields),
        "  params.inference.png_compress_level must be an integer in [0, 9]; got 10",
    ]


def test_params_are_frozen_and_a_boolean_is_never_a_number_nor_a_number_a_boolean(tmp_path):
    params = load_params(REPO / "params.yaml")
    with pytest.raises(ValidationError, match="frozen"):
        params.train.epochs = 3
    with pytest.raises(ValueError, match=r"params.train.epochs must be an integer >= 1; got True"):
        load_params(write_params(tmp_path, {"train": {"epochs": True}}))
    with pytest.raises(ValueError, match=r"params.train.augment must be true or false; got 1"):
        load_params(write_params(tmp_path, {"train": {"augment": 1}}))


def test_params_of_earlier_versions_read_in_todays_keys():
    """What `sr-compare` reads at an older commit: bf16 switches and a boolean compile."""
    earlier = {"train": {"epochs": 3, "bf16": False, "compile": False}, "inference": {"bf16": True, "tile": 64}}
    params = build(Params, in_current_keys(earlier))
    assert (params.train.precision, params.train.compile, params.inference.precision) == ("fp32", "eager", "auto")
    assert (params.train.epochs, params.inference.tile) == (3, 64)
    assert earlier["train"]["bf16"] is False  # the caller's mapping is left as it was
    assert in_current_keys({"train": {"compile": True}})["train"]["compile"] == "default"
