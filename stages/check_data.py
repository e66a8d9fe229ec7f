"""Stage check_data: every data folder param names a folder, checked before any stage reads one.

DVC checks a stage's dependencies only when it reaches that stage, and stops at a missing one with
a bare `[Errno 2]`; this stage runs at every `dvc repro` (it only looks at folder names), before
split (which depends on what it writes), and names the param to set: a typo in the test folder
shows before training, not after it.
"""

from sr_core.cli import run_stage
from sr_core.config import Params, require_folders, to_dict
from sr_core.files import write_json

FOLDER_PARAMS = ("data.train_lr_dir", "data.train_hr_dir", "data.extra_train_dirs", "data.test_lr_dir",
                 "evaluate.benchmarks")


def check_data(params: Params) -> None:
    require_folders(params, *FOLDER_PARAMS)
    write_json(params.paths.data_folders, {"data": to_dict(params.data), "benchmarks": params.evaluate.benchmarks})


if __name__ == "__main__":
    run_stage(check_data, __file__)
