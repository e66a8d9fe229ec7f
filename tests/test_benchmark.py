import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import save
from sr_core.checkpoint import GENERAL_MODEL, load_model, save_checkpoint
from sr_core.commands.benchmark import main
from sr_core.config import InferenceConfig
from sr_core.data import Pair, list_folder, load_pair
from sr_core.evaluation import benchmark, load_sets, mean_metrics, score_pairs
from sr_core.model import ModelConfig, SRResNet

BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "x4"
needs_benchmarks = pytest.mark.skipif(not BENCHMARKS.is_dir(),
                                      reason=f"{BENCHMARKS} is absent (it exists only in the project's workplace)")


@needs_benchmarks
@pytest.mark.slow
@pytest.mark.parametrize("name, psnr_y, ssim", [("Set5", (28.42, 28.44), (0.810, 0.812)),
                                                ("BSD100", (25.95, 25.97), (0.667, 0.669))])
def test_bicubic_reproduces_the_published_rows(name, psnr_y, ssim):
    pairs, rejects = list_folder(BENCHMARKS / name)
    assert rejects == []
    means = mean_metrics(score_pairs(pairs, 4, bicubic=True))
    assert psnr_y[0] <= means["bicubic_psnr_y"] <= psnr_y[1]
    assert ssim[0] <= means["bicubic_ssim"] <= ssim[1]


@needs_benchmarks
def test_lr_made_from_hr_matches_matlab_lr():
    pairs, _ = list_folder(BENCHMARKS / "Set5")
    for pair in pairs:
        matlab_lr, hr_img = load_pair(pair, 4)
        made_lr, made_hr = load_pair(Pair(pair.name, None, pair.hr_path), 4)
        np.testing.assert_array_equal(made_hr, hr_img)
        assert np.abs(made_lr.astype(float) - matlab_lr).mean() < 0.5


def test_hr_only_folder_makes_lr_from_cropped_hr(tmp_path, rng):
    save(tmp_path / "hr" / "odd.png", rng.integers(0, 256, (37, 30, 3), dtype=np.uint8))
    pairs, rejects = list_folder(tmp_path)
    assert rejects == [] and pairs[0].lr_path is None
    lr_img, hr_img = load_pair(pairs[0], 4)
    assert hr_img.shape == (36, 28, 3) and lr_img.shape == (9, 7, 3)


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = SRResNet(ModelConfig(num_blocks=1, num_features=8, bicubic_residual=True))
    save_checkpoint(tmp_path / "model.pt", model)
    return tmp_path / "model.pt", model.eval()


def test_benchmark_writes_rows_means_and_figure(tmp_path, paired_folder, rng, checkpoint):
    _, model = checkpoint
    save(tmp_path / "hr_only" / "hr" / "a.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    sets = load_sets([paired_folder, tmp_path / "hr_only"])
    out = tmp_path / "out"
    summary = benchmark(model, sets, 4, InferenceConfig(tile=8), num_samples=2, crop=32, rows_path=out / "rows.csv",
                        metrics_path=out / "metrics.json", figure_path=out / "samples.png")
    assert set(summary) == {paired_folder.name, "hr_only"}
    assert summary["hr_only"]["num_images"] == 1 and summary[paired_folder.name]["num_images"] == 6
    assert json.loads((out / "metrics.json").read_text()) == summary
    rows = (out / "rows.csv").read_text().splitlines()
    assert rows[0].startswith("set,name,width,height,competition_score,psnr_rgb,psnr_y") and len(rows) == 1 + 7
    assert (out / "samples.png").stat().st_size > 0


def test_a_model_barely_above_bicubic_is_said_to_have_learnt_little(tmp_path, paired_folder, checkpoint, caplog,
                                                                    monkeypatch):
    """An untrained bicubic-residual network is bicubic plus noise: one line per set says so."""
    import sr_core.evaluation
    _, model = checkpoint
    run = lambda: benchmark(model, load_sets([paired_folder]), 4, InferenceConfig(), 1, 32, tmp_path / "r.csv",
                            tmp_path / "m.json", tmp_path / "s.png")
    gain = run()[paired_folder.name]["gain_over_bicubic"]["psnr_y"]
    assert gain < sr_core.evaluation.LEARNT_LITTLE_DB
    said = [r.getMessage() for r in caplog.records if "learnt little" in r.getMessage()]
    assert said == [f"{paired_folder.name}: the model's PSNR-Y is {gain:+.2f} dB against bicubic's, so it has learnt "
                    f"little: train it longer (train.epochs, or train.time_limit_minutes)"]
    caplog.clear()
    monkeypatch.setattr(sr_core.evaluation, "LEARNT_LITTLE_DB", gain - 0.01)  # a gain above the line: nothing said
    run()
    assert not [r for r in caplog.records if "learnt little" in r.getMessage()]


def test_figure_titles_its_columns_and_captions_each_crop_with_its_psnr(paired_folder, checkpoint):
    """The crops' PSNR-Y is the reference's on the same crops; the figure is a title band, then a
    caption band and the crops for each sample, and the bands hold text (dark pixels)."""
    from sr_core.evaluation import figure, model_and_bicubic, sample_crops
    from sr_core.metrics import image_metrics
    _, model = checkpoint
    pairs, _ = list_folder(paired_folder)
    samples = sample_crops(model_and_bicubic(model), [("set", pairs[0]), ("set", pairs[1])], 4, 32)
    assert [s.title for s in samples] == ["set/000.png", "set/001.png"] and list(samples[0].crops) == ["bicubic",
                                                                                                      "model", "HR"]
    for sample in samples:
        assert sample.crops["HR"].shape == (32, 32, 3)
        for name in ("bicubic", "model"):
            reference = image_metrics(sample.crops[name], sample.crops["HR"], 4, ssim=False)["psnr_y"]
            assert sample.psnr_y[name] == pytest.approx(reference, abs=1e-4)
    image = figure(samples, font_size=14)
    band = 14 + 8
    assert image.shape[0] == 2 * band + 2 * (2 * band + 32) and image.shape[1] >= 3 * 32
    for top in (0, band, 2 * band, 3 * band + 32, 4 * band + 32):  # heading; titles; a name; its PSNR-Y; the next
        assert image[top:top + band].min() < 128, "a caption band without text"
    # the two PSNR-Y captions under 32 px crops, wider than them, stand apart: two runs of text
    inked = image[3 * band + 32:4 * band + 32].min(axis=(0, 2)) < 128
    runs = [x for x in range(len(inked)) if inked[x] and not inked[max(0, x - 10):x].any()]  # after 10 px of white
    assert len(runs) == 2, f"captions starting at {runs}"


def test_incomplete_benchmark_folder_is_an_error(tmp_path, paired_folder):
    (paired_folder / "hr" / "000.png").unlink()
    with pytest.raises(ValueError, match="000.png: no HR file"):
        load_sets([paired_folder])
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_sets([tmp_path / "missing"])


def test_command_line(tmp_path, paired_folder, checkpoint):
    path, _ = checkpoint
    main([str(path), str(paired_folder), "--out", str(tmp_path / "results"), "--device", "cpu"])
    metrics = json.loads((tmp_path / "results" / "metrics.json").read_text())
    assert metrics[paired_folder.name]["num_images"] == 6
    assert {"psnr_y", "ssim", "psnr_rgb", "competition_score"} == set(metrics[paired_folder.name]["bicubic"])


def test_command_line_with_no_model_scores_the_general_model(tmp_path, paired_folder):
    main([str(paired_folder), "--out", str(tmp_path / "results"), "--device", "cpu"])
    scores = json.loads((tmp_path / "results" / "metrics.json").read_text())[paired_folder.name]
    general = load_model(GENERAL_MODEL, torch.device("cpu"))
    expected = mean_metrics(score_pairs(list_folder(paired_folder)[0], 4, model=general))
    assert scores["model"]["psnr_y"] == pytest.approx(expected["psnr_y"], abs=1e-6)


def test_each_file_is_decoded_once(tmp_path, paired_folder, rng, checkpoint, monkeypatch):
    import sr_core.data
    _, model = checkpoint
    save(tmp_path / "hr_only" / "hr" / "a.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    reads = []
    read_image = sr_core.data.read_image
    monkeypatch.setattr(sr_core.data, "read_image", lambda path: reads.append(Path(path).resolve()) or read_image(path))
    sets = load_sets([paired_folder, tmp_path / "hr_only"])
    assert reads == []  # listing reads no pixels
    rows = score_pairs(sets[paired_folder.name] + sets["hr_only"], 4, model, bicubic=True)
    assert len(rows) == 7
    assert len(reads) == len(set(reads)) == 6 * 2 + 1


def test_every_pair_that_cannot_be_used_is_reported_at_once(paired_folder, rng, checkpoint):
    _, model = checkpoint
    (paired_folder / "hr" / "001.png").write_bytes(b"not a png")
    save(paired_folder / "hr" / "004.png", rng.integers(0, 256, (44, 64, 3), dtype=np.uint8))
    sets = load_sets([paired_folder])
    with pytest.raises(ValueError, match=r"2 of 6 pairs cannot be used: .*001.png: cannot decode.*; .*004.png: HR is "
                                         r"64x44, expected 4x the LR 16x12"):
        score_pairs(sets[paired_folder.name], 4, model, bicubic=True)
