"""Atomic file writes: a reader (or a resumed run) never sees a half-written checkpoint or metric."""

import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", check: Callable[[Path], Any] | None = None) -> Iterator[IO]:
    """Writes to a temporary file beside `path`, then renames it over `path` on success.

    `check`, if given, is called with the temporary file's path once it is complete; if it raises,
    the file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
