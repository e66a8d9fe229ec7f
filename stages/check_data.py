"""Stage check_data: every data folder param names a folder, checked before any stage reads one;
the sample submission, if any, is a file, whose SHA-256 the submit stage depends on through this
stage's second output (DVC cannot take an optional file as a dependency).

DVC checks a stage's dependencies only when it reaches that stage, and stops at a missing one with
a bare `[Errno 2]`; this stage runs at every `dvc repro` (it only looks at folder names), before
split (which depends on what it writes), and names the param to set: a typo in the test folder
shows before training, not after it. It also names a file whose name is not UTF-8, on which DVC's
hashing of the folder would fail without naming it.
"""

from pathlib import Path

from sr_core.cli import run_stage
from sr_core.config import Params
from sr_core.folders import FOLDER_PARAMS, require_folders, require_utf8_names
from sr_core.files import sha256_of, write_json


def check_data(params: Params) -> None:
    require_folders(params, *FOLDER_PARAMS)
    require_utf8_names(params, *FOLDER_PARAMS)
    sample = params.data.sample_submission
    if sample and not Path(sample).is_file():
        raise ValueError(f"data.sample_submission: {sample} is not a file; set data.sample_submission in params.yaml "
                         f"to the competition's sample_submission.csv, or to \"\" for none")
    folders = {key: value for key, value in params.data.model_dump().items() if key != "sample_submission"}
    write_json(params.paths.data_folders, {"data": folders, "benchmarks": params.evaluate.benchmarks})
    write_json(params.paths.sample_submission_hash, {"sample_submission": sample or None,
                                                     "sha256": sha256_of(sample) if sample else None})


if __name__ == "__main__":
    run_stage(check_data, __file__)
