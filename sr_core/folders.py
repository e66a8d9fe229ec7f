"""The data folders that params name: each must exist, and every name in them must be one DVC can
hash, checked before any stage reads a folder, each error naming the param to change."""

import os
from pathlib import Path

from sr_core.config import Params

FOLDER_PARAMS = ("data.train_lr_dir", "data.train_hr_dir", "data.extra_train_dirs", "data.test_lr_dir",
                 "evaluate.benchmarks")  # the params that name data folders


def folder_params(params: Params, keys: tuple[str, ...]) -> list[tuple[str, str]]:
    """(key, folder) for each param of `keys` (e.g. `data.train_lr_dir`; a list param gives each entry)."""
    pairs = []
    for key in keys:
        section, name = key.split(".")
        value = getattr(getattr(params, section), name)
        pairs += [(key, folder) for folder in (value if isinstance(value, tuple) else (value,))]
    return pairs


def require_folders(params: Params, *keys: str, root: Path = Path(".")) -> None:
    """Each param of `keys` names a folder that exists (see `folder_params`) under `root`, the folder
    the stages run in, else one error naming the param, so the user knows which line to change."""
    for key, folder in folder_params(params, keys):
        if not (root / folder).is_dir():
            problem = "is not a folder" if (root / folder).exists() else "does not exist"
            raise ValueError(f"{key}: {folder} {problem}; set {key} in params.yaml to your folder")


def require_utf8_names(params: Params, *keys: str) -> None:
    """Every name under the folders of `keys` is UTF-8, else one error naming the first that is not:
    DVC hashes a folder it tracks by its names, and fails on such a name with a codec error that
    names no file (`dvc status` too)."""
    for key, folder in folder_params(params, keys):
        for root, folders, files in os.walk(os.fsencode(folder)):
            for name in sorted(folders + files):
                try:
                    name.decode("utf-8")
                except UnicodeDecodeError:
                    raise ValueError(f"{key}: {os.fsdecode(os.path.join(root, name))!r}: the file name is not UTF-8 "
                                     f"(its bytes are {name!r}), and DVC cannot hash a folder holding it; rename it in "
                                     f"UTF-8 (as Latin-1 it would read {name.decode('latin-1')!r})") from None
