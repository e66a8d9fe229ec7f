"""The Kaggle submission: a CSV with `id` (the test file's name) and `Encoded_Image` (base64 PNG).

A full-size submission (500 images at 1920x1080) is gigabytes of base64, so rows are streamed and
encoded, or decoded and checked, in threads a few rows ahead, in order. The base64 field is
written and split off by hand, not by the csv module: it never needs quoting (its alphabet has no
comma, quote or newline), and the csv module scans it character by character, at 10 ms per MB
(measured) with the GIL held, which would leave the threads waiting. The `id` field goes through
the csv module, so any file name is quoted correctly.
"""

import base64
import csv
import hashlib
import io
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

from tqdm import tqdm

from sr_core.files import atomic_write, sha256_of
from sr_core.images import image_size, list_images, open_image
from sr_core.inference import RECORDS, prediction_path
from sr_core.parallel import num_workers, ordered_map

# works whatever DVC recorded: a plain `dvc repro` skips predict where its record matches the folder
PREDICT_AGAIN = "run the predict stage again (dvc repro -f -s predict, then dvc repro)"
# what the documented way back after a refused submit gives, where the refusal is about a test file
EARLIER_SUBMISSION = ("a submission restored from DVC's cache (dvc checkout submission.csv) is the one made before, "
                      "of the test folder as it was then, not of this file")

COLUMNS = ("id", "Encoded_Image")


def csv_field(text: str) -> str:
    """`text` as one CSV field, quoted by the csv module when it needs to be."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([text])
    return buffer.getvalue()


def submission_id(path: Path) -> str:
    """The file's name as the submission's `id`: its bytes on disk read as UTF-8, whatever the
    locale (under an ASCII locale Python sees a UTF-8 name as undecodable bytes); ValueError
    naming it (its repr) when those bytes are not UTF-8."""
    try:
        return os.fsencode(path.name).decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path.parent}: the file name {path.name!r} is not valid UTF-8, so it cannot be a "
                         f"submission id; rename it") from error


def check_records(test_paths: list[Path], pred_dir: str | Path, model_sha256: str) -> dict[Path, dict]:
    """Each test image's prediction was made from that very file (its name and SHA-256) by the
    model whose checkpoint has `model_sha256`, as the predict stage recorded; else ValueError
    naming the test file: a prediction left from another input or another model is stale.
    Returns each prediction's record by test file (the SHA-256 it had when written, and what else
    was written with it), for the rows to check."""
    records_path = Path(pred_dir) / RECORDS
    try:
        records = json.loads(records_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{records_path}: cannot read what the predictions were made from ({error}); "
                         f"{PREDICT_AGAIN}") from error
    if records.get("model_sha256") != model_sha256:
        raise ValueError(f"{pred_dir}: the predictions were made by another model than predict.model; "
                         f"{PREDICT_AGAIN}")
    made_from = records.get("predictions", {})
    for test_path in test_paths:
        png = prediction_path(pred_dir, test_path)
        record = made_from.get(png.name)
        if record is None or record.get("source") != test_path.name:
            source = "no recorded input" if record is None else f"{record.get('source')!r}"
            raise ValueError(f"{test_path}: its prediction {png} was made from {source}, not from this file; "
                             f"{PREDICT_AGAIN}; {EARLIER_SUBMISSION}")
        if record.get("source_sha256") != sha256_of(test_path):
            raise ValueError(f"{test_path}: changed since its prediction {png} was made; {PREDICT_AGAIN}; "
                             f"{EARLIER_SUBMISSION}")
    return {test_path: made_from[prediction_path(pred_dir, test_path).name] for test_path in test_paths}


def write_submission(test_lr_dir: str | Path, pred_dir: str | Path, out_path: str | Path, scale: int,
                     workers: int = 0, model_sha256: str | None = None) -> int:
    """One row per test image, in name order, the prediction's PNG bytes unchanged; then the whole
    file is checked (`check_submission`) before it is renamed to `out_path`, so a failed or killed
    check never leaves an unchecked submission. With `model_sha256` (the submit stage), every
    prediction must be recorded as made from its test file by that model (`check_records`), and
    the bytes encoded must be those recorded when it was written.
    The file is UTF-8 whatever the locale. `workers` threads (0: one per core) read and encode the
    rows. Returns the row count."""
    test_paths = list_images(test_lr_dir)
    if not test_paths:
        raise FileNotFoundError(f"{test_lr_dir}: no test images, so no submission")
    broken = [path.name for path in test_paths if "\n" in path.name or "\r" in path.name]
    if broken:  # a row per line is what readers of the CSV (and `check_submission`) expect
        raise ValueError(f"{test_lr_dir}: names with a line break cannot be submission ids: {broken}; rename them")
    ids = {path: submission_id(path) for path in test_paths}
    written = check_records(test_paths, pred_dir, model_sha256) if model_sha256 is not None else {}
    workers = num_workers(workers)

    def encode_row(test_path: Path) -> str:
        png = prediction_path(pred_dir, test_path)
        if not png.is_file():
            raise FileNotFoundError(f"{png}: no prediction for test image {test_path}")
        content = png.read_bytes()
        if test_path in written and hashlib.sha256(content).hexdigest() != written[test_path].get("sha256"):
            raise ValueError(f"{png}: not the file the predict stage wrote for {test_path} (its content changed "
                             f"since: overwritten, e.g. by a prediction whose name differs only in case, or "
                             f"edited); {PREDICT_AGAIN}")
        return f"{csv_field(ids[test_path])},{base64.b64encode(content).decode('ascii')}\n"

    def check(tmp_path: Path) -> None:
        check_submission(tmp_path, test_lr_dir, scale, workers, shown_as=out_path)

    with ThreadPoolExecutor(workers) as pool, atomic_write(out_path, "w", check=check) as f:
        f.write(",".join(COLUMNS) + "\n")
        for line in tqdm(ordered_map(pool, encode_row, test_paths, ahead=2 * workers), total=len(test_paths),
                         desc="encoding", unit="img"):
            f.write(line)
    return len(test_paths)


def _rows(f: IO[str], where: str) -> Iterator[tuple[int, str, str]]:
    """(line number, id, base64 field) of each data row; the base64 field is split off at the
    line's last comma (see the module's docstring), an enclosing pair of quotes removed."""
    for number, line in enumerate(f, start=2):
        line = line.rstrip("\r\n")
        id_field, comma, encoded = line.rpartition(",")
        if not comma:
            raise ValueError(f"{where} line {number}: {1 if line else 0} fields, expected 2")
        fields = next(csv.reader([id_field])) or [""]  # an empty id is one empty field
        if len(fields) != 1:
            raise ValueError(f"{where} line {number}: {len(fields) + 1} fields, expected 2")
        if len(encoded) >= 2 and encoded[0] == encoded[-1] == '"':
            encoded = encoded[1:-1]
        yield number, fields[0], encoded


def check_submission(csv_path: str | Path, test_lr_dir: str | Path, scale: int, workers: int = 0,
                     shown_as: str | Path | None = None) -> int:
    """Decodes every row back, in `workers` threads (0: one per core); raises ValueError unless
    there is exactly one row per test image, each a PNG of `scale` times the test image's size with
    3 channels. Errors name `shown_as` (default: `csv_path`). Returns the row count."""
    where = str(shown_as or csv_path)
    expected = {submission_id(p): image_size(p) for p in list_images(test_lr_dir)}
    workers = num_workers(workers)

    def check_row(row: tuple[int, str, str]) -> None:
        number, name, encoded = row
        shown, want = f"{where} line {number} ({name})", (scale * expected[name][0], scale * expected[name][1])
        try:
            png = base64.b64decode(encoded, validate=True)
        except ValueError as error:
            raise ValueError(f"{shown}: not a base64 PNG ({error})") from error
        # no more pixels than the prediction must have: a large one passes, a decompression bomb does not
        with open_image(io.BytesIO(png), shown, max_pixels=want[0] * want[1]) as image:
            fmt, size, channels = image.format, image.size, len(image.getbands())
            if fmt != "PNG" or size != want or channels != 3:
                raise ValueError(f"{shown}: {fmt} {size[0]}x{size[1]} with {channels} channels, "
                                 f"expected PNG {want[0]}x{want[1]} with 3")
            image.load()

    seen = set()

    def named_rows(f: IO[str]) -> Iterator[tuple[int, str, str]]:
        for number, name, encoded in _rows(f, where):
            if name not in expected:
                raise ValueError(f"{where} line {number}: id {name!r} is not a file in {test_lr_dir}")
            if name in seen:
                raise ValueError(f"{where} line {number}: id {name!r} appears twice")
            seen.add(name)
            yield number, name, encoded

    with open(csv_path, newline="", encoding="utf-8") as f, ThreadPoolExecutor(workers) as pool:
        header = next(csv.reader([f.readline()]), None)
        if tuple(header or ()) != COLUMNS:
            raise ValueError(f"{where}: header is {header}, expected {list(COLUMNS)}")
        for _ in tqdm(ordered_map(pool, check_row, named_rows(f), ahead=2 * workers), total=len(expected),
                      desc="checking", unit="img", leave=False):
            pass
    missing = sorted(expected.keys() - seen)
    if missing:
        raise ValueError(f"{where}: no row for {len(missing)} test image(s): {', '.join(missing[:5])}")
    return len(seen)
