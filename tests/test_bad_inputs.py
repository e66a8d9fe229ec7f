"""Every kind of bad input and fault gets a clear answer, and nothing valid is lost.

The cases are tables: `CASES` holds one function per kind of fault, named by what it proves;
training pairs, params and PIL modes, which differ only in data, have tables of their own
(`BAD_PAIRS`, `BAD_PARAMS`, `MODES`). Each case asserts the message
(naming the file or key and the reason) and that the valid data was kept.
"""

import base64
import contextlib
import csv
import io
import json
import logging
import os
import pickle
import resource
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
import yaml
from PIL import Image, ImageCms

from conftest import REPO, save, stage_script, write_params
from sr_core.checkpoint import load_model, load_train_state, save_checkpoint
from sr_core.commands.upscale import main as upscale_main
from sr_core.config import InferenceConfig, ModelConfig, build, load_params
from sr_core.data import Pair, check_pairs, read_split, write_split
from sr_core.evaluation import load_sets, score_pairs
from sr_core.files import atomic_write, sha256_of, write_bytes
from sr_core.images import MAX_INPUT_PIXELS, ImageError, list_images, read_image, read_rgb, resize_bicubic
from sr_core.inference import predict_folder, upscale, upscale_files
from sr_core.model import SRResNet
from sr_core.stores import decode_pairs
from sr_core.submission import check_submission, write_submission
from sr_core.training import train

CPU = torch.device("cpu")


# --- helpers ------------------------------------------------------------------------------------

def valid_pairs(root: Path, count: int = 3, lr_side: int = 8) -> tuple[Path, Path]:
    """root/lr and root/hr with `count` valid pairs 000.png, 001.png, ..."""
    rng = np.random.default_rng(1)
    for i in range(count):
        lr_img = rng.integers(0, 256, (lr_side, lr_side, 3), dtype=np.uint8)
        save(root / "lr" / f"{i:03d}.png", lr_img)
        save(root / "hr" / f"{i:03d}.png", np.kron(lr_img, np.ones((4, 4, 1), np.uint8)))
    return root / "lr", root / "hr"


def valid_names(count: int = 3) -> list[str]:
    return [f"{i:03d}.png" for i in range(count)]


def tiny_model(scale: int = 4) -> SRResNet:
    torch.manual_seed(0)
    return SRResNet(ModelConfig(scale=scale, num_blocks=1, num_features=8)).eval()


def image_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def black_png(width: int, height: int, pixels: bool = True) -> bytes:
    """An 8-bit RGB PNG of `width` x `height` black pixels, compressed row by row (no array in
    memory); with `pixels` False, only the header: a file that claims a size."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    data = b""
    if pixels:
        compressor, row = zlib.compressobj(1), bytes(1 + 3 * width)
        data = png_chunk(b"IDAT", b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush())
    return b"\x89PNG\r\n\x1a\n" + header + data + png_chunk(b"IEND", b"")


def only_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@contextlib.contextmanager
def hang_fails(seconds: int):
    """Fails the test if its body runs `seconds` (an open() of a FIFO blocks until a writer comes)."""
    def stop(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: something blocks")
    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    """A tmpfs mounted at `path` with `options`, or pytest.skip where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


# --- files, checkpoints, disks and kills -------------------------------------------------------

def large_test_image_memory(tmp_path, caplog):
    """Peak RSS of upscaling two LR sizes in fresh processes (benchmarks/real_scale.py): the slope is
    the memory per output pixel beyond the fixed working set. The uint8 output is 3 bytes of it,
    the uint8 input 3/16; the baseline path, which assembles float images, takes ~38."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from real_scale import memory_slope
    # smaller than the benchmark's sides (300, 900), half the time, slopes as clear: 2.9 and 36.5 (3.4, 37.2 there)
    slope, baseline = (memory_slope(path, sides=(200, 600)) for path in ("now", "baseline"))
    assert slope <= 4, f"{slope:.2f} bytes per output pixel"
    assert baseline > 30, f"the probe should see the baseline path's {baseline:.2f} bytes per output pixel"


def submit_check_fails_or_is_killed(tmp_path, caplog, test_and_predictions):
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

    # killed during the check: the unchecked file is never renamed into place
    out.unlink()
    save(pred_dir / "00030.png", np.zeros((20, 28, 3), np.uint8))
    started = tmp_path / "check_started"
    child = f"""
import time
import sr_core.submission as submission
def slow_check(*args, **kwargs):
    open({str(started)!r}, "w").close()
    time.sleep(60)
submission.check_submission = slow_check
submission.write_submission({str(test_dir)!r}, {str(pred_dir)!r}, {str(out)!r}, 4)
"""
    process = subprocess.Popen([sys.executable, "-c", child])
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert started.exists(), "the check never started"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not out.exists()


def decompression_bomb_and_huge_outputs(tmp_path, caplog):
    """(A bomb among the training pairs: `test_a_bad_training_pair_is_rejected_by_name` below.)"""
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "bomb.png").write_bytes(black_png(20000, 20000, pixels=False))
    with pytest.raises(ImageError, match=r"test/bomb.png: 20000x20000 is .* \(a guard against decompression bombs\)"):
        predict_folder(tiny_model(), tmp_path / "test", tmp_path / "pred")

    # a large test image's 4x prediction is over Pillow's own limit (179 Mpx) and is still checked
    side = 3350
    assert (4 * side) ** 2 > 2 * 89_478_485 and side**2 < MAX_INPUT_PIXELS
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "large.png").write_bytes(black_png(side, side))
    with open(tmp_path / "submission.csv", "w") as f:
        f.write(f"id,Encoded_Image\nlarge.png,{base64.b64encode(black_png(4 * side, 4 * side)).decode()}\n")
    assert check_submission(tmp_path / "submission.csv", tmp_path / "big", 4) == 1


def broken_links_and_other_entries(tmp_path, caplog):
    lr_dir, hr_dir = valid_pairs(tmp_path / "train")
    (lr_dir / "dangling.png").symlink_to(tmp_path / "gone.png")
    save(hr_dir / "dangling.png", np.zeros((32, 32, 3), np.uint8))
    save(lr_dir / "loop.png", np.zeros((8, 8, 3), np.uint8))
    (hr_dir / "loop.png").symlink_to(hr_dir / "loop.png")
    (hr_dir / "notes.txt").write_text("not an image")
    pairs, rejects = check_pairs(lr_dir, hr_dir, 4)
    assert [p.name for p in pairs] == valid_names()
    reasons = {r.name: r.reason for r in rejects}
    assert f"lr/dangling.png: cannot open (a symbolic link to {tmp_path / 'gone.png'}): No such file" \
        in reasons["dangling.png"]
    assert "hr/loop.png: cannot open (a symbolic link to" in reasons["loop.png"]
    assert "Too many levels of symbolic links" in reasons["loop.png"]
    assert "skipping 1 entries that are not image files" in caplog.text and "notes.txt" in caplog.text

    # a test image behind a broken link stops prediction and the submission's check by name
    test_dir = tmp_path / "test"
    save(test_dir / "a.png", np.zeros((4, 4, 3), np.uint8))
    (test_dir / "b.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(ImageError, match="test/b.png: cannot open"):
        predict_folder(tiny_model(), test_dir, tmp_path / "pred")
    with pytest.raises(ImageError, match="test/b.png: cannot open"):
        check_submission(tmp_path / "any.csv", test_dir, 4)
    # and a benchmark keeps it in its list, so scoring names it
    (tmp_path / "bench" / "hr").mkdir(parents=True)
    (tmp_path / "bench" / "hr" / "x.png").symlink_to(tmp_path / "gone.png")
    save(tmp_path / "bench" / "hr" / "y.png", np.zeros((32, 32, 3), np.uint8))
    sets = load_sets([tmp_path / "bench"])
    with pytest.raises(ImageError, match=r"1 of 2 pairs cannot be used: .*bench/hr/x.png: cannot open"):
        score_pairs(sets["bench"], 4, tiny_model(), bicubic=True)


def negative_tile(tmp_path, caplog, command_line):
    with pytest.raises(ValueError, match="inference.tile must be an integer >= 0; got -1"):
        build(InferenceConfig, {"tile": -1}, "inference")
    save(tmp_path / "in" / "a.png", np.zeros((4, 4, 3), np.uint8))
    save_checkpoint(tmp_path / "model.pt", tiny_model())
    result = command_line(upscale_main, tmp_path / "model.pt", tmp_path / "in", "--out", tmp_path / "out", "--tile", -1)
    assert result.status == 1 and "tile must be an integer >= 0; got -1" in result.err
    assert not (tmp_path / "out").exists()


def images_too_small_to_train_or_score(tmp_path, caplog):
    lr_dir, hr_dir = valid_pairs(tmp_path / "train", lr_side=24)
    save(lr_dir / "small.png", np.zeros((16, 16, 3), np.uint8))
    save(hr_dir / "small.png", np.zeros((64, 64, 3), np.uint8))
    save(lr_dir / "tiny.png", np.zeros((4, 4, 3), np.uint8))
    save(hr_dir / "tiny.png", np.zeros((16, 16, 3), np.uint8))
    pairs, rejects = check_pairs(lr_dir, hr_dir, 4, min_hr_side=96)  # what split passes for patch_size 96
    assert [p.name for p in pairs] == valid_names()
    reasons = {r.name: r.reason for r in rejects}
    assert "hr/small.png: HR is 64x64, under the 96 px a side" in reasons["small.png"]
    assert "hr/tiny.png: HR is 16x16, under the 96 px" in reasons["tiny.png"]
    # whole images (patch_size 0): the scoring minimum, and one size
    pairs, rejects = check_pairs(lr_dir, hr_dir, 4, min_hr_side=19, one_size=True)
    assert [p.name for p in pairs] == valid_names()
    reasons = {r.name: r.reason for r in rejects}
    assert "HR is 16x16, under the 19 px" in reasons["tiny.png"]
    assert "HR is 64x64; whole-image training (train.patch_size: 0) needs one size, and most pairs are 96x96" in reasons["small.png"]
    # a benchmark image too small to score is named, with what scoring needs
    save(tmp_path / "bench" / "hr" / "ok.png", np.zeros((32, 32, 3), np.uint8))
    save(tmp_path / "bench" / "hr" / "tiny.png", np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(ImageError, match=r"bench/hr/tiny.png: HR is 16x16; scoring needs at least 19x19 \(4 px cut"):
        score_pairs(load_sets([tmp_path / "bench"])["bench"], 4, tiny_model(), bicubic=True)


def unreadable_resume_state(tmp_path, caplog):
    lr_dir, hr_dir = valid_pairs(tmp_path, 4, lr_side=24)
    write_split(tmp_path / "split.json", valid_names(4)[:3], valid_names(4)[3:])
    train_pairs, val_pairs = read_split(tmp_path / "split.json", lr_dir, hr_dir)
    params = load_params(write_params(tmp_path, {
        "model": {"num_blocks": 1, "num_features": 8},
        "train": {"epochs": 1, "batch_size": 2, "patch_size": 32, "patches_per_image": 2, "device": "cpu"}}))
    state = tmp_path / "models" / "last.pt"
    state.parent.mkdir()
    state.write_bytes(os.urandom(1000))
    summary = train(params, train_pairs, val_pairs, tmp_path / "models" / "best.pt", tmp_path / "history.csv", state,
                    tmp_path / "cache")
    assert summary["epochs"] == 1  # trained afresh
    [aside] = (tmp_path / "models").glob("last.pt.*.unreadable")
    assert f"{state}: not a checkpoint" in caplog.text and f"set aside as {aside}" in caplog.text
    assert load_train_state(state, "another run", 2, "sources") is None  # the new state is readable
    # a model checkpoint where the resume state should be: set aside too
    aside.unlink()
    save_checkpoint(state, tiny_model())
    assert load_train_state(state, "any", 2, "sources") is None
    assert "not a resume state (no 'fingerprint')" in caplog.text
    assert len(list((tmp_path / "models").glob("last.pt.*.unreadable"))) == 1


def random_bytes_as_a_checkpoint(tmp_path, caplog, command_line):
    path = tmp_path / "best.pt"
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for size in rng.integers(1, 5000, 200)]
    for content, reason in [(data, "not a checkpoint") for data in noise] + [(b"", "empty or cut short")]:
        path.write_bytes(content)
        with pytest.raises(ValueError, match=reason) as error:
            load_model(path, CPU)
        assert str(error.value).startswith(f"{path}: ") and "weights_only=False" not in str(error.value)
    save_checkpoint(path, tiny_model())
    path.write_bytes(path.read_bytes()[:5000])  # cut short
    with pytest.raises(ValueError, match=f"{path}: not a checkpoint, or damaged"):
        load_model(path, CPU)
    with pytest.raises(ValueError, match=f"{tmp_path / 'missing.pt'} does not exist"):
        load_model(tmp_path / "missing.pt", CPU)
    # the commands say it in one line
    path.write_bytes(noise[0])
    save(tmp_path / "in" / "a.png", np.zeros((4, 4, 3), np.uint8))
    result = command_line(upscale_main, path, tmp_path / "in", "--out", tmp_path / "out")
    assert result.status == 1 and result.err.startswith(f"error: {path}: not a checkpoint")


def checkpoint_that_does_not_fit(tmp_path, caplog):
    path = tmp_path / "model.pt"
    torch.save({"state_dict": tiny_model().state_dict()}, path)
    with pytest.raises(ValueError, match=f"{path}: not a model checkpoint \\(no model_config\\); a model is"):
        load_model(path, CPU)
    torch.save({"model": {}, "epoch": 3}, path)  # the resume state given as a model
    with pytest.raises(ValueError, match="no model_config or state_dict"):
        load_model(path, CPU)
    checkpoint = {"model_config": {"scale": 4, "num_blocks": 1, "num_features": 16, "bicubic_residual": False},
                  "state_dict": tiny_model().state_dict()}
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match=f"{path}: the weights do not fit its model_config .*size mismatch"):
        load_model(path, CPU)
    save_checkpoint(path, tiny_model(scale=2))
    with pytest.raises(ValueError, match=f"{path}: a x2 model, but model.scale is 4"):
        load_model(path, CPU, scale=4)
    assert load_model(path, CPU).config.scale == 2  # the upscale command takes the model's own scale


def empty_test_folder(tmp_path, caplog):
    (tmp_path / "test").mkdir()
    with pytest.raises(FileNotFoundError, match="test: no images to predict"):
        predict_folder(tiny_model(), tmp_path / "test", tmp_path / "pred")
    with pytest.raises(FileNotFoundError, match="test: no test images, so no submission"):
        write_submission(tmp_path / "test", tmp_path / "pred", tmp_path / "submission.csv", 4)
    assert not (tmp_path / "submission.csv").exists()


def killed_writers_leave_only_ignored_temp_files(tmp_path, caplog):
    out = tmp_path / "submission.csv"
    started = tmp_path / "started"
    child = ("import sys, time\nfrom sr_core.files import atomic_write\n"
             "with atomic_write(sys.argv[1]) as f:\n"
             "    f.write(b'half'); f.flush(); open(sys.argv[2], 'w').close(); time.sleep(60)\n")
    process = subprocess.Popen([sys.executable, "-c", child, str(out), str(started)])
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    [left] = tmp_path.glob(".submission.csv.*.tmp")
    assert not out.exists() and left.name.startswith(f".submission.csv.{process.pid}.")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    for name in (left.name, f"data/predictions/.00001.png.{process.pid}.x1y2.tmp"):
        assert subprocess.run(["git", "check-ignore", "-q", name], cwd=REPO).returncode == 0, f"git sees {name}"
    dvc = subprocess.run(["dvc", "check-ignore", f"data/predictions/.00001.png.{process.pid}.x1y2.tmp"], cwd=REPO,
                         env=env, capture_output=True, text=True)
    assert dvc.returncode == 0, f"dvc would track a temp file in an output: {dvc.stdout}{dvc.stderr}"
    with atomic_write(out) as f:  # the next write of the file removes what the killed one left
        f.write(b"whole")
    assert only_files(tmp_path) == ["started", "submission.csv"] and out.read_bytes() == b"whole"


def full_disk(tmp_path, caplog):
    """A checkpoint and a decode-cache file written where the space runs out: an OSError naming the
    file, no temporary file left, and the previous file kept. Run twice: under a file-size limit
    (EFBIG, anywhere) and on a full 1 MiB tmpfs (ENOSPC, where mounting is allowed)."""
    save(tmp_path / "hr.png", np.random.default_rng(0).integers(0, 256, (800, 800, 3), dtype=np.uint8))

    def fill(folder: Path) -> list[str]:
        (folder / "best.pt").write_text("the previous best")
        errors = []
        for write in (lambda: save_checkpoint(folder / "best.pt", SRResNet(ModelConfig())),
                      lambda: decode_pairs([Pair("a", None, tmp_path / "hr.png")], 4, folder / "cache", 1)):
            with pytest.raises(OSError) as error:
                write()
            errors.append(str(error.value))
        assert (folder / "best.pt").read_text() == "the previous best"
        assert [p for p in folder.rglob("*") if p.name.endswith(".tmp")] == []
        return errors

    with file_size_limit(300_000):
        lines = fill(tmp_path)
    assert f"cannot write {tmp_path / 'best.pt'}: File too large" in lines[0]
    assert f"cannot write {tmp_path / 'cache'}/" in lines[1] and ".hr.npy: File too large" in lines[1]
    with tmpfs(tmp_path / "small", "size=1m") as small:
        lines = fill(small)
        assert f"cannot write {small / 'best.pt'}: No space left on device" in lines[0]
        assert ".hr.npy: No space left on device" in lines[1]


@contextlib.contextmanager
def file_size_limit(limit: int):
    """Writes in this process past `limit` bytes fail with EFBIG (its soft limit, restored after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error from write(), not a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def float_tiff(tmp_path, caplog):
    """(As a training pair: `test_a_bad_training_pair_is_rejected_by_name` below.)"""
    (tmp_path / "float.tiff").write_bytes(FLOAT_TIFF)
    with pytest.raises(ImageError, match="float.tiff: cannot decode image \\(mode F: 32-bit float pixels have no"):
        read_rgb(tmp_path / "float.tiff")


def tests_do_not_depend_on_the_checkout(tmp_path, caplog):
    from test_pipeline import tiny_params
    edited = (REPO / "params.yaml").read_text().replace("\nlr: ", "\nlr: 2.0e-4  # was ", 1)
    edited = edited.replace("  scale: 4", "  scale: 2", 1)
    assert yaml.safe_load(edited)["lr"] == 2e-4 and yaml.safe_load(edited)["model"]["scale"] == 2
    tiny = yaml.safe_load(tiny_params(edited))
    assert tiny["lr"] == 5e-4 and tiny["model"]["scale"] == 4


# --- test folders, names and pickles ----------------------------------------------------------

def truncated_test_image(tmp_path, caplog):
    """(A truncated training file: `test_a_bad_training_pair_is_rejected_by_name` below.)"""
    save(tmp_path / "test" / "a.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "test" / "cut.png").write_bytes(TRUNCATED_PNG)
    with pytest.raises(ImageError, match="test/cut.png: cannot decode image"):
        predict_folder(tiny_model(), tmp_path / "test", tmp_path / "pred")


def empty_and_missing_folders(tmp_path, caplog):
    _, hr_dir = valid_pairs(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'missing'}: not a folder"):
        check_pairs(tmp_path / "missing", hr_dir, 4)
    with pytest.raises(FileNotFoundError, match="missing: not a folder"):
        predict_folder(tiny_model(), tmp_path / "missing", tmp_path / "pred")
    (tmp_path / "bench" / "hr").mkdir(parents=True)
    with pytest.raises(ValueError, match="bench: no images in hr/"):
        load_sets([tmp_path / "bench"])


def duplicate_stems(tmp_path, caplog):
    save(tmp_path / "test" / "a.png", np.zeros((4, 4, 3), np.uint8))
    save(tmp_path / "test" / "a.jpg", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"test/a.jpg, .*test/a.png would all be written to .*pred/a.png"):
        predict_folder(tiny_model(), tmp_path / "test", tmp_path / "pred")
    assert not (tmp_path / "pred").exists()


def odd_file_names_as_csv_ids(tmp_path, caplog):
    names = ['a,b.png', 'say "hi".png', " lead space.png", "ünï cödé.png", "-dash.png", "semi;colon.png"]
    for name in names:
        save(tmp_path / "test" / name, np.zeros((3, 4, 3), np.uint8))
    predict_folder(tiny_model(), tmp_path / "test", tmp_path / "pred")
    write_submission(tmp_path / "test", tmp_path / "pred", tmp_path / "submission.csv", 4)
    with open(tmp_path / "submission.csv", newline="") as f:
        assert sorted(row["id"] for row in csv.DictReader(f)) == sorted(names)  # the csv module agrees
    save(tmp_path / "test" / "line\nbreak.png", np.zeros((3, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="names with a line break cannot be submission ids"):
        write_submission(tmp_path / "test", tmp_path / "pred", tmp_path / "other.csv", 4)


def tiny_test_images(tmp_path, caplog):
    save(tmp_path / "test" / "dot.png", np.full((1, 1, 3), 200, np.uint8))
    save(tmp_path / "test" / "line.png", np.zeros((1, 7), np.uint8))
    predict_folder(tiny_model(), tmp_path / "test", tmp_path / "pred")
    assert read_rgb(tmp_path / "pred" / "dot.png").shape == (4, 4, 3)
    assert write_submission(tmp_path / "test", tmp_path / "pred", tmp_path / "submission.csv", 4) == 2


# --- stale predictions, orientation, transparency, frames, profiles, locales -------------

def with_exif_orientation(upright: np.ndarray, orientation: int) -> Image.Image:
    """`upright` stored turned so that EXIF `orientation` (6: turn 90 degrees clockwise to show,
    8: counter-clockwise) shows it upright again, as cameras store portrait photos."""
    image = Image.fromarray(np.rot90(upright, 1 if orientation == 6 else -1).copy())
    image.info["exif"] = exif = Image.Exif()
    exif[0x0112] = orientation
    return image


def save_with_exif(path: Path, upright: np.ndarray, orientation: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = with_exif_orientation(upright, orientation)
    image.save(path, exif=image.info["exif"])


def stale_prediction_is_refused(tmp_path, caplog):
    model, rng = tiny_model(), np.random.default_rng(2)
    save(tmp_path / "test" / "t.png", rng.integers(0, 256, (6, 5, 3), dtype=np.uint8))
    predict_folder(model, tmp_path / "test", tmp_path / "pred", model_sha256="model-a")
    out = tmp_path / "submission.csv"
    assert write_submission(tmp_path / "test", tmp_path / "pred", out, 4, model_sha256="model-a") == 1
    submitted = out.read_bytes()
    save(tmp_path / "test" / "t.jpg", rng.integers(0, 256, (6, 5, 3), dtype=np.uint8))  # another picture
    with pytest.raises(ValueError, match="would all be written to"):  # predict refuses the clash
        predict_folder(model, tmp_path / "test", tmp_path / "pred", model_sha256="model-a")
    with pytest.raises(ValueError, match=r"test/t.jpg: its prediction .*pred/t.png was made from 't.png', not from "
                                         r"this file; run the predict stage"):
        write_submission(tmp_path / "test", tmp_path / "pred", out, 4, model_sha256="model-a")
    (tmp_path / "test" / "t.jpg").unlink()
    with pytest.raises(ValueError, match="made by another model than predict.model"):
        write_submission(tmp_path / "test", tmp_path / "pred", out, 4, model_sha256="model-b")
    save(tmp_path / "test" / "t.png", rng.integers(0, 256, (6, 5, 3), dtype=np.uint8))  # edited by hand
    with pytest.raises(ValueError, match="test/t.png: changed since its prediction"):
        write_submission(tmp_path / "test", tmp_path / "pred", out, 4, model_sha256="model-a")
    assert out.read_bytes() == submitted  # the previous submission is untouched


def exif_orientation_is_one_rule(tmp_path, caplog):
    rng = np.random.default_rng(3)
    for name, (width, height) in (("square.png", (16, 16)), ("tall.png", (12, 16))):
        lr_img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        hr_upright = np.kron(lr_img, np.ones((4, 4, 1), np.uint8))
        save(tmp_path / "train" / "lr" / name, lr_img)
        save_with_exif(tmp_path / "train" / "hr" / name, hr_upright, 6)
        assert np.array_equal(read_rgb(tmp_path / "train" / "hr" / name), hr_upright)  # pixel by pixel
    notes = []
    pairs, rejects = check_pairs(tmp_path / "train" / "lr", tmp_path / "train" / "hr", 4, notes=notes)
    assert [pair.name for pair in pairs] == ["square.png", "tall.png"] and rejects == []
    assert [kind for kind, _ in notes] == ["orientation_differs"] * 2
    assert "tall.png: EXIF orientation 1 in the LR, 6 in the HR; both are applied" in caplog.text
    upright_test = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)  # a viewer shows 16x12
    save_with_exif(tmp_path / "test" / "photo.png", upright_test, 8)
    predict_folder(tiny_model(), tmp_path / "test", tmp_path / "pred", model_sha256="m")
    assert Image.open(tmp_path / "pred" / "photo.png").size == (64, 48)
    assert write_submission(tmp_path / "test", tmp_path / "pred", tmp_path / "s.csv", 4, model_sha256="m") == 1


def transparency_kept_by_upscale_and_named_by_the_pipeline(tmp_path, caplog):
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    alpha = np.zeros((6, 8), np.uint8)
    alpha[:, 4:] = 255  # left half transparent
    inputs = {"rgba.png": Image.fromarray(np.dstack([rgb, alpha])),
              "la.png": Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA"),
              "palette.png": Image.fromarray(np.where(alpha == 0, 0, rng.integers(1, 16, (6, 8))).astype(np.uint8), "P")}
    inputs["palette.png"].putpalette(rng.integers(0, 256, 16 * 3, dtype=np.uint8).tolist())  # index 0: transparent
    for name, image in inputs.items():
        (tmp_path / "in").mkdir(exist_ok=True)
        image.save(tmp_path / "in" / name, **({"transparency": 0} if name == "palette.png" else {}))
    model = tiny_model()
    upscale_files(model, sorted((tmp_path / "in").iterdir()), tmp_path / "out", keep_alpha_and_profile=True)
    for name in inputs:
        decoded = read_image(tmp_path / "in" / name)
        out = Image.open(tmp_path / "out" / name)
        assert out.mode == "RGBA", name
        assert np.array_equal(np.asarray(out.getchannel("A")), resize_bicubic(decoded.alpha, 32, 24)), name
        assert np.array_equal(np.asarray(out.convert("RGB")), upscale(model, decoded.rgb)), name
    assert "alpha" not in caplog.text  # the upscale command keeps it: nothing dropped, nothing to say
    predict_folder(model, tmp_path / "in", tmp_path / "pred")
    for name in inputs:
        assert f"in/{name}: alpha is not opaque in 24 of 48 pixels: its RGB is used as it is and the alpha is dropped, in its " \
            in caplog.text
        assert Image.open(tmp_path / "pred" / name).mode == "RGB"
    save(tmp_path / "train" / "lr" / "a.png", rgb)
    save(tmp_path / "train" / "hr" / "a.png", np.dstack([np.kron(rgb, np.ones((4, 4, 1), np.uint8)),
                                                          np.kron(alpha, np.ones((4, 4), np.uint8))]))
    notes = []
    check_pairs(tmp_path / "train" / "lr", tmp_path / "train" / "hr", 4, notes=notes)
    assert [kind for kind, _ in notes] == ["alpha_not_opaque"] and "train/hr/a.png: alpha is not opaque" in notes[0][1]


def multi_frame_images_are_refused(tmp_path, caplog):
    frames = [Image.fromarray(np.full((8, 8, 3), value, np.uint8)) for value in (0, 128)]
    for name in ("anim.png", "anim.webp", "pages.tif"):
        frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:])
        with pytest.raises(ImageError, match=rf"{name}: 2 frames \(an animation or a multi-page file\)"):
            read_rgb(tmp_path / name)
    (tmp_path / "test").mkdir()
    os.replace(tmp_path / "anim.png", tmp_path / "test" / "anim.png")
    with pytest.raises(ImageError, match="anim.png: 2 frames"):
        predict_folder(tiny_model(), tmp_path / "test", tmp_path / "pred")


def colour_profiles_carried_or_named(tmp_path, caplog):
    other = ImageCms.ImageCmsProfile(ImageCms.createProfile("XYZ")).tobytes()  # not sRGB
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb = np.random.default_rng(5).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(rgb).save(tmp_path / "in" / "wide.png", icc_profile=other)
    Image.fromarray(rgb).save(tmp_path / "in" / "srgb.png", icc_profile=srgb)
    model = tiny_model()
    upscale_files(model, sorted((tmp_path / "in").iterdir()), tmp_path / "out", keep_alpha_and_profile=True)
    assert Image.open(tmp_path / "out" / "wide.png").info["icc_profile"] == other  # displays as the input did
    assert Image.open(tmp_path / "out" / "srgb.png").info["icc_profile"] == srgb
    assert "not sRGB" not in caplog.text
    predict_folder(model, tmp_path / "in", tmp_path / "pred")
    assert "in/wide.png: colour profile" in caplog.text and "is not sRGB: its values are used as sRGB" in caplog.text
    assert "srgb.png: colour profile" not in caplog.text


def whole_upscale_command_memory(tmp_path, caplog):
    """Peak RSS of the whole upscale command (decode, network, PNG encode, write) in fresh processes
    at two sizes cut into tiles of one shape (benchmarks/real_scale.py): at most 5 bytes per output
    pixel; 3 of them are the uint8 output itself. Without the command's mmap threshold, 6.1 (measured)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from real_scale import command_memory_slope
    save_checkpoint(tmp_path / "model.pt", tiny_model())
    slope = command_memory_slope(tmp_path / "model.pt", tmp_path)  # 600x600 and 1200x1200
    assert slope <= 5, f"{slope:.2f} bytes per output pixel"


def submission_is_utf8_whatever_the_locale(tmp_path, caplog):
    test_dir = tmp_path / "test"
    save(test_dir / "ünï.png", np.zeros((3, 4, 3), np.uint8))
    predict_folder(tiny_model(), test_dir, tmp_path / "pred")
    script = ("import sys; from sr_core.submission import write_submission; "
              "write_submission(sys.argv[1], sys.argv[2], sys.argv[3], 4)")
    ascii_locale = {"PATH": os.environ["PATH"], "LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0",
                    "PYTHONUTF8": "0", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", script, str(test_dir), str(tmp_path / "pred"), str(tmp_path / "s.csv")]
    result = subprocess.run(command, env=ascii_locale, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "ünï.png," in (tmp_path / "s.csv").read_bytes().decode("utf-8")
    with open(os.path.join(os.fsencode(test_dir), b"\xff.png"), "wb") as f:  # a name that is not UTF-8
        f.write(image_bytes(np.zeros((3, 4, 3), np.uint8)))
    with pytest.raises(ValueError, match=r"the file name '\\udcff.png' is not valid UTF-8"):
        write_submission(test_dir, tmp_path / "pred", tmp_path / "s.csv", 4)


class RunsACommand:
    """Unpickling this runs a shell command: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def malicious_pickles(tmp_path, caplog):
    marker = tmp_path / "pwned"
    zipped, raw = tmp_path / "zip.pt", tmp_path / "raw.pt"
    torch.save({"model_config": {}, "state_dict": RunsACommand(marker)}, zipped)
    raw.write_bytes(pickle.dumps(RunsACommand(marker)))
    for path in (zipped, raw):
        with pytest.raises(ValueError, match=f"{path}: not a checkpoint: .* never loaded since that could run code"):
            load_model(path, CPU)
    state = tmp_path / "last.pt"
    state.write_bytes(zipped.read_bytes())
    assert load_train_state(state, "any", 2, "sources") is None and not state.exists()  # refused, set aside
    assert not marker.exists()


def read_only_folder(tmp_path, caplog):
    """Writing into a read-only folder: an OSError naming the file, and the file there kept. Root
    ignores permissions, so as root a read-only tmpfs is mounted where that is allowed."""
    folder = tmp_path / "ro"
    if os.geteuid() == 0:
        with tmpfs(folder, "ro,size=1m"):
            with pytest.raises(OSError, match=f"cannot write {folder / 'best.pt'}: Read-only file system"):
                save_checkpoint(folder / "best.pt", tiny_model())
        return
    folder.mkdir()
    (folder / "best.pt").write_text("kept")
    folder.chmod(0o555)
    try:
        with pytest.raises(OSError, match=f"cannot write {folder / 'best.pt'}: Permission denied"):
            save_checkpoint(folder / "best.pt", tiny_model())
        assert (folder / "best.pt").read_text() == "kept"
    finally:
        folder.chmod(0o755)


def stage_errors_are_one_line(tmp_path, caplog, command_line, monkeypatch):
    """A stage run with a bad param: exit status 1 and one line naming the key and its range; with
    SR_DEBUG=1 the error itself, for its traceback. With good params, small pairs land in
    rejects.csv by name."""
    lr_dir, hr_dir = valid_pairs(tmp_path, 4, lr_side=24)
    save(lr_dir / "small.png", np.zeros((8, 8, 3), np.uint8))
    save(hr_dir / "small.png", np.zeros((32, 32, 3), np.uint8))
    data = {"train_lr_dir": str(lr_dir), "train_hr_dir": str(hr_dir)}
    write_params(tmp_path, {"data": data, "train": {"epochs": 0}})
    monkeypatch.chdir(tmp_path)
    result = command_line(stage_script("split"))
    assert result.status == 1 and "Traceback" not in result.err
    assert result.err.splitlines()[-2] == "error: params.yaml: params.train.epochs must be an integer >= 1; got 0"
    monkeypatch.setenv("SR_DEBUG", "1")
    with pytest.raises(ValueError, match="params.train.epochs must be an integer >= 1; got 0"):
        command_line(stage_script("split"))
    monkeypatch.delenv("SR_DEBUG")
    write_params(tmp_path, {"data": data, "train": {"patch_size": 64}})
    result = command_line(stage_script("split"))
    assert result.status == 0, result.err
    with open(tmp_path / "data" / "rejects.csv", newline="") as f:
        [reject] = csv.DictReader(f)
    assert reject["name"] == "small.png" and "HR is 32x32, under the 64 px a side" in reject["reason"]


@dataclass(frozen=True)
class Case:
    what: str
    check: Callable[..., None]
    slow: bool = False


CASES = [
    Case("large test image: bounded memory", large_test_image_memory, slow=True),
    Case("submit check fails or is killed", submit_check_fails_or_is_killed),
    Case("decompression bomb; a prediction over Pillow's limit", decompression_bomb_and_huge_outputs),
    Case("dangling symlink, symlink loop, other entries", broken_links_and_other_entries),
    Case("inference.tile -1", negative_tile),
    Case("images too small for a patch or for scoring", images_too_small_to_train_or_score),
    Case("unreadable resume state", unreadable_resume_state),
    Case("random bytes as best.pt", random_bytes_as_a_checkpoint),
    Case("checkpoint without config, wrong weights, wrong scale", checkpoint_that_does_not_fit),
    Case("empty test folder", empty_test_folder),
    Case("SIGKILL while writing", killed_writers_leave_only_ignored_temp_files),
    Case("disk full", full_disk),
    Case("float (mode F) TIFF", float_tiff),
    Case("tests independent of the checkout's params", tests_do_not_depend_on_the_checkout),
    Case("truncated test image", truncated_test_image),
    Case("empty and missing folders", empty_and_missing_folders),
    Case("duplicate stems", duplicate_stems),
    Case("odd file names as CSV ids", odd_file_names_as_csv_ids),
    Case("tiny test images", tiny_test_images),
    Case("malicious pickles", malicious_pickles),
    Case("read-only folder", read_only_folder),
    Case("a stale prediction (another input of the same stem)", stale_prediction_is_refused),
    Case("EXIF orientation in train, test and submission", exif_orientation_is_one_rule),
    Case("alpha: kept by upscale, named by the pipeline", transparency_kept_by_upscale_and_named_by_the_pipeline),
    Case("animated PNG / WebP, multi-page TIFF", multi_frame_images_are_refused),
    Case("a non-sRGB colour profile", colour_profiles_carried_or_named),
    Case("an ASCII locale; a name that is not UTF-8", submission_is_utf8_whatever_the_locale),
    Case("the whole upscale command's memory", whole_upscale_command_memory, slow=True),
    Case("a stage's error is one line", stage_errors_are_one_line),
]


@pytest.mark.parametrize("case", [pytest.param(case, marks=[pytest.mark.slow] * case.slow) for case in CASES],
                         ids=[case.check.__name__ for case in CASES])
def test_each_bad_input_gets_a_clear_answer(case, request, tmp_path, caplog):
    extra = {name: request.getfixturevalue(name) for name in ("test_and_predictions", "command_line", "monkeypatch")
             if name in case.check.__code__.co_varnames[:case.check.__code__.co_argcount]}
    case.check(tmp_path, caplog, **extra)


# --- training pairs: the bad one rejected by name, the rest kept --

ZEROS_LR, ZEROS_HR = np.zeros((8, 8, 3), np.uint8), np.zeros((32, 32, 3), np.uint8)
TRUNCATED_PNG = image_bytes(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))[:600]
FLOAT_TIFF = image_bytes(np.full((8, 8), 0.5, np.float32), "TIFF")

BAD_PAIRS = [  # (case, files under lr/ and hr/: an array is saved as an image, bytes as they are; reasons)
    ("truncated", {"lr/cut.png": ZEROS_LR, "hr/cut.png": TRUNCATED_PNG},
     {"cut.png": "hr/cut.png: cannot decode image (image file is truncated"}),
    ("not-an-image", {"lr/text.png": b"not an image", "hr/text.png": ZEROS_HR},
     {"text.png": "lr/text.png: cannot decode image (cannot identify image file"}),
    ("wrong-size", {"lr/odd.png": ZEROS_LR, "hr/odd.png": np.zeros((32, 30, 3), np.uint8)},
     {"odd.png": "hr/odd.png: HR is 30x32, expected 4x the LR 8x8 = 32x32"}),
    ("unpaired", {"lr/lr_only.png": ZEROS_LR, "hr/hr_only.png": ZEROS_HR},
     {"lr_only.png": "no HR file in", "hr_only.png": "no LR file in"}),
    ("decompression-bomb", {"lr/bomb.png": ZEROS_LR, "hr/bomb.png": black_png(20000, 20000, pixels=False)},
     {"bomb.png": "hr/bomb.png: 20000x20000 is 400,000,000 pixels, over the 268,435,456 allowed"}),
    ("float-tiff", {"lr/float.tiff": FLOAT_TIFF, "hr/float.tiff": ZEROS_HR},
     {"float.tiff": "lr/float.tiff: cannot decode image (mode F: 32-bit float pixels have no fixed range"}),
]


@pytest.mark.parametrize("files, reasons", [case[1:] for case in BAD_PAIRS], ids=[case[0] for case in BAD_PAIRS])
def test_a_bad_training_pair_is_rejected_by_name(tmp_path, files, reasons):
    lr_dir, hr_dir = valid_pairs(tmp_path)
    for name, content in files.items():
        if isinstance(content, bytes):
            (tmp_path / name).write_bytes(content)
        else:
            save(tmp_path / name, content)
    pairs, rejects = check_pairs(lr_dir, hr_dir, 4)
    assert [p.name for p in pairs] == valid_names()
    assert {r.name for r in rejects} == set(reasons)
    for reject in rejects:
        assert reasons[reject.name] in reject.reason


# --- params: every key is checked when loaded --------------------------

BAD_PARAMS = [
    ({"lr": float("inf")}, "params.lr must be a finite number > 0; got inf"),
    ({"lr": 0}, "params.lr must be a finite number > 0; got 0$"),
    ({"lr": "fast"}, "params.lr must be a finite number > 0; got 'fast'"),
    ({"train": {"epochs": 0}}, "params.train.epochs must be an integer >= 1; got 0"),
    ({"train": {"epochs": True}}, "params.train.epochs must be an integer >= 1; got True"),
    ({"train": {"step_epochs": 0}}, "params.train.step_epochs must be an integer >= 1; got 0"),
    ({"train": {"warmup_epochs": -1}}, "params.train.warmup_epochs must be an integer >= 0; got -1"),
    ({"train": {"step_gamma": 0}}, r"params.train.step_gamma must be a number in \(0, 1\]; got 0$"),
    ({"train": {"ema_decay": 1}}, r"params.train.ema_decay must be a number in \[0, 1\); got 1$"),
    ({"train": {"batch_size": 2.5}}, "params.train.batch_size must be an integer >= 1; got 2.5"),
    ({"train": {"patch_size": 30}}, r"params.train.patch_size must be a multiple of model.scale \(4\); got 30"),
    ({"train": {"schedule": "linear"}}, "params.train.schedule must be one of constant, cosine, step; got 'linear'"),
    ({"train": {"device": "gpu"}}, "params.train.device must be auto, cpu, cuda or cuda:N; got 'gpu'"),
    ({"train": {"augment": 1}}, "params.train.augment must be true or false; got 1"),
    ({"train": {"epoch": 3}}, r"params.train: unknown key epoch \(did you mean epochs\?\); valid keys: epochs"),
    ({"split": {"val_split": 0}}, r"params.split.val_split must be a number in \(0, 1\); got 0$"),
    ({"evaluate": {"num_samples": 0}}, "params.evaluate.num_samples must be an integer >= 1; got 0"),
    ({"evaluate": {"sample_crop": 0}}, "params.evaluate.sample_crop must be an integer >= 1; got 0"),
    ({"evaluate": {"sample_crop": 8}}, r"params.evaluate.sample_crop must be at least 3 x model.scale \(12\), so"),
    ({"inference": {"tile": -1}}, "params.inference.tile must be an integer >= 0; got -1"),
    ({"inference": {"png_compress_level": 10}}, r"params.inference.png_compress_level must be an integer in \[0, 9\]"),
    ({"model": {"scale": 3}}, "params.model.scale must be one of 2, 4, 8; got 3"),
    ({"model": {"num_blocks": 0}}, "params.model.num_blocks must be an integer >= 1; got 0"),
    ({"demo": {"test_images": []}}, "params.demo.test_images must be a list of strings, not empty; got \\[\\]"),
    ({"demo": {"tile_size": 66}}, r"params.demo.tile_size must be a multiple of model.scale \(4\); got 66"),
    ({"data": {"train_lr_dir": 5}}, "params.data.train_lr_dir must be a string, not blank; got 5"),
    ({"data": {"test_lr_dir": ""}}, "params.data.test_lr_dir must be a string, not blank; got ''"),
    ({"paths": {"model": None}}, "params.paths.model must be a string, not blank; got None"),
]


@pytest.mark.parametrize("updates, message", BAD_PARAMS, ids=[message.split()[0] for _, message in BAD_PARAMS])
def test_bad_params_name_the_key_and_the_range(tmp_path, updates, message):
    with pytest.raises(ValueError, match=f"{tmp_path / 'params.yaml'}: {message}"):
        load_params(write_params(tmp_path, updates))


@pytest.mark.parametrize("edit, message", [
    (lambda text: "", "expected a mapping of params at the top level, found nothing"),
    (lambda text: text + "lr: 1.0e-3\n", "duplicate key 'lr'"),
    (lambda text: text.replace("  val_every: 1", ""), r"params.train: missing key\(s\) val_every; every param"),
], ids=["empty", "duplicate-key", "missing-key"])
def test_params_file_must_set_each_key_once(tmp_path, edit, message):
    path = tmp_path / "params.yaml"
    path.write_text(edit((REPO / "params.yaml").read_text()))
    with pytest.raises(ValueError, match=message):
        load_params(path)


# --- every PIL mode is RGB after reading, or refused by name --------------------------------

MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LA", "PA", "RGBX", "I;16", "I;16B", "I", "F", "LAB"]
REFUSED = {"F": "32-bit float pixels", "LAB": "Pillow cannot convert Lab"}


@pytest.mark.parametrize("mode", MODES)
def test_every_pil_mode_reads_as_rgb_or_is_refused_by_name(tmp_path, mode):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8))
    image = rgb.convert(mode) if mode not in ("PA", "RGBX", "I;16", "I;16B", "I") else Image.new(mode, (5, 6))
    if mode in ("I;16", "I;16B", "I"):  # 16-bit values that use their range (others are refused: see test_images)
        image.putdata(np.linspace(0, 65535, 30).astype(int).tolist())
    path = tmp_path / f"image.{'png' if mode in ('1', 'L', 'P', 'RGB', 'RGBA', 'LA', 'I;16') else 'tiff'}"
    image.save(path)
    if mode in REFUSED:
        with pytest.raises(ImageError, match=f"{path}: cannot decode image \\(mode {mode}: {REFUSED[mode]}"):
            read_rgb(path)
    else:
        array = read_rgb(path)
        assert array.shape == (6, 5, 3) and array.dtype == np.uint8


def test_32_bit_integers_beyond_16_bits_are_refused(tmp_path):
    Image.fromarray(np.full((4, 4), 1 << 20, np.int32)).save(tmp_path / "deep.tiff")
    with pytest.raises(ImageError, match=r"deep.tiff: mode I: values 1048576..1048576 are not 16-bit"):
        read_rgb(tmp_path / "deep.tiff")


def test_upscale_files_never_writes_where_it_cannot_read(tmp_path):
    """Nothing valid is lost: a failed run writes nothing over an input (see duplicate_stems and the upscale
    command's own refusals in test_upscale.py)."""
    save(tmp_path / "in" / "a.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "in" / "b.png").write_bytes(b"broken")
    with pytest.raises(ImageError, match="in/b.png: cannot decode image"):
        upscale_files(tiny_model(), [tmp_path / "in" / "a.png", tmp_path / "in" / "b.png"], tmp_path / "out")
    assert only_files(tmp_path / "in") == ["a.png", "b.png"]
    assert [p.name for p in (tmp_path / "out").glob(".*.tmp")] == []


def test_pairs_of_the_hr_only_layout_are_checked_too(tmp_path):
    save(tmp_path / "hr" / "ok.png", np.zeros((32, 32, 3), np.uint8))
    save(tmp_path / "hr" / "speck.png", np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(ImageError, match=r"1 of 2 pairs cannot be used: .*speck.png: smaller than the scale 4"):
        score_pairs([Pair(n, None, tmp_path / "hr" / n) for n in ("ok.png", "speck.png")], 4, tiny_model())


def test_fifos_sockets_and_devices_are_named_and_skipped_never_opened(tmp_path, caplog, command_line):
    """A FIFO named like an image blocked every reader forever: listed, it is skipped with its kind
    named; given directly, it is refused with one line. An alarm fails the test if anything hangs."""
    folder = tmp_path / "test"
    save(folder / "a.png", np.zeros((4, 4, 3), np.uint8))
    os.mkfifo(folder / "x.png")
    with socket.socket(socket.AF_UNIX) as unix_socket:
        unix_socket.bind(str(folder / "s.png"))
        (folder / "d.png").symlink_to("/dev/zero")
        with caplog.at_level(logging.WARNING):
            assert [p.name for p in list_images(folder)] == ["a.png"]
        assert "skipping 3 entries that are not regular files: d.png (a character device), s.png (a socket), " \
               "x.png (a FIFO)" in caplog.text
        torch.manual_seed(0)
        save_checkpoint(tmp_path / "model.pt", SRResNet(ModelConfig(num_blocks=1, num_features=8)))
        with hang_fails(seconds=60):
            listed = command_line(upscale_main, tmp_path / "model.pt", folder, "--out", tmp_path / "out")
            assert listed.status == 0 and [p.name for p in (tmp_path / "out").iterdir()] == ["a.png"]
            given = command_line(upscale_main, tmp_path / "model.pt", folder / "x.png", "--out", tmp_path / "out2")
            assert given.status == 1 and f"{folder / 'x.png'}: a FIFO, not a file" in given.err
            with pytest.raises(ImageError, match="x.png: a FIFO, not a file"):  # any reader given the path
                read_image(folder / "x.png")


def test_writing_many_files_into_one_folder_lists_it_once(tmp_path, monkeypatch):
    """Predict slowed as its output folder grew (48 images/s at 20,000 after 213 at 1,000): every
    write listed the whole folder for temporary files left by killed writers. Now once a process."""
    listed = []
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path=".": listed.append(Path(path).resolve()) or scandir(path))
    folder = tmp_path / "predictions"
    stale = folder / ".old.png.999999999.abc_12.tmp"  # from a writer that no longer runs
    folder.mkdir()
    stale.write_bytes(b"half")
    for i in range(200):
        write_bytes(folder / f"{i:05d}.png", b"png")
    assert listed.count(folder.resolve()) == 1
    assert not stale.exists() and len(list(folder.iterdir())) == 200


def test_predictions_are_checked_by_content_and_names_as_file_systems_compare_them(tmp_path):
    """`Img.png` and `img.png` are one file on macOS, Windows and most shared drives: one prediction
    overwrote the other and submit took it, since it checked the records, not the files."""
    model, rng = tiny_model(), np.random.default_rng(3)
    for name in ("Img.png", "img.png"):
        save(tmp_path / "test" / name, rng.integers(0, 256, (6, 5, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"test: 'Img.png' and 'img.png' differ only in case: macOS, Windows and "
                                         r"most shared drives take such names for one file; rename one of each"):
        predict_folder(model, tmp_path / "test", tmp_path / "pred", model_sha256="m")
    for name, stem in (("cafe\u0301.png", "decomposed"), ("caf\u00e9.png", "composed")):  # NFD (macOS) and NFC
        save(tmp_path / stem / name, rng.integers(0, 256, (6, 5, 3), dtype=np.uint8))
    (tmp_path / "decomposed" / "cafe\u0301.png").rename(tmp_path / "composed" / "cafe\u0301.png")
    with pytest.raises(ValueError, match=r"'cafe\\u0301.png' and 'caf\\xe9.png' differ only in Unicode normalisation"):
        list_images(tmp_path / "composed")  # two submission ids that print the same
    with pytest.raises(ValueError, match=r"in/a.png, .*in/A.jpg would all be written to .*out/a.png \(or to names "
                                         r"that differ only in case"):
        upscale_files(model, [tmp_path / "in" / "a.png", tmp_path / "in" / "A.jpg"], tmp_path / "out")

    (tmp_path / "test" / "Img.png").unlink()
    predict_folder(model, tmp_path / "test", tmp_path / "pred", model_sha256="m")
    records = json.loads((tmp_path / "pred" / "records.json").read_text())
    assert records["predictions"]["img.png"]["sha256"] == sha256_of(tmp_path / "pred" / "img.png")
    out = tmp_path / "submission.csv"
    assert write_submission(tmp_path / "test", tmp_path / "pred", out, 4, model_sha256="m") == 1
    submitted = out.read_bytes()
    other = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)  # the other image's prediction, written over it
    save(tmp_path / "pred" / "img.png", other)
    with pytest.raises(ValueError, match=r"pred/img.png: not the file the predict stage wrote for .*test/img.png \("
                                         r"its content changed since"):
        write_submission(tmp_path / "test", tmp_path / "pred", out, 4, model_sha256="m")
    assert out.read_bytes() == submitted  # the earlier submission stays


def test_pairs_match_on_normalised_names_and_rejects_say_when_names_differ_only_in_case(tmp_path):
    """An LR named `café.png` composed (NFC) and its HR decomposed (NFD, as macOS writes names) gave
    two rejects whose names printed the same."""
    rng = np.random.default_rng(4)
    for folder, name in (("lr", "caf\u00e9.png"), ("hr", "cafe\u0301.png"), ("lr", "X1.PNG"), ("hr", "x1.png")):
        side = 8 if folder == "lr" else 32
        save(tmp_path / folder / name, rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    pairs, rejects = check_pairs(tmp_path / "lr", tmp_path / "hr", 4)
    assert [(p.name, p.lr_path.name, p.hr_path.name) for p in pairs] == [("caf\u00e9.png", "caf\u00e9.png",
                                                                           "cafe\u0301.png")]
    assert sorted((r.name, r.reason) for r in rejects) == [
        ("X1.PNG", f"no HR file in {tmp_path / 'hr'} ('x1.png' there differs only in case: a pair needs one name)"),
        ("x1.png", f"no LR file in {tmp_path / 'lr'} ('X1.PNG' there differs only in case: a pair needs one name)")]
    write_split(tmp_path / "split.json", ["caf\u00e9.png"], ["caf\u00e9.png"])
    train_pairs, _ = read_split(tmp_path / "split.json", tmp_path / "lr", tmp_path / "hr")
    assert train_pairs[0].hr_path == tmp_path / "hr" / "cafe\u0301.png"  # the file as it is on disk


def test_memory_is_estimated_before_it_is_spent_and_a_failed_allocation_is_one_line(tmp_path, monkeypatch,
                                                                                     command_line):
    """A flat 12000x12000 image (under the pixel limit) ended in a traceback: `RuntimeError: can't
    allocate memory: you tried to allocate 6912000000 bytes`. Here the machine's free memory is
    made small instead of the image large."""
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "model.pt", SRResNet(ModelConfig(num_blocks=1, num_features=8)))
    save(tmp_path / "in" / "flat.png", np.full((300, 300, 3), 128, np.uint8))
    free = psutil.virtual_memory()._replace(available=100 * 10**6)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: free)
    command = [str(tmp_path / "model.pt"), str(tmp_path / "in"), "--out", str(tmp_path / "out")]
    with pytest.raises(ValueError, match=r"in/flat.png: upscaling this 300x300 image needs about 1\d\d.\d MB of memory "
                                         r"\(4.8 MB for its 1200x1200 output, 1\d\d.\d MB for the network at --tile 512\), "
                                         r"more than the 100.0 MB free: lower --tile \(inference.tile\)"):
        upscale_main(command)
    assert not (tmp_path / "out" / "flat.png").exists()
    upscale_main(command + ["--tile", "64"])  # the network's share, tile by tile, fits
    assert read_rgb(tmp_path / "out" / "flat.png").shape == (1200, 1200, 3)

    allocating = command_line(lambda argv: torch.empty(10**13, dtype=torch.uint8))  # fails before touching memory
    assert allocating.status == 1
    assert allocating.err.startswith("error: out of memory (10000.0 GB asked for): lower --tile (inference.tile)")
