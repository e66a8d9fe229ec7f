"""The SRGD competition's file and score: cells the competition's own decoding turns into exactly the
predictions, in the sample submission's rows and order, and its 8-bit score computed by hand."""

import ast
import base64
import csv
import math
import zlib

import numpy as np
import pytest
import torch

from conftest import save
from sr_core.competition import (cell_path, decode_cell, encode_cell, run_pairs, write_cell,
                                 write_competition_submission)
from sr_core.commands.score import main as score_main
from sr_core.images import read_rgb
from sr_core.inference import predict_folder
from sr_core.model import ModelConfig, SRResNet
from sr_core.score import score_files

PEAK = 20 * math.log10(255)  # 48.1308...


def competition_decode(cell: str) -> np.ndarray:
    """The competition's decoding, as its description reads: the cell is a Python bytes literal of
    base64; then zlib; then pairs of (value, run length), each value repeated its length."""
    pairs = zlib.decompress(base64.b64decode(ast.literal_eval(cell)))
    out = []
    for i in range(0, len(pairs), 2):
        out += [pairs[i]] * pairs[i + 1]
    return np.array(out, dtype=np.uint8)


def bgr_flat(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., ::-1].reshape(-1)


@pytest.mark.parametrize("run", [1, 254, 255, 256, 510, 511, 600, 1000])
def test_runs_longer_than_255_are_split_and_decode_back(run, rng):
    noise = rng.integers(0, 256, 50, dtype=np.uint8)
    flat = np.concatenate([noise, np.full(run, 7, np.uint8), noise, np.full(run, 7, np.uint8)])
    pairs = run_pairs(flat)
    assert pairs[1::2].max() <= 255 and pairs[1::2].min() >= 1
    np.testing.assert_array_equal(np.repeat(pairs[0::2], pairs[1::2]), flat)
    image = flat[:len(flat) // 3 * 3].reshape(1, -1, 3)
    np.testing.assert_array_equal(competition_decode(encode_cell(image)), bgr_flat(image))


def write_competition_csv(path, header, rows):
    """A file in the competition's layout, cells as pandas writes bytes (unquoted b'...')."""
    with open(path, "w", newline="") as f:
        f.write(",".join(header) + "\n")
        for row in rows:
            f.write(",".join(row) + "\n")


def test_the_score_is_the_competitions_8_bit_arithmetic(tmp_path, rng):
    """Known differences, scored by hand: 16 and 240 square to multiples of 256, which 8-bit
    arithmetic wraps to 0 (capped at 100, like a perfect row); 1 squares to 1; 17 to 289 = 33 mod
    256; 3 on half the pixels and 0 on the rest averages 4.5."""
    truth = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    half = np.zeros_like(truth)
    half[:6] = 3
    differences = {"perfect.png": 0, "by_16.png": 16, "by_240.png": 240, "by_1.png": 1, "by_17.png": 17,
                   "half_by_3.png": half}
    by_hand = {"perfect.png": 100.0, "by_16.png": 100.0, "by_240.png": 100.0,
               "by_1.png": PEAK - 10 * math.log10(1 + 1e-6), "by_17.png": PEAK - 10 * math.log10(33 + 1e-6),
               "half_by_3.png": PEAK - 10 * math.log10(4.5 + 1e-6)}
    assert by_hand["by_1.png"] == pytest.approx(48.1308, abs=1e-4)
    assert by_hand["by_17.png"] == pytest.approx(32.9457, abs=1e-4)
    names = list(differences)
    solution = [(str(i), name, encode_cell(truth), "Public" if i % 2 else "Private") for i, name in enumerate(names)]
    submission = [(str(i), name, encode_cell(truth + np.asarray(differences[name], np.uint8)))  # wraps past 255
                  for i, name in enumerate(names)]
    write_competition_csv(tmp_path / "solution.csv", ["id", "filename", "rle", "Usage"], solution)
    write_competition_csv(tmp_path / "submission.csv", ["id", "filename", "rle"], submission)
    result = score_files(tmp_path / "solution.csv", tmp_path / "submission.csv")
    assert result["rows"] == 6
    assert result["score"] == pytest.approx(sum(by_hand.values()) / 6, abs=1e-9)
    assert result["score_public"] == pytest.approx(np.mean([by_hand[n] for i, n in enumerate(names) if i % 2]))
    assert result["score_private"] == pytest.approx(np.mean([by_hand[n] for i, n in enumerate(names) if not i % 2]))
    # the truth as a folder of images scores the same
    for name in names:
        save(tmp_path / "truth" / name, truth)
    assert score_files(tmp_path / "truth", tmp_path / "submission.csv")["score"] == pytest.approx(result["score"])


def test_the_score_command_refuses_rows_in_another_order_than_the_solutions(tmp_path, rng, capsys):
    image = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    write_competition_csv(tmp_path / "solution.csv", ["id", "filename", "rle"],
                          [("0", "a.png", encode_cell(image)), ("1", "b.png", encode_cell(image))])
    write_competition_csv(tmp_path / "submission.csv", ["id", "filename", "rle"],
                          [("0", "b.png", encode_cell(image)), ("1", "a.png", encode_cell(image))])
    with pytest.raises(ValueError, match=r"line 2 \(b.png\): the solution's row there is 'a.png'.* pairs rows by their order"):
        score_files(tmp_path / "solution.csv", tmp_path / "submission.csv")
    write_competition_csv(tmp_path / "submission.csv", ["id", "filename", "rle"], [("0", "a.png", encode_cell(image))])
    with pytest.raises(ValueError, match="fewer rows than the solution"):
        score_files(tmp_path / "solution.csv", tmp_path / "submission.csv")
    write_competition_csv(tmp_path / "submission.csv", ["id", "filename", "rle"],
                          [("0", "a.png", encode_cell(image)), ("1", "b.png", encode_cell(image))])
    score_main([str(tmp_path / "solution.csv"), str(tmp_path / "submission.csv")])
    assert capsys.readouterr().out == "score 100.0000 over 2 rows\n"


@pytest.fixture
def predicted(tmp_path, rng):
    """Three test images (one greyscale, one with a flat half: long runs), predicted by a tiny model
    with the competition's cells, as the predict stage makes them with submit.format rle."""
    save(tmp_path / "test" / "00029.png", rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    save(tmp_path / "test" / "00031.png", np.pad(rng.integers(0, 256, (5, 9, 3), dtype=np.uint8), ((0, 5), (0, 0), (0, 0))))
    save(tmp_path / "test" / "00030.jpg", rng.integers(0, 256, (5, 7), dtype=np.uint8))
    torch.manual_seed(0)
    model = SRResNet(ModelConfig(num_blocks=1, num_features=8, bicubic_residual=True)).eval()
    predict_folder(model, tmp_path / "test", tmp_path / "pred", model_sha256="m", also=write_cell)
    return tmp_path / "test", tmp_path / "pred"


def read_submission(path) -> list[tuple[str, str, str]]:
    with open(path, newline="") as f:
        header, *rows = list(csv.reader(f))
    assert header == ["id", "filename", "rle"]
    return [tuple(row) for row in rows]


def test_cells_decode_with_the_competitions_decoding_to_the_predictions_in_the_samples_rows(tmp_path, predicted):
    test_dir, pred_dir = predicted
    write_competition_csv(tmp_path / "sample.csv", ["id", "filename", "rle"],
                          [("7", "00031.png", "b''"), ("3", "00029.png", "b''"), ("11", "00030.jpg", "b''")])
    assert write_competition_submission(test_dir, pred_dir, tmp_path / "submission.csv", 4, "m",
                                        tmp_path / "sample.csv") == 3
    rows = read_submission(tmp_path / "submission.csv")
    assert [(row_id, name) for row_id, name, _ in rows] == [("7", "00031.png"), ("3", "00029.png"), ("11", "00030.jpg")]
    for _, name, cell in rows:
        prediction = read_rgb(pred_dir / f"{name.rsplit('.', 1)[0]}.png")
        np.testing.assert_array_equal(competition_decode(cell), bgr_flat(prediction))
    # without a sample: the test folder's names in order, ids from 0
    write_competition_submission(test_dir, pred_dir, tmp_path / "plain.csv", 4, "m")
    assert [(row_id, name) for row_id, name, _ in read_submission(tmp_path / "plain.csv")] == [
        ("0", "00029.png"), ("1", "00030.jpg"), ("2", "00031.png")]


def test_a_sample_that_disagrees_with_the_test_folder_is_one_error_naming_both_sides(tmp_path, predicted):
    test_dir, pred_dir = predicted
    write_competition_csv(tmp_path / "sample.csv", ["id", "filename", "rle"],
                          [("0", "00029.png", "b''"), ("1", "99999.png", "b''")])
    with pytest.raises(ValueError, match=r"sample.csv \(data.sample_submission\) and the test folder disagree: 2 test "
                                         r"file\(s\) not in it: 00030.jpg, 00031.png; 1 row\(s\) naming no test file: "
                                         r"99999.png"):
        write_competition_submission(test_dir, pred_dir, tmp_path / "submission.csv", 4, "m", tmp_path / "sample.csv")
    assert not (tmp_path / "submission.csv").exists()


def test_a_cell_changed_since_predict_or_predictions_without_cells_are_refused(tmp_path, predicted):
    test_dir, pred_dir = predicted
    cell = cell_path(pred_dir / "00029.png")
    cell.write_text(encode_cell(np.zeros((24, 32, 3), np.uint8)))
    with pytest.raises(ValueError, match="00029.rle: not the cell the predict stage wrote"):
        write_competition_submission(test_dir, pred_dir, tmp_path / "submission.csv", 4, "m")
    torch.manual_seed(0)
    predict_folder(SRResNet(ModelConfig(num_blocks=1, num_features=8)).eval(), test_dir, tmp_path / "png_only",
                   model_sha256="m")
    with pytest.raises(ValueError, match="has no competition cell, made by predict with submit.format rle; run the predict stage again"):
        write_competition_submission(test_dir, tmp_path / "png_only", tmp_path / "submission.csv", 4, "m")


def test_a_cell_that_is_not_one_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"row 3: not a b'...' cell"):
        decode_cell("__import__('os')", "row 3")
    with pytest.raises(ValueError, match="row 4: the cell does not decode"):
        decode_cell("b'AAAA'", "row 4")
