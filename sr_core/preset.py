"""Presets: complete settings kept as files (`presets/*.yaml`), applied to params.yaml or run as an experiment.

    python -m sr_core.preset presets/gpu.yaml                    # its values into params.yaml, comments kept
    python -m sr_core.preset presets/gpu.yaml -S data.train_lr_dir=data/kaggle/train/lr   # and more keys
    python -m sr_core.preset presets/reference.yaml --exp-run reference            # dvc exp run -n reference -S ...
    python -m sr_core.preset presets/reference.yaml --exp-run reference --queue    # queued instead

A preset is a part of params.yaml: the keys it sets, nested as there; `-S key=value` sets more keys
after it, as `dvc exp run -S` does. Every key must already be in params.yaml (DVC's `-S` overrides
only existing keys), and the result must load with every value checked before anything is written
or run. With `--exp-run`, params.yaml is left as it is: DVC applies the values in the experiment.
"""

import difflib
import json
import math
import shlex
import subprocess
from pathlib import Path
from typing import Any

import yaml

from sr_core.cli import argument_parser, run
from sr_core.config import FOLDER_PARAMS, Params, build, flat, load_params, read_params, require_folders
from sr_core.files import atomic_write


def read_preset(path: str | Path) -> dict[str, Any]:
    """The settings of a preset file as dotted keys (`model.num_blocks`) to values; lists are values."""
    try:
        values = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read preset: {error}") from error
    if not isinstance(values, dict) or not values:
        raise ValueError(f"{path}: a preset is a mapping of params, as in params.yaml")
    return flat(values)


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
    except (ValueError, TypeError) as error:
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


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, "python -m sr_core.preset")
    parser.add_argument("preset", type=Path, help="a preset file, e.g. presets/gpu.yaml")
    parser.add_argument("-S", "--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="one more key to set after the preset, as `dvc exp run -S` (repeatable)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="the params file to apply it to")
    parser.add_argument("--exp-run", metavar="NAME", help="run it as the experiment NAME instead of writing params.yaml")
    parser.add_argument("--queue", action="store_true", help="with --exp-run: queue it (`dvc queue start` runs it)")
    args = parser.parse_args(argv)
    given = dict(map(parse_assignment, args.assignments))
    settings = read_preset(args.preset) | given
    where = str(args.preset) + "".join(f" -S {text}" for text in args.assignments)
    if args.queue and args.exp_run is None:
        raise ValueError("--queue goes with --exp-run NAME")
    # the folders typed here exist before anything is written or run (a preset's own may come later),
    # beside the params file, where DVC runs the stages
    require_folders(preset_params(settings, args.params, where), *[key for key in FOLDER_PARAMS if key in given],
                    root=args.params.parent)
    if args.exp_run is None:
        write_params(settings, args.params, where)
        print(f"{args.params}: {len(settings)} keys set from {where}")
        return
    command = exp_run_command(settings, args.exp_run, args.queue)
    print(shlex.join(command), flush=True)
    raise SystemExit(subprocess.run(command).returncode)


def command() -> None:
    """The command line: errors a user can act on as one line (see `cli.run`)."""
    run(main)


if __name__ == "__main__":
    command()
