import base64
import csv
import io
import os
import signal
import subprocess
import sys
import time

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


def test_ids_that_need_quoting_are_quoted(tmp_path, rng):
    names = ['a,b.png', 'say "hi".png', 'plain.png']
    for name in names:
        save(tmp_path / "test" / name, rng.integers(0, 256, (3, 4, 3), dtype=np.uint8))
        save(tmp_path / "pred" / name, rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    write_submission(tmp_path / "test", tmp_path / "pred", tmp_path / "submission.csv", 4)
    with open(tmp_path / "submission.csv", newline="") as f:
        assert sorted(row["id"] for row in csv.DictReader(f)) == sorted(names)  # the csv module agrees


def test_missing_prediction_is_an_error(tmp_path, test_and_predictions):
    test_dir, pred_dir = test_and_predictions
    (pred_dir / "00030.png").unlink()
    with pytest.raises(FileNotFoundError, match="00030.png: no prediction for test image"):
        write_submission(test_dir, pred_dir, tmp_path / "submission.csv", 4)
    assert not (tmp_path / "submission.csv").exists()  # nothing half-written is left


def test_no_test_images_is_an_error(tmp_path):
    (tmp_path / "test").mkdir()
    with pytest.raises(FileNotFoundError, match="no test images"):
        write_submission(tmp_path / "test", tmp_path / "pred", tmp_path / "submission.csv", 4)


def test_a_failed_check_leaves_no_submission(tmp_path, test_and_predictions):
    test_dir, pred_dir = test_and_predictions
    out = tmp_path / "submission.csv"
    save(pred_dir / "00030.png", np.zeros((10, 14, 3), np.uint8))  # 2x, not 4x
    with pytest.raises(ValueError, match=r"submission.csv line 3 \(00030.jpg\): PNG 14x10 .* expected PNG 28x20"):
        write_submission(test_dir, pred_dir, out, 4)
    assert not out.exists()
    out.write_text("an earlier, checked submission")
    with pytest.raises(ValueError):
        write_submission(test_dir, pred_dir, out, 4)
    assert out.read_text() == "an earlier, checked submission"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_killed_check_leaves_no_submission(tmp_path, test_and_predictions):
    test_dir, pred_dir = test_and_predictions
    started = tmp_path / "check_started"
    child = f"""
import time
import sr_core.submission as submission
def slow_check(*args, **kwargs):
    open({str(started)!r}, "w").close()
    time.sleep(60)
submission.check_submission = slow_check
submission.write_submission({str(test_dir)!r}, {str(pred_dir)!r}, {str(tmp_path / "submission.csv")!r}, 4)
"""
    process = subprocess.Popen([sys.executable, "-c", child])
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert started.exists(), "the check never started"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "submission.csv").exists()


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
