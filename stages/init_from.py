"""Stage init_from: the SHA-256 of the checkpoint training starts from (`train.init_from`), or null.

DVC cannot take an optional file as a dependency, so this stage runs at every `dvc repro` (it only
hashes one file) and the train stage depends on what it writes: training reruns when the starting
weights change, not when the file holding them is renamed or moved.
"""

from sr_core.cli import run_stage
from sr_core.config import Params
from sr_core.files import sha256_of, write_json


def init_from(params: Params) -> None:
    path = params.train.init_from
    write_json(params.paths.init_from_hash, {"sha256": sha256_of(path) if path else None})


if __name__ == "__main__":
    run_stage(init_from, __file__)
