"""The public SRGD competition's submission file ("super-resolution-in-video-games" on Kaggle), as
its organiser's kit defines it (github.com/epishchik/SRGD, folder kaggle/).

The file has the columns `id`, `filename` (the test LR file's name) and `rle`. A cell of `rle` is
the text of a Python bytes literal, `b'...'`, around the base64 of zlib-compressed run-length
pairs of the 4x prediction: the image as 8-bit BGR, height x width x channel, flattened; each run
of equal bytes written as its value, then its length, runs longer than 255 split into runs of 255
and the rest. The competition's scorer reads a cell with `eval`, decodes it and compares it with
the truth row by row, in the file's order (metrics.competition_score).

Runs are found with array operations (the kit's encoder loops over 6 million bytes a 1080p image
in Python), and cells are made where the pixels already are: in the predict stage's writer
threads, as a `.rle` file beside each PNG, so the submit stage only gathers and checks them. Any
zlib level decodes the same; level 1 was measured fastest (benchmarks/submission_formats.py).
"""

import base64
import csv
import hashlib
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sr_core.files import atomic_write, write_bytes
from sr_core.images import image_size, list_images
from sr_core.inference import prediction_path
from sr_core.parallel import num_workers, ordered_map
from sr_core.submission import PREDICT_AGAIN, check_records, csv_field, submission_id

COLUMNS = ("id", "filename", "rle")
ZLIB_LEVEL = 1  # 0.22 s and 6.91 MB of base64 for a 1080p prediction; level 6: 0.85 s and 5.92 MB


def run_pairs(flat: np.ndarray) -> np.ndarray:
    """The (value, length) pairs of the runs of equal bytes of `flat` (1-D uint8), as one uint8
    array value, length, value, length, ...; a run longer than 255 is runs of 255 and the rest."""
    change = np.empty(flat.size, dtype=bool)
    change[:1] = True
    np.not_equal(flat[1:], flat[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    lengths = np.diff(starts, append=flat.size)
    pieces = (lengths + 254) // 255  # runs of at most 255 a run makes
    first = np.cumsum(pieces) - pieces  # where each run's first piece goes
    values = np.empty(int(pieces.sum()), dtype=np.uint8)
    counts = np.full(values.size, 255, dtype=np.uint8)
    values[first] = flat[starts]
    counts[first + pieces - 1] = lengths - 255 * (pieces - 1)  # the last piece holds the rest
    long = np.flatnonzero(pieces > 1)
    if long.size:  # the other pieces of long runs: few, so found apart
        extra = pieces[long] - 1
        within = np.arange(int(extra.sum())) - np.repeat(np.cumsum(extra) - extra, extra)
        values[np.repeat(first[long], extra) + within + 1] = np.repeat(flat[starts[long]], extra)
    pairs = np.empty(2 * values.size, dtype=np.uint8)
    pairs[0::2], pairs[1::2] = values, counts
    return pairs


def bgr_bytes(rgb: np.ndarray) -> np.ndarray:
    """An HWC RGB uint8 image as the competition flattens it: BGR, height x width x channel."""
    return np.ascontiguousarray(rgb[..., ::-1]).reshape(-1)


def encode_cell(rgb: np.ndarray, level: int = ZLIB_LEVEL) -> str:
    """The `rle` cell of a prediction (HWC RGB uint8), as the competition's file holds it."""
    return cell_of(bgr_bytes(rgb), level).decode("ascii")


def cell_of(flat: np.ndarray, level: int = ZLIB_LEVEL) -> bytes:
    """The cell of flat BGR bytes (`bgr_bytes`), as ASCII bytes."""
    return b"b'" + base64.b64encode(zlib.compress(run_pairs(flat).tobytes(), level)) + b"'"


def decode_cell(cell: bytes | str, where: str) -> np.ndarray:
    """The flat BGR bytes a cell (its text, or that text's ASCII bytes) holds, as the competition
    decodes it (without `eval`); ValueError naming `where` when the cell is not one."""
    cell = cell.encode("ascii", "replace") if isinstance(cell, str) else cell
    if len(cell) < 3 or cell[:2] not in (b"b'", b'b"') or cell[-1:] != cell[1:2]:
        raise ValueError(f"{where}: not a b'...' cell of base64 ({cell[:40]!r})")
    try:  # validate: base64's alphabet only, so that nothing else passes for a cell
        pairs = np.frombuffer(zlib.decompress(base64.b64decode(cell[2:-1], validate=True)), dtype=np.uint8)
    except (ValueError, zlib.error) as error:
        raise ValueError(f"{where}: the cell does not decode ({error})") from error
    if pairs.size % 2:
        raise ValueError(f"{where}: the cell's runs end in a value without a length")
    return np.repeat(pairs[0::2], pairs[1::2])


def cell_path(png_path: Path) -> Path:
    """Where the predict stage puts the cell of the prediction at `png_path`."""
    return png_path.with_suffix(".rle")


def write_cell(png_path: Path, sr_img: np.ndarray) -> dict[str, str]:
    """Writes the cell of `sr_img` (the prediction written to `png_path`) beside it, and returns what
    its record holds: the cell's SHA-256 and that of the pixels it must decode to."""
    flat = bgr_bytes(sr_img)
    cell = cell_of(flat)
    write_bytes(cell_path(png_path), cell)
    return {"rle_sha256": hashlib.sha256(cell).hexdigest(), "pixels_sha256": hashlib.sha256(flat).hexdigest()}


def read_rows(path: str | Path, where: str | None = None) -> tuple[list[str], Iterator[tuple[int, list]]]:
    """The header of a file in the competition's layout (a sample submission, a submission, a
    solution with its `Usage` column) and its rows, read as they are consumed: (line number, the
    columns as text, but the `rle` cell as its ASCII bytes). That cell, megabytes of base64 that
    never need quoting, is split off by hand and never decoded to text: the csv module would scan
    it character by character, and refuses fields that long."""
    where = where or str(path)
    f = open(path, "rb")
    header = next(csv.reader([f.readline().decode("utf-8-sig")]), [])
    if "id" not in header or "filename" not in header:
        f.close()
        raise ValueError(f"{where}: header is {header}; the competition's files have id, filename and rle")
    rle = header.index("rle") if "rle" in header else len(header)

    def rows() -> Iterator[tuple[int, list]]:
        with f:
            for number, line in enumerate(f, start=2):
                line = line.rstrip(b"\r\n")
                parts = line.rsplit(b",", len(header) - rle) if rle < len(header) else [line]
                try:
                    fields = [*next(csv.reader([parts[0].decode("utf-8")]), []), *parts[1:2],
                              *(part.decode("utf-8") for part in parts[2:])]
                except UnicodeDecodeError as error:
                    raise ValueError(f"{where} line {number}: not UTF-8 text ({error})") from error
                if len(fields) != len(header):
                    raise ValueError(f"{where} line {number}: {len(fields)} fields, expected {len(header)}")
                yield number, fields

    return header, rows()


def submission_rows(test_paths: list[Path], sample_path: str | Path | None, ids: dict[Path, str]
                    ) -> list[tuple[str, Path]]:
    """(id, test file) of each row: the sample submission's rows, ids and order, or without one the
    test files in name order, ids from 0. A test file the sample lacks, or a sample row without a
    test file, is one error naming them all."""
    if not sample_path:
        return [(str(i), path) for i, path in enumerate(test_paths)]
    header, rows = read_rows(sample_path)
    by_name = {ids[path]: path for path in test_paths}
    named = [(row[header.index("id")], row[header.index("filename")]) for _, row in rows]
    no_file = [name for _, name in named if name not in by_name]
    not_named = sorted(by_name.keys() - {name for _, name in named})
    twice = sorted({name for _, name in named if [n for _, n in named].count(name) > 1})
    if no_file or not_named or twice:
        problems = [f"{len(not_named)} test file(s) not in it: {', '.join(not_named[:5])}" if not_named else "",
                    f"{len(no_file)} row(s) naming no test file: {', '.join(no_file[:5])}" if no_file else "",
                    f"rows naming a file twice: {', '.join(twice[:5])}" if twice else ""]
        raise ValueError(f"{sample_path} (data.sample_submission) and the test folder disagree: "
                         f"{'; '.join(p for p in problems if p)}")
    return [(row_id, by_name[name]) for row_id, name in named]


def write_competition_submission(test_lr_dir: str | Path, pred_dir: str | Path, out_path: str | Path, scale: int,
                                 model_sha256: str, sample_path: str | Path | None = None, workers: int = 0) -> int:
    """The competition's file from the predict stage's cells: one row per test image, in the sample
    submission's order (see `submission_rows`), each cell the one the predict stage recorded (by
    the model whose checkpoint has `model_sha256`, see `submission.check_records`) with the SHA-256
    of the pixels it must decode to. The file is checked whole, as the competition decodes it,
    before it is renamed to `out_path` (`check_competition_submission`). Returns the row count."""
    test_paths = list_images(test_lr_dir)
    if not test_paths:
        raise FileNotFoundError(f"{test_lr_dir}: no test images, so no submission")
    ids = {path: submission_id(path) for path in test_paths}
    rows = submission_rows(test_paths, sample_path, ids)
    records = check_records(test_paths, pred_dir, model_sha256)
    workers = num_workers(workers)

    def expected(path: Path) -> tuple[int, str]:
        record = records[path]
        if "pixels_sha256" not in record:
            raise ValueError(f"{path}: its prediction has no competition cell, made by predict with submit.format "
                             f"rle; {PREDICT_AGAIN}")
        width, height = image_size(path)
        return 3 * scale * scale * width * height, record["pixels_sha256"]

    def line(row: tuple[str, Path]) -> bytes:
        row_id, path = row
        cell_file = cell_path(prediction_path(pred_dir, path))
        expected(path)
        cell = cell_file.read_bytes()
        if hashlib.sha256(cell).hexdigest() != records[path]["rle_sha256"]:
            raise ValueError(f"{cell_file}: not the cell the predict stage wrote for {path} (changed since); "
                             f"{PREDICT_AGAIN}")
        return f"{csv_field(row_id)},{csv_field(ids[path])},".encode() + cell + b"\n"

    def check(tmp_path: Path) -> None:
        check_competition_submission(tmp_path, [(row_id, ids[path], *expected(path)) for row_id, path in rows],
                                     workers, shown_as=out_path)

    with ThreadPoolExecutor(workers) as pool, atomic_write(out_path, "wb", check=check) as f:
        f.write(",".join(COLUMNS).encode() + b"\n")
        for text in tqdm(ordered_map(pool, line, rows, ahead=2 * workers), total=len(rows), desc="gathering",
                         unit="img"):
            f.write(text)
    return len(rows)


def check_competition_submission(csv_path: str | Path, expected: list[tuple[str, str, int, str]], workers: int = 0,
                                 shown_as: str | Path | None = None) -> int:
    """Decodes every cell back, as the competition does, in `workers` threads; raises ValueError
    unless the rows are `expected`'s, in its order: (id, filename, the byte count of the
    prediction, the SHA-256 of its BGR bytes). Errors name `shown_as` (default `csv_path`)."""
    where = str(shown_as or csv_path)
    header, rows = read_rows(csv_path, where)
    if tuple(header) != COLUMNS:
        raise ValueError(f"{where}: header is {header}, expected {list(COLUMNS)}")
    workers = num_workers(workers)

    def check_row(item: tuple[tuple[str, str, int, str], tuple[int, list[str]]]) -> None:
        (want_id, want_name, size, sha256), (number, (row_id, name, cell)) = item
        shown = f"{where} line {number} ({name})"
        if (row_id, name) != (want_id, want_name):
            raise ValueError(f"{shown}: id {row_id!r} and filename {name!r}, expected {want_id!r} and {want_name!r}")
        pixels = decode_cell(cell, shown)
        if pixels.size != size:
            raise ValueError(f"{shown}: decodes to {pixels.size} bytes, expected {size}")
        if hashlib.sha256(pixels).hexdigest() != sha256:
            raise ValueError(f"{shown}: does not decode to the prediction's pixels")

    count = 0
    with ThreadPoolExecutor(workers) as pool:
        pairs = zip(expected, rows)  # in this order, a row past the expected ones stays unread, and is counted
        for _ in tqdm(ordered_map(pool, check_row, pairs, ahead=2 * workers), total=len(expected), desc="checking",
                      unit="img", leave=False):
            count += 1
        extra = sum(1 for _ in rows)
    if count + extra != len(expected):
        raise ValueError(f"{where}: {count + extra} rows, expected {len(expected)}")
    return count
