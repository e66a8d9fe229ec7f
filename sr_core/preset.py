"""Presets: complete settings kept as files (`presets/*.yaml`), applied to params.yaml (comments
kept) or turned into `dvc exp run -S` options; every value checked before anything is written."""

import difflib
import json
import math
from pathlib import Path
from typing import Any

import yaml

from sr_core.config import Params, build, load_params, read_params
from sr_core.files import atomic_write, read_yaml_mapping
from sr_core.param_changes import flat

def read_preset(path: str | Path) -> dict[str, Any]:
    """The settings of a preset file as dotted keys (`model.num_blocks`) to values; lists are values."""
    return flat(read_yaml_mapping(path, "preset"))


def parse_assignment(text: str) -> tuple[str, Any]:
    """`key=value` as `dvc exp run -S` reads it: the value is YAML, but a number is a number even
    where YAML 1.1 reads it as a string (`1e-3` has no dot), so it is written to params.yaml as one."""
    key, sep, text_value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"-S {text}: expected KEY=VALUE, e.g. -S train.epochs=20")
    value = yaml.safe_load(text_value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return key, value
        if math.isfinite(number):
            return key, number
    return key, value


def set_values(params: dict, settings: dict[str, Any], where: str) -> None:
    """Sets each dotted key of `settings` in the nested mapping `params`; a key that params.yaml
    lacks is an error (DVC would not override it)."""
    for key, value in settings.items():
        *parents, leaf = key.split(".")
        target = params
        for parent in parents:
            target = target.get(parent) if isinstance(target, dict) else None
        if not isinstance(target, dict) or leaf not in target:
            close = difflib.get_close_matches(key, flat(params), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else "see params.yaml for every key"
            raise ValueError(f"{where}: {key} is not a key of params.yaml ({hint})")
        if target[leaf] != value:  # an equal value keeps its spelling in the file
            target[leaf] = value


def preset_params(settings: dict[str, Any], params_path: str | Path = "params.yaml", where: str = "preset") -> Params:
    """The Params that params.yaml at `params_path` gives with `settings` applied, every value checked."""
    values = read_params(params_path)
    set_values(values, settings, where)
    try:
        return build(Params, values, complete=True)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error


def write_params(settings: dict[str, Any], params_path: str | Path = "params.yaml", where: str = "preset") -> None:
    """Applies `settings` to params.yaml in place, keeping its comments and order; the file is
    replaced only once the result loads."""
    from ruamel.yaml import YAML  # DVC's YAML library, which keeps comments; imported here, where it is needed

    preset_params(settings, params_path, where)  # the checks, with their messages, before any write
    yaml_rt = YAML()
    yaml_rt.width, yaml_rt.preserve_quotes = 4096, True  # lines and quotes stay as written
    values = yaml_rt.load(Path(params_path).read_text())
    set_values(values, settings, where)
    with atomic_write(params_path, "w", check=load_params) as f:
        yaml_rt.dump(values, f)


def exp_run_command(settings: dict[str, Any], name: str, queue: bool) -> list[str]:
    """`dvc exp run -n NAME -S key=value ...` for `settings` (values as JSON, which YAML reads back)."""
    command = ["dvc", "exp", "run", "-n", name, *(["--queue"] if queue else [])]
    for key, value in settings.items():
        command += ["-S", f"{key}={json.dumps(value)}"]
    return command
