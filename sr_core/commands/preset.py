"""Presets: complete settings kept as files (`presets/*.yaml`), applied to params.yaml or run as an experiment.

    sr-preset presets/gpu.yaml                    # its values into params.yaml, comments kept
    sr-preset presets/gpu.yaml -S data.train_lr_dir=data/kaggle/train/lr   # and more keys
    sr-preset presets/reference.yaml --exp-run reference            # dvc exp run -n reference -S ...
    sr-preset presets/reference.yaml --exp-run reference --queue    # queued instead

A preset is a part of params.yaml: the keys it sets, nested as there; `-S key=value` sets more keys
after it, as `dvc exp run -S` does. Every key must already be in params.yaml (DVC's `-S` overrides
only existing keys), and the result must load with every value checked before anything is written
or run. With `--exp-run`, params.yaml is left as it is: DVC applies the values in the experiment.
"""

import shlex
import subprocess
from pathlib import Path

from sr_core.cli import argument_parser, run
from sr_core.folders import FOLDER_PARAMS, require_folders
from sr_core.preset import exp_run_command, parse_assignment, preset_params, read_preset, write_params


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, "sr-preset")
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
