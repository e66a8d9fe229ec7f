"""The Kaggle submission: a CSV with `id` (the test file's name) and `Encoded_Image` (base64 PNG).

Rows are streamed: a full-size submission (500 images at 1920x1080) is gigabytes of base64.
"""

import base64
import csv
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from sr_core.files import atomic_write
from sr_core.images import image_size, list_images
from sr_core.inference import prediction_path

COLUMNS = ("id", "Encoded_Image")
csv.field_size_limit(sys.maxsize)  # one field holds a whole encoded image


def write_submission(test_lr_dir: str | Path, pred_dir: str | Path, out_path: str | Path) -> int:
    """One row per test image, in name order; the PNG bytes go in unchanged. Returns the row count."""
    test_paths = list_images(test_lr_dir)
    with atomic_write(out_path, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        for test_path in tqdm(test_paths, desc="encoding", unit="img"):
            png = prediction_path(pred_dir, test_path)
            if not png.is_file():
                raise FileNotFoundError(f"{png}: no prediction for test image {test_path}")
            writer.writerow((test_path.name, base64.b64encode(png.read_bytes()).decode("ascii")))
    return len(test_paths)


def check_submission(csv_path: str | Path, test_lr_dir: str | Path, scale: int) -> int:
    """Decodes every row back; raises ValueError unless there is exactly one row per test image,
    each a PNG of `scale` times the test image's size with 3 channels. Returns the row count."""
    expected = {p.name: image_size(p) for p in list_images(test_lr_dir)}
    seen = set()
    with open(csv_path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if tuple(header or ()) != COLUMNS:
            raise ValueError(f"{csv_path}: header is {header}, expected {list(COLUMNS)}")
        for line, row in enumerate(reader, start=2):
            where = f"{csv_path} line {line}"
            if len(row) != 2:
                raise ValueError(f"{where}: {len(row)} fields, expected 2")
            name, encoded = row
            if name not in expected:
                raise ValueError(f"{where}: id {name!r} is not a file in {test_lr_dir}")
            if name in seen:
                raise ValueError(f"{where}: id {name!r} appears twice")
            seen.add(name)
            try:
                with Image.open(io.BytesIO(base64.b64decode(encoded, validate=True))) as image:
                    image.load()
                    fmt, size, channels = image.format, image.size, len(image.getbands())
            except (OSError, ValueError) as error:
                raise ValueError(f"{where} ({name}): not a base64 PNG ({error})") from error
            want = tuple(scale * np.array(expected[name]))
            if fmt != "PNG" or size != want or channels != 3:
                raise ValueError(f"{where} ({name}): {fmt} {size[0]}x{size[1]} with {channels} channels, "
                                 f"expected PNG {want[0]}x{want[1]} with 3")
    missing = sorted(expected.keys() - seen)
    if missing:
        raise ValueError(f"{csv_path}: no row for {len(missing)} test image(s): {', '.join(missing[:5])}")
    return len(seen)
