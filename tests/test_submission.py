import base64
import csv
import io

import numpy as np
import pytest
from PIL import Image

from conftest import save
from sr_core.submission import check_submission, write_submission


@pytest.fixture
def test_and_predictions(tmp_path, rng):
    """Two test LR images (one greyscale JPEG) and their 4x RGB predictions."""
    save(tmp_path / "test" / "00029.png", rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    save(tmp_path / "test" / "00030.jpg", rng.integers(0, 256, (5, 7), dtype=np.uint8))
    save(tmp_path / "pred" / "00029.png", rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    save(tmp_path / "pred" / "00030.png", rng.integers(0, 256, (20, 28, 3), dtype=np.uint8))
    return tmp_path / "test", tmp_path / "pred"


def test_round_trip(tmp_path, test_and_predictions):
    test_dir, pred_dir = test_and_predictions
    csv_path = tmp_path / "submission.csv"
    assert write_submission(test_dir, pred_dir, csv_path) == 2
    assert check_submission(csv_path, test_dir, 4) == 2
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["id"] for row in rows] == ["00029.png", "00030.jpg"]
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(rows[0]["Encoded_Image"]))))
    np.testing.assert_array_equal(decoded, np.asarray(Image.open(pred_dir / "00029.png")))


def test_missing_prediction_is_an_error(tmp_path, test_and_predictions):
    test_dir, pred_dir = test_and_predictions
    (pred_dir / "00030.png").unlink()
    with pytest.raises(FileNotFoundError, match="00030.png: no prediction for test image"):
        write_submission(test_dir, pred_dir, tmp_path / "submission.csv")
    assert not (tmp_path / "submission.csv").exists()  # nothing half-written is left


def write_rows(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "Encoded_Image"])
        writer.writerows(rows)


def encoded(array: np.ndarray, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("rows, message", [
    ([("00029.png", encoded(np.zeros((24, 32, 3), np.uint8)))], "no row for 1 test image"),
    ([("00029.png", encoded(np.zeros((24, 32, 3), np.uint8)))] * 2, "appears twice"),
    ([("00029.png", encoded(np.zeros((24, 32, 4), np.uint8)))], "with 4 channels"),
    ([("00029.png", encoded(np.zeros((24, 30, 3), np.uint8)))], "PNG 30x24 with 3 channels, expected PNG 32x24"),
    ([("00029.png", encoded(np.zeros((24, 32, 3), np.uint8), "JPEG"))], "JPEG 32x24"),
    ([("00029.png", "!!not base64!!")], "not a base64 PNG"),
    ([("other.png", encoded(np.zeros((24, 32, 3), np.uint8)))], "id 'other.png' is not a file"),
])
def test_check_rejects_bad_submissions(tmp_path, test_and_predictions, rows, message):
    test_dir, _ = test_and_predictions
    write_rows(tmp_path / "bad.csv", rows)
    with pytest.raises(ValueError, match=message):
        check_submission(tmp_path / "bad.csv", test_dir, 4)
