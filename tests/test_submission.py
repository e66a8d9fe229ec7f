import base64
import csv
import io

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import save
from sr_core.config import ModelConfig
from sr_core.inference import predict_folder, upscale
from sr_core.model import SRResNet
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


def test_a_transparent_test_image_is_named_once_by_predict_with_what_its_submission_row_holds(tmp_path, caplog):
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (6, 8, 4), dtype=np.uint8)
    rgba[:, :4, 3], rgba[:, 4:, 3] = 0, 255  # the left half transparent
    save(tmp_path / "test" / "seen_through.png", rgba)
    save(tmp_path / "test" / "opaque.png", rgba[..., :3])
    torch.manual_seed(0)
    model = SRResNet(ModelConfig(num_blocks=1, num_features=8)).eval()
    predict_folder(model, tmp_path / "test", tmp_path / "pred")
    named = [message for message in caplog.messages if "seen_through.png" in message]
    assert named == [f"{tmp_path / 'test' / 'seen_through.png'}: alpha is not opaque in 24 of 48 pixels: its RGB is "
                     f"used as it is and the alpha is dropped, in its prediction and its submission row (RGB)"]
    assert not [message for message in caplog.messages if "opaque.png" in message]
    write_submission(tmp_path / "test", tmp_path / "pred", tmp_path / "submission.csv", 4)
    with open(tmp_path / "submission.csv", newline="") as f:
        row = next(row for row in csv.DictReader(f) if row["id"] == "seen_through.png")
    cell = Image.open(io.BytesIO(base64.b64decode(row["Encoded_Image"])))
    assert cell.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(cell), upscale(model, rgba[..., :3]))  # the colours under the alpha


def test_a_refused_submission_says_what_the_documented_way_back_restores(tmp_path):
    """After a test image was replaced, `dvc checkout submission.csv` brings back the earlier file,
    which holds the earlier picture's prediction: the refusal says so, and what submits the new one."""
    rng = np.random.default_rng(5)
    save(tmp_path / "test" / "00029.png", rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    torch.manual_seed(0)
    model = SRResNet(ModelConfig(num_blocks=1, num_features=8)).eval()
    predict_folder(model, tmp_path / "test", tmp_path / "pred", model_sha256="m")
    save(tmp_path / "test" / "00029.png", rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))  # another picture
    with pytest.raises(ValueError, match=r"00029.png: changed since its prediction .* was made; run the predict stage "
                                         r"again \(dvc repro -f -s predict, then dvc repro\); a submission restored "
                                         r"from DVC's cache \(dvc checkout submission.csv\) is the one made before, of "
                                         r"the test folder as it was then, not of this file"):
        write_submission(tmp_path / "test", tmp_path / "pred", tmp_path / "submission.csv", 4, model_sha256="m")
