"""Atomic file writes: a reader (or a resumed run) never sees a half-written checkpoint or metric;
and YAML read strictly (params.yaml, presets): a key given twice is an error, not the last one kept.

Each file is written to `.NAME.PID.XXXX.tmp` beside it and renamed over it when complete. A failed
write removes its temporary file; one left by a killed process is removed by the first write into
the same folder of a later process. Such files are ignored by git and DVC (`.*.tmp`).
"""

import csv
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import psutil
import yaml

_UMASK = os.umask(0)
os.umask(_UMASK)


_swept_folders: set[Path] = set()
_swept_lock = threading.Lock()


def remove_stale_temps(folder: Path) -> None:
    """Removes the temporary files in `folder` whose writing process no longer runs. Once per folder
    and process: a folder listed at every write made writing N files into it take N^2 steps."""
    with _swept_lock:
        if folder in _swept_folders:
            return
        _swept_folders.add(folder)
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                parts = entry.name[1:-len(".tmp")].rsplit(".", 2)  # NAME, PID, mkstemp's letters
                if len(parts) == 3 and parts[1].isdigit() and not psutil.pid_exists(int(parts[1])):
                    Path(entry.path).unlink(missing_ok=True)


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", check: Callable[[Path], Any] | None = None) -> Iterator[IO]:
    """Writes to a temporary file beside `path`, then renames it over `path` on success.

    `check`, if given, is called with the temporary file's path once it is complete; if it raises,
    the file is removed and `path` is left as it was. A write that fails (a full disk, a read-only
    folder) raises OSError naming `path`.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path.parent.resolve())
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:  # text: UTF-8, any locale
            yield f
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and _writing(error, path):
            raise OSError(error.errno, f"cannot write {path}: {error.strerror}") from error
        raise


def _writing(error: OSError, path: Path) -> bool:
    """Whether `error` came from writing `path`: the system's error (it has an errno) naming no file
    (a write, an fsync), the temporary file, or a folder on the way to `path` (not a file read)."""
    if not error.errno:
        return False
    if error.filename is None:
        return True
    named = Path(os.fsdecode(error.filename))
    return named.name.startswith(f".{path.name}.") or path.is_relative_to(named)


def write_bytes(path: str | Path, data: bytes | memoryview) -> None:
    """`data` as the file at `path`. Serialise into memory, then call this: a write that fails then
    raises OSError naming the file, where writers that stream into the file (torch.save, np.save)
    report a full disk in their own words, naming none."""
    with atomic_write(path) as f:
        f.write(data)


def write_json(path: str | Path, content: Any) -> None:
    with atomic_write(path, "w") as f:
        json.dump(content, f, indent=2)
        f.write("\n")


def write_csv(path: str | Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """Rows of dicts as CSV with a header; `columns` gives the header when `rows` may be empty."""
    columns = columns or list(rows[0])
    with atomic_write(path, "w") as f:
        writer = csv.DictWriter(f, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def size_text(num_bytes: float) -> str:
    """A size for people: GB, or MB under one GB."""
    return f"{num_bytes / 1e9:.1f} GB" if num_bytes >= 1e9 else f"{num_bytes / 1e6:.1f} MB"


def sha256_of(path: str | Path) -> str:
    """The hex SHA-256 of the file's content; ValueError naming the file when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise ValueError(f"{path}: cannot read: {error.strerror}") from error
    return digest.hexdigest()


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (PyYAML
    keeps the last silently; DVC refuses such a file)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml_mapping(path: str | Path, what: str) -> dict:
    """The mapping of `what` (params, a preset) a YAML file holds; any other content is an error."""
    try:
        with open(path) as f:  # a stream, so YAML's messages name the file and line
            values = yaml.load(f, Loader=UniqueKeyLoader)
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read {what}: {error}") from error
    if not isinstance(values, dict) or not values:
        raise ValueError(f"{path}: expected a mapping of params at the top level, found "
                         f"{'nothing' if values is None else type(values).__name__ if values else 'an empty one'}")
    return values
