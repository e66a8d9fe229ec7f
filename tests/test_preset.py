"""Presets: each file is a complete setting that applies to params.yaml, loads and says what it says."""

import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, preset
from sr_core.checkpoint import GENERAL_MODEL, load_model
from sr_core.commands.preset import main
from sr_core.config import ModelConfig, load_params
from sr_core.model import SRResNet
from sr_core.param_changes import flat
from sr_core.preset import exp_run_command, parse_assignment, read_preset
from sr_core.training import load_init_weights

PRESETS = sorted(path.stem for path in (REPO / "presets").glob("*.yaml"))
# What makes a setting: every key that shapes the trained model, except where the data lies and
# how this machine runs it (train.device, train.decode_cache, train.processes) and the starting weights.
SETTING = {"lr", "split.val_split", "split.seed", "data.extra_train_dirs"} | {
    f"model.{name}" for name in ModelConfig.model_fields} | {
    f"train.{key}" for key in load_params(REPO / "params.yaml").train.model_dump()
    if key not in ("device", "decode_cache", "processes", "init_from")}


def applied(tmp_path: Path, name: str, *assignments: str) -> Path:
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    (tmp_path / "data" / "mine" / "lr").mkdir(parents=True)  # a folder typed after -S must exist
    main([str(REPO / "presets" / f"{name}.yaml"), "--params", str(params), *(f"-S{a}" for a in assignments)])
    return params


def test_preset_files_are_the_documented_settings():
    assert PRESETS == ["demo", "finetune", "general", "general-long", "gpu", "reference"]
    table = (REPO / "docs" / "configuration.md").read_text()
    assert all(f"| `presets/{name}.yaml` |" in table for name in PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_is_a_complete_setting(name):
    assert SETTING <= set(read_preset(REPO / "presets" / f"{name}.yaml"))


@pytest.mark.parametrize("name", PRESETS)
def test_preset_applies_to_params_yaml_keeping_its_comments_and_matches_the_file(tmp_path, name):
    path = applied(tmp_path, name, "data.train_lr_dir=data/mine/lr")
    loaded = flat(load_params(path).model_dump())
    for key, value in read_preset(REPO / "presets" / f"{name}.yaml").items():
        assert loaded[key] == value, key
    assert loaded["data.train_lr_dir"] == "data/mine/lr"
    untouched = flat(load_params(REPO / "params.yaml").model_dump())
    assert loaded["paths.model"] == untouched["paths.model"] and loaded["demo.tile_size"] == untouched["demo.tile_size"]
    text = path.read_text()
    assert "# Adam learning rate (top level so `dvc exp run -S lr=2e-4` works as typed)" in text
    assert "# every file the pipeline writes" in text


def test_preset_demo_is_what_params_yaml_holds(tmp_path):
    assert preset("demo") == load_params(REPO / "params.yaml")
    assert applied(tmp_path, "demo").read_text() == (REPO / "params.yaml").read_text()  # byte for byte


def test_preset_reference_is_the_reference_scripts_setting():
    params = preset("reference")
    assert params.model == ModelConfig()  # its network, whatever the demo's defaults
    assert sum(p.numel() for p in SRResNet(params.model).parameters()) == 1_549_443
    assert params.lr == 1e-4
    assert (params.train.epochs, params.train.batch_size, params.train.patch_size) == (100, 8, 0)
    assert (params.train.patches_per_image, params.train.ema_decay) == (1, 0)  # one pass
    assert (params.train.schedule, params.train.loss, params.train.augment) == ("constant", "l1", False)
    assert (params.split.val_split, params.split.seed) == (0.15, 42)


def test_preset_general_is_the_general_setting():
    params = preset("general")
    assert params.model == ModelConfig(num_blocks=16, num_features=32, bicubic_residual=True, activation="relu",
                                       upsampler_activation="prelu", batch_norm=False)
    assert (params.lr, params.train.warmup_epochs, params.train.ema_decay) == (1e-3, 4, 0)
    assert [Path(folder).name for folder in params.data.extra_train_dirs] == ["T91", "BSD200"]
    assert [Path(folder).name for folder in params.evaluate.benchmarks] == ["Set5", "Set14", "BSD100"]
    assert (params.train.schedule, params.train.time_limit_minutes, params.train.augment) == ("cosine", 10, True)


def test_preset_general_long_is_the_general_setting_with_a_longer_budget():
    general, long = preset("general").model_dump(), preset("general-long").model_dump()
    assert (long["train"].pop("time_limit_minutes"), general["train"].pop("time_limit_minutes")) == (70, 10)
    for changed in ("epochs", "val_every"):  # the epochs only bound the budget; the cosine spans the budget
        long["train"].pop(changed), general["train"].pop(changed)
    assert long == general


def test_preset_finetune_starts_from_the_general_model_and_another_network_is_refused():
    params = preset("finetune")
    assert REPO / params.train.init_from == GENERAL_MODEL
    shipped = load_model(GENERAL_MODEL, torch.device("cpu"))
    assert params.model == shipped.config
    model = SRResNet(params.model)
    load_init_weights(model, str(GENERAL_MODEL))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), shipped.state_dict().values()))
    with pytest.raises(ValueError, match="its model differs: num_blocks 16 there, 4 in params.model"):
        load_init_weights(SRResNet(preset("demo").model), str(GENERAL_MODEL))


def test_preset_gpu_is_the_one_gpu_recommendation_everywhere():
    """The GPU check trains the preset's network and training keys; no document restates a preset
    as a `dvc exp run -n NAME -S ...` line of its own, which could drift from the file."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import gpu_check
    params = preset("gpu")
    assert params.model == gpu_check.GPU_MODEL == gpu_check.sizes(smoke=False)["general_model"]
    assert {key: getattr(params.train, key) for key in gpu_check.GPU_TRAIN if key != "lr"} | {"lr": params.lr} \
        == gpu_check.GPU_TRAIN
    for doc in [REPO / "README.md", *(REPO / "docs").glob("*.md")]:
        assert not re.search(rf"dvc exp run (--queue )?-n ({'|'.join(PRESETS)}) -S [a-z]", doc.read_text()), doc.name
    assert "presets/gpu.yaml" in (REPO / "README.md").read_text()


def test_preset_as_an_experiment_passes_every_value_through_dvc_exp_run():
    settings = read_preset(REPO / "presets" / "general.yaml")
    command = exp_run_command(settings, "general", queue=True)
    assert command[:7] == ["dvc", "exp", "run", "-n", "general", "--queue", "-S"]
    passed = dict(parse_assignment(word) for flag, word in zip(command, command[1:]) if flag == "-S")
    assert passed == settings  # as DVC reads them back: YAML


def test_preset_errors_name_the_key_and_leave_params_yaml_as_it_was(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    with pytest.raises(ValueError, match=r"-S train.epoch=3: train.epoch is not a key of params.yaml"):
        main([str(REPO / "presets" / "gpu.yaml"), "--params", str(params), "-S", "train.epoch=3"])
    with pytest.raises(ValueError, match=r"params.train.epochs must be an integer >= 1; got 0"):
        main([str(REPO / "presets" / "gpu.yaml"), "--params", str(params), "-S", "train.epochs=0"])
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(["lr", 1]))
    with pytest.raises(ValueError, match="bad.yaml: expected a mapping of params at the top level, found list"):
        main([str(bad), "--params", str(params)])
    assert params.read_text() == (REPO / "params.yaml").read_text()


def params_copy(tmp_path: Path) -> Path:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    return tmp_path / "params.yaml"


def test_a_key_typo_is_answered_with_the_key_meant(tmp_path):
    with pytest.raises(ValueError, match=r"train.time_limit is not a key of params.yaml \(did you mean "
                                         r"train.time_limit_minutes\?\)"):
        main([str(REPO / "presets" / "demo.yaml"), "--params", str(params_copy(tmp_path)), "-S", "train.time_limit=3"])


def test_a_number_typed_without_a_dot_is_written_as_a_number(tmp_path):
    """YAML 1.1 reads `1e-3` as a string, which params.yaml then held quoted: '1e-3'."""
    params = params_copy(tmp_path)
    main([str(REPO / "presets" / "demo.yaml"), "--params", str(params), "-S", "lr=1e-3", "-S", "train.step_gamma=5e-1"])
    values = yaml.safe_load(params.read_text())
    assert values["lr"] == 0.001 and isinstance(values["lr"], float) and values["train"]["step_gamma"] == 0.5
    assert parse_assignment("data.test_lr_dir=data/test") == ("data.test_lr_dir", "data/test")  # text stays text


def test_the_data_folders_typed_to_the_preset_command_are_checked_before_params_yaml_is_written(tmp_path):
    params = params_copy(tmp_path)
    with pytest.raises(ValueError, match="data.train_lr_dir: data/kagle/train/lr does not exist"):
        main([str(REPO / "presets" / "gpu.yaml"), "--params", str(params), "-S", "data.train_lr_dir=data/kagle/train/lr"])
    assert params.read_text() == (REPO / "params.yaml").read_text()
