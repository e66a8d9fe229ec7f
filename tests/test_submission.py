import base64
import csv
import io

import numpy as np
import pytest
from PIL import Image

from sr_core.submission import check_submission, write_submission


def test_round_trip_is_the_same_with_any_number_of_workers(tmp_path, test_and_predictions):
    test_dir, pred_dir = test_and_predictions
    outputs = []
    for workers in (1, 2, 5):
        csv_path = tmp_path / f"submission_{workers}.csv"
        assert write_submission(test_dir, pred_dir, csv_path, 4, workers) == 2
        assert check_submission(csv_path, test_dir, 4, workers) == 2
        outputs.append(csv_path.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
    with open(tmp_path / "submission_1.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["id"] for row in rows] == ["00029.png", "00030.jpg"]
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(rows[0]["Encoded_Image"]))))
    np.testing.assert_array_equal(decoded, np.asarray(Image.open(pred_dir / "00029.png")))
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_missing_prediction_is_an_error(tmp_path, test_and_predictions):
    test_dir, pred_dir = test_and_predictions
    (pred_dir / "00030.png").unlink()
    with pytest.raises(FileNotFoundError, match="00030.png: no prediction for test image"):
        write_submission(test_dir, pred_dir, tmp_path / "submission.csv", 4)
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


def test_a_quoted_base64_field_is_accepted(tmp_path, test_and_predictions):
    test_dir, _ = test_and_predictions
    with open(tmp_path / "quoted.csv", "w", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_ALL)
        writer.writerow(["id", "Encoded_Image"])
        writer.writerow(["00029.png", encoded(np.zeros((24, 32, 3), np.uint8))])
        writer.writerow(["00030.jpg", encoded(np.zeros((20, 28, 3), np.uint8))])
    assert check_submission(tmp_path / "quoted.csv", test_dir, 4) == 2


@pytest.mark.parametrize("rows, message", [
    ([("00029.png", encoded(np.zeros((24, 32, 3), np.uint8)))], "no row for 1 test image"),
    ([("00029.png", encoded(np.zeros((24, 32, 3), np.uint8)))] * 2, "appears twice"),
    ([("00029.png", encoded(np.zeros((24, 32, 4), np.uint8)))], "with 4 channels"),
    ([("00029.png", encoded(np.zeros((24, 30, 3), np.uint8)))], "PNG 30x24 with 3 channels, expected PNG 32x24"),
    ([("00029.png", encoded(np.zeros((24, 32, 3), np.uint8), "JPEG"))], "JPEG 32x24"),
    ([("00029.png", "!!not base64!!")], "not a base64 PNG"),
    ([("other.png", encoded(np.zeros((24, 32, 3), np.uint8)))], "id 'other.png' is not a file"),
    ([("00029.png", "x", "y")], "line 2: 3 fields, expected 2"),
    ([("00029.png",)], "line 2: 1 fields, expected 2"),
])
def test_check_rejects_bad_submissions(tmp_path, test_and_predictions, rows, message):
    test_dir, _ = test_and_predictions
    write_rows(tmp_path / "bad.csv", rows)
    with pytest.raises(ValueError, match=message):
        check_submission(tmp_path / "bad.csv", test_dir, 4)
